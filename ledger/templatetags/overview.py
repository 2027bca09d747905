"""The overview's number format: 1,234,567 (and 1,234.50 with `|thousands:2`), the same in every locale,
and cheap: the page shows a few hundred numbers, and humanize's intcomma costs a regex loop each."""

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def thousands(value: int | Decimal | None, places: int | None = None) -> str:
    if value is None:
        return ""
    return f"{value:,.{int(places)}f}" if places is not None else f"{value:,}"
