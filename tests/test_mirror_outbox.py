"""The mirror's outbox (ledger/mirror/outbox.py): every change the gate sees is recorded in the
transaction that makes it, written after the commit, and, when that write never happens, by the
next scheduled run. Real Postgres, real HTTP to a moto server, a real process killed mid-write."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.urls import reverse

from accounts.models import Credential, Customer
from accounts.services import (
    credential_create,
    credential_revoke,
    credential_rotate,
    customer_reactivate,
    customer_suspend,
)
from creditportal import scheduled
from ledger.mirror.client import mirror_client
from ledger.models import Balance, MirrorOutbox, Purchase
from ledger.services import credits_adjust, credits_grant, product_upsert, usage_record
from ledger.store.orders import purchase_record
from tests.authorizer.support import RequestCounter
from tests.conftest import admin_form_data
from tests.test_gate import call, effect, token_for
from tests.test_mirror_writes import product_change
from tests.test_scheduled import EVENT

ROOT = Path(__file__).resolve().parent.parent
Scope = MirrorOutbox.Scope


def recorded(change) -> set[tuple[str, str]]:
    """The outbox rows `change()` records, seen inside its transaction (before any commit)."""
    before = set(MirrorOutbox.objects.values_list("pk", flat=True))
    with transaction.atomic():
        change()
        return set(MirrorOutbox.objects.exclude(pk__in=before).values_list("scope", "ref"))


@pytest.fixture
def held(alice, bob, staff, products):
    """alice holds weather credits; what the services below act on."""
    credits_grant(customer=alice, product=products["weather"], amount=10)
    return Balance.objects.get(customer=alice, product=products["weather"])


def test_each_service_that_changes_what_the_gate_sees_records_it_in_its_own_transaction(
    held, alice, bob, staff, products
):
    weather, maps = products["weather"], products["maps"]
    balance, customer = str(held.pk), str(alice.pk)
    assert recorded(lambda: credits_grant(customer=alice, product=weather, amount=5)) == {(Scope.BALANCE, balance)}
    assert recorded(
        lambda: credits_adjust(customer=alice, product=weather, amount=-1, reason="correction", by=staff)
    ) == {(Scope.BALANCE, balance)}
    assert recorded(lambda: customer_suspend(customer=alice)) == {(Scope.CUSTOMER, customer)}
    assert recorded(lambda: customer_reactivate(customer=alice)) == {(Scope.CUSTOMER, customer)}
    assert recorded(lambda: credential_create(customer=alice)) == {(Scope.CUSTOMER, customer)}
    assert recorded(lambda: credential_rotate(credential=alice.credential)) == {(Scope.CUSTOMER, customer)}
    assert recorded(lambda: credential_revoke(credential=alice.credential)) == {(Scope.CUSTOMER, customer)}
    assert recorded(lambda: product_upsert(slug="weather", name="Weather API", cost_per_call=2)) == {
        (Scope.PRODUCT, str(weather.pk))
    }
    assert recorded(lambda: product_upsert(slug="maps", name="Maps API", api_ids=["maps000002"])) == {
        (Scope.ROUTE, "maps000001"),  # removed: its route is deleted
        (Scope.ROUTE, "maps000002"),
    }
    purchase = lambda: purchase_record(  # noqa: E731
        source=Purchase.Source.ZAPIER, order_id="7001", email=bob.email, product_ref="maps", quantity=3
    )
    bob_maps = recorded(purchase)
    assert bob_maps == {(Scope.BALANCE, str(Balance.objects.get(customer=bob, product=maps).pk))}


def test_what_changes_nothing_the_gate_sees_records_nothing(held, alice, products):
    assert recorded(lambda: usage_record(customer=alice, product=products["weather"], amount=3)) == set()
    assert recorded(lambda: product_upsert(slug="weather", name="Weather API", skus=["WTHR-100", "WTHR-500"])) == set()
    assert recorded(lambda: product_upsert(slug="weather", name="Weather API")) == set()  # unchanged


def test_a_rolled_back_change_leaves_nothing_in_the_outbox(held, alice):
    before = list(MirrorOutbox.objects.all())
    with pytest.raises(RuntimeError), transaction.atomic():
        customer_suspend(customer=alice)
        raise RuntimeError("the request failed after the suspension")
    assert list(MirrorOutbox.objects.all()) == before


def test_admin_edits_of_customers_and_products_reach_the_outbox(held, alice, staff, products, client):
    client.force_login(staff)
    weather = products["weather"]
    before = set(MirrorOutbox.objects.values_list("pk", flat=True))

    url = reverse("admin:accounts_customer_change", args=[alice.pk])
    response = client.post(url, admin_form_data(client, url) | {"name": "Alice Liddell", "_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:3000]
    product_change(client, weather, {"name": "Weather API (new)"})

    rows = set(MirrorOutbox.objects.exclude(pk__in=before).values_list("scope", "ref"))
    assert (Scope.CUSTOMER, str(alice.pk)) in rows  # the save bumped the version its items carry
    assert (Scope.PRODUCT, str(weather.pk)) in rows


def test_a_product_change_touching_many_balances_is_left_to_the_minutes_run(
    mirror, products, settings, committed, fast_password_hashing
):
    from tests.conftest import _customer

    weather = products["weather"]
    customers = [_customer(f"many{i}@example.com", f"Many {i}") for i in range(4)]
    with committed():
        for customer in customers:
            credits_grant(customer=customer, product=weather, amount=10)
    assert mirror.balance(customers[0], weather)["cost"] == 1
    settings.MIRROR_AFTER_COMMIT_LIMIT = 3

    sent = RequestCounter(mirror_client())
    try:
        with committed():
            product_upsert(slug="weather", name="Weather API", cost_per_call=2)  # 4 balances: more than 3
    finally:
        sent.stop()

    assert sent.operations == []  # the request that changed the product wrote nothing
    row = MirrorOutbox.objects.get(scope=Scope.PRODUCT)
    assert (row.ref, row.attempts, row.error) == (str(weather.pk), 0, "")
    assert {mirror.balance(c, weather)["cost"] for c in customers} == {1}

    scheduled.sync_usage(EVENT, None)
    assert {mirror.balance(c, weather)["cost"] for c in customers} == {2}
    assert not MirrorOutbox.objects.filter(scope=Scope.PRODUCT).exists()


def test_after_every_change_staff_or_customers_can_make_the_mirror_matches_postgres_without_a_sync(
    mirror, alice, bob, staff, products, client, committed
):
    """A guard for what the outbox relies on: every path that changes what the gate sees (or the
    version its items carry) records it. One forgotten shows here as drift, before any sync."""
    from accounts.services import customer_email_change, user_deactivate
    from ledger.mirror.outbox import mirror_outbox_write
    from ledger.mirror.sync import mirror_drift
    from ledger.services import purchase_apply, purchase_email_resend

    weather, maps = products["weather"], products["maps"]
    client.force_login(staff)
    customer_url = reverse("admin:accounts_customer_change", args=[alice.pk])
    changes = {
        "grant": lambda: credits_grant(customer=alice, product=weather, amount=10),
        "adjust": lambda: credits_adjust(customer=alice, product=weather, amount=-2, reason="r", by=staff),
        "usage": lambda: (  # as sync_usage records it: spent at the gate first
            mirror.spend(alice, weather, used=1),
            usage_record(customer=alice, product=weather, amount=1),
        ),
        "first purchase": lambda: purchase_record(
            source=Purchase.Source.ZAPIER, order_id="8001", email="nina@example.com", product_ref="maps", quantity=4
        ),
        "unmatched purchase applied": lambda: purchase_apply(
            purchase=purchase_record(
                source=Purchase.Source.ZAPIER, order_id="8002", email=bob.email, product_ref="GIFT", quantity=3
            ).purchase,
            product=maps,
            by=staff,
        ),
        "welcome resent": lambda: purchase_email_resend(purchase=Purchase.objects.get(order_id="8001"), by=staff),
        "suspend": lambda: customer_suspend(customer=alice),
        "reactivate": lambda: customer_reactivate(customer=alice),
        "credential created": lambda: credential_create(customer=alice),
        "credential rotated": lambda: credential_rotate(credential=alice.credential),
        "credential revoked": lambda: credential_revoke(credential=alice.credential),
        "email changed": lambda: customer_email_change(customer=alice, email="alice@example.org"),
        "login deactivated": lambda: user_deactivate(user=bob.user),
        "product cost": lambda: product_upsert(slug="weather", name="Weather API", cost_per_call=3),
        "product off sale": lambda: product_upsert(slug="maps", name="Maps API", active=False),
        "api ids": lambda: product_upsert(slug="weather", name="Weather API", api_ids=["wthr000002"]),
        "admin: customer saved": lambda: client.post(
            customer_url, admin_form_data(client, customer_url) | {"name": "Alice L.", "_save": "Save"}
        ),
        "admin: product saved": lambda: product_change(client, weather, {"name": "Weather"}),
        "admin: api id renamed": lambda: product_change(client, weather, {"apis-0-api_id": "wthr000003"}),
    }
    with committed():
        mirror_outbox_write()  # what the fixtures recorded, as their commits would have
    for what, change in changes.items():
        with committed():
            change()
        assert mirror_drift() == [], what
    assert not MirrorOutbox.objects.exists()


# --- Durability: a process killed between its commit and its DynamoDB write ----------------------


class Hanging:
    """A TCP server that accepts connections and never answers: a mirror endpoint that hangs."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.accepted = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self.accepted:
                self.held.append(conn)
                self.accepted.notify_all()

    def wait_for(self, count: int, timeout: float = 60) -> None:
        with self.accepted:
            assert self.accepted.wait_for(lambda: len(self.held) >= count, timeout), "no write reached the endpoint"

    def close(self):
        self.server.close()
        for conn in self.held:
            conn.close()


