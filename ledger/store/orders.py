"""A store order's lines, recorded once whichever door they came through, and granted in one transaction.

Both doors call `order_record`: the Zapier webhook (one line, or the order's lines as
comma-separated fields) and Shopify's `orders/paid` (ledger/store/shopify.py). A line is
keyed by the store's order id and line item id (the unique index on Purchase), so a
line first seen on one door and then on the other is the same line: nothing granted.

The whole order is one transaction under the order's lock (a Postgres advisory lock on
its id): concurrent deliveries of one order, from either door, take turns, and each sees
what the one before it committed. Its credits are granted per (customer, product): one
balance lock, one ledger entry per line, one outbox row, so a 10-line order of 2
products makes 2 mirror writes after the commit.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import Customer, normalize_email, normalize_name
from accounts.services import customer_get_or_create
from ledger.emails import purchase_email_send
from ledger.mirror.outbox import mirror_outbox_add
from ledger.models import Balance, LedgerEntry, Purchase
from ledger.store.packs import Pack, pack_by_ref, packs_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrderLine:
    """One line as a door sent it. `product_ref`: what names the product (a SKU, a slug, a variant)."""

    line_id: str
    quantity: int
    product_ref: str
    sku: str = ""
    variant_id: str = ""
    price: Decimal | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreOrder:
    source: Purchase.Source
    order_id: str
    email: str  # "" when the order has none: its lines are stored for staff
    name: str
    lines: list[OrderLine]
    currency: str = ""


@dataclass(frozen=True)
class OrderRecorded:
    purchases: list[Purchase]  # one per line, in the order's order
    created: list[bool]  # per line: False = recorded before (a redelivery, or the other door)

    @property
    def any_created(self) -> bool:
        return any(self.created)


@dataclass(frozen=True)
class PurchaseRecorded:
    purchase: Purchase
    created: bool  # False: a repeated delivery of a line already recorded; nothing changed


class PurchaseConflict(Exception):
    """An order line already recorded arrived again with different content: nothing changed."""

    def __init__(self, purchase: Purchase, differences: list[str]):
        self.purchase = purchase
        self.differences = differences
        super().__init__(f"{purchase} was already recorded with {', '.join(differences)}; nothing changed.")


def order_lock(order_id: str) -> None:
    """Hold the order's lock until the transaction ends: deliveries, refunds and cancellations of one
    order take turns (each then sees what the one before committed)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"store-order:{order_id}"])


def _packs(order: StoreOrder) -> list[Pack | None]:
    """Each line's pack: Shopify lines by SKU, else variant id; Zapier lines by slug or SKU."""
    if order.source == Purchase.Source.ZAPIER:
        return [pack_by_ref(line.product_ref) for line in order.lines]
    by_sku, _ = packs_for(skus=[line.sku for line in order.lines])
    # Variant ids only for the lines no SKU mapped (a null SKU, a T-shirt): often none, no query.
    _, by_variant = packs_for(variant_ids=[line.variant_id for line in order.lines if line.sku not in by_sku])
    return [by_sku.get(line.sku) or by_variant.get(line.variant_id) for line in order.lines]


def _same_line(stored: Purchase, *, email: str, pack: Pack | None, line: OrderLine) -> list[str]:
    """How a stored line differs from this delivery of it (what a Zapier retry must match)."""
    differences = []
    if stored.email and email and stored.email != email:
        differences.append(f"email {stored.email}")
    if stored.quantity != line.quantity:
        differences.append(f"quantity {stored.quantity}")
    same_product = stored.product_ref == line.product_ref or (pack is not None and stored.product_id == pack.product.pk)
    if not same_product:
        differences.append(f"product {stored.product_ref}")
    return differences


def _stored_line(stored: dict[str, Purchase], order: StoreOrder, line: OrderLine) -> Purchase | None:
    """The line as recorded before, if it was. A Zapier one-line order sent without a line id is the
    same line as the order's only line from the other door (and the other way round)."""
    if line.line_id in stored:
        return stored[line.line_id]
    if len(order.lines) == 1 and len(stored) == 1 and ("" in stored or not line.line_id):
        return next(iter(stored.values()))
    return None


def _status(order: StoreOrder, pack: Pack | None) -> Purchase.Status:
    if pack is None:
        return Purchase.Status.UNMATCHED if order.source == Purchase.Source.ZAPIER else Purchase.Status.OTHER
    return Purchase.Status.APPLIED if order.email else Purchase.Status.NO_EMAIL


def _customer_for(email: str, name: str) -> tuple[Customer, Any, str | None]:
    """The buyer's customer (one query when known), else customer_get_or_create's new one."""
    customer = Customer.objects.alias(email_ci=Lower("email")).filter(email_ci=email).first()
    if customer is not None:
        return customer, None, None
    return customer_get_or_create(email=email, name=name)


def _balance_add(customer: Customer, product_id: int, credits: int) -> Balance:
    """Add `credits` to the (customer, product) balance, created if new, in one statement that locks
    its row until the transaction ends: its version moves (the mirror item changes) and the
    low-balance email is re-armed. Returns the balance as it is now."""
    return Balance.objects.raw(
        "INSERT INTO ledger_balance (customer_id, product_id, granted, used, updated, version)"
        " VALUES (%s, %s, %s, 0, now(), 1)"
        " ON CONFLICT (customer_id, product_id) DO UPDATE SET granted = ledger_balance.granted + EXCLUDED.granted,"
        " version = ledger_balance.version + 1, low_balance_notified = NULL, updated = EXCLUDED.updated"
        " RETURNING id, customer_id, product_id, granted, used, version",
        [customer.pk, product_id, credits],
    )[0]


