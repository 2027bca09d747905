"""A refund while the gate spends: the authorizer's real decisions, over HTTP to moto (one request at a time,
as DynamoDB applies an item's writes), racing a refund that takes every unspent credit back. Whatever the
interleaving, nothing is spent twice: what the gate allowed plus what was taken back never exceeds what was
granted, and once usage comes back the balance is never below zero (invariant 8)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ledger.models import Balance, LedgerEntry
from ledger.store.models import RefundLine
from ledger.store.orders import OrderLine, StoreOrder, order_record
from ledger.store.refunds import refund_record
from ledger.usage import mirror_usage_pull
from tests.test_gate import call, effect, token_for


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("calls", [40, 140])
def test_a_refund_racing_the_gate_never_takes_back_what_was_spent(
    gate, alice, products, mirror, atomic_moto_server, monkeypatch, calls
):
    weather = products["weather"]
    order_record(  # committed for real: its after-commit write puts the item in the mirror
        order=StoreOrder(
            source="shopify", order_id="450789469", email=alice.email, name="Alice",
            lines=[OrderLine(line_id="466157049", quantity=1, product_ref="WTHR-100", sku="WTHR-100")],
        )
    )  # fmt: skip
    assert mirror.balance(alice, weather)["granted"] == 1  # WTHR-100 is 1 credit a unit here
    from ledger.services import product_upsert

    product_upsert(slug="weather", name="Weather API", skus=["WTHR-100:100"])
    order_record(
        order=StoreOrder(
            source="shopify", order_id="450789470", email=alice.email, name="Alice",
            lines=[OrderLine(line_id="466157050", quantity=1, product_ref="WTHR-100", sku="WTHR-100")],
        )
    )  # fmt: skip
    assert mirror.balance(alice, weather)["granted"] == 101
    monkeypatch.setenv("AWS_ENDPOINT_URL", atomic_moto_server)
    monkeypatch.setenv("AUTHORIZER_DYNAMODB_TIMEOUT", "60")
    gate.reset()
    token = token_for(alice)
    start = threading.Barrier(9)

    def spend(i: int) -> list[str]:
        start.wait()
        return [effect(call(gate, token)) for _ in range(calls // 8)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        spending = [pool.submit(spend, i) for i in range(8)]
        start.wait()
        recorded = refund_record(refund_id="509562969", order_id="450789470", lines={"466157050": 1})
        allowed = sum(e == "Allow" for f in spending for e in f.result())

    mirror_usage_pull()
    balance = Balance.objects.get(customer=alice, product=weather)
    [line] = RefundLine.objects.all()
    assert line.credits_claimed == 100 and line.credits_taken + line.credits_spent == 100
    assert allowed + recorded.taken <= 101  # no credit both spent and taken back
    assert balance.used == allowed and balance.granted == 101 - recorded.taken
    assert balance.remaining >= 0
    item = mirror.balance(alice, weather)
    assert item["used"] == allowed and item["granted"] == balance.granted and item["used"] <= item["granted"]
    assert LedgerEntry.objects.filter(kind="refund").count() == (1 if recorded.taken else 0)
