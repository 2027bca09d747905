"""DRF authentication by our access tokens (`Authorization: Bearer <token>`)."""

from dataclasses import dataclass

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError

from accounts.models import Credential, Customer
from accounts.tokens import AccessToken

REALM = "creditportal"


@dataclass(frozen=True)
class ApiClient:
    """Who a valid access token speaks for: `request.user` on token-authenticated views."""

    customer: Customer
    credential: Credential
    products: list[str]  # the token's scope

    is_authenticated = True


def _reason(error: TokenError) -> str:
    """The most specific message in the chain (simplejwt wraps PyJWT's and ours in "Token is invalid")."""
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error.args[0] if error.args else error).rstrip(".")


class AccessTokenAuthentication(BaseAuthentication):
    """Verifies the token (accounts.tokens.AccessToken) and that it still speaks
    for someone: the credential exists, is not revoked, and has not been rotated
    since (`ver`), and the customer is active. Anything else is a 401 with
    `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 section 3)."""

    def authenticate(self, request: Request) -> tuple[ApiClient, AccessToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            self._refuse(request, "The Authorization header must be: Bearer <access token>.")
        try:
            token = AccessToken(parts[1])
        except ExpiredTokenError:
            self._refuse(request, "The access token has expired: get a new one from /api/token/.")
        except TokenError as e:
            self._refuse(request, f"The access token is invalid: {_reason(e)}.")

        credential = Credential.objects.select_related("customer").filter(client_id=token["client_id"]).first()
        if credential is None or credential.customer.public_id != token["sub"]:
            self._refuse(request, "The access token names no known client.")
        if credential.is_revoked:
            self._refuse(request, "The access token's client id was revoked.")
        if credential.secret_version != token["ver"]:
            self._refuse(request, "The client secret was rotated since this token was issued: get a new one.")
        if not credential.customer.is_active:
            self._refuse(request, "The customer account is suspended.")
        return ApiClient(customer=credential.customer, credential=credential, products=token.products), token

    def authenticate_header(self, request: Request) -> str:
        challenge = f'Bearer realm="{REALM}"'
        error = getattr(request, "_access_token_error", None)
        if error:
            description = error.replace("\\", "").replace('"', "'")
            challenge += f', error="invalid_token", error_description="{description}"'
        return challenge

    def _refuse(self, request: Request, description: str) -> None:
        request._access_token_error = description
        raise AuthenticationFailed(description)
