"""The emails a purchase sends: built here from templates/emails/, and sent by
purchase_email_send after the purchase has committed."""

import logging
from collections.abc import Sequence
from types import SimpleNamespace

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.links import password_set_url, token_url
from ledger.models import Balance, Purchase

logger = logging.getLogger(__name__)


def _message(*, template: str, subject: str, to: str, context: dict) -> EmailMultiAlternatives:
    text = render_to_string(f"emails/{template}.txt", context)
    html = render_to_string(f"emails/{template}.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[to])
    message.attach_alternative(html, "text/html")
    return message


def _context(purchase: Purchase, others: Sequence[Purchase] = ()) -> dict:
    """What the templates show: the credits (`what`: "200 Weather API, 500 Maps API" for an order's
    lines, in one email), each product's balance right after the grant, the lines' ids."""
    customer, product = purchase.customer, purchase.product
    lines = [purchase, *others]
    balances: dict[int, SimpleNamespace] = {}
    for line in lines:  # the last line of a product holds what its grant left
        balances[line.product_id] = SimpleNamespace(product=line.product, remaining=line.remaining_after)  # type: ignore[index]
    for balance in balances.values():
        if balance.remaining is None:
            balance.remaining = (
                Balance.objects.filter(customer=customer, product=balance.product)
                .values_list("remaining", flat=True)
                .first()
            ) or 0
    return {
        "customer": customer,
        "purchase": purchase,
        "product": product,
        "what": _what(lines),
        "balances": list(balances.values()),
        "lines": ", ".join(line.line_id for line in lines) if others else "",
        "portal_url": settings.PORTAL_BASE_URL,
    }


def _what(lines: Sequence[Purchase]) -> str:
    return ", ".join(f"{line.credits} {line.product.name}" for line in lines)  # type: ignore[union-attr]


def purchase_welcome_message(
    *, purchase: Purchase, client_id: str, secret: str, reissued: bool, others: Sequence[Purchase] = ()
) -> EmailMultiAlternatives:
    """The first purchase's email: the credentials (the only time the secret is sent), how
    to get a token, the balance, and a link to set a portal password."""
    context = {
        **_context(purchase, others),
        "client_id": client_id,
        "secret": secret,
        "reissued": reissued,
        "token_url": token_url(),
        "password_url": password_set_url(purchase.customer.user),
        "password_link_days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400),
    }
    subject = f"Your CreditPortal API credentials and {context['what']} credits"
    if reissued:
        subject = "Your new CreditPortal API credentials (the previous secret no longer works)"
    return _message(template="purchase_welcome", subject=subject, to=purchase.customer.email, context=context)


def purchase_credits_added_message(*, purchase: Purchase, others: Sequence[Purchase] = ()) -> EmailMultiAlternatives:
    """A later purchase's email (an order's lines: one email): what was added and the new balances; no secret."""
    context = _context(purchase, others)
    subject = f"{context['what']} credits added to your CreditPortal account"
    return _message(template="purchase_credits_added", subject=subject, to=purchase.customer.email, context=context)


def purchase_email_send(
    *,
    purchase_id: int,
    client_id: str | None = None,
    secret: str | None = None,
    reissued: bool = False,
    purchase: Purchase | None = None,
    others: list[Purchase] | None = None,
) -> bool:
    """Send a purchase's email now (called after commit): the welcome email when
    given the credential's secret, else "credits added". Never raises: a failure
    is recorded on the purchase and logged (without the secret) for staff to resend.
    """
    kind = "welcome" if secret else "credits added"
    emailed = [purchase_id, *(p.pk for p in others or ())]  # the purchases this one email is about
    try:
        if purchase is None:  # `purchase`: the caller's copy, its customer and product loaded (one query less)
            purchase = Purchase.objects.select_related("customer__user", "product").get(pk=purchase_id)
        if secret:
            if client_id is None:
                raise ValueError("a welcome email needs the credential's client id")
            message = purchase_welcome_message(
                purchase=purchase, client_id=client_id, secret=secret, reissued=reissued, others=others or ()
            )
        else:
            message = purchase_credits_added_message(purchase=purchase, others=others or ())
        message.send()
    except Exception as e:  # noqa: BLE001 - whatever broke, the purchase stands
        error = f"{type(e).__name__}: {e}"
        if secret:
            error = error.replace(secret, "[secret]")
        Purchase.objects.filter(pk__in=emailed).update(
            email_status=Purchase.EmailStatus.FAILED, email_error=error[:2000]
        )
        logger.error("Purchase %s: the %s email failed: %s", purchase_id, kind, error)
        return False
    Purchase.objects.filter(pk__in=emailed).update(
        email_status=Purchase.EmailStatus.SENT, email_error="", emailed=timezone.now()
    )
    logger.info("Purchase %s: %s email sent to %s", purchase, kind, ", ".join(message.to))
    return True
