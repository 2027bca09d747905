"""Migration ledger.0007: the pending mirror writes of MirrorPending become outbox rows, none lost."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("ledger", "0006_admin_indexes")]
AFTER = [("ledger", "0007_mirror_outbox")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def mirror_off(settings):
    settings.MIRROR_ENABLED = False  # the fixtures' changes record no rows of their own


@pytest.mark.django_db(transaction=True)
def test_pending_writes_become_outbox_rows_and_come_back_when_undone(mirror_off, alice, products):
    from ledger.services import credits_grant

    credits_grant(customer=alice, product=products["maps"], amount=5)
    maps_balance = alice.balances.get(product=products["maps"]).pk
    try:
        old = migrate(BEFORE)
        pending = old.get_model("ledger", "MirrorPending")
        pending.objects.create(item_pk=f"CUSTOMER#{alice.public_id}", item_sk="PRODUCT#maps", error="throttled")
        pending.objects.create(item_pk="API#maps000001", item_sk="ROUTE", error="timeout")
        pending.objects.create(item_pk="CUSTOMER#cus_gone", item_sk="PRODUCT#maps", error="down")  # nothing behind it

        new = migrate(AFTER)
        outbox = new.get_model("ledger", "MirrorOutbox")
        assert sorted(outbox.objects.values_list("scope", "ref", "attempts", "error")) == [
            ("balance", str(maps_balance), 1, "throttled"),
            ("route", "maps000001", 1, "timeout"),
        ]

        old = migrate(BEFORE)  # and back: the outbox's rows become pending writes again
        assert sorted(old.get_model("ledger", "MirrorPending").objects.values_list("item_pk", "item_sk")) == [
            ("API#maps000001", "ROUTE"),
            (f"CUSTOMER#{alice.public_id}", "PRODUCT#maps"),
        ]
    finally:
        call_command("migrate", "ledger", verbosity=0)
