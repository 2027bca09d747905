"""deploy/template.yaml: valid for cfn-lint, and shaped as the gate needs (what the roles grant: test_deploy_iam.py)."""

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


def test_each_role_is_inline_scoped_policies_on_named_resources(resources):
    """What each role may do is proved against the code by tests/test_deploy_iam.py; here, its shape:
    inline Allow statements only, no wildcard action, every resource one this stack names."""
    for role in ("AuthorizerRole", "DjangoRole"):
        for statement in statements(resources[role]):
            assert statement["Effect"] == "Allow" and "Sid" in statement, (role, statement)
            assert not any(a.endswith("*") for a in actions(statement)), (role, statement)
            assert "*" not in json.dumps(statement["Resource"]), (role, statement)
    authorizer = {s["Sid"]: s["Resource"] for s in statements(resources["AuthorizerRole"])}
    assert authorizer == {
        "MirrorItems": {"Fn::GetAtt": ["MirrorTable", "Arn"]},
        "OwnLogs": {"Fn::GetAtt": ["AuthorizerLogGroup", "Arn"]},
    }
    django = {s["Sid"]: s["Resource"] for s in statements(resources["DjangoRole"])}
    assert django["MirrorWritesAndSync"] == {"Fn::GetAtt": ["MirrorTable", "Arn"]}
    assert django["RemoteEnv"] == {"Fn::Sub": "${SecretsBucket.Arn}/${RemoteEnvKey}"}
    assert django["PurchaseEmails"]["Fn::Sub"].endswith(":identity/${SenderIdentity}")
    assert django["OwnLogs"] == {"Fn::GetAtt": ["DjangoLogGroup", "Arn"]}


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
