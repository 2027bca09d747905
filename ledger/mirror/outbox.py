"""The transactional outbox: what must reach the gate's mirror, recorded with the change itself.

1. A service that changes what the gate sees calls `mirror_outbox_add` inside its
   transaction: one `MirrorOutbox` row per balance, customer, product or API id
   touched. The row commits or rolls back with the change.
2. After the commit (`transaction.on_commit`), the rows this thread recorded are
   written: the items they name are rebuilt from a fresh read of Postgres, written
   with conditional writes (ledger/mirror/writes.py), and the rows deleted. All the
   rows of a transaction are written together, so an item touched several times
   (a first purchase: a credential, then a grant) is written once.
3. A row still there (its write failed, or the process died between the commit and
   the write) is written by the next `sync_usage` run, each minute
   (`mirror_outbox_write()`, also `sync_mirror --pending`).

Rows are deleted by id, and only once every item they name is written, so a row
recorded while a write runs is never cleared by it. Two writers of the same row
(the request after its commit, the minute's run) are harmless: each write is
conditional on the item's version, and the second finds it current.

A product change touching more than MIRROR_AFTER_COMMIT_LIMIT balances is not
written after commit: the request that made it stays short, and the minute's
run writes it (the row is kept, untried).
"""

import functools
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q

from accounts.models import ApiKey, Customer
from authorizer import mirror as m
from ledger.mirror.client import Client, Progress, mirror_client
from ledger.mirror.items import balance_key, balances_for_mirror, key_of, route_ref
from ledger.mirror.writes import Job, WriteReport, balance_write, key_jobs, route_jobs, writes_run
from ledger.models import Balance, MirrorOutbox, Product, ProductApi

log = logging.getLogger(__name__)

Scope = MirrorOutbox.Scope
ROWS_PER_RUN = 500  # outbox rows read and written at a time
BALANCES_PER_RUN = 500  # balances read from Postgres at a time

# The rows this thread recorded and has not written yet (`pending`): what the next after-commit
# write takes, as recorded (not read back). Rows rolled back (with their transaction or a
# savepoint) may linger here until then: the write rebuilds each item they name from what
# Postgres holds now, conditionally, so they cost a write refused as current and change nothing.
_recorded = threading.local()


def mirror_outbox_add(
    *,
    balances: Iterable[Balance] = (),
    customers: Iterable[Customer] = (),
    products: Iterable[Product] = (),
    api_ids: Iterable[str] = (),
    api_keys: Iterable[ApiKey] = (),
) -> None:
    """Record, in the caller's transaction, which mirror items must be rewritten once it commits.

    `customers`: all of their balance items (status, credentials). `products`: all
    of their balance items and routes (cost, on sale). `api_ids`: those routes,
    written from the current rows (deleted when no product has the id any more).
    `api_keys`: those keys' own items (the customer's balance items list its live keys: pass it too).
    """
    if not settings.MIRROR_ENABLED:
        return
    rows = [
        *(MirrorOutbox(scope=Scope.BALANCE, ref=str(b.pk)) for b in balances),
        *(MirrorOutbox(scope=Scope.CUSTOMER, ref=str(c.pk)) for c in customers),
        *(MirrorOutbox(scope=Scope.PRODUCT, ref=str(p.pk)) for p in products),
        *(MirrorOutbox(scope=Scope.ROUTE, ref=api_id) for api_id in sorted(set(api_ids))),
        *(MirrorOutbox(scope=Scope.KEY, ref=str(k.pk)) for k in api_keys),
    ]
    if not rows:
        return
    MirrorOutbox.objects.bulk_create(rows)
    _recorded.__dict__.setdefault("pending", []).extend(rows)
    # Registered at every call, so one survives whatever savepoint rolls back; the first to run
    # takes every row recorded, the others find none. robust: a failure is logged, never
    # raised into the request that has committed.
    transaction.on_commit(_write_recorded, robust=True)


