"""The only way credits change. Every function writes one ledger entry and
moves the matching balance in the same transaction, under a row lock, so the
balance always equals the ledger's sums."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F

from accounts.models import Customer, User
from ledger.models import Balance, LedgerEntry, Product, ProductApi, ProductSku, Purchase


def _balance_for_update(*, customer: Customer, product: Product) -> Balance:
    """The (customer, product) balance, created if new, locked until the transaction ends."""
    # ON CONFLICT DO NOTHING: two first grants at once both end up locking the same row.
    Balance.objects.bulk_create([Balance(customer=customer, product=product)], ignore_conflicts=True)
    return Balance.objects.select_for_update().get(customer=customer, product=product)


def _entry_apply(
    *,
    customer: Customer,
    product: Product,
    kind: LedgerEntry.Kind,
    amount: int,
    reason: str = "",
    by: User | None = None,
    purchase: Purchase | None = None,
) -> LedgerEntry:
    balance = _balance_for_update(customer=customer, product=product)
    if kind == LedgerEntry.Kind.USAGE:
        # Usage is a fact reported by the gate, not a request: it is recorded
        # even past what is granted (a staff cut can land after the spend).
        granted_delta, used_delta = 0, -amount
    else:
        granted_delta, used_delta = amount, 0
        if balance.granted + amount < balance.used:
            raise ValidationError(
                f"This would leave {product} with {balance.granted + amount} credits granted, "
                f"below the {balance.used} already used.",
                code="below_used",
            )
    entry = LedgerEntry.objects.create(
        customer=customer, product=product, kind=kind, amount=amount, reason=reason, created_by=by, purchase=purchase
    )
    # save(), not a queryset update: post_save tells the gate's mirror (ledger/signals.py).
    balance.granted = F("granted") + granted_delta
    balance.used = F("used") + used_delta
    balance.version = F("version") + 1
    balance.save(update_fields=["granted", "used", "version", "updated"])
    return entry


@transaction.atomic
def credits_grant(*, customer: Customer, product: Product, amount: int, purchase: Purchase | None = None) -> LedgerEntry:
    """Add `amount` purchased credits."""
    if amount <= 0:
        raise ValidationError("A grant must be a positive number of credits.", code="not_positive")
    return _entry_apply(customer=customer, product=product, kind=LedgerEntry.Kind.PURCHASE, amount=amount, purchase=purchase)


@transaction.atomic
def credits_adjust(*, customer: Customer, product: Product, amount: int, reason: str, by: User) -> LedgerEntry:
    """A staff correction, up or down, with the reason recorded."""
    if not (by and by.is_active and by.is_staff):
        raise PermissionDenied("Only staff can adjust credits.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why: an adjustment needs a reason.", code="reason_required")
    if amount == 0:
        raise ValidationError("An adjustment of 0 credits changes nothing.", code="zero")
    return _entry_apply(
        customer=customer, product=product, kind=LedgerEntry.Kind.ADJUSTMENT, amount=amount, reason=reason, by=by
    )


@transaction.atomic
def credits_refund(*, purchase: Purchase, amount: int, reason: str, by: User) -> LedgerEntry:
    """Take back credits of a refunded purchase (no more than were bought, and not those already spent)."""
    if not (by and by.is_active and by.is_staff):
        raise PermissionDenied("Only staff can refund credits.")
    if purchase.status != Purchase.Status.APPLIED:
        raise ValidationError("Only an applied purchase can be refunded.", code="not_applied")
    if not 0 < amount <= purchase.quantity:
        raise ValidationError(f"A refund takes 1 to {purchase.quantity} credits.", code="out_of_range")
    return _entry_apply(
        customer=purchase.customer,
        product=purchase.product,
        kind=LedgerEntry.Kind.REFUND,
        amount=-amount,
        reason=(reason or "").strip(),
        by=by,
        purchase=purchase,
    )


@transaction.atomic
def usage_record(*, customer: Customer, product: Product, amount: int, reason: str = "") -> LedgerEntry:
    """Record `amount` credits spent at the gate (they were spent already; this is bookkeeping)."""
    if amount <= 0:
        raise ValidationError("Usage must be a positive number of credits.", code="not_positive")
    return _entry_apply(customer=customer, product=product, kind=LedgerEntry.Kind.USAGE, amount=-amount, reason=reason)


@transaction.atomic
def product_upsert(
    *,
    slug: str,
    name: str,
    api_ids: list[str] | None = None,
    skus: list[str] | None = None,
    cost_per_call: int | None = None,
    active: bool | None = None,
) -> tuple[Product, bool]:
    """Declare a product: create it, or bring it to what is given. Running it twice changes nothing.

    `api_ids` and `skus`, when given, become the product's whole set.
    Returns the product and whether anything changed.
    """
    product = Product.objects.select_for_update().filter(slug=slug).first()
    changed = product is None
    if product is None:
        product = Product(slug=slug)
    for field, value in [("name", name), ("cost_per_call", cost_per_call), ("active", active)]:
        if value is not None and getattr(product, field) != value:
            setattr(product, field, value)
            changed = True
    if changed:
        product.full_clean()
        product.save()
    for model, field, wanted in [(ProductApi, "api_id", api_ids), (ProductSku, "sku", skus)]:
        if wanted is None:
            continue
        have = set(model.objects.filter(product=product).values_list(field, flat=True))
        taken = model.objects.filter(**{f"{field}__in": set(wanted) - have}).exclude(product=product)
        if taken.exists():
            raise ValidationError(
                f"{field} {', '.join(getattr(row, field) for row in taken)} already belongs to another product."
            )
        model.objects.filter(product=product).exclude(**{f"{field}__in": wanted}).delete()
        model.objects.bulk_create([model(product=product, **{field: value}) for value in set(wanted) - have])
        if have != set(wanted):
            changed = True
            product.touch()
    return product, changed
