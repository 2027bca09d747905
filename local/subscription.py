"""`make run`'s CloudWatch Logs subscription: the gateway stand-in's access log to the failed-call refunds.

On AWS, API Gateway writes each call's access-log line to the stage's log group, and a subscription
filter (`{ $.status = 5* }`, deploy/template.yaml) sends the matching lines, gzipped and base64'd in
batches of up to 10,000, to the Django function (creditportal/lambda_entry.py). Here the stand-in
appends the same lines to a file (local/gateway.py --access-log) and `runstack` calls `poll()` every
second: the new lines that match the same filter go, as one subscription event built as CloudWatch
builds it, to the same entry point. Development only.
"""

import json
from collections.abc import Callable
from pathlib import Path

from creditportal.lambda_entry import failed_calls_event
from ledger.access_logs import subscription_event_encode

MAX_BATCH = 10_000  # log events CloudWatch Logs puts in one delivery at most


def subscription_filter_matches(line: str) -> bool:
    """The template's FilterPattern `{ $.status = 5* }`: JSON lines whose status starts with 5."""
    try:
        value = json.loads(line)
    except ValueError:
        return False  # a JSON filter pattern matches JSON log events only
    return isinstance(value, dict) and str(value.get("status", "")).startswith("5")


class AccessLogSubscription:
    def __init__(
        self, path: Path, *, log_group: str, deliver: Callable[[dict, object], dict] = failed_calls_event
    ) -> None:
        self.path, self.log_group, self.deliver = path, log_group, deliver
        self._offset = 0

    def poll(self) -> list[dict]:
        """Deliver the lines written since the last poll that match the filter; what each delivery returned."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        self._offset += len(complete)
        lines = [line for line in complete.decode("utf-8", "replace").splitlines() if subscription_filter_matches(line)]
        results = []
        for start in range(0, len(lines), MAX_BATCH):
            event = subscription_event_encode(lines[start : start + MAX_BATCH], log_group=self.log_group)
            results.append(self.deliver(event, None))
        return results
