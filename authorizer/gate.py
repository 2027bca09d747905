"""The decision against the mirror: which product an API serves, what the call costs, and the spend.

A decision is one conditional `UpdateItem` once the route is cached: it
spends the called route's cost only if the customer and the product are active,
the token's credential version is the one the mirror holds, and enough
credits remain; if not, the old item (returned with the failure) says why.

The called API's route item (cached with the route) carries the product's route prices
(authorizer/routes.py). A matched route of cost c > 0 spends `:c` under `used <= ceilings.<c>`
(Django keeps `ceilings.<c>` = granted - c for every route cost of the product: conditions do no
arithmetic); a free route (cost 0) needs no ceiling; a call no route matches spends the item's
own `cost` under its `ceiling`.

A lost answer. DynamoDB may apply a spend and the answer never come back (a read timeout, a
connection cut, a 5xx): denying then would charge the customer for a denied call. So each decision
stamps its spend (`<ms sent> <random>`, one stamp per decision, kept across its attempts) and the
UpdateItem shifts the stamp into the item's `spent0..spent3` (the last four spends, newest first)
under the condition that it is in none of them. After an answer that may have been lost the same
spend is sent again (until AMBIGUOUS_RETRY_SECONDS after the first send): if the first landed, the
retry's condition fails and the old item it returns holds the stamp: the call was charged once and
is allowed, with what that item says remains. A retry also requires that the item's oldest slot
(`spent3`) is older than the first send minus LANDING_MARGIN_MS, or empty: if four other spends
landed since, the stamp may have been pushed out, and spending again could charge twice; then the
call is denied as an internal error (it may have been charged, as every lost answer was before:
logged with its stamp). A spend that lands later than LANDING_MARGIN_MS after it was sent is assumed
not to happen. The stamp is the decision's own, not API Gateway's request id: API Gateway asks once
per request, and an id seen again taken as paid would let whoever can repeat one call for free.
"""

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, HTTPClientError

from authorizer import mirror
from authorizer.record import Record, setfield
from authorizer.routes import EMPTY, Call, RouteTable

# Deny reasons: short snake_case codes, passed on as context.reason.
NO_CREDITS = "no_credits"  # no balance for this product at all
CREDITS_EXHAUSTED = "credits_exhausted"
CUSTOMER_SUSPENDED = "customer_suspended"
PRODUCT_INACTIVE = "product_inactive"
CREDENTIAL_REVOKED = "credential_revoked"
CREDENTIAL_ROTATED = "credential_rotated"
PRODUCT_NOT_IN_TOKEN = "product_not_in_token"
UNKNOWN_API = "unknown_api"
INTERNAL_ERROR = "internal_error"
# The route's price changed and the mirror is still being rewritten to it (its item has no ceiling
# for the cost the route item says): denied, never charged at a price the item cannot bound.
PRICES_CHANGING = "prices_changing"

logger = logging.getLogger("authorizer")

# The stamp's shift through spent0..spent3 (oldest first: each slot takes the one before it as it was),
# and the condition that the stamp is in none of them (a missing slot equals nothing).
_SLOTS = range(len(mirror.SPENT))
STAMP_UPDATE = ", ".join([*(f"#s{i} = if_not_exists(#s{i - 1}, :none)" for i in reversed(_SLOTS[1:])), "#s0 = :stamp"])
STAMP_CONDITION = "NOT (" + " OR ".join(f"#s{i} = :stamp" for i in _SLOTS) + ")"
# A retry's: no four spends landed since the first send (the oldest slot is older, or empty).
RETRY_CONDITION = f" AND (attribute_not_exists(#s{_SLOTS[-1]}) OR #s{_SLOTS[-1]} < :since)"
STAMP_NAMES = {f"#s{i}": name for i, name in zip(_SLOTS, mirror.SPENT, strict=True)}
NO_STAMP = "-"  # an empty slot (sorts before every stamp)
LANDING_MARGIN_MS = 10_000
AMBIGUOUS_RETRY_SECONDS = 2.5

