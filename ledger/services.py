"""The only way credits change. Every function writes one ledger entry and
moves the matching balance in the same transaction, under a row lock, so the
balance always equals the ledger's sums."""

import logging
from collections.abc import Iterable, Mapping
from functools import partial

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Customer, User
from accounts.services import credential_create, credential_rotate, customer_get_or_create
from ledger.emails import purchase_email_send
from ledger.low_balance import low_balance_check
from ledger.mirror.outbox import mirror_outbox_add as mirror_outbox_add  # accounts' services use it
from ledger.models import Balance, LedgerEntry, Product, ProductApi, ProductSku, ProductVariant, Purchase
from ledger.route_prices import route_table_check
from ledger.store.packs import packs_set, packs_wanted

logger = logging.getLogger(__name__)


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
    balance.granted = F("granted") + granted_delta
    balance.used = F("used") + used_delta
    fields = ["granted", "used", "updated"]
    if granted_delta:
        # The version moves only with what the mirror item holds of the balance
        # (granted, and the ceiling from it): usage is the gate's own `used`.
        balance.version = F("version") + 1
        fields.append("version")
    if granted_delta > 0:
        # More credits re-arm the low-balance email (see ledger/low_balance.py).
        balance.low_balance_notified = None
        fields.append("low_balance_notified")
    balance.save(update_fields=fields)
    if granted_delta:
        mirror_outbox_add(balances=[balance])  # usage is the gate's own: nothing to tell it
    return entry


@transaction.atomic
def credits_grant(
    *, customer: Customer, product: Product, amount: int, purchase: Purchase | None = None
) -> LedgerEntry:
    """Add `amount` purchased credits."""
    if amount <= 0:
        raise ValidationError("A grant must be a positive number of credits.", code="not_positive")
    return _entry_apply(
        customer=customer, product=product, kind=LedgerEntry.Kind.PURCHASE, amount=amount, purchase=purchase
    )


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
def usage_record(*, customer: Customer, product: Product, amount: int, reason: str = "") -> LedgerEntry:
    """Record `amount` credits spent at the gate (they were spent already; this is bookkeeping)."""
    if amount <= 0:
        raise ValidationError("Usage must be a positive number of credits.", code="not_positive")
    entry = _entry_apply(customer=customer, product=product, kind=LedgerEntry.Kind.USAGE, amount=-amount, reason=reason)
    low_balance_check(customer=customer, product=product)
    return entry


@transaction.atomic
def product_upsert(
    *,
    slug: str,
    name: str,
    api_ids: list[str] | None = None,
    skus: Iterable[str] | Mapping[str, int] | None = None,
    variants: Iterable[str] | Mapping[str, int] | None = None,
    cost_per_call: int | None = None,
    active: bool | None = None,
    refund_failed_calls: bool | None = None,
    refund_statuses: str | None = None,
    routes: dict[str, int] | None = None,
) -> tuple[Product, bool]:
    """Declare a product: create it, or bring it to what is given. Running it twice changes nothing.

    `api_ids`, `skus` and `variants` (Shopify variant ids), when given, become the product's whole
    set. A SKU or variant is `"RB-100:100"` (100 credits per unit; `"RB-100"` is 1) or a mapping
    {sku: credits per unit}. `routes` ({"POST /jobs": 10}, ledger/route_prices.py), when given, is
    its whole route table.
    Returns the product and whether anything changed.
    """
    product = Product.objects.select_for_update().filter(slug=slug).first()
    created = changed = product is None
    if product is None:
        product = Product(slug=slug)
    if routes is not None:
        routes = route_table_check(routes)
    given = {"refund_failed_calls": refund_failed_calls, "refund_statuses": refund_statuses, "routes": routes}
    for field, value in [("name", name), ("cost_per_call", cost_per_call), ("active", active), *given.items()]:
        if value is not None and getattr(product, field) != value:
            setattr(product, field, value)
            changed = True
    if changed:
        product.full_clean()
        product.save()
        if not created:  # its balance items carry cost, ceilings, on sale and the version; its routes prices too
            mirror_outbox_add(products=[product])
    if api_ids is not None:
        have = set(ProductApi.objects.filter(product=product).values_list("api_id", flat=True))
        taken = ProductApi.objects.filter(api_id__in=set(api_ids) - have).exclude(product=product)
        if taken.exists():
            raise ValidationError(
                f"api_id {', '.join(row.api_id for row in taken)} already belongs to another product."
            )
        ProductApi.objects.filter(product=product).exclude(api_id__in=api_ids).delete()
        ProductApi.objects.bulk_create([ProductApi(product=product, api_id=a) for a in set(api_ids) - have])
        if have != set(api_ids):
            changed = True
            mirror_outbox_add(api_ids=have ^ set(api_ids))  # routes of the ids added, deletions of those removed
    # Packs are the store's (ledger/store/packs.py); the gate sees none of them.
    if skus is not None:
        changed = packs_set(product=product, model=ProductSku, wanted=packs_wanted(skus)) or changed
    if variants is not None:
        changed = packs_set(product=product, model=ProductVariant, wanted=packs_wanted(variants)) or changed
    return product, changed


