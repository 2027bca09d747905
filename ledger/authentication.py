import hmac
import logging

from django.conf import settings
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

logger = logging.getLogger(__name__)


class WebhookCaller:
    """Who a webhook request comes from once its shared secret checked out (not a user)."""

    is_authenticated = True

    def __init__(self, source: str):
        self.source = source

    def __str__(self) -> str:
        return f"webhook:{self.source}"


class ZapierWebhookAuthentication(BaseAuthentication):
    """`Authorization: Bearer <ZAPIER_WEBHOOK_SECRET>`, compared in constant time.

    Missing or wrong is a 401 with `WWW-Authenticate: Bearer`, before the body
    is even parsed.
    """

    keyword = b"bearer"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if len(parts) != 2 or parts[0].lower() != self.keyword:
            logger.warning("Zapier webhook: request without a bearer token from %s", request.META.get("REMOTE_ADDR"))
            raise AuthenticationFailed("Send the webhook secret as 'Authorization: Bearer <secret>'.")
        expected = settings.ZAPIER_WEBHOOK_SECRET.encode()
        if not hmac.compare_digest(parts[1], expected):
            logger.warning("Zapier webhook: wrong secret from %s", request.META.get("REMOTE_ADDR"))
            raise AuthenticationFailed("Wrong webhook secret.")
        return WebhookCaller("zapier"), None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="zapier"'
