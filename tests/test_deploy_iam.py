"""deploy/template.yaml's roles allow exactly what the code calls: nothing missing, nothing more.

Each role's policies, read from the template, become an IAM user on a moto
server that enforces IAM on actions and resources (tests/iam.py). The real
code runs with that user's key in a process of its own: the Django function's
doors (upsert_product, the Zapier webhook with its email through django-ses,
the services, sync_usage, a failed call credited back through the Lambda entry point, sync_mirror into an empty table, sync_mirror --check)
and authorizer decisions, with a token and with an API key. Every call moto refused fails the test, and so
does every grant that none of the calls needed. What the Lambda runtime does
for a function (its logs) is proved here too; Zappa's remote_env read is proved
by tests/test_packaging.py on the built package.
"""

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from accounts.models import Credential, Customer
from authorizer.keys import key_hash
from ledger.models import Balance, LedgerEntry, MirrorOutbox, Purchase
from tests.authorizer.support import AUDIENCE, ISSUER, gate_environ, load_event, mint
from tests.iam import REGION, ROOT, Stack, grants, service, stage_parameters, used_statements, zappa_stage
from tests.iam_django import API_ID, OLD_API_ID

pytestmark = pytest.mark.django_db(transaction=True)

# Grants that serve the platform rather than our code, and where each is proved.
NOT_BY_OUR_CODE = {
    "logs": "test_each_function_writes_its_own_log_group_and_no_other (the Lambda runtime)",
    "s3": "tests/test_packaging.py::test_the_package_reads_its_remote_env_with_djangos_role (Zappa's handler)",
}


def run(command: list[str], env: dict, stdin: str = "") -> str:
    result = subprocess.run(command, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def django_environ(stack) -> dict[str, str]:
    """The Django function's environment on Lambda: the Zappa stage's variables, the secrets, the role's key."""
    db = connection.settings_dict
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "creditportal.settings",
        **zappa_stage("dev")["environment_variables"],
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        **{
            name: os.environ[name]
            for name in ("DJANGO_SECRET_KEY", "CREDENTIAL_HASH_KEY", "ZAPIER_WEBHOOK_SECRET", "SHOPIFY_WEBHOOK_SECRET")
        },
        "AWS_ENDPOINT_URL": stack.moto.url,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        **stack.keys["DjangoRole"].environ(),
    }


def django(stack, *steps: str) -> dict[str, dict]:
    out = run([sys.executable, "-m", "tests.iam_django", *steps], django_environ(stack))
    results = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    assert [r["step"] for r in results] == list(steps), out
    for result in results:
        assert result["pending"] == [], result  # a refused mirror write would stay in the outbox: there must be none
        for done in result.get("commands", [result] if "status" in result and "out" in result else []):
            assert done["status"] == 0, done
    return {r["step"]: r for r in results}


def authorizer_environ(stack) -> dict[str, str]:
    """The authorizer function's environment as the template sets it (JWT values from the test key pair)."""
    variables = stack.template["Resources"]["AuthorizerFunction"]["Properties"]["Environment"]["Variables"]
    return {
        "PATH": os.environ["PATH"],
        "MIRROR_TABLE": stack.resolve(variables["MIRROR_TABLE"]),
        "AUTHORIZER_ROUTE_TTL": stack.resolve(variables["AUTHORIZER_ROUTE_TTL"]),
        **gate_environ(),
        "AWS_ENDPOINT_URL": stack.moto.url,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        **stack.keys["AuthorizerRole"].environ(),
    }


DECIDE = "import json, sys; from authorizer.handler import lambda_handler; print(json.dumps(lambda_handler(json.load(sys.stdin), None)))"


def authorizer_decide(stack, event: dict) -> dict:
    return json.loads(run([sys.executable, "-c", DECIDE], authorizer_environ(stack), json.dumps(event)))


