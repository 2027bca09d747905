"""The gate end to end: state made through Django (services, admin), mirrored after commit,
decided by authorizer.handler.lambda_handler on sample API Gateway events, over real HTTP to moto."""

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command
from django.urls import reverse

from accounts.services import credential_create, credential_revoke, credential_rotate
from ledger.models import Balance
from ledger.services import credits_grant
from tests.authorizer.support import load_event, mint

WEATHER_API, MAPS_API = "wthr000001", "maps000001"


def token_for(customer, scope: str = "weather", credential=None) -> str:
    """What POST /api/token/ would give this customer's credential (contract in docs/api.md, "The token")."""
    credential = credential or customer.credential
    credential.refresh_from_db()
    return mint(sub=customer.public_id, client_id=credential.client_id, ver=credential.secret_version, scope=scope)


def call(authorizer, token: str, api_id: str = WEATHER_API, kind: str = "rest_request") -> dict:
    return authorizer.lambda_handler(load_event(kind, token=token, api_id=api_id), None)


def effect(answer: dict) -> str:
    return answer["policyDocument"]["Statement"][0]["Effect"]


def test_calls_are_allowed_until_the_credits_run_out_and_a_purchase_adds_to_what_is_left(
    gate, mirror, alice, products, committed
):
    weather = products["weather"]
    with committed():
        credits_grant(customer=alice, product=weather, amount=3)
    token = token_for(alice)

    answers = [call(gate, token) for _ in range(4)]

    assert [a["context"].get("remaining") for a in answers[:3]] == [2, 1, 0]
    assert [effect(a) for a in answers] == ["Allow"] * 3 + ["Deny"]
    assert answers[3]["context"] == {"reason": "credits_exhausted"}
    assert answers[0]["principalId"] == alice.public_id
    assert answers[0]["context"] == {
        "customerId": alice.public_id,
        "product": "weather",
        "remaining": 2,
        "credentialId": alice.credential.client_id,
        "cost": 1,
    }

    with committed():
        credits_grant(customer=alice, product=weather, amount=2)  # a later purchase
    assert [call(gate, token)["context"].get("remaining") for _ in range(2)] == [1, 0]
    assert call(gate, token)["context"] == {"reason": "credits_exhausted"}
    item = mirror.balance(alice, weather)
    assert (item["granted"], item["used"]) == (5, 5)  # usage was never reset

    call_command("sync_usage", stdout=io.StringIO(), stderr=io.StringIO())
    balance = Balance.objects.get(customer=alice, product=weather)
    assert (balance.granted, balance.used, balance.remaining) == (5, 5, 0)


@pytest.mark.parametrize("kind", ["rest_token", "rest_request", "http_api_v2"])
def test_suspending_a_customer_in_admin_denies_the_next_call(gate, alice, staff, products, client, committed, kind):
    with committed():
        credits_grant(customer=alice, product=products["weather"], amount=10)
    token = token_for(alice)
    assert call(gate, token, kind=kind).get("isAuthorized", True) is True

    client.force_login(staff)
    with committed():
        response = client.post(reverse("admin:accounts_customer_status", args=[alice.pk]), {"status": "suspended"})
    assert response.status_code == 302

    answer = call(gate, token, kind=kind)
    if kind == "http_api_v2":
        assert answer == {"isAuthorized": False, "context": {"reason": "customer_suspended"}}
    else:
        assert effect(answer) == "Deny" and answer["context"] == {"reason": "customer_suspended"}
    assert Balance.objects.get(customer=alice).remaining == 10

    with committed():
        client.post(reverse("admin:accounts_customer_status", args=[alice.pk]), {"status": "active"})
    assert call(gate, token, kind=kind).get("isAuthorized", True) is True


def test_revoking_a_credential_denies_its_tokens_at_the_next_call_and_only_its_own(gate, alice, products, committed):
    with committed():
        credits_grant(customer=alice, product=products["weather"], amount=10)
        other, _ = credential_create(customer=alice)  # another program of alice's
    first, second = token_for(alice), token_for(alice, credential=other)
    assert effect(call(gate, first)) == effect(call(gate, second)) == "Allow"

    with committed():
        credential_revoke(credential=alice.credential)

    assert call(gate, first)["context"] == {"reason": "credential_revoked"}
    assert effect(call(gate, second)) == "Allow"


