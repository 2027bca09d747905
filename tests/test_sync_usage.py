"""`sync_usage`: what the gate spent comes into the ledger once, however often it runs."""

import io

from django.core.management import call_command

from ledger.mirror.outbox import mirror_outbox_write
from ledger.models import Balance, LedgerEntry, MirrorOutbox
from ledger.services import credits_grant


def run() -> str:
    out = io.StringIO()
    call_command("sync_usage", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def usage_entries(customer, product) -> list[tuple[int, str]]:
    entries = LedgerEntry.objects.filter(customer=customer, product=product, kind=LedgerEntry.Kind.USAGE)
    return list(entries.order_by("id").values_list("amount", "reason"))


def test_it_records_only_what_is_new_so_a_second_run_changes_nothing(
    mirror, alice, bob, products, django_capture_on_commit_callbacks
):
    weather, maps = products["weather"], products["maps"]
    with django_capture_on_commit_callbacks(execute=True):
        credits_grant(customer=alice, product=weather, amount=100)
        credits_grant(customer=alice, product=maps, amount=100)
        credits_grant(customer=bob, product=weather, amount=100)
    mirror.spend(alice, weather, used=7)
    mirror.spend(alice, maps, used=4)

    with django_capture_on_commit_callbacks(execute=True):
        out = run()
    assert "11 credit(s) of usage recorded on 2 balance(s)" in out
    with django_capture_on_commit_callbacks(execute=True):
        assert "0 credit(s) of usage recorded" in run()

    assert usage_entries(alice, weather) == [(-7, "gate: 7 used in all")]
    assert usage_entries(alice, maps) == [(-4, "gate: 4 used in all")]
    assert usage_entries(bob, weather) == []
    assert Balance.objects.get(customer=alice, product=weather).used == 7
    assert mirror.balance(alice, weather)["used"] == 7  # usage is never written back

    mirror.spend(alice, weather, used=10)
    run()
    run()
    assert usage_entries(alice, weather) == [(-7, "gate: 7 used in all"), (-3, "gate: 10 used in all")]
    assert Balance.objects.get(customer=alice, product=weather).remaining == 90


def test_it_also_writes_pending_items_again(mirror, alice, products):
    mirror_outbox_write()  # what the fixtures recorded (the products' routes), as their commits would have
    credits_grant(customer=alice, product=products["weather"], amount=5)  # its after-commit write never ran
    MirrorOutbox.objects.update(attempts=1, error="throttled")

    assert "pending mirror writes: 1 done, 0 still failing" in run()
    assert mirror.balance(alice, products["weather"])["granted"] == 5
    assert not MirrorOutbox.objects.exists()


def test_recording_usage_on_many_balances_sends_no_write_to_the_mirror(
    mirror, products, committed, fast_password_hashing
):
    # What Django writes to an item does not change with usage (`used` is the gate's own),
    # so a run that records usage has nothing to write back: only its scan reaches DynamoDB.
    from ledger.mirror.client import mirror_client, mirror_reader
    from tests.authorizer.support import RequestCounter
    from tests.conftest import _customer

    weather = products["weather"]
    customers = [_customer(f"user{i}@example.com", f"User {i}") for i in range(6)]
    with committed():
        for customer in customers:
            credits_grant(customer=customer, product=weather, amount=10)
    for i, customer in enumerate(customers):
        mirror.spend(customer, weather, used=i + 1)

    counters = [RequestCounter(mirror_client()), RequestCounter(mirror_reader())]
    try:
        with committed():  # and whatever it schedules after its commits, run as a real commit would
            out = run()
    finally:
        for counter in counters:
            counter.stop()

    assert "21 credit(s) of usage recorded on 6 balance(s)" in out
    assert [op for counter in counters for op in counter.operations] == ["Scan"]
    assert [Balance.objects.get(customer=c, product=weather).used for c in customers] == [1, 2, 3, 4, 5, 6]
    assert [mirror.balance(c, weather)["used"] for c in customers] == [1, 2, 3, 4, 5, 6]
