"""The stage's access log, as the local API Gateway stand-in writes it (Django-free, like the stand-in).

API Gateway writes one line per call to the stage's log group in the format deploy/template.yaml
gives (ExampleStage AccessLogSetting): ACCESS_LOG_FORMAT is that format, key by key
(tests/test_deploy_template.py compares them), and `access_log_line` fills it in as API Gateway
does: each `$context.` variable replaced by its value, `-` where the call had none.
"""

import json
import re
import threading
from collections.abc import Callable, Mapping

# deploy/template.yaml's ExampleStage AccessLogSetting Format, key by key (tests/test_deploy_template.py).
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "status": "$context.status",
    "route": "$context.httpMethod $context.resourcePath",
    "customerId": "$context.authorizer.customerId",
    "product": "$context.authorizer.product",
    "cost": "$context.authorizer.cost",
    "credentialId": "$context.authorizer.credentialId",
}
_VARIABLE = re.compile(r"\$context\.[A-Za-z.]+")


def access_log_line(values: Mapping[str, str]) -> str:
    """One call's line: {"$context.requestId": ..., "$context.authorizer.cost": ..., ...} into the format."""
    line = {
        key: _VARIABLE.sub(lambda m: str(values.get(m.group(0)) or "-"), text)
        for key, text in ACCESS_LOG_FORMAT.items()
    }
    return json.dumps(line, separators=(",", ":"))


def appender(path: str) -> Callable[[str], None]:
    """Append lines to `path`, each written whole and flushed (local/subscription.py tails the file)."""
    lock = threading.Lock()
    out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life

    def append(line: str) -> None:
        with lock:
            out.write(line + "\n")
            out.flush()

    return append
