"""`/api/keys/`: a program's door to its customer's API keys, with a client-credentials access token.

`POST /api/keys/` creates one (201, the key in the answer: the only time it is shown), `GET` lists
them (never the keys), `DELETE /api/keys/<id>/` revokes one (204). A token makes keys for no more
than its scope; it sees and revokes only its own customer's keys (another customer's id is a 404).
"""

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.fields import get_error_detail
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.authentication import AccessTokenAuthentication, ApiClient
from accounts.models import ApiKey
from creditportal.openapi import UNAUTHENTICATED, detail, field_errors

NO_STORE = {"Cache-Control": "no-store"}


class ApiKeySerializer(serializers.Serializer):
    """An API key as listed: never the key itself, only its last four characters."""

    id = serializers.CharField(source="public_id", help_text="The key's id, for DELETE /api/keys/<id>/.")
    name = serializers.CharField(help_text="A label of the customer's choosing.")
    products = serializers.ListField(
        child=serializers.CharField(),
        help_text="The product slugs it opens; empty: every product of the customer's, now and later.",
    )
    last4 = serializers.CharField(help_text="The key's last four characters.")
    created = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True, help_text="null while the key is active.")


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The key: shown in this answer only, never again.")


class ApiKeyListSerializer(serializers.Serializer):
    keys = ApiKeySerializer(many=True)


class ApiKeyCreateSerializer(serializers.Serializer):
    default_error_messages = {"invalid": "The JSON body must be an object."}

    name = serializers.CharField(max_length=80, required=False, allow_blank=True, default="")
    products = serializers.ListField(
        child=serializers.SlugField(max_length=50),
        required=False,
        max_length=100,
        help_text="Some of the token's products; omitted or empty: all the token opens.",
    )


def _client(request: Request) -> ApiClient:
    """Who the access token speaks for (AccessTokenAuthentication's `request.user`; IsAuthenticated ran)."""
    client = request.user
    assert isinstance(client, ApiClient)
    return client


def _validation_error(error: ValidationError) -> serializers.ValidationError:
    """A service's ValidationError as DRF's: field errors as they are, the rest under non_field_errors."""
    detail = get_error_detail(error)
    if not isinstance(detail, dict):
        detail = {api_settings.NON_FIELD_ERRORS_KEY: detail}
    return serializers.ValidationError(detail)


class ApiKeysView(APIView):
    """`GET /api/keys/` lists the customer's keys (active and revoked); `POST /api/keys/` creates one."""

    authentication_classes = [AccessTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="keys_list",
        summary="The customer's API keys, active and revoked (never the keys themselves)",
        tags=["keys"],
        responses={200: ApiKeyListSerializer, 401: UNAUTHENTICATED},
    )
    def get(self, request: Request) -> Response:
        client = _client(request)
        api_keys = ApiKey.objects.filter(customer=client.customer).order_by("created", "id")
        return Response({"keys": ApiKeySerializer(api_keys, many=True).data}, headers=NO_STORE)

    @extend_schema(
        operation_id="keys_create",
        summary="A new API key: the answer is the only time the key is shown",
        tags=["keys"],
        request={
            "application/json": ApiKeyCreateSerializer,
            "application/x-www-form-urlencoded": ApiKeyCreateSerializer,
        },
        responses={
            201: ApiKeyCreatedSerializer,
            400: field_errors("Bad input, a product the token does not open, or too many active keys: nothing made."),
            401: UNAUTHENTICATED,
            415: detail("Neither JSON nor form data."),
        },
    )
    def post(self, request: Request) -> Response:
        client = _client(request)
        params = ApiKeyCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            api_key, key = services.api_key_create(
                customer=client.customer,
                name=params.validated_data["name"],
                products=params.validated_data.get("products"),
                allowed=client.products,
                created_by=client.credential,
            )
        except ValidationError as e:
            raise _validation_error(e) from None
        data = {**ApiKeySerializer(api_key).data, "key": key}  # ApiKeyCreatedSerializer's shape
        return Response(data, status=status.HTTP_201_CREATED, headers=NO_STORE)


class ApiKeyView(APIView):
    """`DELETE /api/keys/<id>/`: revoke the key; the gate refuses it from its next call. 204, also when revoked before."""

    authentication_classes = [AccessTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="keys_revoke",
        summary="Revoke an API key: refused by the gateway from its next call",
        tags=["keys"],
        responses={
            204: OpenApiResponse(description="Revoked (also when it was revoked before)."),
            401: UNAUTHENTICATED,
            404: detail("No such key of this customer's."),
        },
    )
    def delete(self, request: Request, key_id: str) -> Response:
        client = _client(request)
        api_key = selectors.api_key_get(customer=client.customer, key_id=key_id)
        if api_key is None:
            raise NotFound("No such API key.")
        services.api_key_revoke(api_key=api_key)
        return Response(status=status.HTTP_204_NO_CONTENT)