CHILD = """
import sys

import django

django.setup()

from accounts.models import Credential, Customer
from accounts.services import credential_revoke, customer_suspend
from ledger.models import Purchase
from ledger.store.orders import purchase_record

what, ref = sys.argv[1:3]
if what == "suspend":
    customer_suspend(customer=Customer.objects.get(public_id=ref))
elif what == "revoke":
    credential_revoke(credential=Credential.objects.get(client_id=ref))
elif what == "purchase":
    purchase_record(source=Purchase.Source.ZAPIER, order_id=ref, email="bob@example.com", product_ref="weather", quantity=25)
print("the mirror write returned", flush=True)
"""


def kill_mid_write(hanging: Hanging, committed, *args: str) -> None:
    """Run one service in a process of its own (the real Django code, on the test database, its
    mirror endpoint hanging), wait until its commit is visible here and its DynamoDB write has
    reached the endpoint, then SIGKILL it."""
    db = connection.settings_dict
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "creditportal.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "MIRROR_ENDPOINT_URL": hanging.url,
        "MIRROR_TIMEOUT_SECONDS": "600",
        "MIRROR_WRITE_ATTEMPTS": "1",
    }
    connections_before = len(hanging.held)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        hanging.wait_for(connections_before + 1)
        deadline = time.monotonic() + 30
        while not committed():
            assert time.monotonic() < deadline, "the change never became visible"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err.decode()
    assert b"returned" not in out  # killed inside the write, not after it


