"""`sync_mirror`: rewrite every item from Postgres (never usage); `--check` prints drift and fails on any;
`--pending` rewrites only what failed before."""

import io

import pytest
from django.core.management import CommandError, call_command

from authorizer import mirror as items
from ledger.mirror.client import mirror_client
from ledger.models import Balance, DriftCheck, MirrorOutbox
from ledger.services import credits_grant


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("sync_mirror", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def balances(alice, bob, products):
    """Balances made without the mirror seeing them (their after-commit writes never run in a test transaction)."""
    credits_grant(customer=alice, product=products["weather"], amount=10)
    credits_grant(customer=alice, product=products["maps"], amount=20)
    credits_grant(customer=bob, product=products["weather"], amount=30)


def test_it_writes_every_item_with_a_progress_bar_and_never_touches_usage(mirror, balances, alice, bob, products):
    out, _ = run()  # first: creates every item
    assert "5 item(s) written, 0 already current, 0 failed" in out  # 3 balances + 2 routes
    mirror.spend(bob, products["weather"], used=12)
    mirror_client().update_item(  # drift at the same version: someone edited the item by hand
        TableName=mirror.table,
        Key=items.balance_key(bob.public_id, "weather"),
        UpdateExpression="SET granted = :g",
        ExpressionAttributeValues={":g": {"N": "999"}},
    )

    out, err = run()

    assert "1 item(s) written, 4 already current, 0 failed" in out  # only the item that differs
    assert "sync_mirror" in err and "5/5" in err  # tqdm's bar
    assert mirror.balance(bob, products["weather"])["granted"] == 30
    assert mirror.balance(bob, products["weather"])["used"] == 12
    assert mirror.balance(alice, products["maps"])["granted"] == 20
    assert mirror.route("maps000001")["product"] == "maps"


def test_check_prints_each_drift_and_fails_then_passes_after_a_sync(mirror, balances, alice, bob, products):
    run()
    client = mirror_client()
    client.update_item(
        TableName=mirror.table,
        Key=items.balance_key(alice.public_id, "weather"),
        UpdateExpression="SET active = :f",
        ExpressionAttributeValues={":f": {"BOOL": False}},
    )
    client.delete_item(TableName=mirror.table, Key=items.balance_key(bob.public_id, "weather"))
    client.put_item(TableName=mirror.table, Item=items.route_key("gone00001") | {"product": {"S": "weather"}})

    with pytest.raises(CommandError, match="differs from Postgres in 3 way"):
        run("--check")
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("sync_mirror", "--check", stdout=out)
    assert sorted(out.getvalue().splitlines()) == sorted(
        [
            f"CUSTOMER#{alice.public_id} PRODUCT#weather: active is False in the mirror, True in Postgres",
            f"CUSTOMER#{bob.public_id} PRODUCT#weather: missing from the mirror",
            "API#gone00001 ROUTE: in the mirror only (no such row in Postgres)",
        ]
    )

    run()
    out, _ = run("--check")
    assert out.strip() == "no drift: the mirror matches Postgres"
    assert mirror.route("gone00001") is None
    # Each check is recorded for the admin's overview: two that found drift, then one that found none.
    checks = list(DriftCheck.objects.order_by("ran", "id").values_list("result", "differences"))
    assert checks == [("drift", 3), ("drift", 3), ("ok", 0)]
    first = DriftCheck.objects.order_by("ran", "id").first()
    assert f"CUSTOMER#{bob.public_id} PRODUCT#weather: missing from the mirror" in first.detail.splitlines()


def test_check_reports_usage_lost_from_the_mirror(mirror, balances, alice, products):
    from ledger.services import usage_record

    run()
    usage_record(customer=alice, product=products["weather"], amount=4)  # synced from the gate earlier
    run()
    mirror.spend(alice, products["weather"], used=1)  # the mirror forgot what was spent
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("sync_mirror", "--check", stdout=out)
    assert "used is 1 in the mirror, below the 4 recorded in Postgres" in out.getvalue()


def test_a_recreated_item_starts_from_the_usage_postgres_knows(mirror, balances, alice, products):
    from ledger.services import usage_record

    usage_record(customer=alice, product=products["maps"], amount=6)
    run()
    assert mirror.balance(alice, products["maps"])["used"] == 6  # not 0: spent credits are not handed out again


def pending_only(*rows: tuple[str, str]) -> None:
    """The outbox holds these (scope, ref) rows alone, as failed writes: the others' writes ran."""
    MirrorOutbox.objects.all().delete()
    MirrorOutbox.objects.bulk_create([MirrorOutbox(scope=s, ref=r, attempts=1, error="down") for s, r in rows])


def balance_ref(customer, product) -> tuple[str, str]:
    return MirrorOutbox.Scope.BALANCE, str(Balance.objects.get(customer=customer, product=product).pk)


def test_pending_rewrites_only_the_items_whose_write_failed(mirror, balances, alice, bob, products):
    gone = (MirrorOutbox.Scope.BALANCE, "999999999")  # nothing behind it in Postgres any more
    pending_only(balance_ref(alice, products["maps"]), (MirrorOutbox.Scope.ROUTE, "maps000001"), gone)

    out, _ = run("--pending")

    assert "2 item(s) written" in out
    assert mirror.balance(alice, products["maps"])["granted"] == 20
    assert mirror.route("maps000001")["product"] == "maps"
    assert mirror.balance(bob, products["weather"]) is None  # not pending: not written
    assert not MirrorOutbox.objects.exists()


def test_a_sync_that_cannot_reach_the_mirror_fails_and_keeps_what_is_pending(
    mirror, balances, alice, products, settings
):
    from tests.conftest import _free_port

    pending_only(balance_ref(alice, products["maps"]))
    settings.MIRROR_ENDPOINT_URL = f"http://127.0.0.1:{_free_port()}"
    for args in [(), ("--check",)]:
        with pytest.raises(CommandError, match="cannot be read: Could not connect"):
            run(*args)
    check = DriftCheck.objects.get()  # the check that could not read the mirror is recorded, as failed
    assert check.result == DriftCheck.Result.FAILED and "Could not connect" in check.detail
    with pytest.raises(CommandError, match=r"1 item\(s\) could not be written; they stay pending"):
        run("--pending")
    assert "Could not connect" in MirrorOutbox.objects.get().error


def test_a_second_run_over_a_current_mirror_writes_nothing(mirror, balances, alice, products):
    run()
    mirror.spend(alice, products["weather"], used=3)  # the gate's own attribute is not a difference

    out, _ = run()

    assert "0 item(s) written, 5 already current, 0 failed" in out
    assert mirror.balance(alice, products["weather"])["used"] == 3


def test_it_reads_postgres_in_a_fixed_number_of_queries_whatever_the_number_of_balances(
    mirror, balances, products, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.conftest import _customer

    with CaptureQueriesContext(connection) as few:
        run()
    for i in range(12):
        customer = _customer(f"many{i}@example.com", f"Many {i}")
        credits_grant(customer=customer, product=products["weather"], amount=5)
        credits_grant(customer=customer, product=products["maps"], amount=5)

    with django_assert_max_num_queries(len(few.captured_queries)):
        out, _ = run()
    assert "24 item(s) written, 5 already current" in out


def test_a_current_item_loses_its_pending_row(mirror, balances, alice, products):
    run()
    pending_only(balance_ref(alice, products["maps"]))  # failed before this run read Postgres

    out, _ = run()

    assert "0 item(s) written, 5 already current" in out
    assert not MirrorOutbox.objects.exists()


def test_create_leaves_an_item_that_appeared_meanwhile_to_the_versioned_write(mirror, balances, alice, products):
    from ledger.mirror.items import balances_for_mirror
    from ledger.mirror.writes import balance_create, balance_write

    balance = balances_for_mirror(Balance.objects.filter(customer=alice, product=products["maps"])).get()
    assert balance_create(mirror_client(), balance) is True
    mirror.spend(alice, products["maps"], used=7)  # the gate spends on it

    assert balance_create(mirror_client(), balance) is True  # exists: rewritten at its version, `used` kept
    assert mirror.balance(alice, products["maps"])["used"] == 7
    balance.version -= 1  # an older state than the item's: refused
    assert balance_create(mirror_client(), balance) is False
    assert balance_write(mirror_client(), balance, force=True) is False
    assert mirror.balance(alice, products["maps"])["granted"] == 20
