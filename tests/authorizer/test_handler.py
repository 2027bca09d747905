"""The authorizer end to end, without Django: sample API Gateway events in, whole answers out,
against a real moto server over HTTP."""

import json
import socket
import threading
import time

import pytest

from authorizer.gate import AMBIGUOUS_RETRY_SECONDS, RETRY_CONDITION, Route
from authorizer.mirror import balance_key
from tests.authorizer.support import (
    EVENT_KINDS,
    KEY,
    KeyPair,
    RequestCounter,
    balance_item,
    load_event,
    mint,
    route_item,
)

WEATHER_API = "wthr000001"
REST_ARN = {
    "rest_token": f"arn:aws:execute-api:us-east-1:123456789012:{WEATHER_API}/prod/GET/forecast",
    "rest_request": f"arn:aws:execute-api:us-east-1:123456789012:{WEATHER_API}/test/GET/request",
}


def alice_token(scope: str = "weather", **overrides) -> str:
    return mint(**({"sub": "cus_alice", "client_id": "cli_alice", "ver": 1, "scope": scope} | overrides))


def rest_policy(effect: str, kind: str, principal: str, context: dict) -> dict:
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": [REST_ARN[kind]]}],
        },
        "context": context,
    }


def answer(handler, kind: str, token: str | None, api_id: str = WEATHER_API):
    """The authorizer's answer, with REST's `raise Exception("Unauthorized")` as the string "401"."""
    try:
        return handler.lambda_handler(load_event(kind, token=token, api_id=api_id), None)
    except Exception as e:
        assert str(e) == "Unauthorized" and not kind.startswith("http")
        return "401"


def expected_allow(kind: str, remaining: int, product: str = "weather", cost: int = 1) -> dict:
    context = {
        "customerId": "cus_alice",
        "product": product,
        "remaining": remaining,
        "credentialId": "cli_alice",
        "cost": cost,  # what the call spent: the access log carries it, a failed call is credited it back
    }
    if kind == "http_api_v2":
        return {"isAuthorized": True, "context": context}
    return rest_policy("Allow", kind, "cus_alice", context)


def expected_deny(kind: str, reason: str, principal: str = "cus_alice") -> dict:
    if kind == "http_api_v2":
        return {"isAuthorized": False, "context": {"reason": reason}}
    return rest_policy("Deny", kind, principal, {"reason": reason})


def expected_unauthorized(kind: str):
    return {"isAuthorized": False} if kind == "http_api_v2" else "401"


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_it_allows_a_covered_call_and_spends_its_cost(authorizer, alice_weather, kind):
    assert answer(authorizer, kind, alice_token()) == expected_allow(kind, remaining=9)
    assert alice_weather.used("cus_alice", "weather") == 1


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_it_allows_until_the_credits_run_out_then_denies_with_a_reason(authorizer, mirror_items, kind):
    mirror_items.put(
        route_item(WEATHER_API, "weather"),
        balance_item(customer="cus_alice", product="weather", granted=7, cost=2, creds={"cli_alice": 1}),
    )
    token = alice_token()

    answers = [answer(authorizer, kind, token) for _ in range(5)]

    assert answers[:3] == [expected_allow(kind, remaining=r, cost=2) for r in (5, 3, 1)]
    assert answers[3:] == [expected_deny(kind, "credits_exhausted")] * 2
    assert mirror_items.used("cus_alice", "weather") == 6  # 7 credits pay for three calls at 2


