"""Reads that span tables, for ledger's own views and for accounts (which reads ledger only through here)."""

from django.db.models import F, QuerySet

from accounts.models import Credential, Customer
from ledger.models import Balance, Product


def product_by_ref(ref: str) -> Product | None:
    """The product a store names by its slug or by one of its SKUs (exact match), or None."""
    ref = ref.strip()
    if not ref:
        return None
    return Product.objects.filter(slug=ref).first() or Product.objects.filter(skus__sku=ref).first()


def product_slugs_owned(*, customer: Customer) -> list[str]:
    """The slugs of the products `customer` holds a balance for, sorted."""
    return sorted(Balance.objects.filter(customer=customer).values_list("product__slug", flat=True))


def credential_with_products(*, client_id: str) -> Credential | None:
    """The credential `client_id` names, with its customer and `credential.customer_products` (what
    `product_slugs_owned` gives for the customer), or None. One query, a token request's only one:
    the credential and its customer left-joined to the customer's balances, one row per product."""
    rows = list(
        Credential.objects.filter(client_id=client_id)
        .select_related("customer")
        .annotate(product_slug=F("customer__balances__product__slug"))
        .order_by()
    )
    if not rows:
        return None
    credential = rows[0]
    credential.customer_products = sorted(row.product_slug for row in rows if row.product_slug is not None)
    return credential


def balance_list_in_scope(*, customer: Customer, products: list[str]) -> QuerySet[Balance]:
    """`customer`'s balances of the products named (a token's scope), with their products, by slug."""
    return (
        Balance.objects.filter(customer=customer, product__slug__in=products)
        .select_related("product")
        .order_by("product__slug")
    )
