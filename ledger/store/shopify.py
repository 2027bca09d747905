"""Shopify's webhooks as we read them: the signature, and the Order and Refund resources' fields we use.

A webhook's body is the resource itself (an Order for `orders/paid` and `orders/cancelled`, a
Refund for `refunds/create`), signed with `X-Shopify-Hmac-Sha256`: the base64 HMAC-SHA256 of the
raw body under the app's webhook secret. Everything else in the body is kept, not read.
"""

import base64
import hashlib
import hmac
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ledger.models import Purchase
from ledger.store.orders import OrderLine, StoreOrder


class PayloadError(ValueError):
    """The body is not the resource its topic names (said in Shopify's words)."""


def signature_valid(body: bytes, header: str | None, secrets: list[str]) -> bool:
    """Is `header` the base64 HMAC-SHA256 of `body` under one of `secrets`? Every secret is tried, each
    compared in constant time, so the answer takes as long whichever matched (or none)."""
    if not header or not secrets:
        return False
    sent = header.strip().encode()
    valid = False
    for secret in secrets:
        expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
        valid |= hmac.compare_digest(expected, sent)
    return valid


def _id(value: Any, what: str) -> str:
    """A Shopify id (a JSON integer; a string of digits accepted) as text."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        raise PayloadError(f"{what} must be the resource's numeric id, not {value!r}.")
    return str(int(value))


def _price(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise PayloadError(f"line_items[].price must be a decimal amount, not {value!r}.") from None
    if not price.is_finite() or price < 0 or abs(price.as_tuple().exponent) > 4:  # type: ignore[arg-type]
        raise PayloadError(f"line_items[].price must be a decimal amount, not {value!r}.")
    return price


def _quantity(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(f"{what} must be a whole number of units, not {value!r}.")
    return value


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def order_parse(order: Any) -> StoreOrder:
    """An Order resource as the order we record: each line item with a quantity becomes a line."""
    if not isinstance(order, dict):
        raise PayloadError("The body must be a Shopify Order object.")
    order_id = _id(order.get("id"), "id")
    items = order.get("line_items")
    if not isinstance(items, list):
        raise PayloadError("line_items must be a list.")
    customer: dict[str, Any] = order["customer"] if isinstance(order.get("customer"), dict) else {}
    email = _text(order.get("email")) or _text(customer.get("email")) or _text(order.get("contact_email"))
    name = " ".join(part for part in (_text(customer.get("first_name")), _text(customer.get("last_name"))) if part)
    lines = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PayloadError(f"line_items[{index}] must be an object.")
        quantity = _quantity(item.get("quantity"), f"line_items[{index}].quantity")
        if quantity == 0:  # a line removed by an order edit sells nothing
            continue
        sku = _text(item.get("sku"))
        variant_id = _id(item["variant_id"], f"line_items[{index}].variant_id") if item.get("variant_id") else ""
        title = _text(item.get("name")) or _text(item.get("title"))
        lines.append(
            OrderLine(
                line_id=_id(item.get("id"), f"line_items[{index}].id"),
                quantity=quantity,
                product_ref=sku or (f"variant {variant_id}" if variant_id else title) or "(no SKU)",
                sku=sku,
                variant_id=variant_id,
                price=_price(item.get("price")),
                payload=item,
            )
        )
    return StoreOrder(
        source=Purchase.Source.SHOPIFY,
        order_id=order_id,
        email=email,
        name=name,
        lines=lines,
        currency=_text(order.get("currency")).upper()[:3],
    )


@dataclass(frozen=True)
class RefundParsed:
    refund_id: str
    order_id: str
    lines: dict[str, int]  # line item id → units refunded
    note: str


def refund_parse(refund: Any) -> RefundParsed:
    """A Refund resource: which line items, how many units each."""
    if not isinstance(refund, dict):
        raise PayloadError("The body must be a Shopify Refund object.")
    items = refund.get("refund_line_items")
    if not isinstance(items, list):
        raise PayloadError("refund_line_items must be a list.")
    lines: dict[str, int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PayloadError(f"refund_line_items[{index}] must be an object.")
        line_id = _id(item.get("line_item_id"), f"refund_line_items[{index}].line_item_id")
        lines[line_id] = lines.get(line_id, 0) + _quantity(item.get("quantity"), f"refund_line_items[{index}].quantity")
    return RefundParsed(
        refund_id=_id(refund.get("id"), "id"),
        order_id=_id(refund.get("order_id"), "order_id"),
        lines=lines,
        note=_text(refund.get("note")),
    )
