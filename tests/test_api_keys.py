"""/api/keys/: create (the key once), list (never the key), revoke, with a client-credentials token.
Real Postgres and real HTTP to moto: what the door answers, what Postgres and the mirror then hold."""

import hashlib
import json

import pytest

from accounts.models import ApiKey, Customer
from accounts.services import MAX_ACTIVE_KEYS, api_key_create, customer_suspend
from authorizer import mirror as m
from authorizer.keys import KEY_FORMAT
from ledger.mirror.client import mirror_client
from ledger.mirror.items import plain
from ledger.models import MirrorOutbox
from ledger.services import credits_grant
from tests.test_balance_api import get_token

URL = "/api/keys/"


@pytest.fixture
def held(alice, bob, products, committed, mirror):
    """alice holds weather and maps credits, bob weather; all in the mirror."""
    with committed():
        credits_grant(customer=alice, product=products["weather"], amount=10)
        credits_grant(customer=alice, product=products["maps"], amount=10)
        credits_grant(customer=bob, product=products["weather"], amount=10)
    return alice


def key_item(key: str) -> dict | None:
    from django.conf import settings

    hashed = hashlib.sha256(key.encode()).hexdigest()
    item = mirror_client().get_item(TableName=settings.MIRROR_TABLE, Key=m.key_key(hashed), ConsistentRead=True)
    return None if "Item" not in item else {k: plain(v) for k, v in item["Item"].items() if k not in ("pk", "sk")}


def create(client, token: str, body=None, **headers):
    return client.post(
        URL,
        json.dumps(body if body is not None else {}),
        content_type="application/json",
        **headers,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def test_it_creates_a_key_shown_once_and_stored_only_as_its_hash(client, held, mirror, products, committed):
    token = get_token(client, held)
    with committed():
        response = create(client, token, {"name": "nightly job"})

    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"id", "key", "name", "products", "last4", "created", "revoked_at"}
    key = body["key"]
    assert KEY_FORMAT.fullmatch(key)
    assert (body["name"], body["products"], body["last4"], body["revoked_at"]) == ("nightly job", [], key[-4:], None)
    stored = ApiKey.objects.get(public_id=body["id"])
    assert stored.customer == held and stored.created_by == held.credential
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps([f.value_from_object(stored) for f in ApiKey._meta.fields], default=str)
    # The gate hears of it: its own item, and its id beside the credentials of every item it opens.
    assert key_item(key) == {
        "key_id": body["id"],
        "customer": held.public_id,
        "products": [],
        "revoked": False,
        "version": 1,
    }
    for product in ("weather", "maps"):
        assert mirror.balance(held, products[product])["creds"] == {held.credential.client_id: 1, body["id"]: 0}
    assert not MirrorOutbox.objects.exists()

    listed = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert listed.status_code == 200
    assert listed.json() == {"keys": [{k: v for k, v in body.items() if k != "key"}]}
    assert key not in listed.content.decode()


def test_a_key_can_open_fewer_products_and_never_more_than_its_token(client, held, mirror, products, committed):
    with committed():
        response = create(client, get_token(client, held), {"products": ["maps"]})
    assert response.status_code == 201, response.content
    key_id = response.json()["id"]
    assert response.json()["products"] == ["maps"]
    assert key_id in mirror.balance(held, products["maps"])["creds"]
    assert key_id not in mirror.balance(held, products["weather"])["creds"]

    narrowed = get_token(client, held, scope="maps")
    refused = create(client, narrowed, {"products": ["weather"]})
    assert refused.status_code == 400
    assert "weather" in refused.json()["products"][0]
    # Omitted, a narrowed token's key opens what the token opens, not every product.
    assert create(client, narrowed).json()["products"] == ["maps"]


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"products": ["nope"]}, "products", "Not among the products this key may open: nope"),
        ({"products": "weather"}, "products", "Expected a list"),
        ({"products": ["bad slug!"]}, "products", "valid"),
        ({"name": "x" * 81}, "name", "no more than 80"),
        ({"name": 5}, None, None),  # DRF takes a number for a string: allowed
        ([1, 2], "non_field_errors", "must be an object"),
    ],
)
def test_bad_input_is_a_field_error_and_writes_nothing(client, held, body, field, says):
    token = get_token(client, held)
    before = (ApiKey.objects.count(), Customer.objects.get(pk=held.pk).version, MirrorOutbox.objects.count())

    response = create(client, token, body)

    if field is None:
        assert response.status_code == 201
        return
    assert response.status_code == 400, response.content
    assert says in json.dumps(response.json()[field])
    assert (ApiKey.objects.count(), Customer.objects.get(pk=held.pk).version, MirrorOutbox.objects.count()) == before


