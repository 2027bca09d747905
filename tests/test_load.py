"""Load: many calls and many deliveries at once, and the invariants still exact.

The authorizer's spends go through `atomic_moto_server` (tests/conftest.py), a door to the
same moto state that serves one request at a time. DynamoDB applies the writes to one item
one at a time; moto's threaded server checks an UpdateItem's condition and applies it in
separate steps and lets a few calls too many through, even for raw boto3 calls. So what
these tests prove is that the gate's conditional write is right under DynamoDB's per-item
atomicity (no oversell, no lost grant, no clobbered usage, whatever the interleaving of
calls and of Django's mirror writes), not that moto is atomic.

tests/test_gate.py already counts allows for one customer and one token against G credits
at a few concurrencies; here: two customers and two credentials at once, all three event
kinds, N calls released together; grants landing while calls run; and a storm of webhook
deliveries, distinct and repeated, over real HTTP.
"""

import io
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
import requests
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection

from accounts.models import Credential, Customer, User
from accounts.services import credential_create
from ledger.models import Balance, LedgerEntry, MirrorOutbox, Purchase
from ledger.services import credits_grant
from tests.authorizer.support import EVENT_KINDS
from tests.conftest import ZAPIER_URL
from tests.test_faults import assert_balances_are_the_ledgers_sums
from tests.test_gate import call, token_for

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


