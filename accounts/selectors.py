"""Reads for the customer portal. Every one takes the customer and filters by
it: nothing here can reach another customer's rows. No caching: a page shows
what Postgres holds now (usage itself reaches Postgres from the gate by the
`sync_usage` command, about once a minute)."""

from django.db.models import QuerySet

from accounts.ids import CLIENT_ID_FORMAT
from accounts.models import ApiKey, Credential, Customer, User
from authorizer.keys import KEY_ID_FORMAT

# The portal's reads of ledger's tables are ledger's own (accounts reads ledger only through
# ledger.selectors: an import-linter contract); the views find them here with the rest.
from ledger.selectors import balance_list, purchase_list_recent, usage_daily, usage_month

__all__ = [
    "api_key_get",
    "api_key_list",
    "balance_list",
    "credential_by_client_id",
    "credential_get",
    "credential_list",
    "customer_for_user",
    "purchase_list_recent",
    "usage_daily",
    "usage_month",
]


def customer_for_user(*, user: User) -> Customer | None:
    return Customer.objects.filter(user=user).first()


def credential_by_client_id(*, client_id: str) -> Credential | None:
    """The credential a (verified) access token names, with its customer: the balance API's one check."""
    return Credential.objects.select_related("customer").filter(client_id=client_id).first()


def credential_list(*, customer: Customer) -> QuerySet[Credential]:
    """Active credentials first, then revoked ones, oldest first within each."""
    return Credential.objects.filter(customer=customer).order_by("revoked_at", "created", "id")


def credential_get(*, customer: Customer, client_id: str) -> Credential | None:
    """The customer's credential with this client id, or None (also when it is another customer's,
    or when `client_id`, which comes from a URL, cannot be one: a NUL in it would fail the query)."""
    if not CLIENT_ID_FORMAT.fullmatch(client_id):
        return None
    return Credential.objects.filter(customer=customer, client_id=client_id).first()


def api_key_list(*, customer: Customer) -> QuerySet[ApiKey]:
    """Active keys first, then revoked ones, oldest first within each."""
    return ApiKey.objects.filter(customer=customer).order_by("revoked_at", "created", "id")


def api_key_get(*, customer: Customer, key_id: str) -> ApiKey | None:
    """The customer's key with this id, or None (also when it is another customer's, or cannot be an id)."""
    if not KEY_ID_FORMAT.fullmatch(key_id):
        return None
    return ApiKey.objects.filter(customer=customer, public_id=key_id).first()
