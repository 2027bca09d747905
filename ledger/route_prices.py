"""A product's route prices as people write them: `METHOD /path=COST`, e.g. `POST /jobs=10`,
`GET /health=0` (`upsert_product --route`, the admin's "Route prices" box).

The routes' rules are the gate's own (authorizer/routes.py, which matches calls by them); a product
stores its table as {canonical route: cost} (`Product.routes`), and the mirror's route items carry it.
"""

from collections.abc import Iterable, Mapping

from django.core.exceptions import ValidationError

from authorizer.routes import RouteError, table_check


def route_prices_parse(entries: Iterable[str]) -> dict[str, int]:
    """`["POST /jobs=10", ...]` as a route table; ValidationError naming the entry at fault."""
    table: dict[str, int] = {}
    for entry in entries:
        text = entry.strip()
        if not text:
            continue
        route, sep, cost = text.rpartition("=")
        if not sep or not cost.strip().isdigit():
            raise ValidationError(f"{text!r}: write a route and its cost as METHOD /path=COST, e.g. POST /jobs=10.")
        key = route.strip()
        if key in table:
            raise ValidationError(f"{key} is given twice.")
        table[key] = int(cost.strip())
    return route_table_check(table)


def route_table_check(table: Mapping[str, int]) -> dict[str, int]:
    """The table in its stored form (canonical routes, sorted); ValidationError on any mistake."""
    try:
        return table_check(table)
    except RouteError as e:
        raise ValidationError(str(e)) from e


def route_prices_lines(table: Mapping[str, int]) -> list[str]:
    """The table as `METHOD /path=COST` lines, as route_prices_parse takes them."""
    return [f"{route}={cost}" for route, cost in sorted(table.items())]


def route_costs(table: Mapping[str, int]) -> list[int]:
    """The distinct costs above 0 of a table's routes: one ceiling each in a balance item."""
    return sorted({cost for cost in table.values() if cost > 0})
