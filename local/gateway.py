"""A local stand-in for API Gateway (development only: `make run` starts it).

It plays the example REST API of deploy/template.yaml: a metered route,
`GET /<stage>/hello`, and a metered route whose integration fails, `GET /<stage>/fail`
(500 after the authorizer allowed it: a failed call, credited back), behind a REQUEST
Lambda authorizer with no identity source
(a call may carry a token or an API key in `Authorization`, or a key in `x-api-key`)
and result caching off. For each call it does what API Gateway does:

1. Builds the REST API `REQUEST` authorizer event in AWS's documented shape
   (methodArn `arn:aws:execute-api:<region>:<account>:<api id>/<stage>/<METHOD>/<path>`,
   headers, query string, requestContext) and calls the real
   `authorizer.handler.lambda_handler(event, None)` in this process, configured by
   the same environment variables as the Lambda (MIRROR_TABLE, JWT_PUBLIC_KEY, ...).
   One call at a time, as one Lambda instance would take them.
2. Answers from what the authorizer returned:
   `Exception("Unauthorized")` -> 401 `{"message": "Unauthorized"}`;
   a policy that does not allow the methodArn -> 403, the template's ACCESS_DENIED
   gateway response `{"message": ..., "reason": <context.reason>}`;
   any other failure -> 500 `{"message": null}`;
   allowed -> the integration, like the template's mock:
   `{"customer", "product", "remaining"}` from the authorizer's context (strings, as
   `$context.authorizer.<key>` gives them); on `/fail`, 500 `{"message": "Internal server error"}`.
3. With `--access-log FILE`, appends the stage's access-log line for the call to FILE, in
   the template's JSON format (ACCESS_LOG_FORMAT; `-` where the call had no value), as API
   Gateway writes it to the stage's log group. `make run` sends the failed calls' lines on
   to the same code as the Lambda's CloudWatch Logs subscription (local/subscription.py).

Any other path or method gets API Gateway's 403 `{"message": "Missing Authentication Token"}`.
Like the Lambda, nothing here imports Django.

    python -m local.gateway [--host 127.0.0.1] [--port 8010] [--api-id demoapi01] [--stage local] [--access-log FILE]
"""

import argparse
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote

from local.access_log import access_log_line, appender
from local.policy import policy_effect

log = logging.getLogger("gateway")

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
ROUTE = ("GET", "/hello")  # the template's ExampleMethod
FAILING_ROUTE = ("GET", "/fail")  # allowed and charged, then the integration fails: credited back
ROUTES = (ROUTE, FAILING_ROUTE)
UNAUTHORIZED = "Unauthorized"  # the message an authorizer raises for a 401
EXPLICIT_DENY = "User is not authorized to access this resource with an explicit deny"
IMPLICIT_DENY = "User is not authorized to access this resource"

Authorize = Callable[[dict, object], dict]


@dataclass(frozen=True)
class Answer:
    """What the gateway sends back, and what it decided (for the log)."""

    status: int
    body: dict
    decision: str  # allow, deny, unauthorized, error, no_route
    error_type: str | None = None  # API Gateway's x-amzn-ErrorType
    reason: str = ""
    context: dict = field(default_factory=dict)
    request_id: str = ""
    method: str = ""
    resource_path: str = ""
    request_time: str = ""

    def access_log_line(self) -> str:
        """The stage's access-log line for this call (local/access_log.py)."""
        return access_log_line(
            {
                "$context.requestId": self.request_id,
                "$context.requestTime": self.request_time,
                "$context.status": str(self.status),
                "$context.httpMethod": self.method,
                "$context.resourcePath": self.resource_path,
                **{f"$context.authorizer.{key}": value for key, value in self.context.items()},
            }
        )

    def describe(self) -> str:
        if self.decision in ("allow", "failed"):
            c = self.context
            what = "allow" if self.decision == "allow" else "allowed, then the integration failed:"
            return f"{what} customer={c.get('customerId')} product={c.get('product')} remaining={c.get('remaining')}"
        return f"{self.decision} {self.reason}".strip()


