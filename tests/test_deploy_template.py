"""deploy/template.yaml: valid for cfn-lint, and shaped as the gate needs (what the roles grant: test_deploy_iam.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode
from samtranslator.translator.transform import transform

from authorizer.mirror import TABLE_DEFINITION
from deploy.build_authorizer import argument_parser
from deploy.lambda_platform import AUTHORIZER_ARCHITECTURES, AUTHORIZER_PYTHON_VERSIONS, Platform

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "template.yaml"


@pytest.fixture(scope="module")
def template() -> dict:
    template, problems = decode(str(TEMPLATE))
    assert problems == []
    return json.loads(json.dumps(template))  # plain dicts and strings


@pytest.fixture(scope="module")
def resources(template) -> dict:
    return template["Resources"]


class NoManagedPolicies:
    def load(self) -> dict:
        return {}


def translated(template: dict, monkeypatch, **parameters) -> dict:
    """The template as CloudFormation gets it from AWS SAM's own translator, after `sam package` uploaded the zip."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    packaged = json.loads(json.dumps(template))
    packaged["Resources"]["AuthorizerFunction"]["Properties"]["CodeUri"] = "s3://artifacts/creditportal-authorizer.zip"
    return transform(packaged, parameters, NoManagedPolicies())["Resources"]


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


def test_the_authorizer_runs_on_the_runtime_and_architecture_the_zip_is_built_for_by_default(template, resources):
    properties = resources["AuthorizerFunction"]["Properties"]
    parameters = template["Parameters"]
    assert (properties["Runtime"], properties["Architectures"]) == (
        {"Ref": "AuthorizerRuntime"},
        [{"Ref": "AuthorizerArchitecture"}],
    )
    built = argument_parser().parse_args([])  # what `make authorizer-zip` builds
    default = Platform(built.python_version, built.architecture)
    assert (parameters["AuthorizerRuntime"]["Default"], parameters["AuthorizerArchitecture"]["Default"]) == (
        default.runtime,
        default.architecture,
    )
    assert parameters["AuthorizerRuntime"]["AllowedValues"] == [f"python{v}" for v in AUTHORIZER_PYTHON_VERSIONS]
    assert parameters["AuthorizerArchitecture"]["AllowedValues"] == list(AUTHORIZER_ARCHITECTURES)
    assert properties["Handler"] == "authorizer.handler.lambda_handler"
    # SAM resolves CodeUri from the template's folder: the file `make authorizer-zip` writes.
    assert (TEMPLATE.parent / properties["CodeUri"]).resolve() == ROOT / "dist" / "creditportal-authorizer.zip"
    assert properties["Role"] == {"Fn::GetAtt": ["AuthorizerRole", "Arn"]}
    assert set(properties["Environment"]["Variables"]) == {
        "MIRROR_TABLE", "JWT_PUBLIC_KEY", "JWT_ALGORITHM", "JWT_ISSUER", "JWT_AUDIENCE",
        "AUTHORIZER_PRODUCT", "AUTHORIZER_ROUTE_TTL",
    }  # fmt: skip
    assert properties["Environment"]["Variables"]["MIRROR_TABLE"] == {"Ref": "MirrorTable"}


def test_it_is_a_request_authorizer_on_any_header_with_caching_off(resources):
    authorizer = resources["ExampleAuthorizer"]["Properties"]
    assert authorizer["Type"] == "REQUEST"
    # Either Authorization or x-api-key may carry what the authorizer reads: no one header is required.
    assert "IdentitySource" not in authorizer
    assert authorizer["AuthorizerResultTtlInSeconds"] == 0
    uri, variables = authorizer["AuthorizerUri"]["Fn::Sub"]
    assert uri.endswith(":lambda:path/2015-03-31/functions/${Live}/invocations")
    assert variables == {"Live": {"Ref": "AuthorizerFunction.Alias"}}

    methods = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::Method"]
    assert methods and all(
        (m["AuthorizationType"], m["AuthorizerId"]) == ("CUSTOM", {"Ref": "ExampleAuthorizer"}) for m in methods
    )


def test_api_gateway_may_invoke_the_authorizer_for_this_api_only(resources):
    permission = resources["ExampleAuthorizerPermission"]["Properties"]
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["FunctionName"] == {"Ref": "AuthorizerFunction.Alias"}
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


def test_by_default_the_api_invokes_a_published_alias_without_snapstart_or_provisioned_concurrency(
    template, monkeypatch
):
    parameters = template["Parameters"]
    assert (
        parameters["AuthorizerSnapStart"]["Default"],
        parameters["AuthorizerProvisionedConcurrency"]["Default"],
    ) == (
        "None",
        0,
    )
    out = translated(template, monkeypatch)
    (alias_id,) = [name for name, r in out.items() if r["Type"] == "AWS::Lambda::Alias"]
    (version_id,) = [name for name, r in out.items() if r["Type"] == "AWS::Lambda::Version"]
    alias = out[alias_id]["Properties"]
    assert alias["Name"] == "live"
    assert alias["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
    assert out["ExampleAuthorizer"]["Properties"]["AuthorizerUri"]["Fn::Sub"][1] == {"Live": {"Ref": alias_id}}
    assert out["ExampleAuthorizerPermission"]["Properties"]["FunctionName"] == {"Ref": alias_id}
    assert out["AuthorizerFunction"]["Properties"]["SnapStart"] == {"ApplyOn": {"Ref": "AuthorizerSnapStart"}}
    # Provisioned concurrency sits on the alias, only when asked for.
    assert alias["ProvisionedConcurrencyConfig"] == {
        "Fn::If": [
            "HasProvisionedConcurrency",
            {"ProvisionedConcurrentExecutions": {"Ref": "AuthorizerProvisionedConcurrency"}},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert template["Conditions"]["HasProvisionedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AuthorizerProvisionedConcurrency"}, "0"]}]
    }


