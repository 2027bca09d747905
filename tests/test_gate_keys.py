"""API keys end to end: made through /api/keys/ (a real token) or the services, mirrored after commit,
decided by authorizer.handler.lambda_handler on sample events, over real HTTP to moto. Revocation
and suspension deny at the very next call with the key warm in the gate's cache; a key never opens
another customer's or another product's credits."""

import json

import pytest

from accounts.services import api_key_create, credential_revoke, credential_rotate, customer_suspend
from ledger.services import credits_grant
from tests.authorizer.support import EVENT_KINDS, RequestCounter, key_event
from tests.test_balance_api import get_token
from tests.test_gate import MAPS_API, WEATHER_API

# The decision's "allowed" or the reason it was refused; "401" for no usable credential.


def decide(authorizer, key: str, *, kind: str = "rest_request", how: str = "x-api-key", api_id: str = WEATHER_API):
    try:
        answer = authorizer.lambda_handler(key_event(kind, key, how=how, api_id=api_id), None)
    except Exception as e:
        assert str(e) == "Unauthorized"
        return "401"
    if kind == "http_api_v2":
        if not answer["isAuthorized"]:
            return answer.get("context", {}).get("reason", "401")
        return "allowed"
    effect = answer["policyDocument"]["Statement"][0]["Effect"]
    return "allowed" if effect == "Allow" else answer["context"]["reason"]


@pytest.fixture
def held(gate, alice, bob, products, committed):
    """alice holds 10 weather and 10 maps credits (maps costs 2), bob 10 weather."""
    with committed():
        credits_grant(customer=alice, product=products["weather"], amount=10)
        credits_grant(customer=alice, product=products["maps"], amount=10)
        credits_grant(customer=bob, product=products["weather"], amount=10)
    return alice


def made_by_api(client, customer, committed, **body) -> dict:
    token = get_token(client, customer)
    with committed():
        response = client.post(
            "/api/keys/", json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
    assert response.status_code == 201, response.content
    return response.json() | {"token": token}


@pytest.mark.parametrize("how", ["x-api-key", "bearer"])
@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_a_key_made_through_the_api_opens_its_customers_products(
    gate, held, mirror, products, client, committed, kind, how
):
    made = made_by_api(client, held, committed)

    assert decide(gate, made["key"], kind=kind, how=how) == "allowed"
    assert decide(gate, made["key"], kind=kind, how=how, api_id=MAPS_API) == "allowed"
    assert (mirror.balance(held, products["weather"])["used"], mirror.balance(held, products["maps"])["used"]) == (1, 2)


def test_deleting_a_key_denies_its_very_next_call_with_the_cache_warm(gate, held, mirror, products, client, committed):
    made = made_by_api(client, held, committed)
    assert decide(gate, made["key"]) == "allowed"  # the key is cached now
    sent = RequestCounter(gate.runtime().gate.client).operations

    with committed():
        response = client.delete(f"/api/keys/{made['id']}/", HTTP_AUTHORIZATION=f"Bearer {made['token']}")
    assert response.status_code == 204

    assert decide(gate, made["key"]) == "key_revoked"
    assert sent == ["UpdateItem"]  # from the warm cache: the condition refused it
    assert mirror.balance(held, products["weather"])["used"] == 1
    gate.reset()  # a cold gate reads the key's item, which says revoked: refused without spending
    assert decide(gate, made["key"]) == "key_revoked"
    assert mirror.balance(held, products["weather"])["used"] == 1


def test_suspending_the_customer_denies_the_next_call_with_the_cache_warm(gate, held, mirror, products, committed):
    with committed():
        _, key = api_key_create(customer=held)
    assert decide(gate, key) == "allowed"

    with committed():
        customer_suspend(customer=held)

    assert decide(gate, key) == "customer_suspended"
    assert mirror.balance(held, products["weather"])["used"] == 1


@pytest.mark.parametrize("change", ["rotate", "revoke"])
def test_rotating_or_revoking_the_credential_that_made_a_key_revokes_it(
    gate, held, mirror, products, client, committed, change
):
    """A leaked secret must not leave keys behind: keys a program made with it go with it. Keys made in the
    portal (no credential) and by the customer's other credentials stay."""
    made = made_by_api(client, held, committed)
    with committed():
        _, portal_key = api_key_create(customer=held)
    assert decide(gate, made["key"]) == "allowed"

    with committed():
        (credential_rotate if change == "rotate" else credential_revoke)(credential=held.credential)

    assert decide(gate, made["key"]) == "key_revoked"
    assert decide(gate, portal_key) == "allowed"
    assert made["id"] not in mirror.balance(held, products["weather"])["creds"]


def test_a_key_opens_only_the_products_it_was_made_for(gate, held, mirror, products, client, committed):
    made = made_by_api(client, held, committed, products=["maps"])

    assert decide(gate, made["key"]) == "product_not_in_key"
    assert decide(gate, made["key"], api_id=MAPS_API) == "allowed"
    assert (mirror.balance(held, products["weather"])["used"], mirror.balance(held, products["maps"])["used"]) == (0, 2)


def test_a_key_never_opens_another_customers_credits(gate, held, bob, mirror, products, committed):
    with committed():
        _, alices = api_key_create(customer=held, products=["maps"])
        _, bobs = api_key_create(customer=bob)

    assert decide(gate, bobs) == "allowed"  # bob's own weather credits
    assert decide(gate, bobs, api_id=MAPS_API) == "no_credits"  # bob has no maps: alice's are not his
    assert decide(gate, alices) == "product_not_in_key"
    assert mirror.balance(bob, products["weather"])["used"] == 1
    assert mirror.balance(held, products["weather"])["used"] == 0
    assert mirror.balance(held, products["maps"])["used"] == 0


def test_a_key_for_every_product_opens_one_bought_later(gate, alice, products, mirror, committed):
    with committed():
        credits_grant(customer=alice, product=products["weather"], amount=5)
        _, key = api_key_create(customer=alice)
    assert decide(gate, key, api_id=MAPS_API) == "no_credits"

    with committed():
        credits_grant(customer=alice, product=products["maps"], amount=5)

    assert decide(gate, key, api_id=MAPS_API) == "allowed"
