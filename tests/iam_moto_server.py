"""A moto server that enforces IAM on resources too, and logs every decision it makes.

    INITIAL_NO_AUTH_ACTION_COUNT=0 python -m tests.iam_moto_server PORT LOG_FILE

Run as its own process by tests/iam.py. moto checks each request's signature
and evaluates the caller's IAM policies once INITIAL_NO_AUTH_ACTION_COUNT
requests have passed (moto/core/authorization.py). For S3 it evaluates the
request's bucket/key ARN, but for DynamoDB, SES and CloudWatch Logs it asks
about the resource "*", which a policy scoped to one table never allows.
This process tells moto, per request, the ARN that AWS evaluates for it
(the Service Authorization Reference's resource types), so a policy is
checked as AWS checks it: action *and* resource:

* DynamoDB: the request's `TableName`, `table/<name>`;
* SES: the sending identity, `identity/<address>` when that address is
  verified itself, else `identity/<its domain>`;
* Logs: `log-group:<group>:log-stream:<stream>` (`log-group:<group>` without a stream).

Nothing of moto's evaluation is changed. Every evaluated request is appended
to LOG_FILE as one JSON line: {"key", "action", "resource", "allowed"}.
"""

import json
import sys
import threading
from email.utils import parseaddr

from moto.dynamodb.responses import DynamoHandler
from moto.iam import access_control
from moto.logs.responses import LogsResponse
from moto.ses.models import ses_backends
from moto.ses.responses import EmailResponse
from moto.utilities.utils import get_partition

_lock = threading.Lock()


def _arn(response, service: str, resource: str) -> str:
    return f"arn:{get_partition(response.region)}:{service}:{response.region}:{response.current_account}:{resource}"


def _json_body(response) -> dict:
    body = response.body
    if isinstance(body, dict):  # DynamoDB's handler has parsed it already
        return body
    try:
        return json.loads(body or "{}")
    except ValueError:
        return {}


def _dynamodb_resource(self) -> str:
    table = _json_body(self).get("TableName")
    return _arn(self, "dynamodb", f"table/{table}") if table else "*"


def _ses_resource(self) -> str:
    _, address = parseaddr(self._get_param("Source") or "")
    if not address:
        return "*"
    verified = ses_backends[self.current_account][self.region].email_identities
    identity = address if address in verified else address.split("@", 1)[-1]
    return _arn(self, "ses", f"identity/{identity}")


def _logs_resource(self) -> str:
    body = _json_body(self)
    group, stream = body.get("logGroupName"), body.get("logStreamName")
    if not group:
        return "*"
    return _arn(self, "logs", f"log-group:{group}" + (f":log-stream:{stream}" if stream else ""))


def _logged(check):
    def check_action_permitted(self, resource: str) -> None:
        allowed = False
        try:
            check(self, resource)
            allowed = True
        finally:
            entry = {
                "key": self._access_key.create_credentials().access_key,
                "action": self._action,
                "resource": resource,
                "allowed": allowed,
            }
            with _lock, open(LOG_FILE, "a") as log:
                log.write(json.dumps(entry) + "\n")

    return check_action_permitted


def main(port: int) -> None:
    from moto.server import ThreadedMotoServer

    DynamoHandler._determine_resource = _dynamodb_resource
    EmailResponse._determine_resource = _ses_resource
    LogsResponse._determine_resource = _logs_resource
    access_control.IAMRequestBase.check_action_permitted = _logged(access_control.IAMRequestBase.check_action_permitted)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or dies)
    server.stop()


if __name__ == "__main__":
    LOG_FILE = sys.argv[2]
    main(int(sys.argv[1]))
