"""What staff do with a store order that came without any buyer email: say who bought it, and grant."""

import logging

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from accounts.models import User, normalize_email
from ledger.models import Purchase
from ledger.services import purchase_apply
from ledger.store.orders import order_lock

logger = logging.getLogger(__name__)


@transaction.atomic
def purchase_buyer_set(*, purchase: Purchase, email: str, by: User) -> list[Purchase]:
    """Give the buyer's email to every line of `purchase`'s order stored as `no_email`, and grant them
    (each once: purchase_apply, under the order's lock): the buyer gets the purchase email."""
    if not (by and by.is_active and by.is_staff):
        raise PermissionDenied("Only staff can set a purchase's buyer.")
    email = normalize_email(email)
    if not email:
        raise ValidationError("Give the buyer's email.", code="email_required")
    order_lock(purchase.order_id)
    lines = list(
        Purchase.objects.select_for_update(of=("self",))
        .filter(order_id=purchase.order_id, status=Purchase.Status.NO_EMAIL)
        .select_related("product")
        .order_by("pk")
    )
    if not lines:
        raise ValidationError(f"Order {purchase.order_id} has no line waiting for a buyer email.", code="no_lines")
    Purchase.objects.filter(pk__in=[line.pk for line in lines]).update(email=email, status=Purchase.Status.UNMATCHED)
    granted = []
    for line in lines:
        line.email, line.status = email, Purchase.Status.UNMATCHED
        if line.product is not None:
            granted.append(purchase_apply(purchase=line, product=line.product, by=by))
    logger.info("Order %s: buyer %s set by %s, %s lines granted", purchase.order_id, email, by.email, len(granted))
    return granted
