"""Links that emails put in front of customers, built from PORTAL_BASE_URL.

The portal mounts Django's PasswordResetConfirmView at
`/account/reset/<uidb64>/<token>/` (URL name "password_reset_confirm"); emails
are rendered outside a request and may point to another host than the one
serving the webhook, so the link is built here rather than reversed.
"""

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import User


def password_set_url(user: User) -> str:
    """A one-time link to set (or reset) the portal password of `user`.

    Valid for PASSWORD_RESET_TIMEOUT seconds and until the password changes
    or the user logs in (Django's default_token_generator).
    """
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return f"{settings.PORTAL_BASE_URL}/account/reset/{uidb64}/{token}/"


def token_url() -> str:
    """Where a client exchanges its client id and secret for a token."""
    return f"{settings.PORTAL_BASE_URL}/api/token/"
