"""ledger/failed_calls.py and ledger/access_logs.py: failed calls credited back, once per request id,
from CloudWatch Logs subscription events built as CloudWatch builds them (gzip, base64, up to
10,000 log events), and from Powertools' own sample events."""

import base64
import gzip
import json
import uuid
from functools import partial
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db.models import Sum

from ledger.access_logs import EventUnreadable, failed_calls_event_record, subscription_event_decode
from ledger.models import Balance, LedgerEntry, MirrorOutbox, refund_statuses_parse
from ledger.services import credits_grant, product_upsert, usage_record
from tests.concurrency import at_once

EVENTS = Path(__file__).parent / "events"
MAX_BATCH = 10_000  # log events CloudWatch Logs puts in one subscription delivery at most


def cloudwatch_event(messages: list[str], message_type: str = "DATA_MESSAGE") -> dict:
    """What CloudWatch Logs hands the subscription's function: base64(gzip(JSON))."""
    payload = {
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": "/creditportal/dev/api-access",
        "logStream": "b9b3c2a4f6e1d7c8a9b0c1d2e3f4a5b6",
        "subscriptionFilters": ["creditportal-dev-failed-calls"],
        "logEvents": [
            {"id": f"3{i:055d}", "timestamp": 1764780000000 + i, "message": message}
            for i, message in enumerate(messages)
        ],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


def access_line(customer, product, /, *, status=502, cost=None, request_id=None, **changes) -> str:
    """One access-log line as the stage's JSON format writes it (deploy/template.yaml): every value a string."""
    line = {
        "requestId": request_id or str(uuid.uuid4()),
        "status": str(status),
        "customerId": customer.public_id,
        "product": product.slug,
        "cost": str(product.cost_per_call if cost is None else cost),
        "credentialId": customer.credential.client_id,
        "route": "GET /hello",
        "requestTime": "03/Dec/2026:17:20:00 +0000",
    }
    line.update(changes)
    return json.dumps(line)


def refunds(customer=None):
    entries = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.FAILED_CALL)
    return entries.filter(customer=customer) if customer else entries


@pytest.fixture
def funded(alice, products):
    """alice holds 10 weather credits and 10 maps credits (maps calls cost 2)."""
    for product in products.values():
        credits_grant(customer=alice, product=product, amount=10)
    return products


def test_powertools_sample_events_are_read_and_their_non_access_log_lines_skipped(db):
    for name in ("cloudwatch_logs_powertools.json", "cloudwatch_logs_powertools_policy_level.json"):
        event = json.loads((EVENTS / name).read_text())
        batch = subscription_event_decode(event)
        assert (batch.message_type, batch.log_group) == ("DATA_MESSAGE", "testLogGroup")
        assert batch.messages == ["[ERROR] First test message", "[ERROR] Second test message"]

        counts = failed_calls_event_record(event)
        assert (counts.refunded, counts.skipped, counts.already_refunded) == (0, 2, 0)
        assert counts.skip_reasons == {"malformed": 2}
    assert not LedgerEntry.objects.exists()


def test_a_failed_call_is_credited_back_once_with_its_request_id_and_reaches_the_gate(alice, funded, mirror, committed):
    maps = funded["maps"]
    with committed():
        credits_grant(customer=alice, product=maps, amount=1)  # the mirror item is written
    mirror.spend(alice, maps, used=4)  # the gate spent two calls
    request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

    with committed():
        counts = failed_calls_event_record(cloudwatch_event([access_line(alice, maps, request_id=request_id)]))

    assert (counts.refunded, counts.skipped, counts.already_refunded, counts.credits) == (1, 0, 0, 2)
    entry = refunds().get()
    assert (entry.customer, entry.product, entry.amount, entry.request_id, entry.reason) == (
        alice,
        maps,
        2,
        request_id,
        "502 GET /hello",
    )
    balance = Balance.objects.get(customer=alice, product=maps)
    assert (balance.granted, balance.used) == (13, 0)
    item = mirror.balance(alice, maps)
    assert (item["granted"], item["used"]) == (13, 4)  # spendable again; the gate's usage untouched
    assert not MirrorOutbox.objects.exists()  # written after commit


def test_the_same_batch_delivered_again_credits_nothing_more(alice, funded):
    weather = funded["weather"]
    event = cloudwatch_event([access_line(alice, weather) for _ in range(5)])

    first = failed_calls_event_record(event)
    again = failed_calls_event_record(event)

    assert (first.refunded, first.already_refunded) == (5, 0)
    assert (again.refunded, again.skipped, again.already_refunded) == (0, 0, 5)
    assert refunds().count() == 5
    assert Balance.objects.get(customer=alice, product=weather).granted == 15


