"""Reads that span tables."""

from ledger.models import Product


def product_by_ref(ref: str) -> Product | None:
    """The product a store names by its slug or by one of its SKUs (exact match), or None."""
    ref = ref.strip()
    if not ref:
        return None
    return Product.objects.filter(slug=ref).first() or Product.objects.filter(skus__sku=ref).first()
