import json
import sys

from django.core.management.base import BaseCommand, CommandError

from ledger.access_logs import EventUnreadable, failed_calls_event_record


class Command(BaseCommand):
    help = (
        "Credit back the failed calls in one CloudWatch Logs subscription event (JSON on standard input, "
        '{"awslogs": {"data": ...}}), each once: what the Lambda entry point runs, for local runs and replays. '
        "Prints how many calls were refunded, skipped and already refunded; exits 0 unless the event "
        "itself cannot be read."
    )

    stealth_options = ("stdin",)  # call_command(..., stdin=...) in tests

    def handle(self, **options) -> None:
        try:
            event = json.load(options.get("stdin") or sys.stdin)
        except ValueError as e:
            raise CommandError(f"standard input is not JSON: {e}") from None
        try:
            counts = failed_calls_event_record(event)
        except EventUnreadable as e:
            raise CommandError(str(e)) from None
        self.stdout.write(str(counts))
