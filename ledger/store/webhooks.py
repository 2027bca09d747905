"""`POST /api/purchases/shopify/`: Shopify's own webhooks, signed, no Zapier needed.

Verified first (`X-Shopify-Hmac-Sha256` over the raw body, SHOPIFY_WEBHOOK_SECRET: several,
space-separated, for rotation): missing or wrong is a 401 and nothing is read or written.
`X-Shopify-Topic` picks the handling; a redelivery (`X-Shopify-Webhook-Id` seen before) is a 200
that changes nothing: each handler is idempotent by the store's own ids (order line ids, refund ids),
and the delivery is recorded once (`StoreWebhook`), the answer saying `"redelivery": true`.
"""

import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ledger.serializers import _unstorable
from ledger.store.orders import PurchaseConflict, order_record
from ledger.store.refunds import RefundRecorded, order_cancel, refund_record
from ledger.store.retry import RETRY_AFTER, BrokenOff, conflict_retried
from ledger.store.shopify import PayloadError, order_parse, refund_parse, signature_valid

logger = logging.getLogger(__name__)

TOPICS = ("orders/paid", "refunds/create", "orders/cancelled")


def _secrets() -> list[str]:
    return settings.SHOPIFY_WEBHOOK_SECRET.split()


def _refund_answer(topic: str, recorded: RefundRecorded) -> dict[str, Any]:
    return {
        "topic": topic,
        "refund_id": recorded.refund.refund_id,
        "order_id": recorded.refund.order_id,
        "duplicate": not recorded.created,
        "credits_taken": sum(line.credits_taken for line in recorded.lines),
        "credits_spent": sum(line.credits_spent for line in recorded.lines),
    }


def _handle(topic: str, payload: Any) -> dict[str, Any]:
    """Run the topic's service; what the webhook answers."""
    if topic == "orders/paid":
        order = order_parse(payload)
        recorded = order_record(order=order)
        return {
            "topic": topic,
            "order_id": order.order_id,
            "lines": [
                {"line_id": p.line_id, "status": p.status, "credits": p.credits if p.status == "applied" else 0,
                 "recorded_before": not created}
                for p, created in zip(recorded.purchases, recorded.created, strict=True)
            ],
        }  # fmt: skip
    if topic == "refunds/create":
        refund = refund_parse(payload)
        recorded_refund = refund_record(
            refund_id=refund.refund_id, order_id=refund.order_id, lines=refund.lines, note=refund.note, payload=payload
        )
        return _refund_answer(topic, recorded_refund)
    if not isinstance(payload, dict):
        raise PayloadError("The body must be a Shopify Order object.")
    order_id = order_parse({**payload, "line_items": []}).order_id
    reason = payload["cancel_reason"] if isinstance(payload.get("cancel_reason"), str) else ""
    return _refund_answer(topic, order_cancel(order_id=order_id, reason=reason, payload=payload))


def _remember(*, webhook_id: str, topic: str, shop: str, outcome: str, payload: Any) -> bool:
    """Record the delivery; False if this webhook id was recorded before (or by a concurrent twin)."""
    if not webhook_id:
        return True
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ledger_storewebhook (webhook_id, topic, shop, received, outcome, payload)"
            " VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (webhook_id) DO NOTHING RETURNING id",
            [webhook_id[:128], topic[:64], shop[:255], timezone.now(), outcome[:2000],
             json.dumps(payload if topic in TOPICS else {})],
        )  # fmt: skip
        return cursor.fetchone() is not None


@csrf_exempt
@require_POST
def shopify_webhook(request: HttpRequest) -> JsonResponse:
    """200: handled (or a redelivery, or a topic we do not handle). 400: not the resource its topic
    names, nothing written. 401: signature missing or wrong. 409: a line recorded by the Zapier door
    with other content. 413: body over SHOPIFY_WEBHOOK_MAX_BYTES. 503: the mirror could not be read
    (a refund needs what the gate has spent), or Postgres broke the transaction off twice in a
    conflict (a deadlock: it is run once more first, ledger/store/retry.py): nothing written,
    Shopify retries."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.SHOPIFY_WEBHOOK_MAX_BYTES:
        return JsonResponse({"detail": f"The body is {length:,} bytes; this webhook reads at most "
                             f"{settings.SHOPIFY_WEBHOOK_MAX_BYTES:,}."}, status=413)  # fmt: skip
    body = request.body
    if not signature_valid(body, request.headers.get("X-Shopify-Hmac-Sha256"), _secrets()):
        logger.warning("Shopify webhook: missing or wrong signature from %s", request.META.get("REMOTE_ADDR"))
        return JsonResponse({"detail": "Missing or wrong X-Shopify-Hmac-Sha256."}, status=401)
    topic = request.headers.get("X-Shopify-Topic", "").strip()
    webhook_id = request.headers.get("X-Shopify-Webhook-Id", "").strip()
    shop = request.headers.get("X-Shopify-Shop-Domain", "").strip()
    if topic not in TOPICS:
        logger.info("Shopify webhook %s: topic %r is not one we handle; ignored", webhook_id, topic)
        _remember(webhook_id=webhook_id, topic=topic, shop=shop, outcome="ignored", payload=None)
        return JsonResponse({"topic": topic, "ignored": True})
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        return JsonResponse({"detail": f"JSON parse error - {e}"}, status=400)
    unstorable = _unstorable(payload)
    if unstorable:
        return JsonResponse({"detail": f"The body cannot be stored: {unstorable}"}, status=400)
    try:
        answer = conflict_retried(lambda: _handle(topic, payload), what=f"Shopify webhook {webhook_id} ({topic})")
    except PayloadError as e:
        return JsonResponse({"detail": str(e)}, status=400)
    except PurchaseConflict as conflict:
        return JsonResponse({"detail": str(conflict)}, status=409)
    except (BotoCoreError, ClientError) as e:
        logger.error("Shopify webhook %s (%s): the mirror could not be read: %s", webhook_id, topic, e)
        return JsonResponse({"detail": "The gate's balances could not be read; try again later."}, status=503)
    except BrokenOff as e:
        logger.error("Shopify webhook %s (%s): broken off twice by a %s; nothing written", webhook_id, topic,
                     e.conflict)  # fmt: skip
        return JsonResponse(e.answer, status=503, headers={"Retry-After": RETRY_AFTER})
    # After the handler's commit. A redelivery (Shopify retries for hours) is handled again and changes
    # nothing: each handler is idempotent by the store's own ids (order line ids, refund ids), which
    # also covers a process that died between the commit and this record.
    first = _remember(webhook_id=webhook_id, topic=topic, shop=shop, outcome=json.dumps(answer), payload=payload)
    if not first:
        logger.info("Shopify webhook %s (%s): delivered again; nothing changed", webhook_id, topic)
    return JsonResponse({**answer, "webhook_id": webhook_id, "redelivery": not first})
