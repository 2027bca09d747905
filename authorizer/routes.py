"""A product's route prices: which of its routes a call is, and what that route costs.

A route is `METHOD /path`, as API Gateway writes a route (HTTP API `routeKey`) or a resource and
its method (REST API): METHOD is one of `GET POST PUT PATCH DELETE HEAD OPTIONS` or `ANY`; the path
is `/` or `/`-separated segments, each a literal (`jobs`), a parameter (`{id}`) or, last only, a
greedy parameter (`{proxy+}`, one or more segments). Django validates a product's table with
`parse_route` (the same rules the gate matches by), and the mirror's route item carries it as
`routes` = {canonical route: cost} (authorizer/mirror.py).

The call is matched from what the event says (`Call`): the REST REQUEST event's `resource` and
`httpMethod`, the HTTP API's `routeKey` (its path; the method is the request's), or, for TOKEN
events, the method and path in `methodArn`. The first two are API Gateway's own templates
(`/jobs/{id}`), the last a concrete path (`/jobs/42`). Of the routes that match, the most specific
wins, as API Gateway picks its own: segment by segment from the left, a literal before a
parameter before a greedy one; then an exact method before `ANY`. No match: the product's default
cost (the balance item's own `cost`).
"""

import functools
import re
from collections.abc import Mapping

from authorizer.record import Record, setfield