def _purchase_grant(*, purchase: Purchase, product: Product) -> None:
    """Apply a recorded purchase (its row locked or just inserted): customer, credits, email after commit."""
    customer, credential, secret = customer_get_or_create(email=purchase.email, name=purchase.name)
    credits_grant(customer=customer, product=product, amount=purchase.credits, purchase=purchase)
    purchase.product = product
    purchase.customer = customer
    purchase.status = Purchase.Status.APPLIED
    purchase.applied = timezone.now()
    purchase.created_customer = secret is not None
    # We hold the balance's row lock since the grant: this is exactly what it left.
    balance = Balance.objects.get(customer=customer, product=product)
    purchase.remaining_after = balance.remaining
    purchase.save(update_fields=["product", "customer", "status", "applied", "created_customer", "remaining_after"])
    transaction.on_commit(
        partial(
            purchase_email_send,
            purchase_id=purchase.pk,
            client_id=credential.client_id if credential else None,
            secret=secret,
        )
    )


def _customer_of(purchase: Purchase) -> Customer:
    """The customer of an applied purchase (an unmatched one has none yet)."""
    if purchase.customer is None:
        raise ValueError(f"{purchase} has no customer: it is not applied")
    return purchase.customer


def _require_staff(by: User | None, what: str) -> None:
    if not (by and by.is_active and by.is_staff):
        raise PermissionDenied(f"Only staff can {what}.")


@transaction.atomic
def purchase_apply(*, purchase: Purchase, product: Product, by: User) -> Purchase:
    """Staff match an unmatched purchase to `product`: its credits are granted now, once."""
    _require_staff(by, "apply purchases")
    purchase = Purchase.objects.select_for_update().get(pk=purchase.pk)
    if purchase.status == Purchase.Status.APPLIED:
        raise ValidationError(
            f"{purchase} was already applied on {purchase.applied:%Y-%m-%d %H:%M} UTC "
            f"({purchase.credits} {purchase.product} credits); nothing changed.",
            code="already_applied",
        )
    _purchase_grant(purchase=purchase, product=product)
    logger.info("Purchase %s: applied to %s by %s", purchase, product.slug, by.email)
    return purchase


@transaction.atomic
def purchase_email_resend(*, purchase: Purchase, by: User) -> Purchase:
    """Send a purchase's email again, after commit.

    The welcome email of a first purchase carries a secret we cannot recover,
    so resending it issues a NEW secret for the customer's credential (the old
    one stops working) or, if all were revoked, a new credential.
    """
    _require_staff(by, "resend purchase emails")
    purchase = Purchase.objects.select_for_update(of=("self",)).select_related("customer").get(pk=purchase.pk)
    if purchase.status != Purchase.Status.APPLIED:
        raise ValidationError(f"{purchase} is unmatched: apply it to a product first.", code="not_applied")
    client_id = secret = None
    if purchase.created_customer:
        customer = _customer_of(purchase)
        credential = customer.credentials.filter(revoked_at__isnull=True).order_by("created", "pk").first()
        if credential is None:
            credential, secret = credential_create(customer=customer)
        else:
            secret = credential_rotate(credential=credential)
        client_id = credential.client_id
        logger.info("Purchase %s: welcome email resent by %s with a new secret for %s", purchase, by.email, client_id)
    purchase.email_status = Purchase.EmailStatus.PENDING
    purchase.save(update_fields=["email_status"])
    transaction.on_commit(
        partial(purchase_email_send, purchase_id=purchase.pk, client_id=client_id, secret=secret, reissued=True)
    )
    return purchase
