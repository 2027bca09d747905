"""DRF authentication for the API doors: bearer access tokens (the balance API) and client
credentials (the token endpoint)."""

import base64
import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

from rest_framework import status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import APIException, AuthenticationFailed
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import keys
from accounts.models import Credential, Customer
from accounts.selectors import credential_by_client_id
from accounts.tokens import credential_authenticate
from authorizer.tokens import AccessToken, TokenError, TokenExpired

REALM = "creditportal"
# RFC 6749 section 5.2: error_description is printable ASCII without " and \.
_NOT_IN_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


@dataclass(frozen=True)
class ApiClient:
    """Who a valid access token speaks for: `request.user` on token-authenticated views."""

    customer: Customer
    credential: Credential
    products: list[str]  # the token's scope

    is_authenticated = True


class AccessTokenAuthentication(BaseAuthentication):
    """Verifies the token (authorizer.tokens.Verifier, the gate's own) and that it still speaks
    for someone: the credential exists, is not revoked, and has not been rotated since (`ver`),
    and the customer is active (one query). Anything else is a 401 with
    `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 section 3) saying what is wrong."""

    def authenticate(self, request: Request) -> tuple[ApiClient, AccessToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            self._refuse(request, "The Authorization header must be: Bearer <access token>.")
        try:
            token = keys.verifier().verify(parts[1].decode("latin-1"))
        except TokenExpired:
            self._refuse(request, "The access token has expired: get a new one from /api/token/.")
        except TokenError as e:
            self._refuse(request, f"The access token is invalid: {e}.")

        credential = credential_by_client_id(client_id=token.client_id)
        if credential is None or credential.customer.public_id != token.customer_id:
            self._refuse(request, "The access token names no known client.")
        if credential.is_revoked:
            self._refuse(request, "The access token's client id was revoked.")
        if credential.secret_version != token.version:
            self._refuse(request, "The client secret was rotated since this token was issued: get a new one.")
        if not credential.customer.is_active:
            self._refuse(request, "The customer account is suspended.")
        return ApiClient(customer=credential.customer, credential=credential, products=sorted(token.scope)), token

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


class OAuthError(APIException):
    """An RFC 6749 section 5.2 error response: `invalid_client` is a 401 with a Basic challenge, the rest 400."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description
        self.status_code = status.HTTP_401_UNAUTHORIZED if error == "invalid_client" else status.HTTP_400_BAD_REQUEST

    @classmethod
    def from_validation(cls, detail) -> "OAuthError":
        """The first error a serializer found; its code is the RFC 6749 error, if it is one."""
        while isinstance(detail, dict | list):
            detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
        error = detail.code if detail.code in ("unsupported_grant_type", "invalid_scope") else "invalid_request"
        return cls(error, str(detail))

    def response(self) -> Response:
        description = _NOT_IN_DESCRIPTION.sub("?", self.description)[:500]
        # 401 needs a challenge (RFC 9110); RFC 6749 asks for it when Basic was used.
        headers = {"WWW-Authenticate": f'Basic realm="{REALM}"'} if self.error == "invalid_client" else None
        return Response({"error": self.error, "error_description": description}, self.status_code, headers=headers)


def _body_parameter(request: Request, name: str) -> str | None:
    value = request.data.get(name)
    return value if isinstance(value, str) and value else None  # empty counts as omitted (RFC 6749 section 3.1)


def client_credentials(request: Request) -> tuple[str, str]:
    """client_id and client_secret, from HTTP Basic (RFC 6749 section 2.3.1) or the body: one way only."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            raise OAuthError(
                "invalid_client", "Authenticate with HTTP Basic, or with client_id and client_secret in the body."
            )
        try:
            client_id, colon, client_secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            if not colon:
                raise ValueError("no colon")
        except ValueError:
            raise OAuthError(
                "invalid_client", "The Basic credentials are not base64 of client_id:client_secret."
            ) from None
        # Basic carries the form-encoded id and secret.
        client_id, client_secret = unquote_plus(client_id), unquote_plus(client_secret)
        body_id = _body_parameter(request, "client_id")
        if _body_parameter(request, "client_secret") is not None or (body_id is not None and body_id != client_id):
            raise OAuthError(
                "invalid_request", "Send the client credentials one way: HTTP Basic or the body, not both."
            )
        return client_id, client_secret

    client_id, client_secret = _body_parameter(request, "client_id"), _body_parameter(request, "client_secret")
    if not client_id and not client_secret:
        raise OAuthError(
            "invalid_client",
            "No client authentication: send client_id and client_secret, in the body or with HTTP Basic.",
        )
    for name, value in [("client_id", client_id), ("client_secret", client_secret)]:
        if not value:
            raise OAuthError("invalid_request", f"{name} is missing.")
    return client_id, client_secret


class ClientCredentialsAuthentication(BaseAuthentication):
    """The token endpoint's door: a client id and secret (`client_credentials`), and `credential_authenticate`.
    `request.user` is the Credential, with its customer and `customer_products` (one query). A request
    without them, or with a wrong or unknown pair, is an OAuthError (`invalid_client` or `invalid_request`)."""

    def authenticate(self, request: Request) -> tuple[Credential, None]:
        client_id, client_secret = client_credentials(request)
        credential = credential_authenticate(client_id=client_id, client_secret=client_secret)
        if credential is None:
            raise OAuthError("invalid_client", "Unknown client id or wrong client secret.")
        return credential, None

    def authenticate_header(self, request: Request) -> str:
        return f'Basic realm="{REALM}"'