def test_snapstart_and_provisioned_concurrency_cannot_be_asked_for_together(template):
    assert template["Parameters"]["AuthorizerSnapStart"]["AllowedValues"] == ["None", "PublishedVersions"]
    (rule,) = template["Rules"]["SnapStartOrProvisionedConcurrency"]["Assertions"]
    assert rule["Assert"] == {
        "Fn::Or": [
            {"Fn::Equals": [{"Ref": "AuthorizerSnapStart"}, "None"]},
            {"Fn::Equals": [{"Ref": "AuthorizerProvisionedConcurrency"}, "0"]},
        ]
    }


# --- Failed calls cost nothing (issue 15) ---


def test_the_metered_stage_logs_each_call_in_the_format_the_refunds_read(resources):
    from ledger.failed_calls import FailedCall, Skip, failed_call_parse
    from local.access_log import ACCESS_LOG_FORMAT, access_log_line

    setting = resources["ExampleStage"]["Properties"]["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["AccessLogGroup", "Arn"]}
    assert "\n" not in setting["Format"]  # one line per call
    assert json.loads(setting["Format"]) == ACCESS_LOG_FORMAT  # what the local stand-in writes
    group = resources["AccessLogGroup"]["Properties"]
    assert group["LogGroupName"] == {"Fn::Sub": "/creditportal/${Stage}/api-access"}

    # Filled in as API Gateway fills it in: a call the gate charged 2, whose integration timed out.
    values = {
        "$context.requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "$context.requestTime": "03/Dec/2026:17:20:00 +0000",
        "$context.status": "504",
        "$context.httpMethod": "GET",
        "$context.resourcePath": "/hello",
        "$context.authorizer.customerId": "cus_abc",
        "$context.authorizer.product": "weather",
        "$context.authorizer.cost": "2",
        "$context.authorizer.credentialId": "cli_abc",
    }
    assert failed_call_parse(access_log_line(values)) == FailedCall(
        request_id="c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        status=504,
        customer_id="cus_abc",
        product="weather",
        cost=2,
        credential_id="cli_abc",
        route="GET /hello",
    )
    # The authorizer itself failed (500, no Allow): API Gateway writes `-` for its context; nothing was spent.
    unauthorized = {k: v for k, v in values.items() if "authorizer" not in k} | {"$context.status": "500"}
    with pytest.raises(Skip) as skipped:
        failed_call_parse(access_log_line(unauthorized))
    assert skipped.value.reason == "not_charged"


def test_the_failed_calls_go_to_zappas_function_once_it_is_deployed(template, resources):
    function = {
        "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:creditportal-${Stage}"
    }
    assert template["Conditions"]["RecordsFailedCalls"] == {"Fn::Equals": [{"Ref": "DjangoFunctionDeployed"}, "true"]}
    assert template["Parameters"]["DjangoFunctionDeployed"]["Default"] == "false"  # Zappa deploys after the stack
    subscription = resources["FailedCallsSubscription"]
    assert (subscription["Condition"], subscription["DependsOn"]) == ("RecordsFailedCalls", "FailedCallsPermission")
    assert subscription["Properties"]["LogGroupName"] == {"Ref": "AccessLogGroup"}
    assert subscription["Properties"]["DestinationArn"] == function
    assert subscription["Properties"]["FilterPattern"] == "{ $.status = 5* }"  # the function re-checks each line
    permission = resources["FailedCallsPermission"]
    assert permission["Condition"] == "RecordsFailedCalls"
    assert permission["Properties"] == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": function,
        "Principal": "logs.amazonaws.com",
        "SourceArn": {"Fn::GetAtt": ["AccessLogGroup", "Arn"]},
        "SourceAccount": {"Ref": "AWS::AccountId"},
    }
    # Zappa hands a CloudWatch Logs event to app_function, which answers HTTP as Django too.
    settings = json.loads((ROOT / "zappa_settings.json").read_text())
    assert settings["dev"]["app_function"] == "creditportal.lambda_entry.application"
    assert settings["dev"]["django_settings"] == "creditportal.settings"


def test_api_gateway_may_write_the_access_log_group_and_nothing_else(resources):
    role = resources["ApiGatewayLogsRole"]
    assert role["Condition"] == "MakesApiGatewayLogsRole"
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"
    }
    by_sid = {s["Sid"]: s for s in statements(role)}
    assert by_sid["AccessLogs"]["Resource"] == {"Fn::GetAtt": ["AccessLogGroup", "Arn"]}
    assert actions(by_sid["AccessLogs"]) == {"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}
    assert actions(by_sid["FindTheGroup"]) == {"logs:DescribeLogGroups"}
    assert resources["ExampleStage"]["DependsOn"] == "ApiGatewayAccount"
