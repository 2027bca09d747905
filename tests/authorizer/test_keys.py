"""API keys at the gate, without Django: sample events carrying a key (as `x-api-key` or
`Authorization: Bearer`), key and balance items as Django writes them, real HTTP to moto.
A cached key costs one DynamoDB request per decision, and the cache never outlives a revocation."""

import secrets

import pytest

from authorizer.keys import KEY_FORMAT, is_api_key
from tests.authorizer.support import (
    EVENT_KINDS,
    RequestCounter,
    balance_item,
    key_event,
    key_item,
    load_event,
    mint,
    route_item,
)
from tests.authorizer.test_handler import REST_ARN, WEATHER_API, expected_deny, expected_unauthorized

MAPS_API = "maps000001"
KEY = "cpk_" + secrets.token_urlsafe(32)
HOW = ["x-api-key", "bearer"]


def call(handler, kind: str, key: str, *, how: str = "x-api-key", api_id: str = WEATHER_API):
    try:
        return handler.lambda_handler(key_event(kind, key, how=how, api_id=api_id), None)
    except Exception as e:
        assert str(e) == "Unauthorized" and not kind.startswith("http")
        return "401"


def allowed(kind: str, remaining: int, product: str = "weather", cost: int = 1) -> dict:
    context = {
        "customerId": "cus_alice",
        "product": product,
        "remaining": remaining,
        "credentialId": "key_alice",
        "cost": cost,
    }
    if kind == "http_api_v2":
        return {"isAuthorized": True, "context": context}
    return {
        "principalId": "cus_alice",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": [REST_ARN[kind]]}],
        },
        "context": context,
    }


@pytest.fixture
def keyed(mirror_items):
    """alice's key (key_alice, every product) in the mirror, listed in her weather and maps items'
    creds beside her credential; bob has weather credits of his own."""
    mirror_items.put(
        route_item(WEATHER_API, "weather"),
        route_item(MAPS_API, "maps"),
        key_item(KEY, key_id="key_alice", customer="cus_alice"),
        balance_item(customer="cus_alice", product="weather", granted=10, creds={"cli_alice": 1, "key_alice": 0}),
        balance_item(customer="cus_alice", product="maps", granted=10, creds={"cli_alice": 1, "key_alice": 0}),
        balance_item(customer="cus_bob", product="weather", granted=10, creds={"cli_bob": 1}),
    )
    return mirror_items


def test_keys_have_a_form_no_jwt_has():
    assert KEY_FORMAT.fullmatch(KEY) and is_api_key(KEY)
    token = mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="weather")
    assert not is_api_key(token)
    assert not is_api_key(KEY + ".x") and not is_api_key(KEY[:-1]) and not is_api_key("")


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_a_key_is_allowed_either_way_and_spends_its_customers_credits(authorizer, keyed, kind, how):
    assert call(authorizer, kind, KEY, how=how) == allowed(kind, remaining=9)
    assert keyed.used("cus_alice", "weather") == 1
    assert keyed.used("cus_bob", "weather") == 0


def test_with_the_key_cached_a_decision_is_one_dynamodb_request(authorizer, keyed):
    sent = RequestCounter(authorizer.runtime().gate.client).operations
    call(authorizer, "rest_request", KEY)
    assert sent == ["GetItem", "GetItem", "UpdateItem"]  # the key's item and the route, once
    for how in HOW * 3:
        assert call(authorizer, "rest_request", KEY, how=how)["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert sent == ["GetItem", "GetItem"] + ["UpdateItem"] * 7
    assert keyed.used("cus_alice", "weather") == 7


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"creds": {"cli_alice": 1}}, "key_revoked"),  # what Django writes when the key is revoked
        ({"active": False, "creds": {"cli_alice": 1, "key_alice": 0}}, "customer_suspended"),
    ],
)
@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_revoking_or_suspending_denies_the_next_call_however_warm_the_cache(authorizer, keyed, kind, changes, reason):
    assert call(authorizer, kind, KEY) == allowed(kind, remaining=9)  # the key is cached now
    sent = RequestCounter(authorizer.runtime().gate.client).operations
    item = {"customer": "cus_alice", "product": "weather", "granted": 10, "used": 1} | changes
    keyed.put(balance_item(**item, version=2))

    assert call(authorizer, kind, KEY) == expected_deny(kind, reason)
    assert sent == ["UpdateItem"]  # decided from the cache and the one conditional write
    assert keyed.used("cus_alice", "weather") == 1


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_a_revoked_keys_item_denies_without_spending(authorizer, keyed, kind):
    keyed.put(key_item(KEY, key_id="key_alice", customer="cus_alice", revoked=True))
    sent = RequestCounter(authorizer.runtime().gate.client).operations

    assert call(authorizer, kind, KEY) == expected_deny(kind, "key_revoked")
    assert "UpdateItem" not in sent
    assert keyed.used("cus_alice", "weather") == 0


