"""The Zapier door's order: one line, or the order's lines sent as comma-separated fields.

When line items are mapped into plain fields (no Looping step), Zapier joins each field's
values with commas: `line_id=11,12 product=WTHR-100,MAPS-500 quantity=1,2`. The same number
of values in each of `line_id`, `product` and `quantity` (and `price`, when sent) are the
order's lines, in that order; any other count is a 400 saying so, and nothing is written.
"""

from typing import Any

from rest_framework import serializers

from ledger.models import Purchase
from ledger.serializers import ZapierPurchaseSerializer
from ledger.store.orders import OrderLine, StoreOrder

SPLIT = ("line_id", "product", "quantity")


def _values(data: Any, name: str) -> list[str] | None:
    value = data.get(name)
    if isinstance(value, str) and "," in value:
        return [part.strip() for part in value.split(",")]
    return None


def _count(data: Any, name: str, values: list[str] | None) -> int:
    if values is not None:
        return len(values)
    return 0 if data.get(name) in (None, "") else 1


def _payload(data: Any) -> dict[str, Any]:
    """What was posted, as stored JSON (a form's keys are each sent once: the serializer refuses repeats)."""
    return data.dict() if hasattr(data, "dict") else dict(data)


def zapier_order(data: Any) -> tuple[StoreOrder, bool]:
    """The order a Zap posted, validated (serializers.ValidationError: a 400, nothing written).
    Returns the order and whether it came as comma-separated lines."""
    repeated = hasattr(data, "lists") and any(len(values) > 1 for _, values in data.lists())
    # Not an object, or a form key sent twice: the one-line serializer says what is wrong.
    split = {name: _values(data, name) for name in (*SPLIT, "price")} if isinstance(data, dict) and not repeated else {}
    if not any(split.get(name) is not None for name in SPLIT):
        line = ZapierPurchaseSerializer(data=data)
        line.is_valid(raise_exception=True)
        return _order(line.validated_data, [line.validated_data], _payload(data)), False
    counts = {name: _count(data, name, split[name]) for name in SPLIT}
    if data.get("price") not in (None, ""):
        counts["price"] = _count(data, "price", split["price"])
    if len(set(counts.values())) != 1:
        said = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise serializers.ValidationError(
            {"non_field_errors": [f"An order's lines are sent as the same number of comma-separated values in "
                                  f"line_id, product and quantity{' and price' if 'price' in counts else ''}; "
                                  f"these carry {said}: nothing was recorded."]}
        )  # fmt: skip
    lines, errors = [], {}
    for index in range(counts["product"]):
        one = dict(data.items()) if hasattr(data, "items") else {}
        for name in (*SPLIT, "price"):
            if split[name] is not None:
                one[name] = split[name][index]  # type: ignore[index]
        line = ZapierPurchaseSerializer(data=one)
        if line.is_valid():
            lines.append(line.validated_data)
        else:
            errors[f"line {index + 1}"] = line.errors
    if errors:
        raise serializers.ValidationError(errors)
    if len({line["line_id"] for line in lines}) != len(lines):
        raise serializers.ValidationError({"line_id": ["Each order line needs its own line_id: one is repeated."]})
    return _order(lines[0], lines, _payload(data)), True


def _order(first: dict[str, Any], lines: list[dict[str, Any]], payload: dict[str, Any]) -> StoreOrder:
    return StoreOrder(
        source=Purchase.Source.ZAPIER,
        order_id=first["order_id"],
        email=first["email"],
        name=first["name"],
        currency=first.get("currency", ""),
        lines=[
            OrderLine(
                line_id=line.get("line_id", ""),
                quantity=line["quantity"],
                product_ref=line["product"],
                price=line.get("price"),
                payload=payload,
            )
            for line in lines
        ],
    )
