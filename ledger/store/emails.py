"""The email a refund or a cancellation sends when it took credits back: how many, of what, and why."""

import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from ledger.models import Balance
from ledger.store.models import StoreRefund

logger = logging.getLogger(__name__)


def refund_message(*, refund: StoreRefund) -> EmailMultiAlternatives | None:
    """The "credits taken back" email of a refund, or None when it took nothing back."""
    lines = [
        line for line in refund.lines.select_related("purchase__customer", "purchase__product") if line.credits_taken
    ]
    if not lines:
        return None
    customer = lines[0].purchase.customer
    if customer is None:  # a line with credits taken back was applied: it has a customer
        raise ValueError(f"{refund}: its lines have no customer")
    products = {line.purchase.product_id for line in lines}
    balances = Balance.objects.filter(customer=customer, product_id__in=products).select_related("product")
    context = {
        "customer": customer,
        "refund": refund,
        "lines": lines,
        "balances": balances.order_by("product__slug"),
        "portal_url": settings.PORTAL_BASE_URL,
    }
    taken = sum(line.credits_taken for line in lines)
    what = "cancelled" if refund.kind == StoreRefund.Kind.CANCELLATION else "refunded"
    subject = f"Order {refund.order_id} {what}: {taken} credits taken back"
    text = render_to_string("emails/credits_taken_back.txt", context)
    html = render_to_string("emails/credits_taken_back.html", context)
    message = EmailMultiAlternatives(
        subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[customer.email]
    )
    message.attach_alternative(html, "text/html")
    return message


def refund_email_send(*, refund_id: int) -> bool:
    """Send a refund's email now (after commit). Never raises: a failure is recorded on the refund for staff."""
    try:
        refund = StoreRefund.objects.get(pk=refund_id)
        message = refund_message(refund=refund)
        if message is None:
            StoreRefund.objects.filter(pk=refund_id).update(email_status=StoreRefund.EmailStatus.NONE)
            return True
        message.send()
    except Exception as e:  # noqa: BLE001 - whatever broke, the refund stands
        error = f"{type(e).__name__}: {e}"
        StoreRefund.objects.filter(pk=refund_id).update(
            email_status=StoreRefund.EmailStatus.FAILED, email_error=error[:2000]
        )
        logger.error("Refund %s: the email failed: %s", refund_id, error)
        return False
    StoreRefund.objects.filter(pk=refund_id).update(email_status=StoreRefund.EmailStatus.SENT, email_error="")
    logger.info("%s: credits-taken-back email sent", refund)
    return True
