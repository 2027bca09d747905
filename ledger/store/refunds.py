"""Refunds and cancellations take unspent credits back (invariant 8, docs/architecture.md).

`refund_record` (Shopify's `refunds/create`): for each refunded line, quantity × the line's
credits per unit, cut to what earlier refunds left of the line. `order_cancel`
(`orders/cancelled`): everything the order's lines still hold. Either way only what the
customer has not spent is taken back, with a ledger entry of kind `refund` per line (linked to
the purchase and to its `RefundLine`); what was spent already is recorded on the `RefundLine`
for staff: the balance never goes below zero. Idempotent by the store's refund id (a
cancellation's is `cancelled:<order id>`), and under the order's lock, so a refund never runs
beside the order's own delivery or another refund of it.

"Spent" is what the gate has spent. The refund first *freezes* the gate's item: one write sets its
`ceiling` below any `used`, so the gate refuses the balance's calls from then on, and returns the
item, whose `used` is now final; what Postgres has not recorded of it is recorded as usage. So no
call can spend a credit being taken back, and no balance goes below zero. The write after the
commit (the balance's new version) sets the item as Postgres then has it, which lifts the freeze:
calls of that balance are refused for the few milliseconds of the refund's transaction. A
take-back that rolls back writes the item back as Postgres still has it; a process that dies in
between leaves it frozen (the customer spends less, never more) until `sync_mirror` rewrites it
(the daily `sync_mirror --check` reports it).
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


def _gate_freeze(balance: Balance) -> int | None:
    """Stop the gate spending this balance and return what it has spent: one conditional write sets the
    item's `ceiling` below any `used` (the gate allows a call only while `used <= ceiling`) and returns
    the item, whose `used` can no longer grow. The write after the commit (a new version) sets the
    item as Postgres then has it. None: no mirror, or no item (the gate cannot spend it)."""
    from botocore.exceptions import ClientError

    if not settings.MIRROR_ENABLED:
        return None
    try:
        item = mirror_client().update_item(
            TableName=settings.MIRROR_TABLE,
            Key=m.balance_key(balance.customer.public_id, balance.product.slug),
            UpdateExpression="SET #ceiling = :frozen",
            ConditionExpression="attribute_exists(#pk)",
            ExpressionAttributeNames={"#pk": m.PK, "#ceiling": m.CEILING},
            ExpressionAttributeValues={":frozen": {"N": "-1"}},
            ReturnValues="ALL_NEW",
        )["Attributes"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return None
        raise
    return int(plain(item[m.USED])) if m.USED in item else 0


def _fences_undo(balance_ids: list[int]) -> None:
    """The take-back rolled back: give the fenced items back what Postgres holds (at their same version).
    If even that fails, the item only lets the customer spend less; `sync_mirror` repairs it."""
    from ledger.mirror.items import balances_for_mirror
    from ledger.mirror.writes import balance_write

    try:
        for balance in balances_for_mirror(Balance.objects.filter(pk__in=balance_ids)):
            balance_write(mirror_client(), balance, force=True)
    except Exception:
        logger.exception("Balances %s: their fenced mirror items could not be restored", balance_ids)


def _allocate(group: list[tuple[Purchase, int, int]], unspent: int) -> list[int]:
    """Per claim, what can be taken back of `unspent`, in order."""
    taken = []
    for _, _, claimed in group:
        taken.append(min(claimed, unspent))
        unspent -= taken[-1]
    return taken


def _unspent(balance: Balance, refund: StoreRefund, fenced: list[int]) -> int:
    """What the balance holds unspent, with the gate stopped and its spending recorded first."""
    gate_used = _gate_freeze(balance)
    if gate_used is not None:
        fenced.append(balance.pk)
    if gate_used is not None and gate_used > balance.used:
        usage_record(
            customer=balance.customer,
            product=balance.product,
            amount=gate_used - balance.used,
            reason=f"gate: {gate_used} used in all (read before {refund})",
        )
        balance.used = gate_used
    return max(0, balance.granted - balance.used)


def _take_back(
    refund: StoreRefund, claims: list[tuple[Purchase, int, int]], why: str, fenced: list[int]
) -> list[RefundLine]:
    """Take back `claimed` credits of each (purchase, units, claimed), as far as each balance holds them unspent."""
    by_balance: dict[tuple[int, int], list[tuple[Purchase, int, int]]] = defaultdict(list)
    lines = []
    for purchase, units, claimed in claims:
        if purchase.status == Purchase.Status.APPLIED and claimed > 0:
            by_balance[(purchase.customer_id, purchase.product_id)].append((purchase, units, claimed))  # type: ignore[index]
        else:  # unmatched, another product, or nothing left of the line: recorded, nothing to take
            lines.append(RefundLine(refund=refund, purchase=purchase, quantity=units))
    for (customer_id, product_id), group in sorted(by_balance.items()):  # balances locked in (customer, product) order
        balance = (
            Balance.objects.select_for_update(of=("self",))
            .select_related("customer", "product")
            .get(customer_id=customer_id, product_id=product_id)
        )
        taken = _allocate(group, _unspent(balance, refund, fenced))
        for (purchase, units, claimed), took in zip(group, taken, strict=True):
            line = RefundLine(
                refund=refund,
                purchase=purchase,
                quantity=units,
                credits_claimed=claimed,
                credits_taken=took,
                credits_spent=claimed - took,
            )
            if took:
                line.entry = LedgerEntry.objects.create(
                    customer_id=customer_id,
                    product_id=product_id,
                    kind=LedgerEntry.Kind.REFUND,
                    amount=-took,
                    purchase=purchase,
                    reason=f"{why}: {took} of {claimed} credits taken back"
                    + (f", {claimed - took} already spent" if claimed > took else ""),
                )
            Purchase.objects.filter(pk=purchase.pk).update(credits_refunded=F("credits_refunded") + claimed)
            lines.append(line)
        if sum(taken) or balance.pk in fenced:  # a new version: the write after the commit unfreezes the item
            Balance.objects.filter(pk=balance.pk).update(
                granted=F("granted") - sum(taken), version=F("version") + 1, updated=timezone.now()
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


def _fenced_atomic(take: Any) -> Any:
    """Run `take(fenced=[...])` in a transaction; if it does not commit, un-fence the items it fenced."""

    def run(**kwargs: Any) -> RefundRecorded:
        fenced: list[int] = []
        try:
            with transaction.atomic():
                return take(fenced=fenced, **kwargs)
        except BaseException:
            if fenced:  # rolled back (to its savepoint, inside a caller's transaction): Postgres is as it was
                _fences_undo(fenced)
            raise

    return run


def _refund_record(
    *, refund_id: str, order_id: str, lines: dict[str, int], note: str = "", payload: dict[str, Any] | None = None,
    fenced: list[int],
) -> RefundRecorded:  # fmt: skip
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
    return _finish(refund, _take_back(refund, claims, why, fenced))


def _order_cancel(
    *, order_id: str, reason: str = "", payload: dict[str, Any] | None = None, fenced: list[int]
) -> RefundRecorded:
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
    return _finish(refund, _take_back(refund, claims, why, fenced))


_refund_take = _fenced_atomic(_refund_record)
_cancel_take = _fenced_atomic(_order_cancel)


def refund_record(
    *, refund_id: str, order_id: str, lines: dict[str, int], note: str = "", payload: dict[str, Any] | None = None
) -> RefundRecorded:
    """A store refund of `lines` ({line item id: units}) of an order: their unspent credits taken back, once.

    Lines we never recorded (another order's, or not sold through us) are ignored and logged."""
    recorded: RefundRecorded = _refund_take(
        refund_id=refund_id, order_id=order_id, lines=lines, note=note, payload=payload
    )
    return recorded


def order_cancel(*, order_id: str, reason: str = "", payload: dict[str, Any] | None = None) -> RefundRecorded:
    """The order is cancelled: every unspent credit its lines still hold is taken back, once."""
    recorded: RefundRecorded = _cancel_take(order_id=order_id, reason=reason, payload=payload)
    return recorded
