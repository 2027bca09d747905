"""The mirror follows Postgres: services record what must reach it in an outbox, written after
commit; writes are order-safe, never touch usage, and a failed write stays in the outbox while
the change that caused it stands. Real Postgres, real HTTP to a moto server."""

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
from ledger.mirror.outbox import mirror_outbox_write
from ledger.mirror.writes import balance_write
from ledger.models import Balance, LedgerEntry, MirrorOutbox, ProductApi
from ledger.services import credits_adjust, credits_grant, product_upsert
from tests.authorizer.support import RequestCounter
from tests.conftest import _free_port, admin_form_data


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
        "ceilings": {},  # no route prices
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


def test_rows_rolled_back_change_nothing_when_the_next_commit_writes(
    mirror, alice, bob, products, django_capture_on_commit_callbacks
):
    weather, maps = products["weather"], products["maps"]
    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=weather, amount=1)
        credits_grant(customer=alice, product=maps, amount=1)
    with pytest.raises(RuntimeError), transaction.atomic():  # a request that failed after its grant
        credits_grant(customer=alice, product=weather, amount=100)
        raise RuntimeError("rolled back")
    sent = RequestCounter(mirror_client())
    try:
        with django_capture_on_commit_callbacks(execute=True):
            credits_grant(customer=bob, product=maps, amount=5)
            with pytest.raises(RuntimeError), transaction.atomic():  # a savepoint rolled back
                credits_grant(customer=alice, product=maps, amount=7)
                raise RuntimeError("rolled back")
            credits_grant(customer=bob, product=weather, amount=3)
    finally:
        sent.stop()

    # bob's two items; alice's, named by the rolled-back rows, rebuilt from Postgres: as they were
    assert 2 <= sent.operations.count("UpdateItem") <= 4  # PutItem: the fixture's routes
    assert (mirror.balance(bob, maps)["granted"], mirror.balance(bob, weather)["granted"]) == (5, 3)
    assert (mirror.balance(alice, weather)["granted"], mirror.balance(alice, maps)["granted"]) == (1, 1)
    assert not MirrorOutbox.objects.exists()


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


def product_change(client, product, edits: dict[str, str]):
    """Post the admin's change form of `product` as staff would: as the page shows it, with `edits`."""
    url = reverse("admin:ledger_product_change", args=[product.pk])
    response = client.post(url, admin_form_data(client, url) | edits | {"_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:3000]
    return response


def test_routes_follow_api_ids_edited_or_deleted_one_by_one(
    mirror, products, staff, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        product_upsert(slug="weather", name="Weather API", api_ids=["wthr000001"])  # unchanged: nothing written
    assert mirror.route("wthr000001") is None  # (the fixture's own writes never ran: no commit in this test)

    # Staff edit the product's API ids one by one in the admin (its inline), each edit its own commit.
    client.force_login(staff)
    weather = products["weather"]
    row = ProductApi.objects.get(api_id="wthr000001")
    assert admin_form_data(client, reverse("admin:ledger_product_change", args=[weather.pk]))["apis-0-id"] == str(
        row.pk
    )
    with django_capture_on_commit_callbacks(execute=True):
        product_change(client, weather, {})  # saved as it was
    weather.refresh_from_db()
    assert mirror.route("wthr000001") == {"product": "weather", "routes": {}, "version": weather.version}

    with django_capture_on_commit_callbacks(execute=True):
        product_change(client, weather, {"apis-0-api_id": "wthr000009"})
    assert mirror.route("wthr000001") is None
    assert mirror.route("wthr000009")["product"] == "weather"

    with django_capture_on_commit_callbacks(execute=True):
        product_change(client, weather, {"apis-0-DELETE": "on"})
    assert not ProductApi.objects.filter(product=weather).exists()
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
    # Both changes wait in the outbox, each naming alice's weather item, with why its write failed.
    balance = Balance.objects.get(customer=alice, product=weather)
    pending = list(MirrorOutbox.objects.all())
    assert {(row.scope, row.ref) for row in pending} == {(MirrorOutbox.Scope.BALANCE, str(balance.pk))}
    assert all("Could not connect" in row.error and row.attempts == 1 for row in pending)

    second_door.up()
    assert mirror.balance(alice, weather)["granted"] == 10  # the gate still sees the old state
    call_command("sync_mirror", stdout=io.StringIO(), stderr=io.StringIO())
    assert mirror.balance(alice, weather)["granted"] == 65
    assert not MirrorOutbox.objects.exists()
    out = io.StringIO()
    call_command("sync_mirror", "--check", stdout=out)
    assert "no drift" in out.getvalue()


def test_writes_are_skipped_when_the_mirror_is_off(
    mirror, alice, products, settings, django_capture_on_commit_callbacks
):
    settings.MIRROR_ENABLED = False
    before = list(MirrorOutbox.objects.all())  # the fixtures', recorded while it was on
    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=products["weather"], amount=10)
    assert mirror.balance(alice, products["weather"]) is None
    assert list(MirrorOutbox.objects.all()) == before  # nothing waits for it either


def test_a_write_clears_only_the_outbox_rows_it_read(mirror, alice, staff, products):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=10)
    read = set(MirrorOutbox.objects.values_list("pk", flat=True))
    # Recorded after the write below read its rows: it stays for its own write (or the next run).
    credits_adjust(customer=alice, product=weather, amount=5, reason="meanwhile", by=staff)
    balance = Balance.objects.get(customer=alice, product=weather)
    later = MirrorOutbox.objects.exclude(pk__in=read).get()

    mirror_outbox_write(ids=read)
    assert list(MirrorOutbox.objects.all()) == [later]
    assert mirror.balance(alice, weather)["granted"] == 15  # written from Postgres as it is when written

    mirror_outbox_write()
    assert not MirrorOutbox.objects.exists()
    assert (later.scope, later.ref) == (MirrorOutbox.Scope.BALANCE, str(balance.pk))