@pytest.mark.parametrize(
    "item_changes, reason",
    [
        ({"active": False}, "customer_suspended"),
        ({"product_active": False}, "product_inactive"),
        ({"creds": {"cli_other": 1}}, "credential_revoked"),
        ({"creds": {"cli_alice": 2}}, "credential_rotated"),
        ({"granted": 0}, "credits_exhausted"),
    ],
)
@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_a_valid_token_is_denied_with_the_reason_and_spends_nothing(
    authorizer, mirror_items, kind, item_changes, reason
):
    item = {"customer": "cus_alice", "product": "weather", "granted": 10, "used": 4, "creds": {"cli_alice": 1}}
    mirror_items.put(route_item(WEATHER_API, "weather"), balance_item(**(item | item_changes)))

    assert answer(authorizer, kind, alice_token()) == expected_deny(kind, reason)
    assert mirror_items.used("cus_alice", "weather") == 4


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_a_customer_without_a_balance_for_the_product_is_denied(authorizer, alice_weather, kind):
    token = alice_token(scope="weather maps")
    response = answer(authorizer, kind, token, api_id="maps000001")
    if kind == "http_api_v2":
        assert response == {"isAuthorized": False, "context": {"reason": "no_credits"}}
    else:
        assert response["policyDocument"]["Statement"][0]["Effect"] == "Deny"
        assert response["context"] == {"reason": "no_credits"}
    assert alice_weather.get(balance_key("cus_alice", "maps")) is None  # a refused spend creates nothing


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_it_refuses_a_token_for_another_product_without_touching_its_credits(
    authorizer, alice_weather, requests_sent, kind
):
    alice_weather.put(balance_item(customer="cus_alice", product="maps", granted=10, cost=2, creds={"cli_alice": 1}))
    maps_only = alice_token(scope="maps")

    assert answer(authorizer, kind, maps_only) == expected_deny(kind, "product_not_in_token")
    assert "UpdateItem" not in requests_sent
    assert alice_weather.used("cus_alice", "weather") == 0
    assert alice_weather.used("cus_alice", "maps") == 0


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_an_api_no_product_serves_is_denied(authorizer, alice_weather, kind):
    response = answer(authorizer, kind, alice_token(), api_id="nobody0001")
    if kind == "http_api_v2":
        assert response == {"isAuthorized": False, "context": {"reason": "unknown_api"}}
    else:
        assert response["principalId"] == "cus_alice"
        assert response["policyDocument"]["Statement"][0]["Effect"] == "Deny"
        assert response["context"] == {"reason": "unknown_api"}
    assert alice_weather.used("cus_alice", "weather") == 0


def forged_tokens() -> dict[str, str | None]:
    other = KeyPair.generate("ES256")
    rsa_key = KeyPair.generate("RS256")
    claims = {"sub": "cus_alice", "client_id": "cli_alice", "ver": 1, "scope": "weather"}
    return {
        "missing": None,
        "empty": "",
        "not a jwt": "not-a-jwt",
        "expired": mint(**claims, iat=1_600_000_000),
        "issued in the future": mint(**claims, iat=int(time.time()) + 3600),
        "signed by another key, claiming our kid": mint(**claims, key=other, headers={"kid": KEY.kid}),
        "signed by a key we do not know": mint(**claims, key=other),
        "with an empty kid": mint(**claims, headers={"kid": ""}),
        "RS256 when ES256 is pinned": mint(**claims, key=rsa_key),
        "wrong issuer": mint(**claims, iss="someone-else"),
        "wrong audience": mint(**claims, aud="another-api"),
        "not an access token": mint(**claims, headers={"typ": "JWT"}),
        "without ver": mint(**claims, drop=("ver",)),
        "without scope": mint(**claims, drop=("scope",)),
        "ver not a number": mint(**claims | {"ver": "1"}),
        "alg none": "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0."
        "eyJzdWIiOiJjdXNfYWxpY2UiLCJjbGllbnRfaWQiOiJjbGlfYWxpY2UiLCJ2ZXIiOjEsInNjb3BlIjoid2VhdGhlciJ9.",
    }


FORGED = forged_tokens()


@pytest.mark.parametrize("case", FORGED)
@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_a_missing_or_bad_token_is_unauthorized_and_never_reaches_dynamodb(
    authorizer, alice_weather, requests_sent, kind, case
):
    assert answer(authorizer, kind, FORGED[case]) == expected_unauthorized(kind)
    assert requests_sent == []
    assert alice_weather.used("cus_alice", "weather") == 0


def test_a_token_signed_with_our_key_for_its_kid_but_a_tampered_payload_is_unauthorized(authorizer, alice_weather):
    header, _payload, signature = alice_token(scope="maps").split(".")
    _, other_payload, _ = alice_token(scope="weather").split(".")
    assert answer(authorizer, "rest_request", f"{header}.{other_payload}.{signature}") == "401"
    assert alice_weather.used("cus_alice", "weather") == 0


@pytest.mark.parametrize("scheme", ["Basic", "Token", ""])
def test_the_authorization_header_needs_the_bearer_scheme(authorizer, alice_weather, scheme):
    event = load_event("rest_request", token=None, api_id=WEATHER_API)
    event["headers"]["Authorization"] = f"{scheme} {alice_token()}".strip()
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.lambda_handler(event, None)


