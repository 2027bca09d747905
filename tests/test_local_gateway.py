"""local/gateway.py, the API Gateway stand-in of `make run`: the event it sends the authorizer, and how it
answers each kind of authorizer result, like the example API of deploy/template.yaml.

The stand-in takes the authorizer as a callable; these tests hand it recorded answers of the
authorizer's documented shapes. The real authorizer runs behind it in tests/test_local_stack.py."""

import json
import threading
from pathlib import Path

import pytest
import requests
from cfnlint.decode import decode

from authorizer.events import RequestEvent, event_view
from local.gateway import EXPLICIT_DENY, IMPLICIT_DENY, Gateway, GatewayServer, policy_effect

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = json.loads((ROOT / "tests" / "authorizer" / "events" / "rest_request.json").read_text())
ARN = "arn:aws:execute-api:us-east-1:123456789012:demoapi01/local/GET/hello"


def policy(effect: str, resource: str = ARN, **context) -> dict:
    return {
        "principalId": "cus_test",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": [resource]}],
        },
        "context": context,
    }


class Recorder:
    """An authorizer that records the events it gets and answers what it is told to."""

    def __init__(self, answer=None, error: Exception | None = None):
        self.events: list[dict] = []
        self.answer, self.error = answer, error

    def __call__(self, event, context):
        self.events.append(event)
        if self.error:
            raise self.error
        return self.answer


@pytest.fixture
def serve():
    """`serve(authorize)`: the stand-in on a free port, in a thread; its base URL."""
    servers = []

    def start(authorize) -> str:
        server = GatewayServer(Gateway(api_id="demoapi01", authorize=authorize), "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_it_sends_the_authorizer_a_rest_request_event_in_aws_shape(serve):
    authorizer = Recorder(policy("Allow", customerId="cus_test", product="demo-api", remaining=9))
    url = serve(authorizer)

    answer = requests.get(
        f"{url}/local/hello?city=Paris&city=Lyon&units=metric",
        headers={"Authorization": "Bearer the.token.here", "X-Custom": "1"},
        timeout=10,
    )

    assert answer.status_code == 200
    [event] = authorizer.events
    assert set(SAMPLE) <= set(event)
    assert set(SAMPLE["requestContext"]) <= set(event["requestContext"])
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == ARN
    assert (event["httpMethod"], event["resource"], event["path"]) == ("GET", "/hello", "/hello")
    assert event["headers"]["Authorization"] == "Bearer the.token.here"
    assert event["headers"]["X-Custom"] == "1"
    assert event["multiValueHeaders"]["Authorization"] == ["Bearer the.token.here"]
    assert event["queryStringParameters"] == {"city": "Lyon", "units": "metric"}
    assert event["multiValueQueryStringParameters"] == {"city": ["Paris", "Lyon"], "units": ["metric"]}
    context = event["requestContext"]
    assert (context["apiId"], context["stage"], context["httpMethod"]) == ("demoapi01", "local", "GET")
    assert (context["resourcePath"], context["path"]) == ("/hello", "/local/hello")
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    # The authorizer reads it as API Gateway's REQUEST event: this API, this token.
    view = event_view(event)
    assert isinstance(view, RequestEvent)
    assert view.api_id == "demoapi01"
    assert view.token(header="Authorization", scheme_required=True) == "the.token.here"


def test_an_allowed_call_gets_the_integrations_answer_with_the_authorizers_context_as_text(serve):
    url = serve(Recorder(policy("Allow", customerId="cus_test", product="demo-api", remaining=41)))

    answer = requests.get(f"{url}/local/hello", headers={"Authorization": "Bearer t"}, timeout=10)

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"customer": "cus_test", "product": "demo-api", "remaining": "41"}