def allowed(answer: dict) -> bool:
    if "isAuthorized" in answer:
        return answer["isAuthorized"]
    return answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def run(*command: str) -> str:
    out = io.StringIO()
    call_command(*command, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def atomic_gate(gate, atomic_moto_server, monkeypatch, settings):
    """The authorizer and Django's mirror writes both through the one-request-at-a-time door."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", atomic_moto_server)
    # The door queues every concurrent request: on a busy machine the last waits longer than the 2 s a
    # Lambda would (a timeout denies, see test_faults.py); these tests count atomicity, not speed.
    monkeypatch.setenv("AUTHORIZER_DYNAMODB_TIMEOUT", "60")
    settings.MIRROR_ENDPOINT_URL = atomic_moto_server
    gate.reset()
    return gate


@pytest.mark.parametrize("calls, granted", [(20, 5), (50, 17), (100, 50)])
def test_n_calls_at_once_against_g_credits_allow_exactly_g_for_each_customer(
    atomic_gate, alice, bob, products, mirror, committed, calls, granted
):
    weather = products["weather"]
    with committed():
        credits_grant(customer=alice, product=weather, amount=granted)
        credits_grant(customer=bob, product=weather, amount=granted)
        second, _ = credential_create(customer=alice)  # alice's other program spends the same credits
    tokens = [token_for(alice), token_for(alice, credential=second), token_for(bob)]
    # alice (with both her credentials) and bob each make `calls` calls, in every event kind, interleaved.
    plan = [(tokens[i % 2], EVENT_KINDS[i % 3]) for i in range(calls)]
    plan = [
        step
        for pair in zip(plan, [(tokens[2], EVENT_KINDS[i % 3]) for i in range(calls)], strict=False)
        for step in pair
    ]
    threads = min(len(plan), 50)
    start = threading.Barrier(threads)

    def one_call(i: int) -> tuple[str, bool]:
        token, kind = plan[i]
        if i < threads:  # the first of each thread's calls all at once, the rest as they come
            start.wait()
        answer = call(atomic_gate, token, kind=kind)
        return (answer.get("context", {}).get("customerId"), allowed(answer))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(one_call, range(len(plan))))

    allows = Counter(customer for customer, ok in results if ok)
    assert allows == Counter({alice.public_id: granted, bob.public_id: granted})
    assert mirror.balance(alice, weather)["used"] == mirror.balance(bob, weather)["used"] == granted
    with committed():
        run("sync_usage")
    assert {b.customer_id: (b.granted, b.used) for b in Balance.objects.all()} == {
        alice.pk: (granted, granted),
        bob.pk: (granted, granted),
    }


@pytest.mark.django_db(transaction=True)
def test_grants_landing_while_calls_run_are_all_spendable_and_never_clobber_usage(atomic_gate, alice, products, mirror):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=10)  # committed: the mirror is written at once
    token = token_for(alice)
    spenders, calls_each, granters, grant = 16, 5, 5, 4
    start = threading.Barrier(spenders + granters)

    def spender(_) -> int:
        start.wait()
        return sum(allowed(call(atomic_gate, token)) for _ in range(calls_each))

    def granter(_) -> int:
        try:
            start.wait()
            credits_grant(customer=alice, product=weather, amount=grant)  # its own connection and commit
            return 0
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=spenders + granters) as pool:
        during = sum(pool.map(lambda job: job[0](job[1]), [(spender, i) for i in range(spenders)] +
                              [(granter, i) for i in range(granters)]))  # fmt: skip
    after = 0
    while allowed(call(atomic_gate, token)):
        after += 1

    total = 10 + granters * grant
    assert during + after == total  # every credit granted was spendable once, however the writes interleaved
    item = mirror.balance(alice, weather)
    assert (item["granted"], item["used"]) == (total, total)
    run("sync_usage")
    balance = Balance.objects.get()
    assert (balance.granted, balance.used) == (total, total)
    assert run("sync_mirror", "--check").strip() == "no drift: the mirror matches Postgres"


# --- Webhooks ------------------------------------------------------------------------------------

LINES = [  # (order, line, email, product, quantity)
    ("L1", "", "ana@example.com", "weather", 10),
    ("L2", "", "ana@example.com", "maps", 20),
    ("L3", "", "ben@example.com", "weather", 5),
    ("L4", "", "ben@example.com", "weather", 7),
    ("L5", "", "cy@example.com", "WTHR-100", 3),
    ("L6", "", "alice@example.com", "maps", 4),
    ("L7", "1", "dee@example.com", "weather", 9),
    ("L7", "2", "dee@example.com", "weather", 11),
]


def deliveries() -> list[tuple[str, str, dict]]:
    """Each line three times, encoded as a retry might: JSON, form data, JSON with the email respelled."""
    out = []
    for order, line, email, product, quantity in LINES:
        data = {"order_id": order, "email": email, "product": product, "quantity": quantity}
        if line:
            data["line_id"] = line
        out += [
            (f"{order}/{line}", "application/json", data),
            (f"{order}/{line}", "application/x-www-form-urlencoded", data),
            (f"{order}/{line}", "application/json", data | {"email": f"  {email.upper()} "}),
        ]
    return out


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_distinct_and_repeated_grant_each_order_line_once(
    live_server, mirror, alice, products, mailoutbox, settings
):
    # 24 requests at once on a busy 2-core machine: a mirror write may wait on moto longer than
    # the 2 s a deployment allows, and would then be left to the next minute's run (the outbox).
    # This test counts grants and the after-commit writes, not latency: give them time.
    settings.MIRROR_TIMEOUT_SECONDS = 60
    url = f"{live_server.url}{ZAPIER_URL}"
    sends = deliveries()
    start = threading.Barrier(len(sends))

    def deliver(send) -> tuple[str, int, dict]:
        key, content_type, data = send
        body = urlencode(data) if content_type.endswith("urlencoded") else None
        headers = {"Authorization": f"Bearer {django_settings.ZAPIER_WEBHOOK_SECRET}"}
        start.wait()
        if body is None:
            response = requests.post(url, json=data, headers=headers, timeout=60)
        else:
            response = requests.post(url, data=body, headers=headers | {"Content-Type": content_type}, timeout=60)
        return key, response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=len(sends)) as pool:
        results = list(pool.map(deliver, sends))

    by_line: dict[str, list] = {}
    for key, status, body in results:
        by_line.setdefault(key, []).append((status, body))
    for key, answers in by_line.items():
        assert sorted(status for status, _ in answers) == [200, 200, 201], (key, answers)
        assert len({repr(sorted(body.items())) for _, body in answers}) == 1, key  # one answer, however asked
    assert Purchase.objects.count() == LedgerEntry.objects.count() == len(LINES)
    assert all(p.entries.count() == 1 for p in Purchase.objects.all())
    balances = Balance.objects.select_related("customer", "product")
    granted = {(b.customer.email, b.product.slug): b.granted for b in balances}
    assert granted == {
        ("ana@example.com", "weather"): 10, ("ana@example.com", "maps"): 20, ("ben@example.com", "weather"): 12,
        ("cy@example.com", "weather"): 3, ("alice@example.com", "maps"): 4, ("dee@example.com", "weather"): 20,
    }  # fmt: skip
    assert Customer.objects.count() == User.objects.count() == 5  # four new, and alice
    assert Credential.objects.count() == 5  # one for each new customer, alice's own
    assert sorted(len(m.to) for m in mailoutbox) == [1] * len(LINES)  # one email per order line
    assert sum("credentials" in m.subject for m in mailoutbox) == 4  # a welcome for each new customer
    assert_balances_are_the_ledgers_sums()
    # And the mirror, written after each commit in whatever order they came, is what Postgres says:
    # every write was made by the requests themselves, none left to the scheduled run.
    assert list(MirrorOutbox.objects.values_list("scope", "ref", "error")) == []
    assert run("sync_mirror", "--check").strip() == "no drift: the mirror matches Postgres"