def test_the_door_wants_a_valid_access_token(client, held):
    assert client.post(URL, "{}", content_type="application/json").status_code == 401
    assert client.get(URL).status_code == 401
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer not-a-token").status_code == 401
    # Not the client credentials themselves, and not an API key either.
    basic = client.get(URL, HTTP_AUTHORIZATION="Basic Y2xpOnNlY3JldA==")
    assert basic.status_code == 401
    key = api_key_create(customer=held)[1]
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 401
    assert ApiKey.objects.count() == 1


def test_a_suspended_customers_token_makes_no_key(client, held, committed):
    token = get_token(client, held)
    customer_suspend(customer=held)

    assert create(client, token).status_code == 401
    assert not ApiKey.objects.exists()


def test_a_customer_without_products_gets_a_clear_error(client, alice, bob, products, committed):
    credits_grant(customer=bob, product=products["weather"], amount=1)
    with pytest.raises(Exception, match="no product"):
        api_key_create(customer=alice)
    assert not ApiKey.objects.exists()


def test_it_refuses_one_more_than_the_limit(client, held):
    for _ in range(MAX_ACTIVE_KEYS):
        api_key_create(customer=held)
    response = create(client, get_token(client, held))

    assert response.status_code == 400
    assert "revoke one before adding another" in response.json()["non_field_errors"][0]
    assert ApiKey.objects.count() == MAX_ACTIVE_KEYS


def test_revoking_takes_the_key_out_of_the_mirror_and_is_idempotent(client, held, mirror, products, committed):
    token = get_token(client, held)
    with committed():
        body = create(client, token).json()
    with committed():
        response = client.delete(f"{URL}{body['id']}/", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 204
    assert response.content == b""
    assert ApiKey.objects.get(public_id=body["id"]).revoked_at is not None
    assert key_item(body["key"])["revoked"] is True
    assert key_item(body["key"])["version"] == 2
    assert body["id"] not in mirror.balance(held, products["weather"])["creds"]
    listed = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}").json()["keys"]
    assert listed[0]["revoked_at"] is not None

    version = Customer.objects.get(pk=held.pk).version
    again = client.delete(f"{URL}{body['id']}/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert again.status_code == 204
    assert Customer.objects.get(pk=held.pk).version == version  # nothing changed, nothing to mirror


def test_alice_never_sees_nor_revokes_bobs_keys(client, held, bob):
    bobs, _ = api_key_create(customer=bob)
    token = get_token(client, held)

    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}").json() == {"keys": []}
    for key_id in (bobs.public_id, "key_doesnotexist", "nonsense\x00", "../balance"):
        response = client.delete(f"{URL}{key_id}/", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 404, key_id
    bobs.refresh_from_db()
    assert bobs.revoked_at is None


def test_other_methods_are_refused(client, held):
    token = get_token(client, held)
    assert (
        client.put(URL, "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 405
    )
    assert client.delete(URL, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 405
    assert client.get(f"{URL}key_x/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 405


def test_sync_mirror_checks_and_repairs_key_items(client, held, mirror, products, committed):
    from io import StringIO

    from django.conf import settings
    from django.core.management import call_command

    from accounts.services import api_key_revoke
    from ledger.mirror.sync import mirror_drift

    with committed():
        live, live_key = api_key_create(customer=held, products=["weather"])
        gone, gone_key = api_key_create(customer=held)
    with committed():
        api_key_revoke(api_key=gone)
    assert mirror_drift() == []

    hashed = hashlib.sha256(live_key.encode()).hexdigest()
    mirror_client().delete_item(TableName=settings.MIRROR_TABLE, Key=m.key_key(hashed))
    assert mirror_drift() == [f"KEY#{hashed} KEY: missing from the mirror"]

    call_command("sync_mirror", stdout=StringIO(), stderr=StringIO())
    assert mirror_drift() == []
    assert key_item(live_key)["key_id"] == live.public_id
    assert key_item(gone_key)["revoked"] is True


@pytest.mark.parametrize("name", ["bad\x00name", "lone \ud800 surrogate"])
def test_a_name_postgres_cannot_store_is_a_field_error(client, held, name):
    response = client.post(
        URL,
        json.dumps({"name": name}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {get_token(client, held)}",
    )

    assert response.status_code == 400, response.content
    assert "name" in response.json()
    assert not ApiKey.objects.exists()