def test_a_deny_is_a_403_with_the_authorizers_reason(serve):
    url = serve(Recorder(policy("Deny", reason="credits_exhausted")))

    answer = requests.get(f"{url}/local/hello", headers={"Authorization": "Bearer t"}, timeout=10)

    assert answer.status_code == 403
    assert answer.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert answer.json() == {"message": EXPLICIT_DENY, "reason": "credits_exhausted"}


def test_an_allow_for_another_method_is_an_implicit_deny(serve):
    other = ARN.replace("/GET/", "/POST/")
    url = serve(Recorder(policy("Allow", resource=other)))

    answer = requests.get(f"{url}/local/hello", headers={"Authorization": "Bearer t"}, timeout=10)

    assert answer.status_code == 403
    assert answer.json() == {"message": IMPLICIT_DENY, "reason": ""}


def test_unauthorized_from_the_authorizer_is_a_401(serve):
    url = serve(Recorder(error=Exception("Unauthorized")))

    answer = requests.get(f"{url}/local/hello", headers={"Authorization": "Bearer expired"}, timeout=10)

    assert answer.status_code == 401
    assert answer.headers["x-amzn-ErrorType"] == "UnauthorizedException"
    assert answer.json() == {"message": "Unauthorized"}


def test_without_a_token_or_key_the_authorizer_is_asked_and_its_refusal_is_a_401(serve):
    """The template's authorizer has no identity source (a key may come in x-api-key instead of
    Authorization), so API Gateway asks it about every call, and so does the stand-in."""
    authorizer = Recorder(error=Exception("Unauthorized"))
    url = serve(authorizer)

    answers = [
        requests.get(f"{url}/local/hello", timeout=10),
        requests.get(f"{url}/local/hello", headers={"Authorization": ""}, timeout=10),
    ]

    assert [a.status_code for a in answers] == [401, 401]
    assert answers[0].json() == {"message": "Unauthorized"}
    assert len(authorizer.events) == 2


def test_an_api_key_header_reaches_the_authorizer_as_sent(serve):
    authorizer = Recorder(policy("Allow", customerId="cus_test", product="demo", remaining=1))
    url = serve(authorizer)

    answer = requests.get(f"{url}/local/hello", headers={"x-api-key": "cpk_example"}, timeout=10)

    assert answer.status_code == 200
    assert event_view(authorizer.events[0]).header("X-API-Key") == "cpk_example"


@pytest.mark.parametrize("error", [RuntimeError("boom"), None])
def test_an_authorizer_failure_or_a_malformed_answer_is_a_500_never_an_allow(serve, error):
    url = serve(Recorder(answer={"context": {"remaining": 5}}, error=error))

    answer = requests.get(f"{url}/local/hello", headers={"Authorization": "Bearer t"}, timeout=10)

    assert answer.status_code == 500
    assert answer.json() == {"message": None}


@pytest.mark.parametrize(
    "method, path", [("GET", "/hello"), ("GET", "/local/other"), ("POST", "/local/hello"), ("GET", "/")]
)
def test_other_routes_are_missing_authentication_token_and_never_reach_the_authorizer(serve, method, path):
    authorizer = Recorder(policy("Allow"))
    url = serve(authorizer)

    answer = requests.request(method, f"{url}{path}", headers={"Authorization": "Bearer t"}, timeout=10)

    assert answer.status_code == 403
    assert answer.json() == {"message": "Missing Authentication Token"}
    assert authorizer.events == []


@pytest.mark.parametrize(
    "resource, expected",
    [
        (ARN, "Allow"),
        ("arn:aws:execute-api:us-east-1:123456789012:demoapi01/local/*", "Allow"),
        ("arn:aws:execute-api:us-east-1:123456789012:demoapi01/local/GET/hell?", "Allow"),
        ("arn:aws:execute-api:us-east-1:123456789012:otherapi01/local/GET/hello", None),
        ("arn:aws:execute-api:us-east-1:123456789012:demoapi01/local/GET/hello/more", None),
    ],
)
def test_policy_resources_match_like_iam_wildcards(resource, expected):
    assert policy_effect(policy("Allow", resource=resource), ARN) == expected


