"""`sync_usage`: what the gate spent comes into the ledger once, however often it runs."""

import io

from django.core.management import call_command

from ledger.models import Balance, LedgerEntry, MirrorPending
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
    credits_grant(customer=alice, product=products["weather"], amount=5)  # its after-commit write never ran
    MirrorPending.objects.create(item_pk=f"CUSTOMER#{alice.public_id}", item_sk="PRODUCT#weather", error="throttled")

    assert "pending mirror writes: 1 done, 0 still failing" in run()
    assert mirror.balance(alice, products["weather"])["granted"] == 5
    assert not MirrorPending.objects.exists()