def _write_recorded() -> None:
    """After the commit: write what this thread's transaction recorded, from the rows as it wrote them
    (reading them back would cost a query and tell nothing new). Rows rolled back may be among them:
    their items are written from Postgres as it is, conditionally, so that costs a write refused as
    current and harms nothing; deleting them by id deletes nothing."""
    rows = _recorded.__dict__.pop("pending", [])
    if rows:
        mirror_outbox_write(rows=rows, limit=settings.MIRROR_AFTER_COMMIT_LIMIT)


@dataclass
class _Batch:
    """Outbox rows, by scope, and what went wrong writing their items."""

    rows: list[MirrorOutbox]
    refs: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # (scope, ref) of every row that names a failed item: the error
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    product_routes: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))

    def __post_init__(self) -> None:
        for row in self.rows:
            self.refs[row.scope].add(row.ref)

    def ids(self, scope: str) -> list[int]:
        return [int(ref) for ref in self.refs[scope]]

    def balance_failed(self, balance: Balance, error: str) -> None:
        for scope, ref in [
            (Scope.BALANCE, balance.pk),
            (Scope.CUSTOMER, balance.customer_id),
            (Scope.PRODUCT, balance.product_id),
        ]:
            self.failed.setdefault((scope, str(ref)), error)

    def route_failed(self, api_id: str, error: str) -> None:
        self.failed.setdefault((Scope.ROUTE, api_id), error)
        for product_id, api_ids in self.product_routes.items():
            if api_id in api_ids:
                self.failed.setdefault((Scope.PRODUCT, str(product_id)), error)

    def error_of(self, row: MirrorOutbox) -> str | None:
        """Why an item this row names failed; None: every one is written."""
        return self.failed.get((row.scope, row.ref))