def test_overlapping_batches_credit_each_request_once_and_a_line_twice_in_a_batch_once(alice, bob, funded):
    weather, maps = funded["weather"], funded["maps"]
    credits_grant(customer=bob, product=weather, amount=3)
    lines = [access_line(alice, weather), access_line(alice, maps), access_line(bob, weather)]
    failed_calls_event_record(cloudwatch_event(lines[:2]))

    counts = failed_calls_event_record(cloudwatch_event([*lines[1:], lines[2], access_line(bob, weather)]))

    assert (counts.refunded, counts.already_refunded) == (2, 2)
    assert refunds().count() == 4
    assert Balance.objects.get(customer=alice, product=weather).granted == 11
    assert Balance.objects.get(customer=alice, product=maps).granted == 12
    assert Balance.objects.get(customer=bob, product=weather).granted == 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_of_the_same_calls_credit_each_once(alice, bob, products):
    weather, maps = products["weather"], products["maps"]
    for customer in (alice, bob):
        for product in (weather, maps):
            credits_grant(customer=customer, product=product, amount=100)
    lines = [access_line(c, p) for _ in range(30) for c in (alice, bob) for p in (weather, maps)]
    # Four deliveries of overlapping halves, in different orders, all at once.
    batches = [lines, lines[::-1], lines[: len(lines) // 2], lines[len(lines) // 3 :]]
    results = at_once([partial(failed_calls_event_record, cloudwatch_event(batch)) for batch in batches])

    assert sum(r.refunded for r in results) == len(lines) == refunds().count()
    assert sum(r.refunded + r.already_refunded for r in results) == sum(len(b) for b in batches)
    for customer in (alice, bob):
        for product in (weather, maps):
            balance = Balance.objects.get(customer=customer, product=product)
            assert balance.granted == 100 + 30 * product.cost_per_call
            credited = refunds(customer).filter(product=product).aggregate(s=Sum("amount"))["s"]
            assert credited == 30 * product.cost_per_call


def test_every_line_that_cannot_be_credited_is_skipped_counted_and_the_rest_still_credited(alice, bob, funded, caplog):
    weather, maps = funded["weather"], funded["maps"]
    search, _ = product_upsert(slug="search", name="Search API")  # alice holds none of it
    off, _ = product_upsert(slug="legacy", name="Legacy API")
    off.refund_failed_calls = False
    off.save()
    credits_grant(customer=alice, product=off, amount=5)
    maps.refund_statuses = "502-504"
    maps.save()
    good = access_line(alice, weather, request_id="good-1")
    lines = {
        "malformed": [
            "not json at all",
            "[1, 2]",
            access_line(alice, weather, status="five hundred"),
            access_line(alice, weather, cost="2.5"),
            access_line(alice, weather, customerId={"nested": 1}),
        ],
        "unknown_request": [
            access_line(alice, weather, requestId="-"),
            access_line(alice, weather, requestId="x" * 129),
        ],
        "not_failed": [access_line(alice, weather, status=200), access_line(alice, weather, status=403)],
        "not_charged": [
            access_line(alice, weather, customerId="-", product="-", cost="-"),  # the authorizer failed: no Allow
            access_line(alice, weather, cost=0),
            access_line(alice, search),  # no balance: the gate had nothing to spend from
        ],
        "unknown_customer": [access_line(alice, weather, customerId="cus_nobody")],
        "unknown_product": [access_line(alice, weather, product="nothing")],
        "refunds_off": [access_line(alice, off)],
        "status_not_refunded": [access_line(alice, maps, status=500)],
    }
    messages = [line for group in lines.values() for line in group]
    messages.insert(len(messages) // 2, good)
    event = cloudwatch_event(messages)
    event_log = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    event_log["logEvents"].append({"id": "9", "timestamp": 0})  # a log event without a message
    event["awslogs"]["data"] = base64.b64encode(gzip.compress(json.dumps(event_log).encode())).decode()
    caplog.set_level("WARNING", logger="ledger.failed_calls")

    counts = failed_calls_event_record(event)

    expected = {reason: len(group) for reason, group in lines.items()}
    expected["malformed"] += 1
    assert (counts.refunded, counts.credits) == (1, 1)
    assert counts.skip_reasons == expected
    assert counts.skipped == sum(expected.values())
    assert list(refunds().values_list("request_id", flat=True)) == ["good-1"]
    assert Balance.objects.get(customer=alice, product=weather).granted == 11
    assert len([r for r in caplog.records if "Failed call skipped" in r.getMessage()]) == counts.skipped
    assert not Balance.objects.filter(product=search).exists()


def test_a_control_message_does_nothing(alice, funded):
    counts = failed_calls_event_record(cloudwatch_event([access_line(alice, funded["weather"])], "CONTROL_MESSAGE"))
    assert (counts.refunded, counts.skipped, counts.already_refunded) == (0, 0, 0)
    assert not refunds().exists()


def test_a_full_batch_of_ten_thousand_lines_is_credited(alice, funded):
    weather = funded["weather"]
    usage_record(customer=alice, product=weather, amount=10)
    event = cloudwatch_event([access_line(alice, weather) for _ in range(MAX_BATCH)])

    counts = failed_calls_event_record(event)

    assert (counts.refunded, counts.credits) == (MAX_BATCH, MAX_BATCH)
    balance = Balance.objects.get(customer=alice, product=weather)
    assert (balance.granted, balance.used, balance.remaining) == (10 + MAX_BATCH, 10, MAX_BATCH)


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        {"awslogs": "x"},
        {"awslogs": {}},
        {"awslogs": {"data": "not base64!"}},
        {"awslogs": {"data": base64.b64encode(b"not gzip").decode()}},
        {"awslogs": {"data": base64.b64encode(gzip.compress(b"[]")).decode()}},
        {
            "awslogs": {
                "data": base64.b64encode(gzip.compress(b'{"messageType": "DATA_MESSAGE", "logEvents": 1}')).decode()
            }
        },
    ],
)
def test_an_event_that_cannot_be_read_raises_and_writes_nothing(db, event):
    with pytest.raises(EventUnreadable):
        failed_calls_event_record(event)
    assert not LedgerEntry.objects.exists()


def test_the_command_reads_an_event_on_standard_input_and_prints_the_counts(alice, funded):
    weather = funded["weather"]
    lines = [access_line(alice, weather), access_line(alice, weather), "garbage"]
    out = StringIO()
    call_command("record_failed_calls", stdin=StringIO(json.dumps(cloudwatch_event(lines))), stdout=out)
    call_command("record_failed_calls", stdin=StringIO(json.dumps(cloudwatch_event(lines[:1]))), stdout=out)
    assert out.getvalue().splitlines() == [
        "refunded 2 (2 credits), skipped 1 (malformed 1), already refunded 0",
        "refunded 0 (0 credits), skipped 0, already refunded 1",
    ]

    for stdin in ("not json", json.dumps({"awslogs": {"data": "???"}})):
        with pytest.raises(CommandError):
            call_command("record_failed_calls", stdin=StringIO(stdin), stdout=StringIO())
    assert refunds().count() == 2


def test_refunds_count_in_what_the_low_balance_email_sees_and_do_not_rearm_it(alice, products, mailoutbox, committed):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=10)
    # The gate spent 10; 3 of those calls failed and were credited back before usage was recorded.
    failed_calls_event_record(cloudwatch_event([access_line(alice, weather) for _ in range(3)]))
    with committed():
        usage_record(customer=alice, product=weather, amount=10)
    assert Balance.objects.get(customer=alice, product=weather).remaining == 3
    assert mailoutbox == []  # 3 left after refunds (of 13 granted: low is below 2); without them, 0

    with committed():
        usage_record(customer=alice, product=weather, amount=2)  # 1 left: low
    assert [m.subject for m in mailoutbox] == ["Your Weather API credits are running low"]
    failed_calls_event_record(cloudwatch_event([access_line(alice, weather)]))
    with committed():
        usage_record(customer=alice, product=weather, amount=1)
    assert len(mailoutbox) == 1  # a refund does not re-arm the email: a failing API would mail at each failure


