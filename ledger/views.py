from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from creditportal.openapi import detail, field_errors
from creditportal.parsers import FormParser, JSONParser
from ledger.authentication import ZapierWebhookAuthentication
from ledger.models import Purchase
from ledger.serializers import PurchaseResultSerializer, ZapierPurchaseSerializer
from ledger.store.orders import PurchaseConflict, order_record
from ledger.store.retry import RETRY_AFTER, BrokenOff, conflict_retried
from ledger.store.zapier import zapier_order


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


# What the Zapier door answers: one line's result, or an order's lines' results.
ZAPIER_ANSWER = PolymorphicProxySerializer(
    component_name="ZapierAnswer",
    serializers=[
        PurchaseResultSerializer,
        inline_serializer(
            "ZapierOrderResult",
            {"order_id": serializers.CharField(), "lines": PurchaseResultSerializer(many=True)},
        ),
    ],
    resource_type_field_name=None,
)


class ZapierPurchaseView(APIView):
    """One order line from the store, or the order's lines as comma-separated fields, posted by a Zap
    (JSON or form data; ledger/store/zapier.py).

    201: recorded and granted. 200: a repeated delivery, same body as the first.
    202: unknown product, stored for staff to match. 400: field errors, nothing
    written. 401: missing or wrong secret. 409: this order line was recorded
    before with different content. 413: a body over ZAPIER_WEBHOOK_MAX_BYTES.
    415: neither JSON nor form data. 503: Postgres broke the transaction off twice in a conflict (a
    deadlock: it is run once more first, ledger/store/retry.py), nothing written: deliver it again.
    """

    authentication_classes = [ZapierWebhookAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser, FormParser]

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # the secret first: a stranger learns nothing about sizes
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # as Django and DRF read it: no body
        limit = settings.ZAPIER_WEBHOOK_MAX_BYTES
        if length > limit:
            raise BodyTooLarge(f"The body is {length:,} bytes; this webhook reads at most {limit:,} (one order line).")

    @extend_schema(
        operation_id="purchases_zapier",
        summary="An order's line (or its lines, as comma-separated fields) from the store, posted by a Zap",
        tags=["webhooks"],
        request={
            "application/json": ZapierPurchaseSerializer,
            "application/x-www-form-urlencoded": ZapierPurchaseSerializer,
        },
        responses={
            201: OpenApiResponse(ZAPIER_ANSWER, description="Recorded, and its credits granted."),
            200: OpenApiResponse(ZAPIER_ANSWER, description="A repeated delivery: the first's answer."),
            202: OpenApiResponse(ZAPIER_ANSWER, description="Unknown product: stored for staff to match."),
            400: field_errors(),
            401: detail("Missing or wrong webhook secret."),
            409: OpenApiResponse(
                inline_serializer(
                    "PurchaseConflict",
                    {"detail": serializers.CharField(), "purchase": PurchaseResultSerializer()},
                ),
                description="This order line was recorded before with different content.",
            ),
            413: detail("A body over ZAPIER_WEBHOOK_MAX_BYTES."),
            415: detail("Neither JSON nor form data."),
            503: detail("A concurrent write broke the transaction off twice: nothing recorded, deliver it again."),
        },
    )
    def post(self, request: Request) -> Response:
        order, several = zapier_order(request.data)
        try:
            recorded = conflict_retried(lambda: order_record(order=order), what=f"Zapier order {order.order_id}")
        except PurchaseConflict as conflict:
            return Response(
                {"detail": str(conflict), "purchase": PurchaseResultSerializer(conflict.purchase).data},
                status=status.HTTP_409_CONFLICT,
            )
        except BrokenOff as e:
            return Response(e.answer, status=503, headers={"Retry-After": RETRY_AFTER})
        code: int
        if not recorded.any_created:
            code = status.HTTP_200_OK
        elif all(
            p.status != Purchase.Status.APPLIED
            for p, new in zip(recorded.purchases, recorded.created, strict=True)
            if new
        ):
            code = status.HTTP_202_ACCEPTED
        else:
            code = status.HTTP_201_CREATED
        if not several:
            purchase = recorded.purchases[0]
            if purchase.status == Purchase.Status.UNMATCHED:
                code = status.HTTP_202_ACCEPTED
            return Response(PurchaseResultSerializer(purchase).data, status=code)
        lines = PurchaseResultSerializer(recorded.purchases, many=True).data
        return Response({"order_id": order.order_id, "lines": lines}, status=code)