def _too_big(rows: list[MirrorOutbox], limit: int) -> set[int]:
    """Ids of the product rows with more balances than `limit`."""
    product_ids = {int(row.ref) for row in rows if row.scope == Scope.PRODUCT}
    if not product_ids:
        return set()
    counts = (
        Balance.objects.filter(product_id__in=product_ids)
        .values("product_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=limit)
        .values_list("product_id", flat=True)
    )
    big = {str(product_id) for product_id in counts}
    return {row.pk for row in rows if row.scope == Scope.PRODUCT and row.ref in big}


def _batch_write(batch: _Batch, *, client: Client, force: bool, progress: Progress | None = None) -> WriteReport:
    """Write every item the batch's rows name, from Postgres as it is now."""
    report = WriteReport()
    q = (
        Q(pk__in=batch.ids(Scope.BALANCE))
        | Q(customer_id__in=batch.ids(Scope.CUSTOMER))
        | Q(product_id__in=batch.ids(Scope.PRODUCT))
    )
    balances = balances_for_mirror(Balance.objects.filter(q)).order_by("pk")
    chunk: list[Balance] = []

    def write(chunk: list[Balance]) -> None:
        nonlocal report
        by_key = {key_of(balance_key(b)): b for b in chunk}
        jobs: list[Job] = [(key, functools.partial(balance_write, client, b, force=force)) for key, b in by_key.items()]
        done = writes_run(jobs, progress=progress)
        for key, error in done.failed.items():
            log.warning("mirror write of %s %s failed, kept in the outbox: %s", *key, error)
            batch.balance_failed(by_key[key], error)
        report += done

    # A product's balances may be many: a server-side cursor reads them a chunk at a time. Without a
    # product row they are few (the rows' balances, their customers'): one plain read, one round trip
    # where a server-side cursor costs three (declare, fetch, close).
    read = balances.iterator(chunk_size=BALANCES_PER_RUN) if batch.refs[Scope.PRODUCT] else balances
    for balance in read:
        chunk.append(balance)
        if len(chunk) == BALANCES_PER_RUN:
            write(chunk)
            chunk = []
    if chunk:
        write(chunk)

    for product_id, api_id in ProductApi.objects.filter(product_id__in=batch.ids(Scope.PRODUCT)).values_list(
        "product_id", "api_id"
    ):
        batch.product_routes[product_id].add(api_id)
    api_ids = batch.refs[Scope.ROUTE] | {a for routes in batch.product_routes.values() for a in routes}
    products = {
        row.api_id: row.product for row in ProductApi.objects.filter(api_id__in=api_ids).select_related("product")
    }
    jobs = route_jobs(client, {api_id: products.get(api_id) for api_id in api_ids})
    done = writes_run(jobs, progress=progress)
    for key, error in done.failed.items():
        log.warning("mirror write of %s %s failed, kept in the outbox: %s", *key, error)
        failed_api_id = route_ref(key)
        if failed_api_id is not None:  # every key route_jobs writes is a route's
            batch.route_failed(failed_api_id, error)
    report += done

    api_keys = {k.key_hash: k for k in ApiKey.objects.filter(pk__in=batch.ids(Scope.KEY)).select_related("customer")}
    done = writes_run(key_jobs(client, api_keys.values(), force=force), progress=progress)
    for key, error in done.failed.items():
        log.warning("mirror write of %s %s failed, kept in the outbox: %s", *key, error)
        batch.failed.setdefault((Scope.KEY, str(api_keys[key[0].removeprefix(m.KEY_PREFIX)].pk)), error)
    report += done
    return report


def _rows_settle(batch: _Batch) -> None:
    """Delete the rows whose items are all written; count a failed attempt on the others."""
    by_error: dict[str, list[int]] = defaultdict(list)
    written = []
    for row in batch.rows:
        error = batch.error_of(row)
        if error is None:
            written.append(row.pk)
        else:
            by_error[error[:2000]].append(row.pk)
    if written:  # one statement: QuerySet.delete() would wrap it in BEGIN and COMMIT, two round trips more
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {MirrorOutbox._meta.db_table} WHERE id = ANY(%s)", [written])
    for error, ids in by_error.items():
        MirrorOutbox.objects.filter(pk__in=ids).update(attempts=F("attempts") + 1, error=error)


def _pages(ids: Iterable[int] | None, rows: list[MirrorOutbox] | None) -> Iterator[list[MirrorOutbox]]:
    """The rows to write, ROWS_PER_RUN at a time: `rows` as given, else read from the table."""
    if rows is not None:
        rows = sorted(rows, key=lambda row: row.pk)
        for start in range(0, len(rows), ROWS_PER_RUN):
            yield rows[start : start + ROWS_PER_RUN]
        return
    queryset = MirrorOutbox.objects.order_by("pk")
    if ids is not None:
        queryset = queryset.filter(pk__in=list(ids))
    last = 0
    while page := list(queryset.filter(pk__gt=last)[:ROWS_PER_RUN]):
        yield page
        if len(page) < ROWS_PER_RUN:
            return  # that was the last page: asking again would find nothing (one query less per write)
        last = page[-1].pk


def mirror_outbox_write(
    *,
    ids: Iterable[int] | None = None,
    rows: list[MirrorOutbox] | None = None,
    limit: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> WriteReport:
    """Write the items that outbox rows name (the rows `ids`, or these `rows` as the caller recorded
    them, or every row), then delete the rows written.

    Items are rebuilt from Postgres as it is now, ROWS_PER_RUN rows at a time. A row
    whose write fails stays, with its error, for the next run. `limit`: product rows
    with more balances than this are left untried (counted in `left`). `force`:
    also rewrite items at the version they hold (the scheduled run's repair).
    """
    report = WriteReport()
    if not settings.MIRROR_ENABLED:
        return report
    client = mirror_client()
    for batch_rows in _pages(ids, rows):
        if limit is not None and (big := _too_big(batch_rows, limit)):
            log.info("outbox rows %s touch more than %s balances each: left to sync_usage", sorted(big), limit)
            report.left += len(big)
            batch_rows = [row for row in batch_rows if row.pk not in big]
        batch = _Batch(batch_rows)
        report += _batch_write(batch, client=client, force=force, progress=progress)
        _rows_settle(batch)
    return report


def mirror_outbox_clear(ids: Iterable[int]) -> None:
    """Delete these rows: `sync_mirror` has written every item from a read of Postgres made after they committed."""
    MirrorOutbox.objects.filter(pk__in=list(ids)).delete()