@pytest.mark.parametrize(
    ("text", "statuses"),
    [("500-599", set(range(500, 600))), ("502,503, 504", {502, 503, 504}), ("500, 502-503", {500, 502, 503})],
)
def test_refund_statuses_are_numbers_and_ranges_of_5xx(text, statuses):
    assert refund_statuses_parse(text) == statuses


@pytest.mark.parametrize("text", ["", "5xx", "499-505", "404", "503-502", "500,,502", "600"])
def test_refund_statuses_outside_5xx_or_unreadable_are_refused(text):
    with pytest.raises(ValidationError):
        refund_statuses_parse(text)


def test_the_database_refuses_a_second_entry_for_a_request_and_one_without_a_request(alice, funded):
    from django.db import IntegrityError, transaction

    weather = funded["weather"]
    failed_calls_event_record(cloudwatch_event([access_line(alice, weather, request_id="r-1")]))
    for fields in ({"request_id": "r-1"}, {"request_id": ""}):
        with pytest.raises(IntegrityError), transaction.atomic():
            LedgerEntry.objects.create(
                customer=alice, product=weather, kind=LedgerEntry.Kind.FAILED_CALL, amount=1, **fields
            )
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            customer=alice, product=weather, kind=LedgerEntry.Kind.PURCHASE, amount=1, request_id="r-2"
        )


