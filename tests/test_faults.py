"""Faults: the DynamoDB endpoint going away in the middle of a run, and the database
connection dropping in the middle of a webhook delivery.

DynamoDB: a moto door of its own on its own port (`Endpoint`) that Django
(MIRROR_ENDPOINT_URL) and the authorizer (AWS_ENDPOINT_URL) both use. Stopping it closes
the listening socket and every open connection, so clients get "connection refused", as
from a dead endpoint. Two ways back:

* `keep_state`: the same data behind it when it returns (a network outage);
* `empty`: everything gone (moto is reset: a process restarted, a table restored empty).
  Usage the gate spent since the last `sync_usage` lives only in DynamoDB and is lost with
  it; that is at most a minute of calls (the schedule of `sync_usage`). This run syncs
  usage just before the loss, and then nothing paid for is lost and nothing is doubled.

Database: the webhook's transaction is made to wait on a row lock held by the test, and its
backend is terminated (`pg_terminate_backend`) while it waits, mid-transaction, through a
real HTTP server (live_server).
"""

import contextlib
import io
import random
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import Sum
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from accounts.models import Customer
from ledger.models import Balance, LedgerEntry, MirrorOutbox, Purchase
from ledger.services import credits_grant
from tests.conftest import ZAPIER_URL, _free_port
from tests.test_gate import call, effect, token_for

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


def _port_nobody_is_given() -> int:
    """A free port below the kernel's ephemeral range: while the endpoint is down, no other
    connection or bind(0) on this machine can be handed it, so it can come back on it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _free_port()
    for _ in range(100):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return _free_port()


class Endpoint:
    """A moto server on a port of its own that can go away and come back on the same port."""

    poll_interval = 0.5  # how soon stop() is seen: socketserver's default

    def __init__(self):
        self.port = _port_nobody_is_given()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = None
        self.connections: list[socket.socket] = []

    def app(self):
        """The WSGI app behind the door: moto's, whose state lives in this process."""
        return DomainDispatcherApplication(create_backend_app)

    def start(self, *, empty: bool = False) -> None:
        self.server = make_server("127.0.0.1", self.port, self.app(), threaded=True, request_handler=MotoRequestHandler)
        accept = self.server.get_request

        def get_request():
            sock, address = accept()
            self.connections.append(sock)
            return sock, address

        self.server.get_request = get_request
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": self.poll_interval}, daemon=True
        ).start()
        if empty:  # moto keeps its data in the process: forget all of it
            requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()  # nothing listens: connection refused
        for sock in self.connections:  # and the kept-alive connections die too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.connections.clear()
        self.server = None


@pytest.fixture
def endpoint(aws):
    door = Endpoint()
    door.start()
    yield door
    if door.server is not None:
        door.stop()


@pytest.fixture
def gate_on_endpoint(endpoint, settings, monkeypatch, authorizer, products, committed):
    """Django and the authorizer both on `endpoint`, the table made, the products routed."""
    settings.MIRROR_ENDPOINT_URL = endpoint.url
    settings.MIRROR_WRITE_ATTEMPTS = 1  # botocore's retries are not under test: an outage fails fast
    settings.MIRROR_TIMEOUT_SECONDS = 1
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    authorizer.reset()
    run("create_mirror_table")
    with committed():
        run("sync_mirror")
    return authorizer


