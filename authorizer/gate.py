"""The decision against the mirror: which product an API serves, and the spend.

A decision is one conditional `UpdateItem` once the route is cached: it
spends the product's cost only if the customer and the product are active,
the token's credential version is the one the mirror holds, and enough
credits remain; if not, the old item (returned with the failure) says why.
"""

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

from authorizer import mirror

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

SPEND_UPDATE = "SET #used = #used + #cost"
SPEND_CONDITION = (
    "attribute_exists(#pk) AND #active = :true AND #product_active = :true AND #creds.#cid = :ver AND #used <= #ceiling"
)
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
    cost: int | None = None  # the credits this call spent: the Allow's context `cost`


def _number(item: Mapping[str, Any], name: str) -> int | None:
    value = item.get(name, {}).get("N")
    return int(value) if value is not None else None


def refusal_reason(old: Mapping[str, Any] | None, token: Spender) -> str:
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
        self._routes: dict[str, tuple[str | None, float]] = {}
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

    def product_for(self, api_id: str | None) -> str | None:
        """The product an API serves: pinned, or routed through its mirror item (remembered for a while)."""
        if self.pinned_product:
            return self.pinned_product
        if not api_id:
            return None
        now = self.clock()
        cached = self._routes.get(api_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        response = self._send(
            "get_item",
            idempotent=True,
            Key=mirror.route_key(api_id),
            ProjectionExpression="#product",
            ExpressionAttributeNames={"#product": mirror.PRODUCT},
        )
        product = response.get("Item", {}).get(mirror.PRODUCT, {}).get("S") or None
        ttl = self.route_ttl if product else min(self.route_ttl, NEGATIVE_ROUTE_TTL)
        with self._lock:
            if len(self._routes) >= ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[api_id] = (product, now + ttl)
        return product

    def spend(self, token: Spender, product: str) -> Spend:
        """Spend one call's cost of `product` from the token's customer: one conditional UpdateItem."""
        try:
            response = self._send(
                "update_item",
                idempotent=False,
                Key=mirror.balance_key(token.customer_id, product),
                UpdateExpression=SPEND_UPDATE,
                ConditionExpression=SPEND_CONDITION,
                ExpressionAttributeNames={**SPEND_NAMES, "#cid": token.client_id},
                ExpressionAttributeValues={":true": {"BOOL": True}, ":ver": {"N": str(token.version)}},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return Spend(allowed=False, reason=refusal_reason(e.response.get("Item"), token))
            raise
        item = response["Attributes"]
        granted, used = _number(item, mirror.GRANTED), _number(item, mirror.USED)
        cost = _number(item, mirror.COST)  # what `SET #used = #used + #cost` just added
        if granted is None or used is None or cost is None:  # the handler denies the call as an internal error
            raise ValueError(f"the spent item has no {mirror.GRANTED}, {mirror.USED} or {mirror.COST}")
        return Spend(allowed=True, remaining=granted - used, cost=cost)