def test_the_balance_api_and_the_portal_show_the_calls_credited_back_per_product(client, alice, bob, funded):
    from django.urls import reverse

    from tests.test_balance_api import balance, get_token

    weather, maps = funded["weather"], funded["maps"]
    credits_grant(customer=bob, product=weather, amount=5)
    lines = [
        access_line(alice, weather),
        access_line(alice, weather),
        access_line(alice, maps),
        access_line(bob, weather),
    ]
    failed_calls_event_record(cloudwatch_event(lines))

    response = balance(client, get_token(client, alice))
    assert response.status_code == 200
    figures = {
        b["product"]: (b["granted"], b["credited_back_calls"], b["credited_back"]) for b in response.json()["balances"]
    }
    assert figures == {"weather": (12, 2, 2), "maps": (12, 1, 2)}  # bob's refund is bob's

    client.force_login(alice.user)
    page = client.get(reverse("account_dashboard"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "2 failed calls credited back (2 credits, in Granted)" in text
    assert "1 failed call credited back (2 credits, in Granted)" in text


def test_admin_shows_the_credited_back_calls_in_the_ledger_and_finds_one_by_request_id(client, staff, alice, funded):
    from django.urls import reverse

    weather = funded["weather"]
    failed_calls_event_record(cloudwatch_event([access_line(alice, weather, request_id="req-in-admin", status=504)]))
    client.force_login(staff)
    url = reverse("admin:ledger_ledgerentry_changelist")

    listed = client.get(url, {"kind__exact": "failed_call"})
    assert listed.status_code == 200
    text = listed.content.decode()
    assert "Failed call credited back" in text and "504 GET /hello" in text
    found = client.get(url, {"q": "req-in-admin"})
    assert found.context["cl"].result_count == 1
    entry = refunds().get()
    page = client.get(reverse("admin:ledger_ledgerentry_change", args=[entry.pk]))
    assert page.status_code == 200 and "req-in-admin" in page.content.decode()


def test_a_product_turned_off_in_admin_credits_nothing_back(client, staff, alice, funded):
    from django.urls import reverse

    from tests.conftest import admin_form_data

    weather = funded["weather"]
    client.force_login(staff)
    url = reverse("admin:ledger_product_change", args=[weather.pk])
    data = admin_form_data(client, url)
    assert (data["refund_failed_calls"], data["refund_statuses"]) == ("on", "500-599")
    del data["refund_failed_calls"]  # the box unticked
    assert client.post(url, data).status_code == 302
    weather.refresh_from_db()
    assert weather.refund_failed_calls is False

    counts = failed_calls_event_record(cloudwatch_event([access_line(alice, weather)]))
    assert (counts.refunded, counts.skip_reasons) == (0, {"refunds_off": 1})

    data = admin_form_data(client, url)
    data.update(refund_failed_calls="on", refund_statuses="599-500")
    refused = client.post(url, data)
    assert refused.status_code == 200 and "only failed calls&#x27; statuses, 500-599" in refused.content.decode()
    weather.refresh_from_db()
    assert weather.refund_failed_calls is False


def test_a_request_id_credited_to_one_customer_credits_no_other(alice, bob, funded):
    weather = funded["weather"]
    credits_grant(customer=bob, product=weather, amount=5)
    failed_calls_event_record(cloudwatch_event([access_line(bob, weather, request_id="shared-1")]))

    counts = failed_calls_event_record(cloudwatch_event([access_line(alice, weather, request_id="shared-1")]))

    assert (counts.refunded, counts.already_refunded) == (0, 1)
    assert list(refunds().values_list("customer__email", flat=True)) == [bob.email]
    assert Balance.objects.get(customer=alice, product=weather).granted == 10
