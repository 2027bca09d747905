"""API keys: their form and hash (the contract Django and the gate share), and the gate's key lookup.

A key is `cpk_` + 43 base64url characters: 32 random bytes, 256 bits (`KEY_FORMAT`). It has no
dot, so it is told from a JWT (three dot-separated parts) by its form alone. Only its SHA-256
(hex, `key_hash`) is stored, in Postgres and in the mirror: with 256 random bits there is nothing
to brute-force, so an unkeyed hash is enough, and the gate can compute it without Django's secrets.

The gate resolves a key to its customer through the mirror's key item (`mirror.key_key`), one
`GetItem`, remembered for `AUTHORIZER_KEY_TTL` seconds. The cache can never open anything the
mirror has since taken away: the spend's condition requires the key's id in the balance item's
`creds` map, as a token's client id is, and Django lists a key there only while it is unrevoked,
on the items of the products it opens, of its own customer. So revoking the key or suspending
the customer denies at the very next call whatever this cache holds, and a key is never spent on
another customer's or another product's credits.
"""

import hashlib
import re
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from authorizer import mirror
from authorizer.events import AuthorizerEvent
from authorizer.record import Record, setfield

PREFIX = "cpk_"
KEY_FORMAT = re.compile(r"cpk_[A-Za-z0-9_-]{43}")
KEY_ID_FORMAT = re.compile(r"key_[a-z0-9]{1,64}")
# A key's entry in a balance item's `creds` map: keys are never rotated, so their version is fixed.
KEY_VERSION = 0

# Deny reasons of their own (the rest are the gate's).
KEY_REVOKED = "key_revoked"
PRODUCT_NOT_IN_KEY = "product_not_in_key"

NEGATIVE_KEY_TTL = 5.0
KEY_CACHE_SIZE = 4096


def is_api_key(text: str | None) -> bool:
    """True for text of a key's form (never a JWT: a key has no dot)."""
    return bool(text) and KEY_FORMAT.fullmatch(text or "") is not None


def key_hash(key: str) -> str:
    """What is stored of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyHolder(Record):
    """Who a key speaks for, as the spend needs it (the fields a token's AccessToken has)."""

    __slots__ = ("customer_id", "key_id", "products", "revoked")
    key_id: str
    customer_id: str
    products: frozenset[str] | None  # None: every product of the customer's
    revoked: bool

    def __init__(self, key_id: str, customer_id: str, products: frozenset[str] | None, revoked: bool = False) -> None:
        setfield(self, "key_id", key_id)
        setfield(self, "customer_id", customer_id)
        setfield(self, "products", products)
        setfield(self, "revoked", revoked)

    @property
    def client_id(self) -> str:
        return self.key_id  # the key's entry in a balance item's `creds`

    @property
    def version(self) -> int:
        return KEY_VERSION

    def covers(self, product: str) -> bool:
        return key_covers(self.products, product)


def key_covers(products: Collection[str] | None, product: str) -> bool:
    """Whether a key restricted to `products` opens `product`: no restriction (None or empty) opens all."""
    return not products or product in products


def holder_from_item(item: dict[str, Any]) -> KeyHolder | None:
    """The holder a key item names; None when the item is missing or not a key item."""
    key_id = item.get(mirror.KEY_ID, {}).get("S")
    customer = item.get(mirror.CUSTOMER, {}).get("S")
    if not key_id or not customer:
        return None
    products = [p.get("S") for p in item.get(mirror.PRODUCTS, {}).get("L", [])]
    return KeyHolder(
        key_id=key_id,
        customer_id=customer,
        products=frozenset(p for p in products if p) or None,
        revoked=bool(item.get(mirror.REVOKED, {}).get("BOOL", False)),
    )


class KeyRing:
    """The gate's key lookup: key -> holder, through the mirror, remembered for `ttl` seconds.

    `read(**params)` sends one GetItem (the gate's, with its retries). Entries are keyed by the
    key's hash, never the key.
    """

    def __init__(
        self,
        *,
        read: Callable[..., dict[str, Any]],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[KeyHolder | None, float]] = {}
        self._lock = threading.Lock()

    def holder(self, key: str) -> KeyHolder | None:
        """Who `key` speaks for (revoked ones too: `revoked` says so); None for a key nobody has."""
        hashed = key_hash(key)
        now = self.clock()
        cached = self._cache.get(hashed)
        if cached is not None and cached[1] > now:
            return cached[0]
        response = self.read(Key=mirror.key_key(hashed), ConsistentRead=False)
        holder = holder_from_item(response.get("Item") or {})
        ttl = self.ttl if holder is not None and not holder.revoked else min(self.ttl, NEGATIVE_KEY_TTL)
        with self._lock:
            if len(self._cache) >= KEY_CACHE_SIZE:
                self._cache.clear()
            self._cache[hashed] = (holder, now + ttl)
        return holder


def find_credential(
    view: AuthorizerEvent, *, token_header: str, bearer_required: bool, token_query: str | None, key_header: str
) -> str | None:
    """The one token or key the call carries: `Authorization: Bearer <jwt or key>` (where the token is
    configured to be), or `<key_header>: <key>`. None when there is none, or two that differ (never guess).

    A REST TOKEN event carries one header's value, whichever its name: a bare key there is a key.
    A `key_header` value that is not of a key's form is not looked at.
    """
    found = {view.token(header=token_header, scheme_required=bearer_required, query=token_query)}
    raw = view.header(key_header)
    if raw is not None and is_api_key(raw.strip()):
        found.add(raw.strip())
    found.discard(None)
    return found.pop() if len(found) == 1 else None
