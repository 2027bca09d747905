"""Read-only views of the three authorizer events API Gateway sends.

Modelled on Powertools' `APIGatewayAuthorizerTokenEvent`,
`APIGatewayAuthorizerRequestEvent` and `APIGatewayAuthorizerEventV2`, cut
down to what the gate needs: where the token is, and which API was called.

* REST API, TOKEN authorizer: `{"type": "TOKEN", "authorizationToken", "methodArn"}`;
  the token is the value of the one identity-source header, no other headers.
* REST API, REQUEST authorizer (and HTTP API payload 1.0, same shape):
  `{"type": "REQUEST", "methodArn", "headers", "multiValueHeaders",
  "queryStringParameters", "multiValueQueryStringParameters", "requestContext": {"apiId"}}`.
* HTTP API, payload 2.0: `{"version": "2.0", "type": "REQUEST", "routeArn",
  "headers" (lower-cased, repeated values joined by commas), "queryStringParameters",
  "requestContext": {"apiId"}}`.
"""

from collections.abc import Mapping
from typing import Any

from authorizer.routes import Call


class BadEvent(Exception):
    """Not an API Gateway authorizer event this gate understands."""


def api_id_from_arn(arn: str) -> str | None:
    """`arn:aws:execute-api:<region>:<account>:<api id>/<stage>/<method>/<path>` -> `<api id>`."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "execute-api":
        return None
    return parts[5].split("/", 1)[0] or None


def call_from_arn(arn: str) -> Call | None:
    """The method and concrete path in `.../<api id>/<stage>/<method>/<path>`."""
    parts = arn.split(":", 5)
    if len(parts) != 6:
        return None
    pieces = parts[5].split("/", 3)
    if len(pieces) < 3 or not pieces[2]:
        return None
    return Call.from_path(pieces[2], "/" + (pieces[3] if len(pieces) > 3 else ""))


def _one(values: list[str]) -> str | None:
    """The single value given; None when there is none or they disagree (never guess)."""
    distinct = {v for v in values if v is not None}
    return distinct.pop() if len(distinct) == 1 else None


class AuthorizerEvent:
    kind = ""
    http_api = False  # True: answer with the HTTP API simple response, not an IAM policy

    def __init__(self, raw: Mapping[str, Any]):
        self.raw = raw

    @property
    def arn(self) -> str:
        raise NotImplementedError

    @property
    def api_id(self) -> str | None:
        return api_id_from_arn(self.arn)

    @property
    def call(self) -> Call | None:
        """The called route, to price the call by (authorizer/routes.py); None when the event does not say."""
        return call_from_arn(self.arn)

    @property
    def request_id(self) -> str | None:
        """API Gateway's id of the request (`requestContext.requestId`; a TOKEN event has none), for the log."""
        value = (self.raw.get("requestContext") or {}).get("requestId")
        return value[:128] if isinstance(value, str) else None

    def header(self, name: str) -> str | None:
        """A header's value, whatever the case of its name."""
        return None

    def query(self, name: str) -> str | None:
        return None

    def token(self, *, header: str, scheme_required: bool, query: str | None = None) -> str | None:
        """The token: from the named header (`Bearer <token>`, or bare where the scheme is optional),
        else, when configured, from the named query parameter (bare). None when absent or malformed."""
        value = self.header(header)
        if value is not None:
            return bearer_token(value, scheme_required=scheme_required)
        if query:
            return bearer_token(self.query(query), scheme_required=False)
        return None


class TokenEvent(AuthorizerEvent):
    kind = "TOKEN"

    @property
    def arn(self) -> str:
        return self.raw.get("methodArn") or ""

    def header(self, name: str) -> str | None:
        # The identity-source header's value is all a TOKEN event carries.
        value = self.raw.get("authorizationToken")
        return value if isinstance(value, str) else None


class RequestEvent(AuthorizerEvent):
    kind = "REQUEST"

    @property
    def arn(self) -> str:
        return self.raw.get("methodArn") or ""

    @property
    def call(self) -> Call | None:
        # API Gateway's resource template (`/jobs/{id}`) and the request's method.
        method, resource = self.raw.get("httpMethod"), self.raw.get("resource")
        if isinstance(method, str) and isinstance(resource, str):
            return Call.from_template(method, resource)
        return call_from_arn(self.arn)

    def _lookup(self, single_key: str, multi_key: str, name: str, fold_case: bool) -> str | None:
        wanted = name.lower() if fold_case else name
        values: list[str] = []
        for key, value in (self.raw.get(single_key) or {}).items():
            if (key.lower() if fold_case else key) == wanted and isinstance(value, str):
                values.append(value)
        for key, many in (self.raw.get(multi_key) or {}).items():
            if (key.lower() if fold_case else key) == wanted and isinstance(many, list):
                values.extend(v for v in many if isinstance(v, str))
        return _one(values)

    def header(self, name: str) -> str | None:
        return self._lookup("headers", "multiValueHeaders", name, fold_case=True)

    def query(self, name: str) -> str | None:
        return self._lookup("queryStringParameters", "multiValueQueryStringParameters", name, fold_case=False)


class HttpApiEvent(AuthorizerEvent):
    kind = "HTTP_API"
    http_api = True

    @property
    def arn(self) -> str:
        return self.raw.get("routeArn") or ""

    @property
    def api_id(self) -> str | None:
        context_id = (self.raw.get("requestContext") or {}).get("apiId")
        arn_id = api_id_from_arn(self.arn)
        if context_id and arn_id and context_id != arn_id:
            return None  # the event contradicts itself: route nowhere
        return context_id or arn_id

    @property
    def call(self) -> Call | None:
        # The route's path from `routeKey` ("GET /jobs/{id}"), the request's own method; the
        # `$default` route has no path of its own: the request's path, then.
        http = (self.raw.get("requestContext") or {}).get("http") or {}
        route_key = self.raw.get("routeKey")
        if not isinstance(route_key, str):
            return call_from_arn(self.arn)
        route_method, _, route_path = route_key.partition(" ")
        method = http.get("method") if isinstance(http.get("method"), str) else route_method
        if route_key == "$default":
            path = self.raw.get("rawPath") or http.get("path")
            return Call.from_path(method, path) if isinstance(path, str) and method else None
        return Call.from_template(method, route_path) if method else None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return _one(
            [v for k, v in (self.raw.get("headers") or {}).items() if k.lower() == wanted and isinstance(v, str)]
        )

    def query(self, name: str) -> str | None:
        value = (self.raw.get("queryStringParameters") or {}).get(name)
        return value if isinstance(value, str) else None


def event_view(raw: object) -> AuthorizerEvent:
    """The view for an authorizer event; BadEvent if it is none of the three kinds."""
    if not isinstance(raw, Mapping):
        raise BadEvent("the event is not an object")
    if raw.get("version") == "2.0" and raw.get("type") == "REQUEST":
        return HttpApiEvent(raw)
    if raw.get("type") == "TOKEN":
        return TokenEvent(raw)
    if raw.get("type") == "REQUEST" and "methodArn" in raw:
        return RequestEvent(raw)
    raise BadEvent(f"unknown authorizer event (type={raw.get('type')!r}, version={raw.get('version')!r})")


def bearer_token(value: str | None, *, scheme_required: bool = True) -> str | None:
    """The token in `Bearer <token>` (scheme case-insensitive, RFC 6750); bare when the scheme is optional."""
    if not value:
        return None
    parts = value.strip().split(" ")
    if len(parts) == 2 and parts[0].lower() == "bearer":
        token = parts[1]
    elif len(parts) == 1 and not scheme_required:
        token = parts[0]
    else:
        return None
    return token or None
