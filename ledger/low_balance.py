"""The low-balance email: one per drop, not one per call. When nothing is left (the
drop went to 0 at once) it says the credits are used up, not running low.

`usage_record` calls `low_balance_check` inside its transaction, while it
holds the balance's row lock; the first usage that takes `remaining` below
the threshold stamps `Balance.low_balance_notified` and schedules the email
for after commit. Later usage sees the stamp and sends nothing. A grant
(or any increase of what is granted) clears the stamp, so the next drop tells
the customer again."""

import logging
import math
from decimal import Decimal

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Customer
from ledger.models import Balance, Product, Purchase

log = logging.getLogger(__name__)


def low_balance_threshold(*, balance: Balance) -> int:
    """LOW_BALANCE_FRACTION of the customer's last purchase of the product
    (of what is granted, if credits came only from staff), at least 1."""
    last = (
        Purchase.objects.filter(
            customer_id=balance.customer_id, product_id=balance.product_id, status=Purchase.Status.APPLIED
        )
        .order_by("-received", "-id")
        .values_list("quantity", flat=True)
        .first()
    )
    base = last if last is not None else balance.granted
    return max(1, math.ceil(base * Decimal(str(settings.LOW_BALANCE_FRACTION))))


def low_balance_check(*, customer: Customer, product: Product) -> bool:
    """Call inside the transaction that just recorded usage, with the balance row locked.
    Returns whether an email was scheduled."""
    balance = Balance.objects.get(customer=customer, product=product)
    if balance.low_balance_notified is not None or balance.remaining >= low_balance_threshold(balance=balance):
        return False
    Balance.objects.filter(pk=balance.pk).update(low_balance_notified=timezone.now())
    transaction.on_commit(lambda: low_balance_email_send(balance_id=balance.pk))
    return True


def low_balance_email_send(*, balance_id: int) -> None:
    """Send the email. A failure is logged and never raises: the usage it follows stands."""
    try:
        balance = Balance.objects.select_related("customer", "product").get(pk=balance_id)
        context = {
            "customer": balance.customer,
            "product": balance.product,
            "balance": balance,
            "store_url": settings.STORE_URL,
            "portal_url": f"{settings.PORTAL_BASE_URL}{reverse('account_dashboard')}",
        }
        # Read after commit: what is left when the email goes out. Nothing left is not "low".
        used_up = balance.remaining <= 0
        context["used_up"] = used_up
        message = EmailMultiAlternatives(
            subject=f"Your {balance.product.name} credits are {'used up' if used_up else 'running low'}",
            body=render_to_string("emails/low_balance.txt", context),
            to=[balance.customer.email],
        )
        message.attach_alternative(render_to_string("emails/low_balance.html", context), "text/html")
        message.send()
    except Exception:
        log.exception("Low-balance email for balance %s failed", balance_id)
