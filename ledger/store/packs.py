"""Packs: what a store SKU or a Shopify variant id sells, as (product, credits per unit).

`upsert_product --sku RB-100:100 --variant-id 990001:100` declares them (`:N` optional,
default 1); staff edit them in the product's admin page. A line's credits are its
quantity × the pack's credits per unit; a product slug (the Zapier door) is 1 credit per unit.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models import Case, Q, Subquery, When

from ledger.models import Product, ProductSku, ProductVariant

_PACK = re.compile(r"^(?P<ref>.+?)(?::(?P<per_unit>[0-9]+))?$", re.ASCII)


@dataclass(frozen=True)
class Pack:
    product: Product
    credits_per_unit: int


def pack_parse(value: str) -> tuple[str, int]:
    """`RB-100:100` → ("RB-100", 100); `RB-100` → ("RB-100", 1). A SKU holding a colon keeps it
    unless what follows the last colon is a number."""
    match = _PACK.match(value.strip())
    if match is None or not match["ref"].strip():
        raise ValidationError(f"{value!r} is not a SKU or variant id (SKU, or SKU:credits per unit).")
    per_unit = int(match["per_unit"]) if match["per_unit"] is not None else 1
    if per_unit < 1:
        raise ValidationError(f"{value!r}: a pack holds at least 1 credit per unit.")
    return match["ref"].strip(), per_unit


def packs_wanted(values: Iterable[str] | Mapping[str, int]) -> dict[str, int]:
    """{ref: credits per unit} from `["RB-100:100", "RB-1"]` or from a mapping already."""
    if isinstance(values, Mapping):
        return dict(values)
    wanted: dict[str, int] = {}
    for value in values:
        ref, per_unit = pack_parse(value)
        if wanted.get(ref, per_unit) != per_unit:
            raise ValidationError(f"{ref} is given twice with different pack sizes.")
        wanted[ref] = per_unit
    return wanted


def packs_set(*, product: Product, model: type[ProductSku] | type[ProductVariant], wanted: Mapping[str, int]) -> bool:
    """Make `wanted` ({sku or variant id: credits per unit}) the product's whole set; True if anything changed.

    Part of product_upsert's transaction. A ref another product has is refused, nothing changed."""
    field = "sku" if model is ProductSku else "variant_id"
    have = dict(model.objects.filter(product=product).values_list(field, "credits_per_unit"))
    taken = list(
        model.objects.filter(**{f"{field}__in": set(wanted) - set(have)})
        .exclude(product=product)
        .values_list(field, flat=True)
    )
    if taken:
        raise ValidationError(f"{field} {', '.join(sorted(taken))} already belongs to another product.")
    changed = False
    gone = set(have) - set(wanted)
    if gone:
        model.objects.filter(product=product, **{f"{field}__in": gone}).delete()
        changed = True
    for ref, per_unit in wanted.items():
        if ref not in have:
            row = model(product=product, credits_per_unit=per_unit, **{field: ref})
            row.full_clean(exclude=["product"])
            row.save()
            changed = True
        elif have[ref] != per_unit:
            model.objects.filter(product=product, **{field: ref}).update(credits_per_unit=per_unit)
            changed = True
    return changed


def packs_for(*, skus: Iterable[str] = (), variant_ids: Iterable[str] = ()) -> tuple[dict[str, Pack], dict[str, Pack]]:
    """The packs of these SKUs and variant ids: ({sku: pack}, {variant id: pack}), at most one query each."""
    skus, variant_ids = {s for s in skus if s}, {v for v in variant_ids if v}
    by_sku = by_variant = {}
    if skus:
        rows = ProductSku.objects.filter(sku__in=skus).select_related("product")
        by_sku = {row.sku: Pack(row.product, row.credits_per_unit) for row in rows}
    if variant_ids:
        rows_v = ProductVariant.objects.filter(variant_id__in=variant_ids).select_related("product")
        by_variant = {row.variant_id: Pack(row.product, row.credits_per_unit) for row in rows_v}
    return by_sku, by_variant


def pack_by_ref(ref: str) -> Pack | None:
    """What the Zapier door's `product` names: a product slug (1 credit per unit), else a SKU (its pack)."""
    ref = ref.strip()
    if not ref:
        return None
    # One query: the product whose slug is `ref` (1 credit a unit), or whose SKU is (its pack); the slug first.
    found = (
        Product.objects.filter(Q(slug=ref) | Q(pk__in=ProductSku.objects.filter(sku=ref).values("product_id")))
        .annotate(sku_per_unit=Subquery(ProductSku.objects.filter(sku=ref).values("credits_per_unit")[:1]))
        .order_by(Case(When(slug=ref, then=0), default=1))
        .first()
    )
    if found is None:
        return None
    return Pack(found, 1 if found.slug == ref else found.sku_per_unit)
