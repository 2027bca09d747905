"""The overview's rollups under the conditions the ledger meets: migration 0010 builds them from a
ledger that already has entries, and transactions writing at once keep them exact (each customer
counted once among the active, every sum the ledger's)."""

from functools import partial

import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor

from ledger.models import ActiveDay, LedgerEntry
from ledger.overview.rollups import rollups_differences
from tests.concurrency import at_once

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


@pytest.fixture
def mirror_off(settings):
    settings.MIRROR_ENABLED = False


@pytest.mark.django_db(transaction=True)
def test_the_migration_builds_the_rollups_from_the_ledger_and_purchases_already_there(
    mirror_off, alice, bob, staff, products, purchase, past_usage
):
    from ledger.models import LedgerDay
    from ledger.services import credits_adjust

    purchase(alice, products["weather"], 100, days_ago=40)
    purchase(bob, products["maps"], 50)
    past_usage(alice, products["weather"], {0: 3, 5: 4, 45: 2})
    past_usage(bob, products["maps"], {1: 7})
    credits_adjust(customer=bob, product=products["maps"], amount=-5, reason="r", by=staff)
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        migrate([("ledger", "0009_mirror_outbox_key_scope")])  # before the rollups: the tables go
        migrate(leaves)  # 0010 builds them from the rows there
        assert rollups_differences() == dict.fromkeys(rollups_differences(), 0)
        assert LedgerDay.objects.exists()
        assert sum(ActiveDay.objects.values_list("customers", flat=True)) == 2
    finally:
        migrate(leaves)


@pytest.mark.django_db(transaction=True)
def test_transactions_writing_at_once_keep_the_rollups_exact(mirror_off, products):
    from tests.test_overview import customers

    people = customers(3)
    weather, maps = products["weather"], products["maps"]

    def write(n: int) -> None:
        for i in range(10):
            customer = people[(n + i) % 3]
            product = weather if (n * i) % 2 else maps
            with transaction.atomic():
                LedgerEntry.objects.create(customer=customer, product=product, kind="usage", amount=-(1 + i))
                if i % 3 == 0:  # a transaction of two products, in either order
                    LedgerEntry.objects.create(
                        customer=customer, product=maps if product == weather else weather, kind="usage", amount=-1
                    )

    at_once([partial(write, n) for n in range(8)], timeout=60)

    assert LedgerEntry.objects.count() == 8 * (10 + 4)
    assert rollups_differences() == dict.fromkeys(rollups_differences(), 0)
    assert sum(ActiveDay.objects.values_list("customers", flat=True)) == 3