def test_rotating_a_credential_denies_tokens_issued_before_it(gate, alice, products, mirror, committed):
    weather = products["weather"]
    with committed():
        credits_grant(customer=alice, product=weather, amount=10)
    old = token_for(alice)
    assert effect(call(gate, old)) == "Allow"

    with committed():
        credential_rotate(credential=alice.credential)

    assert call(gate, old)["context"] == {"reason": "credential_rotated"}
    new = token_for(alice)
    assert call(gate, new)["context"]["remaining"] == 8
    assert mirror.balance(alice, weather)["used"] == 2  # the refused call spent nothing


def test_a_token_for_one_product_never_opens_or_spends_another(gate, alice, bob, products, mirror, committed):
    weather, maps = products["weather"], products["maps"]
    with committed():
        credits_grant(customer=alice, product=weather, amount=10)
        credits_grant(customer=alice, product=maps, amount=10)
        credits_grant(customer=bob, product=maps, amount=10)

    maps_token = token_for(alice, scope="maps")
    assert call(gate, maps_token, api_id=WEATHER_API)["context"] == {"reason": "product_not_in_token"}
    assert call(gate, maps_token, api_id=MAPS_API)["context"]["remaining"] == 8

    both = token_for(bob, scope="maps weather")  # bob has no weather credits; alice's are not his
    assert call(gate, both, api_id=WEATHER_API)["context"] == {"reason": "no_credits"}

    assert mirror.balance(alice, weather)["used"] == 0
    assert mirror.balance(alice, maps)["used"] == 2
    assert mirror.balance(bob, maps)["used"] == 0


@pytest.mark.parametrize(
    "threads, calls, granted, cost", [(16, 60, 25, 1), (12, 40, 21, 2), (32, 200, 120, 1), (8, 30, 0, 1)]
)
def test_exactly_what_was_granted_is_allowed_however_many_calls_run_at_once(
    gate, alice, products, mirror, committed, atomic_moto_server, monkeypatch, threads, calls, granted, cost
):
    from ledger.services import product_upsert

    monkeypatch.setenv("AWS_ENDPOINT_URL", atomic_moto_server)  # see the fixture: moto's own server is not atomic
    # The door queues up to `threads` requests: on a busy machine the last waits longer than the 2 s
    # a Lambda would (a timeout denies, see test_faults.py); this test counts atomicity, not speed.
    monkeypatch.setenv("AUTHORIZER_DYNAMODB_TIMEOUT", "60")
    gate.reset()
    with committed():
        product_upsert(slug="weather", name="Weather API", cost_per_call=cost)
        if granted:
            credits_grant(customer=alice, product=products["weather"], amount=granted)
    token = token_for(alice)
    start = threading.Barrier(threads)

    def one_call(i: int) -> str:
        if i < threads:
            start.wait()
        return effect(call(gate, token))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        effects = list(pool.map(one_call, range(calls)))

    assert effects.count("Allow") == granted // cost
    assert effects.count("Deny") == calls - granted // cost
    if granted:
        assert mirror.balance(alice, products["weather"])["used"] == granted // cost * cost


def test_the_gates_spend_stamps_survive_djangos_writes_and_are_not_drift(
    gate, mirror, alice, staff, products, committed
):
    """The gate's `spent0..spent3` (authorizer/gate.py, "A lost answer") are the gate's, like `used`:
    Django's writes (a grant, an adjustment, sync_mirror) keep them, and --check does not report them."""
    from authorizer import mirror as m
    from ledger.services import credits_adjust

    weather = products["weather"]
    with committed():
        credits_grant(customer=alice, product=weather, amount=10)
    token = token_for(alice)
    for _ in range(2):
        assert effect(call(gate, token)) == "Allow"
    stamps = [mirror.balance(alice, weather)[slot] for slot in m.SPENT]
    assert stamps[2:] == ["-", "-"] and all(len(s.split()) == 2 for s in stamps[:2])
    with committed():
        credits_adjust(customer=alice, product=weather, amount=5, reason="goodwill", by=staff)
        credits_grant(customer=alice, product=weather, amount=1)
    call_command("sync_mirror", stdout=io.StringIO(), stderr=io.StringIO())
    out = io.StringIO()
    call_command("sync_mirror", "--check", stdout=out, stderr=io.StringIO())
    assert out.getvalue().strip() == "no drift: the mirror matches Postgres"
    item = mirror.balance(alice, weather)
    assert [item[slot] for slot in m.SPENT] == stamps and (item["granted"], item["used"]) == (16, 2)
    assert call(gate, token)["context"]["remaining"] == 13
    assert mirror.balance(alice, weather)[m.SPENT[1]] == stamps[0]  # shifted down by the next spend