@pytest.mark.django_db(transaction=True)
def test_a_process_killed_between_its_commit_and_its_mirror_write_loses_nothing(
    mirror, authorizer, products, alice, bob
):
    from ledger.mirror.outbox import mirror_outbox_write

    weather = products["weather"]
    mirror_outbox_write()  # the fixtures' rows (the products' routes), in case the table came after them
    credits_grant(customer=alice, product=weather, amount=10)  # committed, written to the mirror after commit
    credits_grant(customer=bob, product=weather, amount=10)
    bobs_other, _ = credential_create(customer=bob)
    assert not MirrorOutbox.objects.exists()
    alice_token, bob_token, bob_other_token = (
        token_for(alice),
        token_for(bob),
        token_for(bob, credential=bobs_other),
    )
    hanging = Hanging()
    try:
        kill_mid_write(
            hanging, lambda: Customer.objects.get(pk=alice.pk).status == "suspended", "suspend", alice.public_id
        )
        kill_mid_write(
            hanging,
            lambda: Credential.objects.get(pk=bob.credential.pk).revoked_at is not None,
            "revoke",
            bob.credential.client_id,
        )
        kill_mid_write(hanging, lambda: Purchase.objects.filter(order_id="9001").exists(), "purchase", "9001")
    finally:
        hanging.close()

    # Postgres has all three; the gate has none of them: each waits in the outbox.
    assert Balance.objects.get(customer=bob, product=weather).granted == 35
    assert set(MirrorOutbox.objects.values_list("scope", "ref")) == {
        (Scope.CUSTOMER, str(alice.pk)),
        (Scope.CUSTOMER, str(bob.pk)),
        (Scope.BALANCE, str(Balance.objects.get(customer=bob, product=weather).pk)),
    }
    assert (mirror.balance(alice, weather)["active"], mirror.balance(bob, weather)["granted"]) == (True, 10)
    assert effect(call(authorizer, alice_token)) == "Allow"  # the suspension has not reached the gate
    assert effect(call(authorizer, bob_token)) == "Allow"  # nor the revocation

    scheduled.sync_usage(EVENT, None)  # the next minute's run

    assert not MirrorOutbox.objects.exists()
    assert call(authorizer, alice_token)["context"] == {"reason": "customer_suspended"}
    assert call(authorizer, bob_token)["context"] == {"reason": "credential_revoked"}
    assert effect(call(authorizer, bob_other_token)) == "Allow"
    item = mirror.balance(bob, weather)
    assert (item["granted"], item["used"]) == (35, 2)  # the purchase is there, and nothing spent is lost
    assert list(Balance.objects.filter(product=weather).order_by("customer__email").values_list("used", flat=True)) == [
        1,  # alice: the call allowed before the run, recorded by it
        1,  # bob: likewise; his call after the run is recorded by the next one
    ]
