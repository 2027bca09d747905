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
"""

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

from authorizer import mirror
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

SPEND_UPDATE = "SET #used = #used + #cost"
SPEND_CONDITION = (
    "attribute_exists(#pk) AND #active = :true AND #product_active = :true AND #creds.#cid = :ver AND #used <= #ceiling"
)
# A route's own cost: `:cost`, bounded by its ceiling in `ceilings` (#c = the cost, as a string).
ROUTE_SPEND_UPDATE = "SET #used = #used + :cost"
ROUTE_SPEND_CONDITION = (
    "attribute_exists(#pk) AND #active = :true AND #product_active = :true AND #creds.#cid = :ver"
    " AND #used <= #ceilings.#c"
)
# A free route: the same checks, no ceiling (a free call is allowed with no credits left).
FREE_SPEND_CONDITION = "attribute_exists(#pk) AND #active = :true AND #product_active = :true AND #creds.#cid = :ver"
ROUTE_NAMES = {
    "#pk": mirror.PK,
    "#used": mirror.USED,
    "#active": mirror.ACTIVE,
    "#product_active": mirror.PRODUCT_ACTIVE,
    "#creds": mirror.CREDS,
}
SPEND_NAMES = {
    "#pk": mirror.PK,
    "#used": mirror.USED,
    "#cost": mirror.COST,
    "#active": mirror.ACTIVE,
    "#product_active": mirror.PRODUCT_ACTIVE,
    "#creds": mirror.CREDS,
    "#ceiling": mirror.CEILING,
}

# Errors after which the request surely did not change anything: safe to send
# again. A read timeout is NOT one of them (the spend may have landed), so a
# spend is never retried after one: the call is denied rather than charged twice.
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


@dataclass(frozen=True)
class Spend:
    allowed: bool
    remaining: int | None = None
    reason: str | None = None
    cost: int | None = None  # what the call cost (allowed only)


@dataclass(frozen=True)
class Route:
    """A route item as the gate remembers it: the product an API serves, and that product's route prices."""

    product: str | None
    prices: RouteTable = EMPTY


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

    def _send(self, operation: str, *, idempotent: bool, **params: Any) -> dict[str, Any]:
        call = getattr(self.client, operation)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response: dict[str, Any] = call(TableName=self.table, **params)
                return response
            except (EndpointConnectionError, ConnectTimeoutError):
                if attempt == ATTEMPTS:
                    raise
            except ClientError as e:
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                retry = e.response.get("Error", {}).get("Code") in THROTTLED or (idempotent and status >= 500)
                if not retry or attempt == ATTEMPTS:
                    raise
            time.sleep(0.01 * 4 ** (attempt - 1))
        raise AssertionError("unreachable")

    def get_item(self, **params: Any) -> dict[str, Any]:
        """One GetItem on the mirror (safe to send again, so retried after any error that allows it)."""
        return self._send("get_item", idempotent=True, **params)

    def route(self, api_id: str) -> Route:
        """The route item of an API id: its product and prices (remembered for a while)."""
        now = self.clock()
        cached = self._routes.get(api_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        response = self._send("get_item", idempotent=True, Key=mirror.route_key(api_id))
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
    ) -> Spend:
        """Spend `cost` (the called route's; None: the product's default) of `product` from the token's
        customer: one conditional UpdateItem.

        When the item has no ceiling for that cost (the cached prices changed since), the API's route
        item is read again and, if the cost it says for `call` now differs, spent at that instead."""
        spend = self._spend(token, product, cost)
        if spend.reason == PRICES_CHANGING and api_id:
            self.forget(api_id)
            route = self.resolve(api_id)
            fresh = route.prices.cost(call) if route.product == product else None
            if fresh != cost:
                spend = self._spend(token, product, fresh)
        return spend

    def _spend(self, token: Spender, product: str, cost: int | None) -> Spend:
        values = {":true": {"BOOL": True}, ":ver": {"N": str(token.version)}}
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
        try:
            response = self._send(
                "update_item",
                idempotent=False,
                Key=mirror.balance_key(token.customer_id, product),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return Spend(allowed=False, reason=refusal_reason(e.response.get("Item"), token, cost))
            raise
        item = response["Attributes"]
        granted, used = _number(item, mirror.GRANTED), _number(item, mirror.USED)
        if cost is None:
            cost = _number(item, mirror.COST)  # what `SET #used = #used + #cost` just added
        if granted is None or used is None or cost is None:  # the handler denies the call as an internal error
            raise ValueError(f"the spent item has no {mirror.GRANTED}, {mirror.USED} or {mirror.COST}")
        return Spend(allowed=True, remaining=granted - used, cost=cost)
