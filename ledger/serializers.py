import re
import unicodedata

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import normalize_email, normalize_name
from ledger.models import Purchase

MAX_CREDITS_PER_LINE = 1_000_000
_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _unstorable(value) -> str | None:
    """Why Postgres could not store this posted value, keys and nested values included, or None.

    A NUL character is refused by Postgres in text and in jsonb, an unpaired surrogate (JSON
    allows "\\ud800") cannot even be encoded as UTF-8. Iterative: the body may nest deeply."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "Null characters are not allowed."
            if _SURROGATE.search(item):
                return "Unpaired surrogate characters are not allowed."
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _one_line(value: str) -> str:
    """An identifier our emails print: no line breaks or other control characters in it."""
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in value):
        raise serializers.ValidationError("Control characters and line breaks are not allowed.")
    return value


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class RawField(serializers.Field):
    """The value as posted (a JSON number or string, or form text), for a validate_<field> to judge."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return value


class ZapierPurchaseSerializer(serializers.Serializer):
    """What a Zap posts for one order line. Zapier sends text, so numbers may come as strings."""

    order_id = serializers.CharField(max_length=128)
    # allow_blank only so that a blank line_id reaches validate_line_id from form data
    # too (DRF would otherwise drop it as "not sent") and is refused the same way.
    line_id = serializers.CharField(max_length=128, required=False, allow_blank=True)
    email = serializers.EmailField(max_length=254)
    # Any length: normalize_name makes it one line and cuts it (a long name is no reason to refuse a sale).
    name = serializers.CharField(required=False, allow_blank=True, allow_null=True, default="")
    product = serializers.CharField(max_length=128, help_text="A product slug or a store SKU.")
    quantity = RawField(help_text='Units: a positive whole number, like 100 or "100" (credits for a slug).')
    price = serializers.DecimalField(
        max_digits=18, decimal_places=4, min_value=0, required=False, allow_null=True,
        help_text="What the buyer paid per unit (optional), e.g. 19.99: for revenue per currency.",
    )  # fmt: skip
    currency = serializers.RegexField(
        r"^[A-Za-z]{3}$", required=False, allow_blank=True,
        error_messages={"invalid": "Enter the ISO 4217 code of the order's currency, like EUR."},
    )  # fmt: skip

    def validate_currency(self, value: str) -> str:
        return value.upper()

    def validate_email(self, value: str) -> str:
        return normalize_email(value)

    def validate_line_id(self, value: str) -> str:
        if not value:
            raise serializers.ValidationError(
                "This field may not be blank: leave line_id out for a one-line order, or send the line's id."
            )
        return _one_line(value)

    def validate_order_id(self, value: str) -> str:
        return _one_line(value)

    def validate_name(self, value: str | None) -> str:
        return normalize_name(value)

    def to_internal_value(self, data):
        # A form may repeat a key (quantity=1&quantity=1000000) and Django would read the last
        # value: refuse it before reading any, as /api/token/ does. (JSON: creditportal.parsers.)
        if hasattr(data, "getlist"):
            repeated = {
                name: ["Sent more than once: send each field once."] for name, values in data.lists() if len(values) > 1
            }
            if repeated:
                raise serializers.ValidationError(repeated)
        return super().to_internal_value(data)

    def validate(self, attrs: dict) -> dict:
        # The whole body is kept as the purchase's payload, fields this serializer does not
        # read included: what Postgres cannot store is a field error here, not a 500 later.
        data = self.initial_data
        posted = data.lists() if hasattr(data, "lists") else data.items()
        errors = {}
        for name, value in posted:
            reason = _unstorable(value)
            if _unstorable(name):
                errors.setdefault("non_field_errors", []).append(
                    "A field name holds a null or unpaired surrogate character."
                )
            elif reason:
                errors[name] = [reason]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def validate_quantity(self, value) -> int:
        # A whole number: a JSON integer, or digits in a string. "5.0" and 5.0 are
        # refused too: a decimal here most likely means a price was mapped.
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            digits = value.strip()
            value = int(digits) if len(digits) <= 12 else MAX_CREDITS_PER_LINE + 1
        if isinstance(value, bool) or not isinstance(value, int):
            raise serializers.ValidationError("Enter a whole number of credits, like 100.")
        if value < 1:
            raise serializers.ValidationError("Enter a positive number of credits (1 or more).")
        if value > MAX_CREDITS_PER_LINE:
            raise serializers.ValidationError(f"At most {MAX_CREDITS_PER_LINE:,} credits per order line.")
        return value


class PurchaseResultSerializer(serializers.ModelSerializer):
    """What the webhook answers, derived from the stored purchase row alone, so a repeated
    delivery gets the same body as the first: `email` as recorded (trimmed, lower-cased),
    `remaining` the balance right after this purchase's grant, not whatever it is now."""

    id = serializers.IntegerField(read_only=True)
    # null while unmatched (an unknown product: no customer or balance is touched yet).
    customer = serializers.SlugRelatedField(slug_field="public_id", read_only=True, allow_null=True)
    product = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    credits = serializers.SerializerMethodField()
    remaining = serializers.IntegerField(source="remaining_after", read_only=True, allow_null=True)

    class Meta:
        model = Purchase
        fields = [
            "id",
            "status",
            "order_id",
            "line_id",
            "email",
            "customer",
            "product",
            "product_ref",
            "credits",
            "remaining",
        ]

    def get_credits(self, purchase: Purchase) -> int:
        """Credits granted by this purchase: none while it is unmatched."""
        return purchase.credits if purchase.status == Purchase.Status.APPLIED else 0
