"""The mirror follows Postgres: signals schedule writes after commit, writes are
order-safe, never touch usage, and a failed write is kept as pending while the
change that caused it stands. Real Postgres, real HTTP to a moto server."""

import io

import pytest
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from moto.server import ThreadedMotoServer

from accounts.models import Customer
from accounts.services import credential_create, credential_revoke, credential_rotate, customer_suspend
from ledger.mirror.client import mirror_client
from ledger.mirror.items import balances_for_mirror
from ledger.mirror.writes import balance_write
from ledger.models import Balance, LedgerEntry, MirrorPending, ProductApi
from ledger.services import credits_adjust, credits_grant, product_upsert
from tests.authorizer.support import RequestCounter
from tests.conftest import _free_port


def versions(customer, product) -> int:
    balance = Balance.objects.get(customer=customer, product=product)
    customer.refresh_from_db()
    product.refresh_from_db()
    return balance.version + customer.version + product.version


def test_a_grant_writes_the_balance_item_once_the_transaction_commits(
    mirror, alice, products, django_capture_on_commit_callbacks
):
    weather = products["weather"]
    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=weather, amount=100)
        assert mirror.balance(alice, weather) is None  # not before the commit

    assert mirror.balance(alice, weather) == {
        "granted": 100,
        "used": 0,
        "cost": 1,
        "ceiling": 99,
        "active": True,
        "product_active": True,
        "creds": {alice.credential.client_id: 1},
        "version": versions(alice, weather),
    }


def test_a_first_purchase_writes_its_balance_item_once(mirror, products, zapier):
    # It saves a customer, a credential and a balance (twice): one merged write after commit.
    sent = RequestCounter(mirror_client())
    try:
        response = zapier({"order_id": "1001", "email": "nina@example.com", "product": "weather", "quantity": 100})
    finally:
        sent.stop()

    assert response.status_code == 201
    assert sent.operations.count("UpdateItem") == 1  # balance items; routes (PutItem) are the fixture's
    nina = Customer.objects.get(email="nina@example.com")
    assert mirror.balance(nina, products["weather"])["granted"] == 100


def test_a_rolled_back_change_writes_nothing(mirror, alice, products, django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        credits_grant(customer=alice, product=products["weather"], amount=100)
        raise RuntimeError("the request failed after the grant")
    assert callbacks == []
    assert mirror.balance(alice, products["weather"]) is None


def test_a_later_grant_adds_to_what_is_left_and_never_resets_usage(
    mirror, alice, products, django_capture_on_commit_callbacks
):
    maps = products["maps"]
    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=maps, amount=10)
    mirror.spend(alice, maps, used=8)  # the gate spent four calls at 2

    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=maps, amount=6)

    item = mirror.balance(alice, maps)
    assert (item["granted"], item["used"], item["ceiling"]) == (16, 8, 14)


def test_an_older_state_written_late_changes_nothing(
    mirror, alice, staff, products, django_capture_on_commit_callbacks
):
    weather = products["weather"]
    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=weather, amount=10)
    stale = balances_for_mirror(Balance.objects.filter(customer=alice)).get()
    with django_capture_on_commit_callbacks(execute=True):
        credits_adjust(customer=alice, product=weather, amount=-4, reason="goodwill taken back", by=staff)

    assert balance_write(mirror_client(), stale) is False  # refused: the item holds a newer version
    assert mirror.balance(alice, weather)["granted"] == 6
    assert balance_write(mirror_client(), balances_for_mirror(Balance.objects.filter(customer=alice)).get()) is False
    assert mirror.balance(alice, weather)["version"] == versions(alice, weather)  # the same state twice: no-op


def test_customer_and_credential_changes_reach_every_item_of_the_customer(
    mirror, alice, products, django_capture_on_commit_callbacks
):
    weather, maps = products["weather"], products["maps"]
    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=weather, amount=10)
        credits_grant(customer=alice, product=maps, amount=10)
    first = alice.credential.client_id

    with django_capture_on_commit_callbacks(execute=True):
        second, _ = credential_create(customer=alice)
    assert mirror.balance(alice, maps)["creds"] == {first: 1, second.client_id: 1}

    with django_capture_on_commit_callbacks(execute=True):
        credential_rotate(credential=alice.credential)
    assert mirror.balance(alice, weather)["creds"] == {first: 2, second.client_id: 1}

    with django_capture_on_commit_callbacks(execute=True):
        credential_revoke(credential=second)
    assert mirror.balance(alice, weather)["creds"] == {first: 2}
    assert mirror.balance(alice, maps)["creds"] == {first: 2}

    with django_capture_on_commit_callbacks(execute=True):
        customer_suspend(customer=alice)
    assert mirror.balance(alice, weather)["active"] is False
    assert mirror.balance(alice, maps)["active"] is False


