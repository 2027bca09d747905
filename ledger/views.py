from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from creditportal.parsers import FormParser, JSONParser
from ledger.authentication import ZapierWebhookAuthentication
from ledger.models import Purchase
from ledger.serializers import PurchaseResultSerializer, ZapierPurchaseSerializer
from ledger.services import PurchaseConflict, purchase_record


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class ZapierPurchaseView(APIView):
    """One order line from the store, posted by a Zap (JSON or form data).

    201: recorded and granted. 200: a repeated delivery, same body as the first.
    202: unknown product, stored for staff to match. 400: field errors, nothing
    written. 401: missing or wrong secret. 409: this order line was recorded
    before with different content. 413: a body over ZAPIER_WEBHOOK_MAX_BYTES.
    415: neither JSON nor form data.
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

    def post(self, request: Request) -> Response:
        serializer = ZapierPurchaseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            recorded = purchase_record(
                source=Purchase.Source.ZAPIER,
                order_id=data["order_id"],
                line_id=data.get("line_id", ""),
                email=data["email"],
                name=data["name"],
                product_ref=data["product"],
                quantity=data["quantity"],
                payload=_payload(request.data),
            )
        except PurchaseConflict as conflict:
            return Response(
                {"detail": str(conflict), "purchase": PurchaseResultSerializer(conflict.purchase).data},
                status=status.HTTP_409_CONFLICT,
            )
        purchase = recorded.purchase
        if purchase.status == Purchase.Status.UNMATCHED:
            code = status.HTTP_202_ACCEPTED
        else:
            code = status.HTTP_201_CREATED if recorded.created else status.HTTP_200_OK
        return Response(PurchaseResultSerializer(purchase).data, status=code)


def _payload(data) -> dict:
    """What was posted, as stored JSON (a form's keys are each sent once: the serializer refuses repeats)."""
    return data.dict() if hasattr(data, "dict") else dict(data)