def mirror_item(stack, pk: str, sk: str) -> dict | None:
    dynamodb = stack.moto.client("dynamodb", stack.admin)
    key = {"pk": {"S": pk}, "sk": {"S": sk}}
    return dynamodb.get_item(TableName=stack.refs["MirrorTable"], Key=key, ConsistentRead=True).get("Item")


def assert_allows_exactly_what_was_called(stack, role: str, statements: list[dict]) -> set[str]:
    decisions = stack.moto.decisions(stack.keys[role].id)
    refused = [d for d in decisions if not d["allowed"]]
    assert refused == [], f"{role} lacks grants the code needs: {refused}"
    granted, used = grants(statements), used_statements(statements, decisions)
    assert granted - used == set(), f"{role} grants what no code path called (least privilege): {granted - used}"
    assert used == granted
    return {d["action"] for d in decisions}


def test_the_roles_allow_what_the_code_calls_and_nothing_more(iam_stack):
    stack = iam_stack
    assert zappa_stage("dev")["environment_variables"]["MIRROR_TABLE"] == stack.refs["MirrorTable"]

    # Django: routes, a purchase with its email, a rotation, a suspension, an API key (the outbox's writes after each commit).
    done = django(stack, "routes", "purchase", "rotate", "suspend", "api_key")
    assert done["purchase"]["status"] == 201, done["purchase"]
    assert (done["purchase"]["body"]["status"], done["purchase"]["email_status"]) == ("applied", "sent")
    customer = Customer.objects.get()
    credential = Credential.objects.get()
    assert (customer.is_active, credential.secret_version) == (True, done["rotate"]["ver"])
    assert mirror_item(stack, f"API#{API_ID}", "ROUTE")["product"] == {"S": "weather"}
    assert mirror_item(stack, f"API#{OLD_API_ID}", "ROUTE") is None
    balance = mirror_item(stack, f"CUSTOMER#{customer.public_id}", "PRODUCT#weather")
    assert (balance["granted"], balance["active"]) == ({"N": "5"}, {"BOOL": True})
    key_id, key = done["api_key"]["key_id"], done["api_key"]["key"]
    assert balance["creds"] == {"M": {credential.client_id: {"N": str(credential.secret_version)}, key_id: {"N": "0"}}}

    # The authorizer: one decision (the route read, one spend).
    token = mint(sub=customer.public_id, client_id=credential.client_id, ver=credential.secret_version, scope="weather")
    assert (gate_environ()["JWT_ISSUER"], gate_environ()["JWT_AUDIENCE"]) == (ISSUER, AUDIENCE)
    decision = authorizer_decide(stack, load_event("rest_request", token=token, api_id=API_ID))
    assert decision["policyDocument"]["Statement"][0]["Effect"] == "Allow", decision
    assert decision["context"]["remaining"] == 4
    # And one with the API key (its item read, one spend).
    event = load_event("rest_request", token=None, api_id=API_ID)
    event["headers"]["x-api-key"] = key
    decision = authorizer_decide(stack, event)
    assert (decision["context"]["remaining"], decision["context"]["credentialId"]) == (3, key_id), decision

    # Django: the spend comes back, and a failed call is credited back (its balance item rewritten after
    # the commit); then the mirror is rebuilt from nothing and checked.
    done = django(stack, "sync_usage", "failed_call")
    assert "2 credit(s) of usage recorded" in done["sync_usage"]["out"]
    assert (done["failed_call"]["counts"]["refunded"], done["failed_call"]["counts"]["credits"]) == (1, 1)
    assert mirror_item(stack, f"CUSTOMER#{customer.public_id}", "PRODUCT#weather")["granted"] == {"N": "6"}
    stack.create_mirror_table()
    done = django(stack, "sync_mirror", "check")
    assert "no drift" in done["check"]["out"], done["check"]
    rebuilt = mirror_item(stack, f"CUSTOMER#{customer.public_id}", "PRODUCT#weather")
    assert (rebuilt["granted"], rebuilt["used"]) == ({"N": "6"}, {"N": "2"})
    assert mirror_item(stack, f"API#{API_ID}", "ROUTE")["product"] == {"S": "weather"}

    assert mirror_item(stack, f"KEY#{key_hash(key)}", "KEY")["key_id"] == {"S": key_id}
    assert Balance.objects.get().used == 2
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE).count() == 1
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.FAILED_CALL).get().request_id == "0f1e2d3c-iam-failed-call"
    assert Purchase.objects.get().email_status == Purchase.EmailStatus.SENT
    assert not MirrorOutbox.objects.exists()
    assert stack.moto.client("ses", stack.admin).get_send_quota()["SentLast24Hours"] >= 1

    # Django: the order is cancelled through Shopify's door: the gate's item frozen, the rest taken back.
    done = django(stack, "cancel")
    # 4: of the 6 granted (5 bought, 1 failed call credited back) 2 were spent.
    assert (done["cancel"]["status"], done["cancel"]["body"]["credits_taken"]) == (200, 4), done["cancel"]
    assert mirror_item(stack, f"CUSTOMER#{customer.public_id}", "PRODUCT#weather")["granted"] == {"N": "2"}

    # Each role: every call allowed, every grant of its code's statements used.
    for role in ("DjangoRole", "AuthorizerRole"):
        code = [s for s in stack.policies[role] if service(s) not in NOT_BY_OUR_CODE]
        called = assert_allows_exactly_what_was_called(stack, role, code)
        print(f"{role}: {sorted(called)}")


