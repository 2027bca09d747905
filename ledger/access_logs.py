"""The CloudWatch Logs subscription event that carries the gateway's access-log lines of failed calls.

CloudWatch Logs invokes the subscription's function with `{"awslogs": {"data": ...}}`: base64 of
gzip of a JSON object (`messageType`, `owner`, `logGroup`, `logStream`, `subscriptionFilters`,
`logEvents`: up to 10,000 of `{id, timestamp, message}`, and sometimes `policyLevel`), the shape
Powertools' `CloudWatchLogsDecode` model reads. A `CONTROL_MESSAGE` (CloudWatch checking that the
destination is reachable) carries no calls and does nothing. Delivery is at least once: the same
batch may come again, which `failed_calls_refund` makes harmless.

`failed_calls_event_record` is the one entry for the Lambda (creditportal/lambda_entry.py),
`manage.py record_failed_calls` and `make run`'s gateway stand-in.
"""

import base64
import binascii
import gzip
import json
import logging
import zlib
from dataclasses import dataclass

from ledger.failed_calls import RefundCounts, failed_calls_refund

logger = logging.getLogger(__name__)

DATA_MESSAGE = "DATA_MESSAGE"
CONTROL_MESSAGE = "CONTROL_MESSAGE"


class EventUnreadable(ValueError):
    """The event itself is not a CloudWatch Logs subscription event: nothing in it was read."""


@dataclass(frozen=True)
class LogBatch:
    message_type: str
    log_group: str
    messages: list[str]


def subscription_event_decode(event: object) -> LogBatch:
    """The batch a subscription event carries; raises EventUnreadable when it carries none readable."""
    if not isinstance(event, dict) or not isinstance(event.get("awslogs"), dict):
        raise EventUnreadable('not a CloudWatch Logs subscription event: no {"awslogs": {"data": ...}}')
    data = event["awslogs"].get("data")
    if not isinstance(data, str):
        raise EventUnreadable("awslogs.data is missing or not a string")
    try:
        # gzip, as CloudWatch sends it (zlib's header detection also reads zlib streams).
        decoded = json.loads(zlib.decompress(base64.b64decode(data, validate=True), zlib.MAX_WBITS | 32))
    except (binascii.Error, zlib.error, ValueError) as e:
        raise EventUnreadable(f"awslogs.data is not base64 of gzipped JSON: {e}") from None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("messageType"), str):
        raise EventUnreadable("awslogs.data holds no messageType")
    events = decoded.get("logEvents", [])
    if not isinstance(events, list):
        raise EventUnreadable("awslogs.data's logEvents is not a list")
    # A log event without a string message is passed on as it is: the batch skips it as malformed.
    messages = [e.get("message") if isinstance(e, dict) else None for e in events]
    return LogBatch(
        message_type=decoded["messageType"],
        log_group=str(decoded.get("logGroup", "")),
        messages=[m if isinstance(m, str) else json.dumps(m) for m in messages],
    )


def failed_calls_event_record(event: object) -> RefundCounts:
    """Credit back the failed calls one subscription event names. Raises EventUnreadable only when
    the event itself cannot be read; a bad line inside it is skipped and counted."""
    batch = subscription_event_decode(event)
    if batch.message_type != DATA_MESSAGE:
        logger.info("Failed calls: %s from %r: nothing to record", batch.message_type, batch.log_group)
        return RefundCounts()
    counts = failed_calls_refund(messages=batch.messages)
    logger.info("Failed calls from %r (%s lines): %s", batch.log_group, len(batch.messages), counts)
    return counts


def subscription_event_encode(
    messages: list[str], *, log_group: str = "", message_type: str = DATA_MESSAGE, timestamp: int = 0
) -> dict:
    """A subscription event as CloudWatch Logs builds one (for the gateway stand-in, tests and benchmarks)."""
    payload = {
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": log_group,
        "logStream": "local",
        "subscriptionFilters": ["failed-calls"],
        "logEvents": [
            {"id": str(i), "timestamp": timestamp, "message": message} for i, message in enumerate(messages, start=1)
        ],
    }
    data = base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()
    return {"awslogs": {"data": data}}