def test_an_explicit_deny_wins_over_an_allow():
    answer = policy("Allow")
    answer["policyDocument"]["Statement"].append({"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": ARN})
    assert policy_effect(answer, ARN) == "Deny"


def test_its_answers_have_the_shape_of_the_templates_example_api():
    """The stand-in plays deploy/template.yaml's example API: same route, same bodies."""
    template, problems = decode(str(ROOT / "deploy" / "template.yaml"))
    assert problems == []
    resources = template["Resources"]
    gateway = Gateway(api_id="demoapi01")
    assert resources["ExampleResource"]["Properties"]["PathPart"] == gateway.route_path.rsplit("/", 1)[1]
    assert resources["ExampleMethod"]["Properties"]["HttpMethod"] == "GET"

    def body_keys(velocity: str) -> set[str]:
        rendered = velocity.replace("$context.error.messageString", '"message"')
        for name in ("customerId", "product", "remaining", "reason"):
            rendered = rendered.replace(f"$context.authorizer.{name}", name)
        return set(json.loads(rendered))

    [integration] = resources["ExampleMethod"]["Properties"]["Integration"]["IntegrationResponses"]
    allowed = Gateway(api_id="demoapi01", authorize=Recorder(policy("Allow", customerId="c", product="p", remaining=1)))
    answer = allowed.call(method="GET", target="/local/hello", headers=[("Authorization", "Bearer t")])
    assert body_keys(integration["ResponseTemplates"]["application/json"]) == set(answer.body)

    denied_response = resources["ExampleAccessDenied"]["Properties"]
    assert (denied_response["ResponseType"], denied_response["StatusCode"]) == ("ACCESS_DENIED", "403")
    denied = Gateway(api_id="demoapi01", authorize=Recorder(policy("Deny", reason="credits_exhausted")))
    answer = denied.call(method="GET", target="/local/hello", headers=[("Authorization", "Bearer t")])
    assert body_keys(denied_response["ResponseTemplates"]["application/json"]) == set(answer.body)


def test_every_call_writes_the_stages_access_log_line_and_the_failing_route_answers_500_after_an_allow():
    lines: list[str] = []
    allow = policy(
        "Allow",
        resource="arn:aws:execute-api:us-east-1:123456789012:demoapi01/local/GET/*",
        customerId="cus_test",
        product="demo-api",
        remaining=4,
        credentialId="cli_test",
        cost=1,
    )
    gateway = Gateway(api_id="demoapi01", authorize=Recorder(allow))
    gateway.access_log = lines.append
    denied = Gateway(api_id="demoapi01", authorize=Recorder(policy("Deny", reason="credits_exhausted")))
    denied.access_log = lines.append

    ok = gateway.call(method="GET", target="/local/hello", headers=[("Authorization", "Bearer t")])
    failed = gateway.call(method="GET", target="/local/fail", headers=[("Authorization", "Bearer t")])
    refused = denied.call(method="GET", target="/local/fail", headers=[("Authorization", "Bearer t")])
    missing = gateway.call(method="GET", target="/local/nothing", headers=[])

    assert [a.status for a in (ok, failed, refused, missing)] == [200, 500, 403, 403]
    assert failed.body == {"message": "Internal server error"}
    logged = [json.loads(line) for line in lines]
    assert [(line["status"], line["route"], line["cost"]) for line in logged] == [
        ("200", "GET /hello", "1"),
        ("500", "GET /fail", "1"),
        ("403", "GET /fail", "-"),
        ("403", "GET /nothing", "-"),
    ]
    assert logged[1] == {
        "requestId": failed.request_id,
        "requestTime": failed.request_time,
        "status": "500",
        "route": "GET /fail",
        "customerId": "cus_test",
        "product": "demo-api",
        "cost": "1",
        "credentialId": "cli_test",
    }
    assert len({line["requestId"] for line in logged}) == 4
