"""What Zappa's scheduled events run (zappa_settings.json, `events`).

Zappa calls each function with the EventBridge event and the Lambda context,
after its handler has set Django up (it builds the WSGI app at cold start, for
scheduled invocations too). Each function runs one management command, so the
same work can be run by hand with `manage.py` or `zappa manage`.
"""

from django.core.management import call_command


def sync_usage(event: dict | None = None, context: object = None) -> None:
    """Every minute: credits spent at the gate (DynamoDB `used`) flow back into the ledger."""
    call_command("sync_usage")


def sync_mirror_check(event: dict | None = None, context: object = None) -> None:
    """Daily: compare the DynamoDB mirror with Postgres and report any drift.

    A failure raises, so the invocation counts as a Lambda error (alarm on the
    function's Errors metric).
    """
    call_command("sync_mirror", "--check")


def clear_sessions(event: dict | None = None, context: object = None) -> None:
    """Daily: delete expired sessions (Django's `clearsessions`). Django never deletes a
    session row by itself: without this, every login ever made stays in `django_session`
    and in every backup of it."""
    call_command("clearsessions")