SPEND_UPDATE = f"SET #used = #used + #cost, {STAMP_UPDATE}"
SPEND_CONDITION = (
    "attribute_exists(#pk) AND #active = :true AND #product_active = :true AND #creds.#cid = :ver AND #used <= #ceiling"
    f" AND {STAMP_CONDITION}"
)
# A route's own cost: `:cost`, bounded by its ceiling in `ceilings` (#c = the cost, as a string).
ROUTE_SPEND_UPDATE = f"SET #used = #used + :cost, {STAMP_UPDATE}"
ROUTE_SPEND_CONDITION = (
    "attribute_exists(#pk) AND #active = :true AND #product_active = :true AND #creds.#cid = :ver"
    f" AND #used <= #ceilings.#c AND {STAMP_CONDITION}"
)
# A free route: the same checks, no ceiling (a free call is allowed with no credits left).
FREE_SPEND_CONDITION = f"attribute_exists(#pk) AND #active = :true AND #product_active = :true AND #creds.#cid = :ver AND {STAMP_CONDITION}"
ROUTE_NAMES = {
    "#pk": mirror.PK,
    "#used": mirror.USED,
    "#active": mirror.ACTIVE,
    "#product_active": mirror.PRODUCT_ACTIVE,
    "#creds": mirror.CREDS,
    **STAMP_NAMES,
}
SPEND_NAMES = {
    "#pk": mirror.PK,
    "#used": mirror.USED,
    "#cost": mirror.COST,
    "#active": mirror.ACTIVE,
    "#product_active": mirror.PRODUCT_ACTIVE,
    "#creds": mirror.CREDS,
    "#ceiling": mirror.CEILING,
    **STAMP_NAMES,
}

# Errors after which the request surely did not change anything: safe to send
# again. A read timeout, a cut connection or a 5xx is NOT one of them (the request
# may have landed): a GetItem is sent again after one, a spend only as a stamped retry.
THROTTLED = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
ATTEMPTS = 3
NEGATIVE_ROUTE_TTL = 5.0
ROUTE_CACHE_SIZE = 1024


class Spender(Protocol):
    """Who spends: a verified token (authorizer.tokens.AccessToken) or an API key's holder (authorizer.keys)."""

    @property
    def customer_id(self) -> str: ...
    @property
    def client_id(self) -> str: ...  # its entry in the balance item's `creds`
    @property
    def version(self) -> int: ...  # the value `creds` must hold for it


class Spend(Record):
    __slots__ = ("allowed", "cost", "reason", "remaining")
    allowed: bool
    remaining: int | None
    reason: str | None
    cost: int | None  # what the call cost (allowed only)

    def __init__(
        self, allowed: bool, remaining: int | None = None, reason: str | None = None, cost: int | None = None
    ) -> None:
        setfield(self, "allowed", allowed)
        setfield(self, "remaining", remaining)
        setfield(self, "reason", reason)
        setfield(self, "cost", cost)


class SpendUnknown(Exception):
    """A spend's answer was lost and the item no longer shows whether it landed: the call is denied."""


class Route(Record):
    """A route item as the gate remembers it: the product an API serves, and that product's route prices."""

    __slots__ = ("prices", "product")
    product: str | None
    prices: RouteTable

    def __init__(self, product: str | None, prices: RouteTable = EMPTY) -> None:
        setfield(self, "product", product)
        setfield(self, "prices", prices)


def route_from_item(item: Mapping[str, Any]) -> Route:
    product = item.get(mirror.PRODUCT, {}).get("S") or None
    routes = item.get(mirror.ROUTES, {}).get("M") or {}
    return Route(product, RouteTable({text: int(v["N"]) for text, v in routes.items()}) if routes else EMPTY)


def _number(item: Mapping[str, Any], name: str) -> int | None:
    value = item.get(name, {}).get("N")
    return int(value) if value is not None else None


def refusal_reason(old: Mapping[str, Any] | None, token: Spender, cost: int | None = None) -> str:
    """Why the spend's condition failed, from the item as it was."""
    if not old:
        return NO_CREDITS
    if not old.get(mirror.ACTIVE, {}).get("BOOL", False):
        return CUSTOMER_SUSPENDED
    if not old.get(mirror.PRODUCT_ACTIVE, {}).get("BOOL", False):
        return PRODUCT_INACTIVE
    creds = old.get(mirror.CREDS, {}).get("M", {})
    if token.client_id not in creds:
        return CREDENTIAL_REVOKED
    if _number(creds, token.client_id) != token.version:
        return CREDENTIAL_ROTATED
    if cost and str(cost) not in old.get(mirror.CEILINGS, {}).get("M", {}):
        return PRICES_CHANGING
    return CREDITS_EXHAUSTED