def test_a_key_for_fewer_products_opens_only_those(authorizer, keyed):
    keyed.put(
        key_item(KEY, key_id="key_alice", customer="cus_alice", products=("maps",)),
        balance_item(customer="cus_alice", product="weather", granted=10, creds={"cli_alice": 1}),
    )
    assert call(authorizer, "http_api_v2", KEY, api_id=MAPS_API) == allowed("http_api_v2", 9, product="maps")
    assert call(authorizer, "http_api_v2", KEY) == expected_deny("http_api_v2", "product_not_in_key")
    assert keyed.used("cus_alice", "weather") == 0


def test_what_the_mirror_does_not_list_is_not_spent_whatever_the_key_item_says(authorizer, keyed):
    """The key's item claims every product and bob as the customer: bob's item does not list the key, so
    nothing of bob's is spent; alice's credits are not reachable through it either."""
    keyed.put(key_item(KEY, key_id="key_alice", customer="cus_bob"))

    assert call(authorizer, "rest_request", KEY) == expected_deny("rest_request", "key_revoked", "cus_bob")
    assert keyed.used("cus_bob", "weather") == 0
    assert keyed.used("cus_alice", "weather") == 0


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_a_key_nobody_has_is_unauthorized_and_spends_nothing(authorizer, keyed, kind, how):
    other = "cpk_" + secrets.token_urlsafe(32)
    assert call(authorizer, kind, other, how=how) == expected_unauthorized(kind)
    assert keyed.used("cus_alice", "weather") == 0


def test_an_unknown_key_is_remembered_briefly(authorizer, keyed):
    sent = RequestCounter(authorizer.runtime().gate.client).operations
    other = "cpk_" + secrets.token_urlsafe(32)
    for _ in range(3):
        call(authorizer, "rest_request", other)
    assert sent == ["GetItem"]


def test_a_jwt_and_a_different_key_together_are_unauthorized(authorizer, keyed):
    token = mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="weather")
    event = load_event("rest_request", token=token, api_id=WEATHER_API)
    event["headers"]["x-api-key"] = KEY

    with pytest.raises(Exception, match="Unauthorized"):
        authorizer.lambda_handler(event, None)
    assert keyed.used("cus_alice", "weather") == 0


def test_a_jwt_in_the_key_header_is_not_a_key(authorizer, keyed):
    token = mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="weather")
    event = load_event("http_api_v2", token=None, api_id=WEATHER_API)
    event["headers"]["x-api-key"] = token

    assert authorizer.lambda_handler(event, None) == {"isAuthorized": False}


def test_the_key_header_is_configurable(authorizer, keyed, monkeypatch):
    monkeypatch.setenv("AUTHORIZER_KEY_HEADER", "X-Credits-Key")
    authorizer.reset()
    event = load_event("rest_request", token=None, api_id=WEATHER_API)
    event["headers"]["x-credits-key"] = KEY
    assert authorizer.lambda_handler(event, None)["context"]["credentialId"] == "key_alice"
    with pytest.raises(Exception, match="Unauthorized"):
        call_strict = key_event("rest_request", KEY, api_id=WEATHER_API)  # x-api-key is no longer read
        authorizer.lambda_handler(call_strict, None)


def test_keys_are_looked_up_again_after_their_ttl(authorizer, keyed, monkeypatch):
    monkeypatch.setenv("AUTHORIZER_KEY_TTL", "0")
    authorizer.reset()
    sent = RequestCounter(authorizer.runtime().gate.client).operations
    for _ in range(2):
        call(authorizer, "rest_request", KEY)
    assert sent == ["GetItem", "GetItem", "UpdateItem", "GetItem", "UpdateItem"]
