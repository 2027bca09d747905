import pytest
from django.db import DatabaseError, connection, transaction

from ledger.models import LedgerEntry
from ledger.services import credits_grant


@pytest.fixture
def entry(alice, products):
    return credits_grant(customer=alice, product=products["weather"], amount=10)


def test_the_orm_refuses_to_change_an_entry(entry):
    entry.amount = 1_000_000
    with pytest.raises(TypeError, match="append-only"):
        entry.save()
    with pytest.raises(TypeError, match="append-only"):
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=1_000_000)
    assert LedgerEntry.objects.get(pk=entry.pk).amount == 10


def test_the_orm_refuses_to_delete_an_entry(entry):
    with pytest.raises(TypeError, match="append-only"):
        entry.delete()
    with pytest.raises(TypeError, match="append-only"):
        LedgerEntry.objects.all().delete()
    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.parametrize(
    "sql",
    ["UPDATE ledger_ledgerentry SET amount = 1000000 WHERE id = %s", "DELETE FROM ledger_ledgerentry WHERE id = %s"],
)
def test_postgres_itself_refuses_raw_sql_changes(entry, sql):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [entry.pk])
    assert LedgerEntry.objects.get(pk=entry.pk).amount == 10