def _request_time(now: float) -> str:
    """$context.requestTime: CLF-formatted, UTC."""
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))


def _default_authorize(event: dict, context: object) -> dict:
    from authorizer import handler  # reads its environment when first imported, as in Lambda

    return handler.lambda_handler(event, context)


class Gateway:
    """The stand-in's logic, apart from HTTP: `call()` one request, get an `Answer`."""

    def __init__(
        self,
        *,
        api_id: str,
        stage: str = "local",
        region: str = REGION,
        account_id: str = ACCOUNT_ID,
        authorize: Authorize = _default_authorize,
    ) -> None:
        self.api_id, self.stage, self.region, self.account_id = api_id, stage, region, account_id
        self.authorize = authorize
        self._one_at_a_time = threading.Lock()
        self.access_log: Callable[[str], None] | None = None  # called with each call's access-log line

    @property
    def route_path(self) -> str:
        """The metered route's path, stage included, as callers use it."""
        return f"/{self.stage}{ROUTE[1]}"

    def method_arn(self, method: str, resource_path: str) -> str:
        return f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api_id}/{self.stage}/{method}{resource_path}"

    def event(
        self,
        *,
        method: str,
        resource_path: str,
        query: str,
        headers: Iterable[tuple[str, str]],
        source_ip: str,
        host: str,
        request_id: str = "",
        now: float | None = None,
    ) -> dict:
        """The REST API `REQUEST` authorizer event for this call (tests/authorizer/events/rest_request.json's shape)."""
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in [*headers, ("X-Forwarded-For", source_ip), ("X-Forwarded-Proto", "http")]:
            single[name] = value  # API Gateway keeps the last value of a repeated header here
            multi.setdefault(name, []).append(value)
        query_single: dict[str, str] = {}
        query_multi: dict[str, list[str]] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            query_single[name] = value
            query_multi.setdefault(name, []).append(value)
        now = time.time() if now is None else now
        return {
            "type": "REQUEST",
            "methodArn": self.method_arn(method, resource_path),
            "resource": resource_path,
            "path": resource_path,
            "httpMethod": method,
            "headers": single,
            "multiValueHeaders": multi,
            "queryStringParameters": query_single or None,
            "multiValueQueryStringParameters": query_multi or None,
            "pathParameters": {},
            "stageVariables": None,
            "requestContext": {
                "path": f"/{self.stage}{resource_path}",
                "accountId": self.account_id,
                "resourceId": "local0",
                "stage": self.stage,
                "domainName": host,
                "requestId": request_id or str(uuid.uuid4()),
                "requestTime": _request_time(now),
                "requestTimeEpoch": int(now * 1000),
                "protocol": "HTTP/1.1",
                "identity": {
                    "apiKey": None,
                    "sourceIp": source_ip,
                    "userAgent": single.get("User-Agent"),
                    "clientCert": None,
                },
                "resourcePath": resource_path,
                "httpMethod": method,
                "apiId": self.api_id,
            },
        }

    def call(
        self,
        *,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        source_ip: str = "127.0.0.1",
        host: str = "",
    ) -> Answer:
        """Answer one request (`target` is the request line's path and query) as API Gateway would,
        and write its access-log line."""
        now, request_id = time.time(), str(uuid.uuid4())
        answer = self._answer(method=method, target=target, headers=headers, source_ip=source_ip, host=host, now=now,
                              request_id=request_id)  # fmt: skip
        path = unquote(target.partition("?")[0])
        prefix = f"/{self.stage}"
        answer = replace(
            answer,
            request_id=request_id,
            method=method,
            resource_path=path[len(prefix) :] if path.startswith(prefix + "/") else path,
            request_time=_request_time(now),
        )
        if self.access_log is not None:
            self.access_log(answer.access_log_line())
        return answer

    def _answer(self, *, method: str, target: str, headers: Iterable[tuple[str, str]], source_ip: str, host: str,
                now: float, request_id: str) -> Answer:  # fmt: skip
        headers = list(headers)
        path, _, query = target.partition("?")
        path = unquote(path)
        prefix = f"/{self.stage}"
        resource_path = path[len(prefix) :] if path.startswith(prefix + "/") else ""
        if (method, resource_path) not in ROUTES:
            return Answer(
                403,
                {"message": "Missing Authentication Token"},
                "no_route",
                "MissingAuthenticationTokenException",
                reason=f"(no such route: the stand-in serves GET {self.route_path} and GET /{self.stage}/fail)",
            )
        event = self.event(
            method=method,
            resource_path=resource_path,
            query=query,
            headers=headers,
            source_ip=source_ip,
            host=host,
            request_id=request_id,
            now=now,
        )
        try:
            with self._one_at_a_time:
                answer = self.authorize(event, None)
            effect = policy_effect(answer, event["methodArn"])
        except Exception as e:  # what API Gateway does with any authorizer failure
            if str(e) == UNAUTHORIZED:
                return Answer(
                    401,
                    {"message": UNAUTHORIZED},
                    "unauthorized",
                    "UnauthorizedException",
                    "(no usable token or key)",
                )
            log.exception("the authorizer failed")
            return Answer(
                500,
                {"message": None},
                "error",
                "AuthorizerConfigurationException",
                f"({e})",
            )

        # API Gateway hands the authorizer's context on as strings: $context.authorizer.<key>.
        context = {key: str(value) for key, value in (answer.get("context") or {}).items()}
        if effect != "Allow":
            reason = context.get("reason", "")
            message = EXPLICIT_DENY if effect == "Deny" else IMPLICIT_DENY
            return Answer(
                403,
                {"message": message, "reason": reason},
                "deny",
                "AccessDeniedException",
                reason,
                context,
            )
        if (method, resource_path) == FAILING_ROUTE:  # charged, then the integration fails
            return Answer(
                500,
                {"message": "Internal server error"},
                "failed",
                "InternalServerErrorException",
                "",
                context,
            )
        # The integration: the template's MOCK, which echoes the authorizer's context.
        body = {
            "customer": context.get("customerId", ""),
            "product": context.get("product", ""),
            "remaining": context.get("remaining", ""),
        }
        return Answer(200, body, "allow", context=context)


