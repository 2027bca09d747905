"""The emails a purchase sends: built here from templates/emails/, sent by
ledger.services.purchase_email_send after the purchase has committed."""

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from accounts.links import password_set_url, token_url
from ledger.models import Balance, Purchase


def _message(*, template: str, subject: str, to: str, context: dict) -> EmailMultiAlternatives:
    text = render_to_string(f"emails/{template}.txt", context)
    html = render_to_string(f"emails/{template}.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[to])
    message.attach_alternative(html, "text/html")
    return message


def _context(purchase: Purchase) -> dict:
    customer, product = purchase.customer, purchase.product
    balance = purchase.remaining_after  # right after this purchase's grant: what the webhook answered too
    if balance is None:
        balance = Balance.objects.filter(customer=customer, product=product).values_list("remaining", flat=True).first()
    return {
        "customer": customer,
        "purchase": purchase,
        "product": product,
        "remaining": balance or 0,
        "portal_url": settings.PORTAL_BASE_URL,
    }


def purchase_welcome_message(
    *, purchase: Purchase, client_id: str, secret: str, reissued: bool
) -> EmailMultiAlternatives:
    """The first purchase's email: the credentials (the only time the secret is sent), how
    to get a token, the balance, and a link to set a portal password."""
    context = {
        **_context(purchase),
        "client_id": client_id,
        "secret": secret,
        "reissued": reissued,
        "token_url": token_url(),
        "password_url": password_set_url(purchase.customer.user),
        "password_link_days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400),
    }
    subject = f"Your CreditPortal API credentials and {purchase.credits} {purchase.product.name} credits"
    if reissued:
        subject = "Your new CreditPortal API credentials (the previous secret no longer works)"
    return _message(template="purchase_welcome", subject=subject, to=purchase.customer.email, context=context)


def purchase_credits_added_message(*, purchase: Purchase) -> EmailMultiAlternatives:
    """A later purchase's email: what was added and the new balance; no secret."""
    subject = f"{purchase.credits} {purchase.product.name} credits added to your CreditPortal account"
    return _message(
        template="purchase_credits_added", subject=subject, to=purchase.customer.email, context=_context(purchase)
    )
