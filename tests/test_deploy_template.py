"""deploy/template.yaml: valid for cfn-lint, and what it grants is what the gate needs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode

from authorizer.mirror import TABLE_DEFINITION
from deploy.lambda_platform import ARCHITECTURE, RUNTIME

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "template.yaml"


@pytest.fixture(scope="module")
def resources() -> dict:
    template, problems = decode(str(TEMPLATE))
    assert problems == []
    return template["Resources"]


def statements(role: dict) -> list[dict]:
    assert "ManagedPolicyArns" not in role["Properties"]
    return [s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def actions(statement: dict) -> set[str]:
    return {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])


def test_cfn_lint_finds_nothing_not_even_informational():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--include-checks", "I", "--", str(TEMPLATE)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_the_mirror_table_has_the_contracts_shape_and_is_protected(resources):
    table = resources["MirrorTable"]
    properties = table["Properties"]
    for field in ("KeySchema", "AttributeDefinitions", "BillingMode"):
        assert properties[field] == TABLE_DEFINITION[field]
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["DeletionProtectionEnabled"] == {"Fn::If": ["IsProduction", True, False]}
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_the_authorizer_may_only_get_and_update_items_of_the_mirror_table(resources):
    grants = statements(resources["AuthorizerRole"])
    dynamodb = [s for s in grants if any(a.startswith("dynamodb:") for a in actions(s))]
    assert len(dynamodb) == 1
    assert actions(dynamodb[0]) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert dynamodb[0]["Resource"] == {"Fn::GetAtt": ["MirrorTable", "Arn"]}
    others = [s for s in grants if s is not dynamodb[0]]
    assert [(actions(s), s["Resource"]) for s in others] == [
        ({"logs:CreateLogStream", "logs:PutLogEvents"}, {"Fn::GetAtt": ["AuthorizerLogGroup", "Arn"]})
    ]
    assert all(s["Effect"] == "Allow" and "*" not in json.dumps(s["Resource"]) for s in grants)


def test_the_authorizer_function_runs_the_zip_for_the_runtime_it_was_built_for(resources):
    properties = resources["AuthorizerFunction"]["Properties"]
    assert (properties["Runtime"], properties["Architectures"]) == (RUNTIME, [ARCHITECTURE])
    assert properties["Handler"] == "authorizer.handler.lambda_handler"
    # SAM resolves CodeUri from the template's folder: the file `make authorizer-zip` writes.
    assert (TEMPLATE.parent / properties["CodeUri"]).resolve() == ROOT / "dist" / "creditportal-authorizer.zip"
    assert properties["Role"] == {"Fn::GetAtt": ["AuthorizerRole", "Arn"]}
    assert set(properties["Environment"]["Variables"]) == {
        "MIRROR_TABLE", "JWT_PUBLIC_KEY", "JWT_ALGORITHM", "JWT_ISSUER", "JWT_AUDIENCE",
        "AUTHORIZER_PRODUCT", "AUTHORIZER_ROUTE_TTL",
    }  # fmt: skip
    assert properties["Environment"]["Variables"]["MIRROR_TABLE"] == {"Ref": "MirrorTable"}


def test_it_is_a_request_authorizer_on_the_authorization_header_with_caching_off(resources):
    authorizer = resources["ExampleAuthorizer"]["Properties"]
    assert authorizer["Type"] == "REQUEST"
    assert authorizer["IdentitySource"] == "method.request.header.Authorization"
    assert authorizer["AuthorizerResultTtlInSeconds"] == 0
    assert "${AuthorizerFunction.Arn}" in authorizer["AuthorizerUri"]["Fn::Sub"]

    methods = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::Method"]
    assert methods and all(
        (m["AuthorizationType"], m["AuthorizerId"]) == ("CUSTOM", {"Ref": "ExampleAuthorizer"}) for m in methods
    )


def test_api_gateway_may_invoke_the_authorizer_for_this_api_only(resources):
    permission = resources["ExampleAuthorizerPermission"]["Properties"]
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["FunctionName"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    assert permission["SourceArn"]["Fn::Sub"].endswith(":${ExampleApi}/authorizers/${ExampleAuthorizer}")


def test_djangos_role_reaches_the_mirror_table_its_email_identity_and_its_secrets_file_only(resources):
    grants = statements(resources["DjangoRole"])
    by_service = {next(iter(actions(s))).split(":")[0]: s for s in grants}
    assert set(by_service) == {"dynamodb", "ses", "s3", "logs"}
    assert actions(by_service["dynamodb"]) == {
        "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Scan", "dynamodb:BatchWriteItem",
    }  # fmt: skip
    assert by_service["dynamodb"]["Resource"] == {"Fn::GetAtt": ["MirrorTable", "Arn"]}
    assert actions(by_service["s3"]) == {"s3:GetObject"}
    assert by_service["s3"]["Resource"] == {"Fn::Sub": "${SecretsBucket.Arn}/${RemoteEnvKey}"}
    assert by_service["ses"]["Resource"]["Fn::Sub"].endswith(":identity/${SenderIdentity}")
    assert all(not any(a.endswith("*") for a in actions(s)) for s in grants)


def test_zappas_stages_use_the_names_this_template_creates(resources):
    settings = json.loads((ROOT / "zappa_settings.json").read_text())
    assert resources["DjangoRole"]["Properties"]["RoleName"] == {"Fn::Sub": "creditportal-${Stage}-django"}
    assert resources["MirrorTable"]["Properties"]["TableName"] == {"Fn::Sub": "creditportal-${Stage}-mirror"}
    assert resources["DjangoLogGroup"]["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/creditportal-${Stage}"}
    for stage in ("dev", "production"):
        config = {**settings["dev"], **settings[stage]}
        assert f"{config['project_name']}-{stage}" == f"creditportal-{stage}"  # Zappa's function name
        assert (config["manage_roles"], config["role_name"]) == (False, f"creditportal-{stage}-django")
        assert config["environment_variables"]["MIRROR_TABLE"] == f"creditportal-{stage}-mirror"
        assert config["remote_env"].startswith("s3://") and config["remote_env"].endswith("/creditportal.env.json")
