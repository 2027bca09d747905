"""What Django writes to the mirror, built from Postgres rows: a balance item per (customer, product)
and a route item per API id.

The contract (attribute names, key shapes, which attributes Django owns, the table) is
authorizer/mirror.py, which the authorizer reads too; this module only fills it in from rows.
Values are converted between plain Python and DynamoDB's typed form by boto3's own
TypeSerializer and TypeDeserializer (numbers come back as ints: the mirror holds no fractions).
"""

import functools
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import OuterRef, QuerySet
from django.db.models.functions import JSONObject

from accounts.models import ApiKey, Credential
from authorizer import mirror as m
from authorizer.keys import KEY_VERSION, key_covers
from ledger.models import Balance, Product
from ledger.route_prices import route_costs

Key = tuple[str, str]  # (pk, sk) of an item, as plain strings


@functools.cache
def _codec() -> tuple[Any, Any]:
    # boto3 is loaded when the mirror is first used, not when Django starts.
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

    return TypeSerializer(), TypeDeserializer()


def typed(value: object) -> dict[str, Any]:
    """A plain value (int, bool, str, dict of those) in DynamoDB's typed form, as botocore takes it."""
    serialized: dict[str, Any] = _codec()[0].serialize(value)
    return serialized


def _ints(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    return value


def plain(value: Mapping[str, Any]) -> Any:
    """A typed DynamoDB value as plain Python."""
    return _ints(_codec()[1].deserialize(value))


def key_of(item: Mapping[str, Any]) -> Key:
    """The (pk, sk) of a typed item or key."""
    return item[m.PK]["S"], item[m.SK]["S"]


def balance_ref(key: Key) -> tuple[str, str] | None:
    """(customer public id, product slug) of a balance item's key; None for any other item."""
    pk, sk = key
    if pk.startswith(m.CUSTOMER_PREFIX) and sk.startswith(m.PRODUCT_PREFIX):
        return pk.removeprefix(m.CUSTOMER_PREFIX), sk.removeprefix(m.PRODUCT_PREFIX)
    return None


def route_ref(key: Key) -> str | None:
    """The API id of a route item's key; None for any other item."""
    pk, sk = key
    return pk.removeprefix(m.API_PREFIX) if pk.startswith(m.API_PREFIX) and sk == m.ROUTE_SK else None


# --- Balance items -----------------------------------------------------------


def balances_for_mirror(queryset: QuerySet[Balance] | None = None) -> QuerySet[Balance]:
    """Balances with everything their items need, in one query: the customer and product joined, and
    beside each row its customer's live credentials and live API keys (`live_credentials`,
    `live_keys`: arrays of small JSON objects, each an indexed subquery on the customer's id).
    Two prefetches would cost two more queries on every write, the after-commit one included."""
    live = (
        Credential.objects.filter(customer_id=OuterRef("customer_id"), revoked_at__isnull=True)
        .order_by("pk")
        .values(json=JSONObject(id="client_id", version="secret_version"))
    )
    live_keys = (
        ApiKey.objects.filter(customer_id=OuterRef("customer_id"), revoked_at__isnull=True)
        .order_by("pk")
        .values(json=JSONObject(id="public_id", products="products"))
    )
    queryset = Balance.objects.all() if queryset is None else queryset
    return queryset.select_related("customer", "product").annotate(
        live_credentials=ArraySubquery(live), live_keys=ArraySubquery(live_keys)
    )


def balance_key(balance: Balance) -> m.Key:
    return m.balance_key(balance.customer.public_id, balance.product.slug)


def balance_owned(balance: Balance) -> dict[str, Any]:
    """The attributes Django owns on the balance's item (m.BALANCE_OWNED), as plain values."""
    customer, product = balance.customer, balance.product
    cost = product.cost_per_call
    return {
        m.GRANTED: balance.granted,
        m.COST: cost,
        m.CEILING: balance.granted - cost,
        # One threshold per route cost (conditions do no arithmetic): a call of cost c is allowed
        # while used <= granted - c. Follows every change of granted (grant, refund, adjustment).
        m.CEILINGS: {str(c): balance.granted - c for c in route_costs(product.routes)},
        m.ACTIVE: customer.is_active,
        m.PRODUCT_ACTIVE: product.active,
        m.CREDS: _creds(balance, product),
        m.VERSION: balance.version + customer.version + product.version,
    }


def _creds(balance: Any, product: Product) -> dict[str, int]:
    """The balance item's `creds`: the customer's live credentials, and its live keys that open the product
    (`live_credentials` and `live_keys`: balances_for_mirror's annotations)."""
    creds = {c["id"]: c["version"] for c in balance.live_credentials}
    creds.update({k["id"]: KEY_VERSION for k in balance.live_keys if key_covers(k["products"], product.slug)})
    return creds


def balance_values(balance: Balance) -> dict[str, Any]:
    """The attributes Django owns on the balance's item, typed for botocore."""
    return {attr: typed(value) for attr, value in balance_owned(balance).items()}


# --- Route items -------------------------------------------------------------


def route_owned(product: Product) -> dict[str, Any]:
    """The attributes of a route item to `product` (m.ROUTE_OWNED), as plain values."""
    return {m.PRODUCT: product.slug, m.ROUTES: dict(product.routes), m.VERSION: product.version}


def route_item(api_id: str, product: Product) -> dict[str, Any]:
    """The whole route item of `api_id`, typed for botocore."""
    return m.route_key(api_id) | {attr: typed(value) for attr, value in route_owned(product).items()}


# --- Key items ---------------------------------------------------------------


def key_owned(api_key: ApiKey) -> dict[str, Any]:
    """The attributes of an API key's item (m.KEY_OWNED), as plain values."""
    return {
        m.KEY_ID: api_key.public_id,
        m.CUSTOMER: api_key.customer.public_id,
        m.PRODUCTS: sorted(api_key.products),
        m.REVOKED: api_key.is_revoked,
        m.VERSION: api_key.mirror_version,
    }


def key_item(api_key: ApiKey) -> dict[str, Any]:
    """The whole item of an API key, typed for botocore."""
    return m.key_key(api_key.key_hash) | {attr: typed(value) for attr, value in key_owned(api_key).items()}


def key_ref(key: Key) -> str | None:
    """The key hash of a key item's key; None for any other item."""
    pk, sk = key
    return pk.removeprefix(m.KEY_PREFIX) if pk.startswith(m.KEY_PREFIX) and sk == m.KEY_SK else None
