"""The API doors of accounts: the token endpoint, the balance API, the JWKS."""

import base64
import re
from urllib.parse import unquote_plus

from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse, QueryDict
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe
from rest_framework import serializers
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import keys
from accounts.authentication import REALM, AccessTokenAuthentication
from accounts.tokens import credential_authenticate, token_issue
from creditportal.parsers import FormParser, JSONParser
from ledger.models import Balance

GRANT_TYPE = "client_credentials"
PARAMS = ("grant_type", "client_id", "client_secret", "scope")
# RFC 6749 section 5.2: error_description is printable ASCII without " and \.
_NOT_IN_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error response."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description

    def response(self) -> Response:
        description = _NOT_IN_DESCRIPTION.sub("?", self.description)[:500]
        if self.error == "invalid_client":
            # 401 needs a challenge (RFC 9110); RFC 6749 asks for it when Basic was used.
            return Response(
                {"error": self.error, "error_description": description},
                status=401,
                headers={"WWW-Authenticate": f'Basic realm="{REALM}"'},
            )
        return Response({"error": self.error, "error_description": description}, status=400)


def _params(request: Request) -> dict[str, str]:
    """The token request's parameters (form or JSON body), each once, strings only.
    Empty ones count as omitted (RFC 6749 section 3.1); unknown ones are ignored."""
    data = request.data
    if isinstance(data, QueryDict):
        for name in PARAMS:
            if len(data.getlist(name)) > 1:
                raise OAuthError("invalid_request", f"{name} is sent more than once.")
    elif not isinstance(data, dict):
        raise OAuthError("invalid_request", "The JSON body must be an object.")
    params = {}
    for name in PARAMS:
        value = data.get(name)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise OAuthError("invalid_request", f"{name} must be a string.")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise OAuthError("invalid_request", f"{name} is not valid text.") from None
        params[name] = value
    return params


def _client_credentials(request: Request, params: dict[str, str]) -> tuple[str, str]:
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
        if "client_secret" in params or params.get("client_id", client_id) != client_id:
            raise OAuthError(
                "invalid_request", "Send the client credentials one way: HTTP Basic or the body, not both."
            )
        return client_id, client_secret

    client_id, client_secret = params.get("client_id"), params.get("client_secret")
    if not client_id and not client_secret:
        raise OAuthError(
            "invalid_client",
            "No client authentication: send client_id and client_secret, in the body or with HTTP Basic.",
        )
    for name, value in [("client_id", client_id), ("client_secret", client_secret)]:
        if not value:
            raise OAuthError("invalid_request", f"{name} is missing.")
    return client_id, client_secret


class TokenView(APIView):
    """`POST /api/token/`: the OAuth2 client credentials grant (RFC 6749 section 4.4)."""

    authentication_classes = []  # the client authenticates itself, in the body or with Basic
    permission_classes = []
    parser_classes = [FormParser, JSONParser]

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        leaked = [name for name in ("client_id", "client_secret") if name in request.query_params]
        if leaked:
            advice = " Rotate this client secret: it has been exposed." if "client_secret" in leaked else ""
            raise OAuthError(
                "invalid_request",
                f"Client credentials must not be sent in the URL (here: {' and '.join(leaked)}), where access logs "
                f"and proxies keep them: send them in the POST body or with HTTP Basic.{advice}",
            )

    def post(self, request: Request) -> Response:
        params = _params(request)
        grant_type = params.get("grant_type")
        if grant_type is None:
            raise OAuthError("invalid_request", f"grant_type is missing: send grant_type={GRANT_TYPE}.")
        if grant_type != GRANT_TYPE:
            raise OAuthError("unsupported_grant_type", f"Only grant_type={GRANT_TYPE} is supported here.")
        client_id, client_secret = _client_credentials(request, params)
        scope = [slug for slug in params["scope"].split(" ") if slug] if "scope" in params else None

        credential = credential_authenticate(client_id=client_id, client_secret=client_secret)
        if credential is None:
            raise OAuthError("invalid_client", "Unknown client id or wrong client secret.")
        try:
            access_token, claims = token_issue(credential=credential, scope=scope)
        except ValidationError as e:
            raise OAuthError(e.code, e.messages[0]) from None
        return Response(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": claims["exp"] - claims["iat"],
                "scope": claims["scope"],
            }
        )

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, ParseError):
            exc = OAuthError("invalid_request", f"The body could not be read: {exc.detail}")
        elif isinstance(exc, UnsupportedMediaType):
            exc = OAuthError(
                "invalid_request", "Send the parameters form-encoded (application/x-www-form-urlencoded) or as JSON."
            )
        if isinstance(exc, OAuthError):
            return exc.response()
        return super().handle_exception(exc)

    def finalize_response(self, request: Request, response: Response, *args, **kwargs) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        # RFC 6749 section 5.1: tokens and errors alike are never cached.
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response


class BalanceSerializer(serializers.ModelSerializer):
    product = serializers.CharField(source="product.slug")
    name = serializers.CharField(source="product.name")

    class Meta:
        model = Balance
        fields = ["product", "name", "granted", "used", "remaining"]


class BalanceView(APIView):
    """`GET /api/balance/` with a bearer access token: the customer's balances
    for the products the token covers (its scope). Reads only; spends nothing."""

    authentication_classes = [AccessTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        client = request.user
        balances = (
            Balance.objects.filter(customer=client.customer, product__slug__in=client.products)
            .select_related("product")
            .order_by("product__slug")
        )
        return Response(
            {"customer": client.customer.public_id, "balances": BalanceSerializer(balances, many=True).data},
            headers={"Cache-Control": "no-store"},
        )


@require_safe
@cache_control(public=True, max_age=300)
def jwks(request: HttpRequest) -> JsonResponse:
    """`GET /.well-known/jwks.json`: the public keys tokens may be signed with (RFC 7517)."""
    return JsonResponse(keys.keyring().jwks())
