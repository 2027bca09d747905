"""The API doors of accounts: the token endpoint, the balance API, the JWKS."""

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import keys
from accounts.authentication import AccessTokenAuthentication, ClientCredentialsAuthentication, OAuthError
from accounts.serializers import TokenRequestSerializer, TokenResponseSerializer
from accounts.tokens import token_issue
from creditportal.openapi import OAUTH_ERROR, UNAUTHENTICATED
from creditportal.parsers import FormParser, JSONParser
from ledger.selectors import balance_list_in_scope


class AnswerInJSON(DefaultContentNegotiation):
    """RFC 6749 section 5.1: a token endpoint answers in JSON, tokens and errors alike, whatever the
    request's Accept header asks for (DRF would answer `Accept: text/html` with a 406 in its own
    error format, not OAuth's). The body is still parsed by its Content-Type."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class TokenView(APIView):
    """`POST /api/token/`: the OAuth2 client credentials grant (RFC 6749 section 4.4).

    The parameters are checked first (TokenRequestSerializer), then the client
    (ClientCredentialsAuthentication, when `request.user` is first read), then the scope
    (token_issue): RFC 6749's errors in that order. One database query in all."""

    authentication_classes = [ClientCredentialsAuthentication]
    permission_classes = []
    parser_classes = [FormParser, JSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AnswerInJSON

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

    def perform_authentication(self, request: Request) -> None:
        """Not before the parameters are known good: post() reads `request.user` after them."""

    @extend_schema(
        operation_id="token_create",
        summary="An access token for client credentials (OAuth2 client_credentials grant)",
        tags=["token"],
        request={
            "application/x-www-form-urlencoded": TokenRequestSerializer,
            "application/json": TokenRequestSerializer,
        },
        responses={
            200: TokenResponseSerializer,
            400: OpenApiResponse(OAUTH_ERROR, description="A bad request, grant type or scope."),
            401: OpenApiResponse(OAUTH_ERROR, description="invalid_client: unknown client or wrong secret."),
        },
    )
    def post(self, request: Request) -> Response:
        params = TokenRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        credential = request.user
        try:
            access_token, claims = token_issue(credential=credential, scope=params.validated_data.get("scope"))
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
        elif isinstance(exc, serializers.ValidationError):
            exc = OAuthError.from_validation(exc.detail)
        if isinstance(exc, OAuthError):
            return exc.response()
        return super().handle_exception(exc)

    def finalize_response(self, request: Request, response: Response, *args, **kwargs) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        # RFC 6749 section 5.1: tokens and errors alike are never cached.
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response


class RoutePriceSerializer(serializers.Serializer):
    route = serializers.CharField(help_text="METHOD /path, as API Gateway writes it: ANY, {param}, {proxy+}.")
    cost = serializers.IntegerField(help_text="Credits one call to the route costs (0: free).")


class BalanceSerializer(serializers.Serializer):
    product = serializers.CharField(source="product.slug")
    name = serializers.CharField(source="product.name")
    granted = serializers.IntegerField()
    used = serializers.IntegerField()
    remaining = serializers.IntegerField()
    # Failed calls (5xx after an Allow) credited back: how many, and their credits (part of `granted`).
    credited_back_calls = serializers.IntegerField()
    credited_back = serializers.IntegerField()
    cost_per_call = serializers.IntegerField(
        source="product.cost_per_call", help_text="Credits a call costs that no priced route matches."
    )
    routes = serializers.SerializerMethodField(help_text="The product's priced routes; the most specific match wins.")

    @extend_schema_field(RoutePriceSerializer(many=True))
    def get_routes(self, balance: Any) -> list[dict[str, Any]]:
        return [{"route": route, "cost": cost} for route, cost in sorted(balance.product.routes.items())]


class BalancesSerializer(serializers.Serializer):
    customer = serializers.CharField(help_text="The customer's public id (cus_...).")
    balances = BalanceSerializer(many=True)


class BalanceView(APIView):
    """`GET /api/balance/` with a bearer access token: the customer's balances
    for the products the token covers (its scope). Reads only; spends nothing."""

    authentication_classes = [AccessTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="balance_list",
        summary="The customer's balances of the products the token covers",
        tags=["balance"],
        responses={200: BalancesSerializer, 401: UNAUTHENTICATED},
    )
    def get(self, request: Request) -> Response:
        client = request.user
        balances = balance_list_in_scope(customer=client.customer, products=client.products)
        return Response(
            {"customer": client.customer.public_id, "balances": BalanceSerializer(balances, many=True).data},
            headers={"Cache-Control": "no-store"},
        )


@require_safe
@cache_control(public=True, max_age=300)
def jwks(request: HttpRequest) -> JsonResponse:
    """`GET /.well-known/jwks.json`: the public keys tokens may be signed with (RFC 7517)."""
    return JsonResponse(keys.keyring().jwks())
