"""A local stand-in for API Gateway (development only: `make run` starts it).

It plays the example REST API of deploy/template.yaml: one metered route,
`GET /<stage>/hello`, behind a REQUEST Lambda authorizer with no identity source
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
   `$context.authorizer.<key>` gives them).

Any other path or method gets API Gateway's 403 `{"message": "Missing Authentication Token"}`.
Like the Lambda, nothing here imports Django.

    python -m local.gateway [--host 127.0.0.1] [--port 8010] [--api-id demoapi01] [--stage local]
"""

import argparse
import json
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote

log = logging.getLogger("gateway")

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
ROUTE = ("GET", "/hello")  # the template's ExampleMethod
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

    def describe(self) -> str:
        if self.decision == "allow":
            c = self.context
            return f"allow customer={c.get('customerId')} product={c.get('product')} remaining={c.get('remaining')}"
        return f"{self.decision} {self.reason}".strip()


def _arn_pattern(resource: str) -> re.Pattern:
    """An IAM resource pattern (`*` any run of characters, `?` one) as a regular expression."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in resource) + r"\Z")


def policy_effect(answer: dict, method_arn: str) -> str | None:
    """How an authorizer's IAM policy treats `method_arn`: "Deny" (an explicit deny wins),
    "Allow", or None (nothing matches: an implicit deny). ValueError if it is not a policy."""
    try:
        statements = answer["policyDocument"]["Statement"]
        answer["principalId"]  # API Gateway requires it
    except (KeyError, TypeError):
        raise ValueError("the authorizer's answer has no principalId or policyDocument.Statement") from None
    if isinstance(statements, dict):
        statements = [statements]
    effects = set()
    for statement in statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if not any(a in ("execute-api:Invoke", "execute-api:*", "*") for a in actions):
            continue
        if any(_arn_pattern(r).match(method_arn) for r in resources):
            effects.add(statement.get("Effect"))
    if "Deny" in effects:
        return "Deny"
    return "Allow" if "Allow" in effects else None


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
        now = time.time()
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
                "requestId": str(uuid.uuid4()),
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
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
        """Answer one request (`target` is the request line's path and query) as API Gateway would."""
        headers = list(headers)
        path, _, query = target.partition("?")
        path = unquote(path)
        prefix = f"/{self.stage}"
        resource_path = path[len(prefix) :] if path.startswith(prefix + "/") else ""
        if (method, resource_path) != ROUTE:
            return Answer(
                403,
                {"message": "Missing Authentication Token"},
                "no_route",
                "MissingAuthenticationTokenException",
                reason=f"(no such route: the stand-in serves GET {self.route_path})",
            )
        event = self.event(
            method=method, resource_path=resource_path, query=query, headers=headers, source_ip=source_ip, host=host
        )
        try:
            with self._one_at_a_time:
                answer = self.authorize(event, None)
            effect = policy_effect(answer, event["methodArn"])
        except Exception as e:  # what API Gateway does with any authorizer failure
            if str(e) == UNAUTHORIZED:
                return Answer(
                    401, {"message": UNAUTHORIZED}, "unauthorized", "UnauthorizedException", "(no usable token or key)"
                )
            log.exception("the authorizer failed")
            return Answer(500, {"message": None}, "error", "AuthorizerConfigurationException", f"({e})")

        # API Gateway hands the authorizer's context on as strings: $context.authorizer.<key>.
        context = {key: str(value) for key, value in (answer.get("context") or {}).items()}
        if effect != "Allow":
            reason = context.get("reason", "")
            message = EXPLICIT_DENY if effect == "Deny" else IMPLICIT_DENY
            return Answer(403, {"message": message, "reason": reason}, "deny", "AccessDeniedException", reason, context)
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
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
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
    server = GatewayServer(Gateway(api_id=args.api_id, stage=args.stage), args.host, args.port)
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