class _RequestHandler(BaseHTTPRequestHandler):
    server_version = "CreditPortal-API-Gateway-stand-in"
    server: "GatewayServer"

    def _serve(self) -> None:
        started = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # the example API's route takes no body
        answer = self.server.gateway.call(
            method=self.command,
            target=self.path,
            headers=self.headers.items(),
            source_ip=self.client_address[0],
            host=self.headers.get("Host", ""),
        )
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", answer.request_id)
        if answer.error_type:
            self.send_header("x-amzn-ErrorType", answer.error_type)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        took = (time.monotonic() - started) * 1000
        log.info("%s %s -> %s %s (%.0f ms)", self.command, self.path, answer.status, answer.describe(), took)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args) -> None:
        pass  # _serve logs one line per call, with the decision


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gateway: Gateway, host: str, port: int) -> None:
        self.gateway = gateway
        super().__init__((host, port), _RequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument("--api-id", default="demoapi01", help="the API id in methodArn (a product's API id)")
    parser.add_argument("--stage", default="local")
    parser.add_argument("--access-log", metavar="FILE", help="append each call's access-log line (JSON) to FILE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    log.propagate = False  # its own lines without "gateway: " (runstack already names the process)
    plain = logging.StreamHandler(sys.stdout)
    log.addHandler(plain)

    from authorizer import handler
    from authorizer.config import ConfigError

    try:
        config = handler.runtime().config
    except ConfigError as e:
        log.error("the authorizer is not configured: %s", e)
        return 2
    gateway = Gateway(api_id=args.api_id, stage=args.stage)
    if args.access_log:
        gateway.access_log = appender(args.access_log)
    server = GatewayServer(gateway, args.host, args.port)
    log.info(
        "API Gateway stand-in listening on %s%s (API id %s, stage %s): each call goes through "
        "authorizer.handler.lambda_handler as a REQUEST event (mirror table %s), result caching off",
        server.url,
        server.gateway.route_path,
        args.api_id,
        args.stage,
        config.table,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