def test_a_product_change_rewrites_all_its_balances_and_its_routes(
    mirror, alice, bob, products, django_capture_on_commit_callbacks
):
    weather = products["weather"]
    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=weather, amount=10)
        credits_grant(customer=bob, product=weather, amount=20)
    mirror.spend(bob, weather, used=5)

    with django_capture_on_commit_callbacks(execute=True):
        product_upsert(slug="weather", name="Weather API", api_ids=["wthr000002"], cost_per_call=3, active=False)

    for customer, granted, used in [(alice, 10, 0), (bob, 20, 5)]:
        item = mirror.balance(customer, weather)
        assert (item["cost"], item["ceiling"], item["product_active"], item["used"]) == (3, granted - 3, False, used)
    assert mirror.route("wthr000001") is None
    assert mirror.route("wthr000002")["product"] == "weather"


def test_routes_follow_api_ids_edited_or_deleted_one_by_one(mirror, products, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        product_upsert(slug="weather", name="Weather API", api_ids=["wthr000001"])  # unchanged: nothing written
    assert mirror.route("wthr000001") is None  # (the fixture's own writes never ran: no commit in this test)

    row = ProductApi.objects.get(api_id="wthr000001")
    with django_capture_on_commit_callbacks(execute=True):
        row.save()
    assert mirror.route("wthr000001") == {"product": "weather", "version": products["weather"].version}

    with django_capture_on_commit_callbacks(execute=True):
        row.api_id = "wthr000009"
        row.save()
    assert mirror.route("wthr000001") is None
    assert mirror.route("wthr000009")["product"] == "weather"

    with django_capture_on_commit_callbacks(execute=True):
        row.delete()
    assert mirror.route("wthr000009") is None


@pytest.fixture
def second_door(mirror, settings):
    """A second moto server in this process (same data, own port) for mirror writes; stop it: the endpoint is down."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    settings.MIRROR_ENDPOINT_URL = f"http://127.0.0.1:{port}"

    class Door:
        def down(self):
            server.stop()

        def up(self):
            nonlocal server
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()

    yield Door()
    server.stop()


def test_with_the_mirror_down_a_purchase_and_an_adjustment_stand_and_wait_as_pending(
    mirror, second_door, alice, staff, products, client, django_capture_on_commit_callbacks
):
    weather = products["weather"]
    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=weather, amount=10)
    assert mirror.balance(alice, weather)["granted"] == 10

    second_door.down()
    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=weather, amount=50)  # a purchase
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:accounts_customer_adjust", args=[alice.pk]),
            {"product": weather.pk, "amount": "5", "reason": "support gesture"},
        )

    assert response.status_code == 302  # the request that caused the failed write still succeeds
    assert Balance.objects.get(customer=alice, product=weather).granted == 65
    assert LedgerEntry.objects.filter(customer=alice, product=weather).count() == 3
    pending = MirrorPending.objects.get()
    assert (pending.item_pk, pending.item_sk) == (f"CUSTOMER#{alice.public_id}", "PRODUCT#weather")
    assert "Could not connect" in pending.error

    second_door.up()
    assert mirror.balance(alice, weather)["granted"] == 10  # the gate still sees the old state
    call_command("sync_mirror", stdout=io.StringIO(), stderr=io.StringIO())
    assert mirror.balance(alice, weather)["granted"] == 65
    assert not MirrorPending.objects.exists()
    out = io.StringIO()
    call_command("sync_mirror", "--check", stdout=out)
    assert "no drift" in out.getvalue()


def test_writes_are_skipped_when_the_mirror_is_off(
    mirror, alice, products, settings, django_capture_on_commit_callbacks
):
    settings.MIRROR_ENABLED = False
    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=products["weather"], amount=10)
    assert mirror.balance(alice, products["weather"]) is None
    assert not MirrorPending.objects.exists()


def test_a_write_of_an_older_read_leaves_a_failure_recorded_since_pending(
    mirror, alice, products, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    from ledger.mirror.pending import balance_jobs, writes_run_remembered

    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=products["weather"], amount=10)
    read_at = timezone.now()
    balances = list(balances_for_mirror(Balance.objects.filter(customer=alice)))
    key = {"item_pk": f"CUSTOMER#{alice.public_id}", "item_sk": "PRODUCT#weather"}
    MirrorPending.objects.create(**key, error="the write of a newer state failed meanwhile")

    writes_run_remembered(balance_jobs(mirror_client(), balances, force=True), read_at=read_at)
    assert MirrorPending.objects.filter(**key).exists()  # what this run wrote was read before that failure

    writes_run_remembered(balance_jobs(mirror_client(), balances, force=True), read_at=timezone.now())
    assert not MirrorPending.objects.exists()
