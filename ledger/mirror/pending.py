"""Writes after commit, and the ones that failed (kept as `MirrorPending` rows until written).

A write that fails after botocore's retries (endpoint down, throttled) is
recorded as a `MirrorPending` row and logged; the request that caused it
still succeeds. `sync_mirror --pending` and every `sync_usage` run write those
items again from Postgres and clear the rows.
"""

import functools
import logging
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from authorizer import mirror as m
from ledger.mirror.client import mirror_client
from ledger.mirror.items import Key, balance_key, balance_ref, balances_for_mirror, key_of, route_ref
from ledger.mirror.writes import Job, WriteReport, balance_write, route_write, writes_run
from ledger.models import Balance, MirrorPending, ProductApi

log = logging.getLogger(__name__)


def writes_run_remembered(
    jobs: list[Job],
    *,
    read_at: datetime,
    progress=None,
    current: Iterable[Key] = (),
    pending: set[Key] | None = None,
) -> WriteReport:
    """Run writes; record failures as pending, clear the pending rows of successes.

    `read_at`: when the written state was read from Postgres. A success clears
    only pending rows older than that: a failure recorded since then was about
    a newer state than the one this run wrote. `current`: keys found already
    as Postgres has them (nothing to write; their pending rows are cleared too).
    `pending`: the keys with pending rows, when the caller has read them, so
    that only those are looked for.
    """
    current = list(current)
    report = writes_run(jobs, progress=progress, current=current)
    done = [key for key, _ in jobs if key not in report.failed]
    _pending_clear(done + current, before=read_at, pending=pending)
    _pending_record(report.failed)
    return report


def _keys_q(keys: Iterable[Key]) -> Q:
    q = Q(pk__in=[])
    for pk, sk in keys:
        q |= Q(item_pk=pk, item_sk=sk)
    return q


def _pending_clear(keys: list[Key], *, before: datetime, pending: set[Key] | None = None) -> None:
    if pending is not None:
        keys = [key for key in keys if key in pending]
    for start in range(0, len(keys), 500):
        MirrorPending.objects.filter(_keys_q(keys[start : start + 500]), updated__lt=before).delete()


def _pending_record(failed: dict[Key, str]) -> None:
    if not failed:
        return
    for (pk, sk), error in failed.items():
        log.warning("mirror write of %s %s failed, kept as pending: %s", pk, sk, error)
    MirrorPending.objects.bulk_create(
        [MirrorPending(item_pk=pk, item_sk=sk, error=error[:2000]) for (pk, sk), error in failed.items()],
        update_conflicts=True,
        unique_fields=["item_pk", "item_sk"],
        update_fields=["error", "updated"],
    )


def balance_jobs(client, balances: Iterable[Balance], *, force: bool) -> list[Job]:
    return [(key_of(balance_key(b)), functools.partial(balance_write, client, b, force=force)) for b in balances]


def route_jobs(client, api_ids: Iterable[str]) -> list[Job]:
    api_ids = set(api_ids)
    rows = {row.api_id: row.product for row in ProductApi.objects.filter(api_id__in=api_ids).select_related("product")}
    return [
        (key_of(m.route_key(api_id)), functools.partial(route_write, client, api_id, rows.get(api_id)))
        for api_id in sorted(api_ids)
    ]


# --- What the signals schedule (after commit) --------------------------------


def mirror_balances_write(
    *, balance_ids: Iterable[int] = (), customer_ids: Iterable[int] = (), product_ids: Iterable[int] = ()
) -> WriteReport:
    """Rewrite the items of these balances, of all of these customers', and of all of these products'.

    A product change touches every balance of the product: they are read in one
    go and written in parallel (MIRROR_WRITE_THREADS). Fine for thousands of
    balances per product; far beyond that, a queue (or a rewrite through
    sync_mirror) would keep the request that changed the product short.
    """
    if not settings.MIRROR_ENABLED:
        return WriteReport()
    q = Q(pk__in=list(balance_ids)) | Q(customer_id__in=list(customer_ids)) | Q(product_id__in=list(product_ids))
    read_at = timezone.now()
    balances = list(balances_for_mirror(Balance.objects.filter(q)))
    return writes_run_remembered(balance_jobs(mirror_client(), balances, force=False), read_at=read_at)


def mirror_routes_write(*, api_ids: Iterable[str] = (), product_ids: Iterable[int] = ()) -> WriteReport:
    """Rewrite the route items of these API ids and of all of these products' API ids."""
    if not settings.MIRROR_ENABLED:
        return WriteReport()
    api_ids = set(api_ids) | set(
        ProductApi.objects.filter(product_id__in=list(product_ids)).values_list("api_id", flat=True)
    )
    read_at = timezone.now()
    return writes_run_remembered(route_jobs(mirror_client(), api_ids), read_at=read_at)


def mirror_pending_retry() -> WriteReport:
    """Write again every item whose last write failed (from Postgres as it is now)."""
    client = mirror_client()
    read_at = timezone.now()
    pending = list(MirrorPending.objects.values_list("item_pk", "item_sk"))
    balance_q, api_ids = Q(pk__in=[]), set()
    for key in pending:
        if (ref := balance_ref(key)) is not None:
            balance_q |= Q(customer__public_id=ref[0], product__slug=ref[1])
        elif (api_id := route_ref(key)) is not None:
            api_ids.add(api_id)
    jobs = balance_jobs(client, list(balances_for_mirror(Balance.objects.filter(balance_q))), force=True)
    jobs += route_jobs(client, api_ids)
    report = writes_run_remembered(jobs, read_at=read_at)
    # Keys with nothing behind them in Postgres any more have nothing to write.
    tried = {key for key, _ in jobs}
    _pending_clear([key for key in pending if key not in tried], before=read_at)
    return report