def test_each_function_writes_its_own_log_group_and_no_other(iam_stack):
    """What the Lambda runtime does with the function's role: a log stream and its events, in the function's group."""
    stack = iam_stack
    resources = stack.template["Resources"]
    django_function = f"{zappa_stage('dev')['project_name']}-dev"  # Zappa names the function <project>-<stage>
    groups = {
        # Lambda's default group for a function, which the template creates for Zappa's.
        "DjangoRole": f"/aws/lambda/{django_function}",
        "AuthorizerRole": stack.resolve(resources["AuthorizerFunction"]["Properties"]["LoggingConfig"]["LogGroup"]),
    }
    assert stack.resolve(resources["DjangoLogGroup"]["Properties"]["LogGroupName"]) == groups["DjangoRole"]
    for role, group in groups.items():
        logs = stack.moto.client("logs", stack.keys[role])
        stream = "2026/01/01/[$LATEST]0123456789abcdef"
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": 0, "message": "START"}])
        other = next(g for r, g in groups.items() if r != role)
        with pytest.raises(logs.exceptions.ClientError, match=r"AccessDenied|not authorized"):
            logs.create_log_stream(logGroupName=other, logStreamName=stream)
        decisions = [d for d in stack.moto.decisions(stack.keys[role].id) if d["allowed"]]
        statements = [s for s in stack.policies[role] if service(s) == "logs"]
        assert used_statements(statements, decisions) == grants(statements), role


def test_the_proof_fails_on_a_missing_grant_and_on_an_unused_one(iam_moto):
    """The proof itself: main's Django role before issue 12 (no PutItem, an unused BatchWriteItem)."""
    edit = {"MirrorWritesAndSync": ({"dynamodb:PutItem"}, {"dynamodb:BatchWriteItem"})}
    stack = Stack(iam_moto, stage_parameters("dev"), edits={"DjangoRole": edit})

    out = run([sys.executable, "-m", "tests.iam_django", "routes"], django_environ(stack))
    (result,) = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    assert ("route", API_ID) in {(scope, ref) for scope, ref, _ in result["pending"]}  # kept in the outbox
    assert mirror_item(stack, f"API#{API_ID}", "ROUTE") is None  # the route never landed
    decisions = stack.moto.decisions(stack.keys["DjangoRole"].id)
    assert {d["action"] for d in decisions if not d["allowed"]} == {"dynamodb:PutItem"}
    statements = [s for s in stack.policies["DjangoRole"] if service(s) == "dynamodb"]
    assert ("MirrorWritesAndSync", "dynamodb:BatchWriteItem") in grants(statements) - used_statements(
        statements, decisions
    )