def _grant(purchases: list[Purchase], customer: Customer) -> None:
    """Grant the purchases' credits (they are APPLIED, unsaved): per product one statement adds them to
    the balance (under its row lock), then the purchases, their ledger entries and one outbox row.
    Sets each purchase's `remaining_after`."""
    by_product: dict[int, list[Purchase]] = defaultdict(list)
    for purchase in purchases:
        by_product[purchase.product_id].append(purchase)  # type: ignore[index]  # APPLIED: has a product
    for product_id, lines in sorted(by_product.items()):  # balances locked in product order, as everywhere
        balance = _balance_add(customer, product_id, sum(p.credits for p in lines))
        remaining = balance.granted - balance.used - sum(p.credits for p in lines)
        for purchase in lines:
            remaining += purchase.credits
            purchase.remaining_after = remaining
        Purchase.objects.bulk_create(lines)
        LedgerEntry.objects.bulk_create(
            LedgerEntry(
                customer=customer, product_id=product_id, kind=LedgerEntry.Kind.PURCHASE, amount=p.credits, purchase=p
            )
            for p in lines
        )
        mirror_outbox_add(balances=[balance])


@transaction.atomic
def order_record(*, order: StoreOrder) -> OrderRecorded:
    """Record an order's lines once each and grant the credits of those whose product is known.

    Lines recorded before (a redelivery, the other door) change nothing; a Zapier line that
    arrives again with another email, product or quantity raises PurchaseConflict and the
    whole delivery writes nothing. A line no pack maps is stored: unmatched (Zapier: staff
    pick the product) or `other` (Shopify: a T-shirt in the order). An order without an
    email is stored as `no_email` for staff. Emails go out after the commit.
    """
    email = normalize_email(order.email) if order.email else ""
    name = normalize_name(order.name)
    order_lock(order.order_id)
    stored = {p.line_id: p for p in Purchase.objects.filter(order_id=order.order_id).select_related("customer")}
    packs = _packs(order)
    now = timezone.now()
    results: list[Purchase | None] = []
    new: list[Purchase] = []
    for line, pack in zip(order.lines, packs, strict=True):
        before = _stored_line(stored, order, line)
        if before is not None:
            if order.source == Purchase.Source.ZAPIER:
                differences = _same_line(before, email=email, pack=pack, line=line)
                if differences:
                    logger.warning("Purchase %s: delivered again with different content (%s)", before, differences)
                    raise PurchaseConflict(before, differences)
            logger.info("Purchase %s: delivered again (%s door); nothing changed", before, order.source)
            results.append(before)
            continue
        status = _status(order, pack)
        purchase = Purchase(
            source=order.source,
            order_id=order.order_id,
            line_id=line.line_id,
            email=email,
            name=name,
            product_ref=line.product_ref[:128],
            quantity=line.quantity,
            credits_per_unit=pack.credits_per_unit if pack else 1,
            # A line without a buyer keeps its pack's product, for staff to grant once they know who bought it.
            product=pack.product if pack and status != Purchase.Status.UNMATCHED else None,
            price=line.price,
            currency=order.currency,
            status=status,
            payload=line.payload,
            received=now,
        )
        results.append(None)
        new.append(purchase)
    applied = [p for p in new if p.status == Purchase.Status.APPLIED]
    credential = secret = None
    if applied:
        customer, credential, secret = _customer_for(email, name)
        for purchase in applied:
            purchase.customer, purchase.applied = customer, now
        applied[0].created_customer = secret is not None
        _grant(applied, customer)
    others = [p for p in new if p.status != Purchase.Status.APPLIED]
    if others:
        Purchase.objects.bulk_create(others)
        for purchase in others:
            logger.warning("Purchase %s: %s (%s), stored for staff", purchase, purchase.status, purchase.product_ref)
    for purchase in applied:
        logger.info(
            "Purchase %s: %s %s credits for %s", purchase, purchase.credits, purchase.product, purchase.customer
        )
    if applied:  # one email for the order's lines: the welcome email (with the secret) or "credits added"
        transaction.on_commit(
            partial(
                purchase_email_send,
                purchase_id=applied[0].pk,
                client_id=credential.client_id if credential else None,
                secret=secret,
                purchase=applied[0],  # as recorded here, with its customer and product: not read again
                others=applied[1:],
            )
        )
    fresh = iter(new)
    purchases = [p if p is not None else next(fresh) for p in results]
    return OrderRecorded(purchases=purchases, created=[p is None for p in results])


@transaction.atomic
def purchase_record(
    *,
    source: Purchase.Source,
    order_id: str,
    line_id: str = "",
    email: str,
    name: str = "",
    product_ref: str,
    quantity: int,
    payload: dict[str, Any] | None = None,
) -> PurchaseRecorded:
    """Record one order line once (order_record with one line), and grant its credits if its product
    is known (a slug: credits; a SKU: quantity × its pack's credits per unit).

    A new email gets a customer and a credential; the email (welcome with the
    credentials, or credits added) goes out after the transaction commits. An
    unknown product is stored as unmatched for staff to apply. A repeated
    delivery, even at the same moment, changes nothing and returns the stored
    purchase (created=False); one with different content raises PurchaseConflict.
    """
    if quantity <= 0:
        raise ValidationError("A purchase must be for a positive number of credits.", code="not_positive")
    line = OrderLine(line_id=line_id, quantity=quantity, product_ref=product_ref, payload=payload or {})
    recorded = order_record(order=StoreOrder(source=source, order_id=order_id, email=email, name=name, lines=[line]))
    return PurchaseRecorded(purchase=recorded.purchases[0], created=recorded.created[0])