def run(*command: str) -> str:
    out = io.StringIO()
    call_command(*command, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def spend_all(gate, token: str) -> int:
    """Calls until the first Deny: how many were allowed."""
    for allowed in range(1000):
        answer = call(gate, token)
        if effect(answer) == "Deny":
            assert answer["context"] == {"reason": "credits_exhausted"}, answer
            return allowed
    raise AssertionError("never denied")


def assert_balances_are_the_ledgers_sums() -> None:
    for balance in Balance.objects.all():
        entries = LedgerEntry.objects.filter(customer=balance.customer_id, product=balance.product_id)
        granted = entries.exclude(kind=LedgerEntry.Kind.USAGE).aggregate(s=Sum("amount"))["s"] or 0
        used = -(entries.filter(kind=LedgerEntry.Kind.USAGE).aggregate(s=Sum("amount"))["s"] or 0)
        assert (balance.granted, balance.used) == (granted, used), balance


def customers_pending() -> set[str]:
    """The customers whose mirror items wait in the outbox (a balance's, or all of a customer's)."""
    found = set()
    for row in MirrorOutbox.objects.all():
        if row.scope == MirrorOutbox.Scope.BALANCE:
            found.add(Balance.objects.get(pk=row.ref).customer.public_id)
        elif row.scope == MirrorOutbox.Scope.CUSTOMER:
            found.add(Customer.objects.get(pk=row.ref).public_id)
    return found


def deliver(zapier, order_id: str, email: str, quantity: int) -> dict:
    response = zapier({"order_id": order_id, "email": email, "product": "weather", "quantity": quantity})
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.parametrize("keep_state", [True, False], ids=["comes back as it was", "comes back empty"])
def test_the_mirror_endpoint_going_away_mid_run_loses_nothing_and_doubles_nothing(
    gate_on_endpoint, endpoint, zapier, committed, keep_state
):
    gate = gate_on_endpoint
    # Up: a purchase, calls, the minute's sync_usage, and (when the data survives) calls since.
    deliver(zapier, "A1", "nina@example.com", 10)
    nina = Customer.objects.get(email="nina@example.com")
    nina_token = token_for(nina, credential=nina.credentials.get())
    assert [effect(call(gate, nina_token)) for _ in range(4)] == ["Allow"] * 4
    with committed():
        run("sync_usage")
    spent_unsynced = 2 if keep_state else 0
    for _ in range(spent_unsynced):
        assert effect(call(gate, nina_token)) == "Allow"

    endpoint.stop()

    # Down: purchases land in Postgres and wait as pending writes; the gate fails closed.
    assert deliver(zapier, "A2", "nina@example.com", 5)["remaining"] == 11  # 15 granted, 4 recorded as used
    deliver(zapier, "B1", "omar@example.com", 3)
    omar = Customer.objects.get(email="omar@example.com")
    omar_token = token_for(omar, credential=omar.credentials.get())
    assert customers_pending() == {nina.public_id, omar.public_id}
    for kind in ["rest_token", "rest_request", "http_api_v2"]:
        for token in (nina_token, omar_token):
            answer = call(gate, token, kind=kind)
            assert answer.get("isAuthorized", False) is False and answer["context"] == {"reason": "internal_error"}
            if kind != "http_api_v2":
                assert effect(answer) == "Deny"
    for command in (["sync_usage"], ["sync_mirror", "--check"], ["sync_mirror"]):
        with pytest.raises(CommandError), committed():
            run(*command)
    assert Purchase.objects.filter(status=Purchase.Status.APPLIED).count() == 3
    assert customers_pending() == {nina.public_id, omar.public_id}  # still waiting

    endpoint.start(empty=not keep_state)

    if not keep_state:  # no table: still closed
        assert call(gate, nina_token)["context"] == {"reason": "internal_error"}
        run("create_mirror_table")
    with committed():
        assert "0 failed" in run("sync_mirror")
    assert run("sync_mirror", "--check").strip() == "no drift: the mirror matches Postgres"
    assert not MirrorOutbox.objects.exists()

    # Back: exactly what was paid for, and not spent yet, can be spent.
    assert spend_all(gate, nina_token) == 15 - 4 - spent_unsynced
    assert spend_all(gate, omar_token) == 3
    with committed():
        run("sync_usage")
    assert run("sync_mirror", "--check").strip() == "no drift: the mirror matches Postgres"
    assert {(b.customer.email, b.granted, b.used) for b in Balance.objects.select_related("customer")} == {
        ("nina@example.com", 15, 15),
        ("omar@example.com", 3, 3),
    }
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.PURCHASE).count() == 3
    assert_balances_are_the_ledgers_sums()


# --- The database connection dropping during a webhook --------------------------------------


def blocked_backend(timeout: float = 15.0) -> int:
    """The pid of the backend waiting on a lock this connection holds."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # else the view holds still for the transaction
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))")
            row = cursor.fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
    raise AssertionError("the webhook never waited on the lock")


@pytest.fixture
def mirror_off(settings):
    settings.MIRROR_ENABLED = False  # the mirror is not under test: no writes to it at all


@pytest.mark.django_db(transaction=True)
def test_a_connection_dropped_mid_webhook_fails_cleanly_and_zapiers_retry_grants_once(
    mirror_off, live_server, alice, products, mailoutbox
):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=5)
    url = f"{live_server.url}{ZAPIER_URL}"
    headers = {"Authorization": f"Bearer {django_settings.ZAPIER_WEBHOOK_SECRET}"}
    order = {"order_id": "9001", "email": alice.email, "product": "weather", "quantity": 20}
    answers = {}

    def first_delivery():
        answers["first"] = requests.post(url, json=order, headers=headers, timeout=30)

    with transaction.atomic():
        # Hold alice's balance row: the delivery records its purchase, then waits here to grant.
        Balance.objects.select_for_update().get(customer=alice, product=weather)
        delivery = threading.Thread(target=first_delivery)
        delivery.start()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [blocked_backend()])
    delivery.join(30)

    assert answers["first"].status_code == 500
    assert not Purchase.objects.exists()  # its insert went with its transaction
    assert list(LedgerEntry.objects.values_list("amount", flat=True)) == [5]
    assert Balance.objects.get(customer=alice, product=weather).granted == 5
    assert mailoutbox == []

    retry = requests.post(url, json=order, headers=headers, timeout=30)
    again = requests.post(url, json=order, headers=headers, timeout=30)

    assert (retry.status_code, again.status_code) == (201, 200)
    assert retry.json() == again.json()
    assert retry.json()["remaining"] == 25
    purchase = Purchase.objects.get()
    assert purchase.entries.count() == 1
    assert Balance.objects.get(customer=alice, product=weather).granted == 25
    assert len(mailoutbox) == 1
    assert_balances_are_the_ledgers_sums()
