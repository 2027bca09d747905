"""What Zappa's handler runs (zappa_settings.json `app_function`): Django, and the failed-call refunds.

Zappa gives `app_function` every HTTP request as WSGI (`application(environ, start_response)`), with
Django set up from `django_settings` first. It also hands every CloudWatch Logs subscription event
(`{"awslogs": {"data": ...}}`, deploy/template.yaml's FailedCallsSubscription on the API's access
log) to the same callable, as `application(event, context)` (zappa/handler.py, "This is a CloudWatch
event"). So one object answers both: an event with `awslogs` is a batch of failed calls, recorded by
`failed_calls_event`; anything else is Django's WSGI app.
"""

import logging
from typing import Any

from django.core.wsgi import get_wsgi_application

logger = logging.getLogger(__name__)


def failed_calls_event(event: dict, context: object = None) -> dict[str, Any]:
    """The Lambda entry point of the CloudWatch Logs subscription: credit back the failed calls of one
    batch, each once (ledger/access_logs.py). An event that cannot be read is logged and raises (the
    invocation counts as an error, nothing was written); a bad line is skipped and counted. A database
    error raises too: Lambda retries the batch, which credits nothing twice."""
    from ledger.access_logs import failed_calls_event_record

    counts = failed_calls_event_record(event)
    return {
        "refunded": counts.refunded,
        "credits": counts.credits,
        "skipped": counts.skipped,
        "already_refunded": counts.already_refunded,
        "skip_reasons": dict(counts.skip_reasons),
    }


class Application:
    """Django's WSGI app, and `failed_calls_event` for CloudWatch Logs subscription events."""

    def __init__(self) -> None:
        self.wsgi = get_wsgi_application()

    def __call__(self, first: Any, second: Any) -> Any:
        if isinstance(first, dict) and "awslogs" in first:  # never a WSGI environ key
            return failed_calls_event(first, second)
        return self.wsgi(first, second)


application = Application()