class Gate:
    def __init__(
        self,
        *,
        client: Any,
        table: str,
        route_ttl: float,
        product: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.table = table
        self.route_ttl = route_ttl
        self.pinned_product = product
        self.clock = clock
        self._routes: dict[str, tuple[Route, float]] = {}
        self._lock = threading.Lock()

    def get_item(self, **params: Any) -> dict[str, Any]:
        """One GetItem on the mirror: a read is safe to send again, so it is, ATTEMPTS in all, after any
        failure but a refusal (not sent, no answer, throttled, a 5xx). A spend is sent by `_update`."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response: dict[str, Any] = self.client.get_item(TableName=self.table, **params)
                return response
            except (EndpointConnectionError, ConnectTimeoutError, HTTPClientError):
                if attempt == ATTEMPTS:
                    raise
            except ClientError as e:
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                retry = e.response.get("Error", {}).get("Code") in THROTTLED or status >= 500
                if not retry or attempt == ATTEMPTS:
                    raise
            time.sleep(backoff(attempt))
        raise AssertionError("unreachable")

    def route(self, api_id: str) -> Route:
        """The route item of an API id: its product and prices (remembered for a while)."""
        now = self.clock()
        cached = self._routes.get(api_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        response = self.get_item(Key=mirror.route_key(api_id))
        route = route_from_item(response.get("Item") or {})
        # An unknown API is asked about again soon; pinned, a missing item only means no route prices.
        known = route.product is not None or self.pinned_product is not None
        self.route_put(api_id, route, now + (self.route_ttl if known else min(self.route_ttl, NEGATIVE_ROUTE_TTL)))
        return route

    def route_put(self, api_id: str, route: Route, until: float) -> None:
        with self._lock:
            if len(self._routes) >= ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[api_id] = (route, until)

    def forget(self, api_id: str) -> None:
        """Read the API's route item again at the next call (its prices changed)."""
        with self._lock:
            self._routes.pop(api_id, None)

    def resolve(self, api_id: str | None) -> Route:
        """What a call to this API is: its product (pinned, or the route item's) and that product's route
        prices. Pinned, the prices are the API's route item's when it names the pinned product (or none)."""
        if not api_id:
            return Route(self.pinned_product)
        route = self.route(api_id)
        if self.pinned_product is None:
            return route
        if route.product in (None, self.pinned_product):
            return Route(self.pinned_product, route.prices)
        return Route(self.pinned_product)

    def spend(
        self,
        token: Spender,
        product: str,
        *,
        cost: int | None = None,
        api_id: str | None = None,
        call: Call | None = None,
        request_id: str | None = None,
    ) -> Spend:
        """Spend `cost` (the called route's; None: the product's default) of `product` from the token's
        customer: one conditional UpdateItem, stamped (see "A lost answer" above; `request_id` is logged).

        When the item has no ceiling for that cost (the cached prices changed since), the API's route
        item is read again and, if the cost it says for `call` now differs, spent at that instead."""
        sent_ms = int(time.time() * 1000)
        stamp = Stamp(f"{sent_ms:013d} {uuid.uuid4().hex[:16]}", f"{sent_ms - LANDING_MARGIN_MS:013d}", request_id)
        spend = self._spend(token, product, cost, stamp)
        if spend.reason == PRICES_CHANGING and api_id:
            self.forget(api_id)
            route = self.resolve(api_id)
            fresh = route.prices.cost(call) if route.product == product else None
            if fresh != cost:
                spend = self._spend(token, product, fresh, stamp)
        return spend

    def _spend(self, token: Spender, product: str, cost: int | None, stamp: "Stamp") -> Spend:
        values = {
            ":true": {"BOOL": True},
            ":ver": {"N": str(token.version)},
            ":stamp": {"S": stamp.text},
            ":none": {"S": NO_STAMP},
        }
        if cost is None:
            update, condition = SPEND_UPDATE, SPEND_CONDITION
            names = {**SPEND_NAMES, "#cid": token.client_id}
        else:
            update = ROUTE_SPEND_UPDATE
            values[":cost"] = {"N": str(cost)}
            if cost:
                condition = ROUTE_SPEND_CONDITION
                names = {**ROUTE_NAMES, "#cid": token.client_id, "#ceilings": mirror.CEILINGS, "#c": str(cost)}
            else:
                condition, names = FREE_SPEND_CONDITION, {**ROUTE_NAMES, "#cid": token.client_id}
        params = {
            "Key": mirror.balance_key(token.customer_id, product),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        try:
            item = self._update(params, stamp)["Attributes"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old = e.response.get("Item")
            if not old or stamp.text not in (old.get(slot, {}).get("S") for slot in mirror.SPENT):
                if stamp.retried and old and old.get(mirror.SPENT[-1], {}).get("S", NO_STAMP) >= stamp.since:
                    logger.warning("spend unknown: stamp %s (request %s) lost", stamp.text, stamp.request_id)
                    raise SpendUnknown(
                        f"the answer to spend {stamp.text} was lost and four spends landed since"
                    ) from None
                return Spend(allowed=False, reason=refusal_reason(old, token, cost))
            item = old  # a retry of a spend that had landed: charged once, allowed now
            logger.info("spend %s had landed: its answer was lost (request %s)", stamp.text, stamp.request_id)
        granted, used = _number(item, mirror.GRANTED), _number(item, mirror.USED)
        if cost is None:
            cost = _number(item, mirror.COST)  # what `SET #used = #used + #cost` added
        if granted is None or used is None or cost is None:  # the handler denies the call as an internal error
            raise ValueError(f"the spent item has no {mirror.GRANTED}, {mirror.USED} or {mirror.COST}")
        return Spend(allowed=True, remaining=granted - used, cost=cost)

    def _update(self, params: dict[str, Any], stamp: "Stamp") -> dict[str, Any]:
        """Send the stamped spend. Sent again when it surely did not land (ATTEMPTS in all) and, once an
        answer may have been lost, with RETRY_CONDITION until AMBIGUOUS_RETRY_SECONDS after the first send."""
        started, condition = time.monotonic(), params["ConditionExpression"]
        for attempt in itertools.count(1):
            if stamp.retried:
                params["ConditionExpression"] = condition + RETRY_CONDITION
                params["ExpressionAttributeValues"][":since"] = {"S": stamp.since}
            try:
                response: dict[str, Any] = self.client.update_item(TableName=self.table, **params)
                return response
            except (EndpointConnectionError, ConnectTimeoutError):  # not sent
                if attempt >= ATTEMPTS and not stamp.retried:
                    raise
            except HTTPClientError:  # sent, no answer: it may have landed
                stamp.retried = True
            except ClientError as e:
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if e.response.get("Error", {}).get("Code") in THROTTLED:
                    if attempt >= ATTEMPTS and not stamp.retried:
                        raise
                elif status >= 500:  # it may have landed
                    stamp.retried = True
                else:
                    raise
            delay = backoff(attempt)
            if stamp.retried and time.monotonic() + delay - started > AMBIGUOUS_RETRY_SECONDS:
                logger.warning("spend unknown: stamp %s (request %s) unanswered", stamp.text, stamp.request_id)
                raise SpendUnknown(f"no answer to spend {stamp.text} within {AMBIGUOUS_RETRY_SECONDS} s")
            time.sleep(delay)
        raise AssertionError("unreachable")


def backoff(attempt: int) -> float:
    """Seconds to wait before sending again after attempt number `attempt` (10 ms, 40 ms, … at most 0.5 s)."""
    return min(0.5, 0.01 * 4.0 ** (attempt - 1))


class Stamp:
    """One decision's spend stamp: `text` (written into spent0), `since` (a retry's bound on spent3)."""

    __slots__ = ("request_id", "retried", "since", "text")

    def __init__(self, text: str, since: str, request_id: str | None = None) -> None:
        self.text, self.since, self.request_id = text, since, request_id
        self.retried = False  # an answer may have been lost: every later attempt is a retry