def test_header_names_are_case_insensitive_and_the_scheme_too(authorizer, alice_weather):
    event = load_event("rest_request", token=None, api_id=WEATHER_API)
    event["headers"]["AUTHORIZATION"] = f"bearer {alice_token()}"
    assert authorizer.lambda_handler(event, None)["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_two_different_authorization_headers_are_refused(authorizer, alice_weather):
    event = load_event("rest_request", token=alice_token(), api_id=WEATHER_API)
    event["multiValueHeaders"]["Authorization"].append(
        f"Bearer {mint(sub='cus_bob', client_id='cli_bob', ver=1, scope='weather')}"
    )
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.lambda_handler(event, None)
    assert alice_weather.used("cus_alice", "weather") == 0


def test_the_token_can_come_in_a_header_of_our_choosing(authorizer, alice_weather, monkeypatch):
    monkeypatch.setenv("AUTHORIZER_TOKEN_HEADER", "X-Credits-Token")
    authorizer.reset()
    event = load_event("http_api_v2", token=None, api_id=WEATHER_API)
    event["headers"]["x-credits-token"] = alice_token()  # bare: no scheme needed in our own header
    assert authorizer.lambda_handler(event, None) == expected_allow("http_api_v2", remaining=9)
    event["headers"] = {"authorization": f"Bearer {alice_token()}"}  # no longer looked at
    assert authorizer.lambda_handler(event, None) == {"isAuthorized": False}


def test_the_token_can_come_in_a_query_parameter_when_configured(authorizer, alice_weather, monkeypatch):
    event = load_event("rest_request", token=None, api_id=WEATHER_API)
    event["queryStringParameters"]["access_token"] = alice_token()
    with pytest.raises(Exception, match=r"^Unauthorized$"):  # not configured: not looked at
        authorizer.lambda_handler(event, None)
    monkeypatch.setenv("AUTHORIZER_TOKEN_QUERY", "access_token")
    authorizer.reset()
    assert authorizer.lambda_handler(event, None)["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_a_decision_is_one_dynamodb_request_once_the_route_is_cached(authorizer, alice_weather, requests_sent):
    token = alice_token()
    answer(authorizer, "rest_request", token)
    assert requests_sent == ["GetItem", "UpdateItem"]
    for _ in range(5):
        answer(authorizer, "rest_request", token)
    assert requests_sent == ["GetItem"] + ["UpdateItem"] * 6
    assert alice_weather.used("cus_alice", "weather") == 6


def test_routes_are_looked_up_again_after_their_ttl(authorizer, alice_weather, monkeypatch):
    monkeypatch.setenv("AUTHORIZER_ROUTE_TTL", "0")
    authorizer.reset()
    sent = RequestCounter(authorizer.runtime().gate.client).operations
    for _ in range(2):
        answer(authorizer, "rest_token", alice_token())
    assert sent == ["GetItem", "UpdateItem"] * 2


def test_an_unknown_api_is_remembered_briefly_too(authorizer, alice_weather, requests_sent):
    token = alice_token()
    assert answer(authorizer, "rest_token", token, api_id="newapi0001")["context"] == {"reason": "unknown_api"}
    alice_weather.put(route_item("newapi0001", "weather"))
    assert answer(authorizer, "rest_token", token, api_id="newapi0001")["context"] == {"reason": "unknown_api"}
    assert requests_sent == ["GetItem"]


def test_a_pinned_product_needs_no_route_and_reads_the_apis_prices_once(authorizer, mirror_items, monkeypatch):
    monkeypatch.setenv("AUTHORIZER_PRODUCT", "weather")
    authorizer.reset()
    sent = RequestCounter(authorizer.runtime().gate.client).operations
    mirror_items.put(balance_item(customer="cus_alice", product="weather", granted=10, creds={"cli_alice": 1}))
    assert answer(authorizer, "http_api_v2", alice_token(), api_id="anyapi0001") == expected_allow("http_api_v2", 9)
    assert answer(authorizer, "http_api_v2", alice_token(), api_id="anyapi0001") == expected_allow("http_api_v2", 8)
    # No route item: no route prices, and that is remembered as long as a route would be.
    assert sent == ["GetItem", "UpdateItem", "UpdateItem"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_dynamodb_unreachable_denies_with_internal_error(authorizer, alice_weather, monkeypatch, kind):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    authorizer.reset()
    assert answer(authorizer, kind, alice_token()) == expected_deny(kind, "internal_error")


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_a_broken_configuration_denies_every_call(authorizer, alice_weather, monkeypatch, kind):
    monkeypatch.setenv("JWT_PUBLIC_KEY", "not a key")
    authorizer.reset()
    assert answer(authorizer, kind, alice_token()) == expected_deny(kind, "internal_error", principal="unknown")
    assert alice_weather.used("cus_alice", "weather") == 0


def test_the_dynamodb_timeout_comes_from_the_environment_and_a_bad_one_denies(authorizer, alice_weather, monkeypatch):
    assert authorizer.runtime().gate.client.meta.config.read_timeout == 2  # the default
    monkeypatch.setenv("AUTHORIZER_DYNAMODB_TIMEOUT", "0.5")
    authorizer.reset()
    assert authorizer.runtime().gate.client.meta.config.read_timeout == 0.5
    assert answer(authorizer, "rest_token", alice_token())["context"]["remaining"] == 9

    monkeypatch.setenv("AUTHORIZER_DYNAMODB_TIMEOUT", "soon")
    authorizer.reset()
    assert answer(authorizer, "rest_token", alice_token()) == expected_deny(
        "rest_token", "internal_error", principal="unknown"
    )
    assert alice_weather.used("cus_alice", "weather") == 1


def test_a_table_that_does_not_exist_denies_with_internal_error(authorizer, alice_weather, monkeypatch):
    monkeypatch.setenv("MIRROR_TABLE", "no-such-table")
    authorizer.reset()
    assert answer(authorizer, "rest_token", alice_token()) == expected_deny("rest_token", "internal_error")


def test_something_that_is_not_an_authorizer_event_is_unauthorized(authorizer):
    for event in [{}, {"type": "SOMETHING"}, None, {"version": "1.0"}]:
        with pytest.raises(Exception, match=r"^Unauthorized$"):
            authorizer.lambda_handler(event, None)


def test_a_rotated_key_set_accepts_tokens_of_each_key(authorizer, alice_weather, monkeypatch):
    new = KeyPair.generate("ES256")
    monkeypatch.setenv("JWT_PUBLIC_KEY", KEY.public_pem + new.public_pem)
    authorizer.reset()
    claims = {"sub": "cus_alice", "client_id": "cli_alice", "ver": 1, "scope": "weather"}
    assert answer(authorizer, "rest_token", mint(**claims))["context"]["remaining"] == 9
    assert answer(authorizer, "rest_token", mint(**claims, key=new))["context"]["remaining"] == 8


def test_rs256_when_configured(authorizer, alice_weather, monkeypatch):
    key = KeyPair.generate("RS256")
    monkeypatch.setenv("JWT_PUBLIC_KEY", key.public_pem)
    monkeypatch.setenv("JWT_ALGORITHM", "RS256")
    authorizer.reset()
    token = mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="weather", key=key)
    assert answer(authorizer, "rest_token", token) == expected_allow("rest_token", remaining=9)
    assert answer(authorizer, "rest_token", alice_token()) == "401"  # an ES256 token: not the pinned algorithm


def read_request(connection: socket.socket) -> bytes:
    """One whole HTTP request (headers and its Content-Length of body), however it arrives in pieces."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(v) for k, v in (line.split(b":", 1) for line in head.split(b"\r\n")[1:]) if k.lower() == b"content-length"
    )
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_spend_that_times_out_is_sent_again_with_its_stamp_and_denied_when_nothing_answers(
    authorizer, alice_weather, monkeypatch
):
    """A timed-out UpdateItem may have landed: it is sent again only as the same stamped spend (which
    cannot land twice), for AMBIGUOUS_RETRY_SECONDS; nothing answering, the call is denied."""
    received, stop = [], threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)

    def silent_endpoint():  # reads each request, never answers
        connections = []
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connections.append(connection)
            received.append(read_request(connection))
        for c in connections:
            c.close()

    thread = threading.Thread(target=silent_endpoint)
    thread.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
        monkeypatch.setenv("AUTHORIZER_PRODUCT", "weather")
        monkeypatch.setenv("AUTHORIZER_DYNAMODB_TIMEOUT", "0.5")
        authorizer.reset()
        gate = authorizer.runtime().gate  # the API's route item (no route prices) as if read before: the spend alone
        gate.route_put(WEATHER_API, Route(None), gate.clock() + 60)
        started = time.monotonic()
        assert answer(authorizer, "rest_token", alice_token()) == expected_deny("rest_token", "internal_error")
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join()
        listener.close()
    bodies = [json.loads(r.split(b"\r\n\r\n", 1)[1]) for r in received]
    assert len(bodies) >= 2 and all(b"UpdateItem" in r for r in received)
    assert len({b["ExpressionAttributeValues"][":stamp"]["S"] for b in bodies}) == 1  # one spend, sent again
    assert ":since" not in bodies[0]["ExpressionAttributeValues"]
    assert all(b["ConditionExpression"].endswith(RETRY_CONDITION) for b in bodies[1:])
    assert took < AMBIGUOUS_RETRY_SECONDS + 1.5  # the last attempt starts within the window
