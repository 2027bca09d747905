from functools import partial

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.models import Balance, LedgerEntry
from ledger.services import credits_adjust, credits_grant, usage_record
from tests.concurrency import at_once


def ledger_sums(customer, product) -> tuple[int, int]:
    """(granted, used) as the ledger alone says."""
    entries = LedgerEntry.objects.filter(customer=customer, product=product)
    granted = entries.exclude(kind=LedgerEntry.Kind.USAGE).aggregate(s=Sum("amount"))["s"] or 0
    used = -(entries.filter(kind=LedgerEntry.Kind.USAGE).aggregate(s=Sum("amount"))["s"] or 0)
    return granted, used


operations = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.integers(1, 500)),
        st.tuples(st.just("adjust"), st.integers(-500, 500).filter(bool)),
        st.tuples(st.just("use"), st.integers(1, 200)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_each_balance_equals_its_ledger_sums_after_any_sequence(ops, alice, staff, products):
    weather = products["weather"]
    with transaction.atomic():
        for op, amount in ops:
            try:
                if op == "grant":
                    credits_grant(customer=alice, product=weather, amount=amount)
                elif op == "adjust":
                    credits_adjust(customer=alice, product=weather, amount=amount, reason="fuzz", by=staff)
                else:
                    usage_record(customer=alice, product=weather, amount=amount)
            except ValidationError:
                pass  # refused adjustments write nothing; the sums below prove it
        balance = Balance.objects.filter(customer=alice, product=weather).first()
        granted, used = ledger_sums(alice, weather)
        if balance is None:
            assert (granted, used) == (0, 0)
        else:
            assert (balance.granted, balance.used, balance.remaining) == (granted, used, granted - used)
        transaction.set_rollback(True)


def test_an_adjustment_below_what_is_used_is_refused_and_writes_nothing(alice, staff, products):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=100)
    usage_record(customer=alice, product=weather, amount=80)
    entries_before = LedgerEntry.objects.count()

    with pytest.raises(ValidationError) as refused:
        credits_adjust(customer=alice, product=weather, amount=-30, reason="goodwill reversal", by=staff)

    assert refused.value.messages == ["This would leave weather with 70 credits granted, below the 80 already used."]
    assert LedgerEntry.objects.count() == entries_before
    balance = Balance.objects.get(customer=alice, product=weather)
    assert (balance.granted, balance.used, balance.remaining) == (100, 80, 20)


def test_an_adjustment_down_to_exactly_what_is_used_is_allowed(alice, staff, products):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=100)
    usage_record(customer=alice, product=weather, amount=80)

    credits_adjust(customer=alice, product=weather, amount=-20, reason="chargeback", by=staff)

    assert Balance.objects.get(customer=alice, product=weather).remaining == 0


@pytest.mark.parametrize("reason", ["", "   "])
def test_an_adjustment_needs_a_reason(alice, staff, products, reason):
    with pytest.raises(ValidationError, match="needs a reason"):
        credits_adjust(customer=alice, product=products["weather"], amount=5, reason=reason, by=staff)
    assert not LedgerEntry.objects.exists()


def test_only_staff_can_adjust(alice, bob, products):
    with pytest.raises(PermissionDenied):
        credits_adjust(customer=alice, product=products["weather"], amount=5, reason="please", by=bob.user)
    assert not LedgerEntry.objects.exists()


def test_usage_is_recorded_even_past_what_is_granted(alice, products):
    # The gate spent it already; the ledger must say so rather than lose it.
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=3)
    usage_record(customer=alice, product=weather, amount=5)
    balance = Balance.objects.get(customer=alice, product=weather)
    assert (balance.granted, balance.used, balance.remaining) == (3, 5, -2)


def test_grants_and_adjustments_move_the_balance_version_and_usage_does_not(alice, staff, products):
    # The version orders what Django writes to the gate's mirror item; usage is the gate's own
    # attribute there, so recording it must not make the item look changed (issue 13).
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=10)
    first = Balance.objects.get(customer=alice, product=weather).version
    credits_adjust(customer=alice, product=weather, amount=1, reason="r", by=staff)
    assert Balance.objects.get(customer=alice, product=weather).version == first + 1
    usage_record(customer=alice, product=weather, amount=1)
    balance = Balance.objects.get(customer=alice, product=weather)
    assert (balance.version, balance.used) == (first + 1, 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_adjustments_of_one_balance_lose_nothing(alice, staff, products):
    weather = products["weather"]
    credits_grant(customer=alice, product=weather, amount=1000)

    def adjust(amount: int) -> None:
        for _ in range(10):
            credits_adjust(customer=alice, product=weather, amount=amount, reason="race", by=staff)

    at_once([partial(adjust, 7), partial(adjust, -3)])

    balance = Balance.objects.get(customer=alice, product=weather)
    assert balance.granted == 1000 + 10 * 7 - 10 * 3
    assert ledger_sums(alice, weather) == (balance.granted, balance.used)
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.ADJUSTMENT).count() == 20


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_grants_create_one_balance(alice, products):
    weather = products["weather"]
    at_once([partial(credits_grant, customer=alice, product=weather, amount=5)] * 4)

    assert Balance.objects.filter(customer=alice, product=weather).count() == 1
    assert Balance.objects.get(customer=alice, product=weather).granted == 20