METHODS = frozenset({"ANY", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"})
ANY = "ANY"
MAX_COST = 1_000_000
MAX_ROUTES = 100

LITERAL, PARAM, GREEDY = 2, 1, 0  # segment kinds, ranked: a literal is the most specific
_LITERAL = re.compile(r"[A-Za-z0-9._~:@-]+")
_PARAM = re.compile(r"\{([A-Za-z0-9_]+)\}")
_GREEDY = re.compile(r"\{([A-Za-z0-9_]+)\+\}")
MEMO_SIZE = 512


class RouteError(ValueError):
    """Not a route as API Gateway writes one (the message says why, in a product owner's words)."""


Segment = tuple[int, str]  # (kind, text)


class Route(Record):
    __slots__ = ("method", "segments")
    method: str
    segments: tuple[Segment, ...]

    def __init__(self, method: str, segments: tuple[Segment, ...]) -> None:
        setfield(self, "method", method)
        setfield(self, "segments", segments)

    @property
    def path(self) -> str:
        return "/" + "/".join(text for _, text in self.segments)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def specificity(self) -> tuple[tuple[int, ...], bool]:
        return tuple(kind for kind, _ in self.segments), self.method != ANY

    @property
    def shape(self) -> tuple[str, tuple[int | str, ...]]:
        """Two routes of one shape match the same calls (`/jobs/{id}` and `/jobs/{job}`)."""
        return self.method, tuple(text if kind == LITERAL else kind for kind, text in self.segments)

    def matches(self, call: "Call") -> bool:
        if self.method != ANY and self.method != call.method:
            return False
        called = call.segments
        for i, (kind, text) in enumerate(self.segments):
            if kind == GREEDY:
                return len(called) > i  # one or more segments, whatever they are
            if i >= len(called):
                return False
            called_kind, called_text = called[i]
            if kind == LITERAL and (called_kind != LITERAL or called_text != text):
                return False
            if kind == PARAM and called_kind == GREEDY:
                return False
        return len(called) == len(self.segments)


def _segment(text: str, *, last: bool, template: bool) -> Segment:
    if not template:
        return LITERAL, text
    if _GREEDY.fullmatch(text):
        if not last:
            raise RouteError(f"a greedy parameter ({text}) can only be the path's last segment")
        return GREEDY, text
    if _PARAM.fullmatch(text):
        return PARAM, text
    if _LITERAL.fullmatch(text):
        return LITERAL, text
    raise RouteError(
        f"{text!r} is not a path segment: use letters, digits and . _ ~ : @ -, "
        "or a parameter such as {id} or (last) {proxy+}"
    )


def _segments(path: str, *, template: bool) -> tuple[Segment, ...]:
    if not path.startswith("/"):
        raise RouteError(f"the path {path!r} must start with /")
    if path == "/":
        return ()
    parts = path[1:].split("/")
    if template and "" in parts:
        raise RouteError(f"the path {path!r} has an empty segment (or ends with /)")
    parts = [p for p in parts if p]
    return tuple(_segment(p, last=i == len(parts) - 1, template=template) for i, p in enumerate(parts))


def parse_route(text: str) -> Route:
    """`METHOD /path` as a Route; RouteError when it is not one. The method may be given in any case."""
    method, _, path = text.strip().partition(" ")
    method, path = method.upper(), path.strip()
    if method not in METHODS:
        raise RouteError(f"{text.strip()!r} must start with a method ({', '.join(sorted(METHODS))}) and a space")
    if not path:
        raise RouteError(f"{text.strip()!r} has no path (such as /jobs/{{id}})")
    params = re.findall(r"\{([A-Za-z0-9_]+)\+?\}", path)
    if len(params) != len(set(params)):
        raise RouteError(f"{text.strip()!r} names a parameter twice")
    return Route(method, _segments(path, template=True))


class Call(Record):
    """The called route as the event says it: a method, and a path's segments (template or concrete)."""

    __slots__ = ("method", "segments")
    method: str
    segments: tuple[Segment, ...]

    def __init__(self, method: str, segments: tuple[Segment, ...]) -> None:
        setfield(self, "method", method)
        setfield(self, "segments", segments)

    @staticmethod
    def from_template(method: str, path: str) -> "Call | None":
        """API Gateway's own resource or route path (`/jobs/{id}`); None when it is not one."""
        return _template_call(method, path)

    @staticmethod
    def from_path(method: str, path: str) -> "Call | None":
        """A concrete path (`/jobs/42`), every segment a literal."""
        return _path_call(method, path)


# A warm gate sees the same few routes again and again: each is parsed once (bounded).
@functools.lru_cache(maxsize=MEMO_SIZE)
def _template_call(method: str, path: str) -> Call | None:
    try:
        return Call(method.upper(), _segments(path, template=True))
    except RouteError:
        return None


@functools.lru_cache(maxsize=MEMO_SIZE)
def _path_call(method: str, path: str) -> Call | None:
    return Call(method.upper(), _segments(path, template=False)) if path.startswith("/") else None


class RouteTable:
    """A product's route prices, most specific first; `cost(call)` is the matched route's, None for no match."""

    def __init__(self, prices: Mapping[str, int]):
        routes = [(parse_route(text), int(cost)) for text, cost in prices.items()]
        self.routes = sorted(routes, key=lambda rc: rc[0].specificity, reverse=True)
        self._memo: dict[Call, int | None] = {}

    def __bool__(self) -> bool:
        return bool(self.routes)

    def cost(self, call: Call | None) -> int | None:
        if call is None or not self.routes:
            return None
        try:
            return self._memo[call]
        except KeyError:
            pass
        cost = next((c for route, c in self.routes if route.matches(call)), None)
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[call] = cost
        return cost


EMPTY = RouteTable({})


def table_check(prices: Mapping[str, int]) -> dict[str, int]:
    """A product's route table as Django stores it: {canonical route: cost}; RouteError on any mistake."""
    if len(prices) > MAX_ROUTES:
        raise RouteError(f"a product has at most {MAX_ROUTES} routes")
    table: dict[str, int] = {}
    shapes: dict[tuple[str, tuple[int | str, ...]], str] = {}
    for text, cost in prices.items():
        route = parse_route(text)
        if isinstance(cost, bool) or not isinstance(cost, int) or not 0 <= cost <= MAX_COST:
            raise RouteError(f"the cost of {route} must be a whole number from 0 to {MAX_COST}, not {cost!r}")
        if route.shape in shapes:
            raise RouteError(f"{route} and {shapes[route.shape]} are the same route")
        shapes[route.shape] = str(route)
        table[str(route)] = cost
    return dict(sorted(table.items()))
