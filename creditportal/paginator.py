"""Admin lists over big tables: count no more rows than a page needs, whatever the table's size.

Django's admin changelist counts its rows for the paginator: a COUNT(*) that
reads every row it counts (0.4 s for 1M ledger entries, 0.15 s for the third of
100k customers a filter keeps) on every visit. Here a list counts exactly up
to ADMIN_EXACT_COUNT_BELOW rows, which bounds the work; past that it shows
Postgres' estimate, which costs nothing: the table's size from pg_class for a
whole table (kept by autovacuum), the planner's row estimate for a filtered
list. "About 1,000,000 entries, 10,000 pages" is all a page needs to know.
Elsewhere than Postgres (SQLite for `make run`) counts stay exact.
"""

import json
from functools import cached_property

from django.conf import settings
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet


def table_estimate(queryset: QuerySet) -> int | None:
    """Postgres' estimate of the rows of the queryset's table; None before the table was ever analyzed."""
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table])
        row = cursor.fetchone()
    if row is None or row[0] < 0:  # -1: never vacuumed or analyzed
        return None
    return int(row[0])


def plan_estimate(queryset: QuerySet) -> int:
    """The planner's estimate of the rows the queryset returns (EXPLAIN, nothing run)."""
    plan = json.loads(queryset.order_by().explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


def is_whole_table(queryset: QuerySet) -> bool:
    query = queryset.query
    return not query.where and not query.distinct and not query.combinator and not query.is_sliced


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ADMIN_EXACT_COUNT_BELOW rows; past that, gives Postgres' estimate."""

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if not isinstance(rows, QuerySet) or connections[rows.db].vendor != "postgresql" or rows.query.is_sliced:
            return super().count
        enough = settings.ADMIN_EXACT_COUNT_BELOW
        if is_whole_table(rows):
            estimate = table_estimate(rows)
            if estimate is not None and estimate >= enough:
                return estimate
        counted = rows.order_by()[: enough + 1].count()  # COUNT(*) over at most enough + 1 rows
        if counted <= enough:
            return counted
        return max(plan_estimate(rows), counted)
