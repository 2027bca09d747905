"""Refunds and cancellations take unspent credits back (invariant 8, docs/architecture.md).

`refund_record` (Shopify's `refunds/create`): for each refunded line, quantity × the line's
credits per unit, cut to what earlier refunds left of the line. `order_cancel`
(`orders/cancelled`): everything the order's lines still hold. Either way only what the
customer has not spent is taken back, with a ledger entry of kind `refund` per line (linked to
the purchase and to its `RefundLine`); what was spent already is recorded on the `RefundLine`
for staff: the balance never goes below zero. Idempotent by the store's refund id (a
cancellation's is `cancelled:<order id>`), and under the order's lock, so a refund never runs
beside the order's own delivery or another refund of it.

"Spent" is what the gate has spent: its `used` is read from the mirror (consistent read) and
what Postgres has not recorded yet is recorded as usage first. Calls the gate allows between
that read and the mirror write after the commit (milliseconds) can still spend a credit being
taken back; usage sync records them, and the gate refuses the next call.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from authorizer import mirror as m
from ledger.mirror.client import mirror_client
from ledger.mirror.items import plain
from ledger.mirror.outbox import mirror_outbox_add
from ledger.models import Balance, LedgerEntry, Purchase
from ledger.services import usage_record
from ledger.store.models import RefundLine, StoreRefund
from ledger.store.orders import order_lock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefundRecorded:
    refund: StoreRefund
    created: bool  # False: this refund id was recorded before; nothing changed
    lines: list[RefundLine]

    @property
    def taken(self) -> int:
        return sum(line.credits_taken for line in self.lines)

    @property
    def spent(self) -> int:
        return sum(line.credits_spent for line in self.lines)


def _gate_used(balance: Balance) -> int | None:
    """What the gate has spent of this balance (its mirror item's `used`), or None without a mirror item."""
    if not settings.MIRROR_ENABLED:
        return None
    item = (
        mirror_client()
        .get_item(
            TableName=settings.MIRROR_TABLE,
            Key=m.balance_key(balance.customer.public_id, balance.product.slug),
            ProjectionExpression="#used",
            ExpressionAttributeNames={"#used": m.USED},
            ConsistentRead=True,
        )
        .get("Item")
    )
    return None if item is None or m.USED not in item else int(plain(item[m.USED]))


def _take_back(refund: StoreRefund, claims: list[tuple[Purchase, int, int]], why: str) -> list[RefundLine]:
    """Take back `claimed` credits of each (purchase, units, claimed), as far as each balance holds them unspent."""
    by_balance: dict[tuple[int, int], list[tuple[Purchase, int, int]]] = defaultdict(list)
    lines = []
    for purchase, units, claimed in claims:
        if purchase.status == Purchase.Status.APPLIED and claimed > 0:
            by_balance[(purchase.customer_id, purchase.product_id)].append((purchase, units, claimed))  # type: ignore[index]
        else:  # unmatched, another product, or nothing left of the line: recorded, nothing to take
            lines.append(RefundLine(refund=refund, purchase=purchase, quantity=units))
    for (customer_id, product_id), group in by_balance.items():
        balance = (
            Balance.objects.select_for_update(of=("self",))
            .select_related("customer", "product")
            .get(customer_id=customer_id, product_id=product_id)
        )
        gate_used = _gate_used(balance)
        if gate_used is not None and gate_used > balance.used:
            usage_record(
                customer=balance.customer,
                product=balance.product,
                amount=gate_used - balance.used,
                reason=f"gate: {gate_used} used in all (read before {refund})",
            )
            balance.used = gate_used
        unspent = max(0, balance.granted - balance.used)
        taken_in_all = 0
        for purchase, units, claimed in group:
            taken = min(claimed, unspent)
            unspent -= taken
            taken_in_all += taken
            line = RefundLine(
                refund=refund,
                purchase=purchase,
                quantity=units,
                credits_claimed=claimed,
                credits_taken=taken,
                credits_spent=claimed - taken,
            )
            if taken:
                line.entry = LedgerEntry.objects.create(
                    customer_id=customer_id,
                    product_id=product_id,
                    kind=LedgerEntry.Kind.REFUND,
                    amount=-taken,
                    purchase=purchase,
                    reason=f"{why}: {taken} of {claimed} credits taken back"
                    + (f", {claimed - taken} already spent" if claimed > taken else ""),
                )
            Purchase.objects.filter(pk=purchase.pk).update(credits_refunded=F("credits_refunded") + claimed)
            lines.append(line)
        if taken_in_all:
            Balance.objects.filter(pk=balance.pk).update(
                granted=F("granted") - taken_in_all, version=F("version") + 1, updated=timezone.now()
            )
            mirror_outbox_add(balances=[balance])
    RefundLine.objects.bulk_create(lines)
    return lines


def _record(
    *, refund_id: str, order_id: str, kind: StoreRefund.Kind, reason: str, payload: dict[str, Any]
) -> tuple[StoreRefund, bool]:
    order_lock(order_id)
    stored = StoreRefund.objects.filter(source="shopify", refund_id=refund_id).first()
    if stored is not None:
        return stored, False
    refund = StoreRefund.objects.create(
        refund_id=refund_id, order_id=order_id, kind=kind, reason=reason[:2000], payload=payload
    )
    return refund, True


def _finish(refund: StoreRefund, lines: list[RefundLine]) -> RefundRecorded:
    taken = sum(line.credits_taken for line in lines)
    if taken:
        StoreRefund.objects.filter(pk=refund.pk).update(email_status=StoreRefund.EmailStatus.PENDING)
        from ledger.store.emails import refund_email_send

        transaction.on_commit(partial(refund_email_send, refund_id=refund.pk))
    logger.info(
        "%s: %s credits taken back, %s already spent, over %s lines",
        refund,
        taken,
        sum(line.credits_spent for line in lines),
        len(lines),
    )
    return RefundRecorded(refund=refund, created=True, lines=lines)


@transaction.atomic
def refund_record(
    *, refund_id: str, order_id: str, lines: dict[str, int], note: str = "", payload: dict[str, Any] | None = None
) -> RefundRecorded:
    """A store refund of `lines` ({line item id: units}) of an order: their unspent credits taken back, once.

    Lines we never recorded (another order's, or not sold through us) are ignored and logged."""
    refund, created = _record(
        refund_id=refund_id, order_id=order_id, kind=StoreRefund.Kind.REFUND, reason=note, payload=payload or {}
    )
    if not created:
        logger.info("%s: delivered again; nothing changed", refund)
        return RefundRecorded(refund=refund, created=False, lines=list(refund.lines.all()))
    purchases = {
        p.line_id: p for p in Purchase.objects.select_for_update().filter(order_id=order_id, line_id__in=list(lines))
    }
    unknown = sorted(set(lines) - set(purchases))
    if unknown:
        logger.warning("%s: line items %s were never recorded here; ignored", refund, ", ".join(unknown))
    claims = []
    for line_id, units in lines.items():
        purchase = purchases.get(line_id)
        if purchase is not None:
            left = purchase.credits - purchase.credits_refunded
            claims.append((purchase, units, max(0, min(units * purchase.credits_per_unit, left))))
    why = f"Refund {refund_id} of order {order_id}"
    return _finish(refund, _take_back(refund, claims, why))


@transaction.atomic
def order_cancel(*, order_id: str, reason: str = "", payload: dict[str, Any] | None = None) -> RefundRecorded:
    """The order is cancelled: every unspent credit its lines still hold is taken back, once."""
    refund, created = _record(
        refund_id=f"cancelled:{order_id}",
        order_id=order_id,
        kind=StoreRefund.Kind.CANCELLATION,
        reason=reason,
        payload=payload or {},
    )
    if not created:
        logger.info("%s: delivered again; nothing changed", refund)
        return RefundRecorded(refund=refund, created=False, lines=list(refund.lines.all()))
    purchases = list(Purchase.objects.select_for_update().filter(order_id=order_id).order_by("pk"))
    claims = [(p, p.quantity, max(0, p.credits - p.credits_refunded)) for p in purchases]
    why = f"Order {order_id} cancelled" + (f" ({reason})" if reason else "")
    return _finish(refund, _take_back(refund, claims, why))
