"""`sync_mirror`: the whole mirror brought to what Postgres holds, and `--check`'s drift report.

Both read the mirror with one consistent scan (a client with a long read timeout:
a 1 MB page takes long to answer) and Postgres 500 balances at a time.
"""

import functools
from typing import Any

from accounts.models import ApiKey
from authorizer import mirror as m
from ledger.mirror.client import Client, Progress, ProgressFactory, mirror_client, mirror_reader, scan
from ledger.mirror.items import (
    Key,
    balance_key,
    balance_owned,
    balances_for_mirror,
    key_of,
    key_owned,
    plain,
    route_owned,
)
from ledger.mirror.outbox import mirror_outbox_clear
from ledger.mirror.writes import WriteReport, balance_create, balance_write, key_jobs, route_jobs, writes_run
from ledger.models import Balance, DriftCheck, MirrorOutbox, ProductApi

CHUNK = 500
DRIFT_DETAIL_LINES = 50  # of a check's differences, kept with its record


def _mirror_state(client: Client, progress: Progress | None = None) -> dict[Key, tuple[Any, ...]]:
    """What the mirror holds of what Django owns, from one consistent scan: {key: values}.

    Balance items map to their m.BALANCE_OWNED values in order, route items to
    their m.ROUTE_OWNED values, key items to m.KEY_OWNED; plain values, so they compare with
    what Postgres says.
    """
    attrs = tuple(dict.fromkeys((m.PK, m.SK, *m.BALANCE_OWNED, *m.ROUTE_OWNED, *m.KEY_OWNED)))
    names = {f"#a{i}": attr for i, attr in enumerate(attrs)}
    state: dict[Key, tuple[Any, ...]] = {}
    for item in scan(
        client, ConsistentRead=True, ProjectionExpression=", ".join(names), ExpressionAttributeNames=names
    ):
        key = key_of(item)
        owned = _owned(key)
        state[key] = tuple(plain(item[attr]) if attr in item else None for attr in owned)
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()
    return state


def _owned(key: Key) -> tuple[str, ...]:
    if key[0].startswith(m.API_PREFIX):
        return m.ROUTE_OWNED
    if key[0].startswith(m.KEY_PREFIX):
        return m.KEY_OWNED
    return m.BALANCE_OWNED


def _in_order(values: dict[str, Any], attrs: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(values[attr] for attr in attrs)


def mirror_full_write(progress_factory: ProgressFactory | None = None) -> WriteReport:
    """Bring every item to what Postgres holds (repairing drift), delete routes no product has; never touches `used`.

    One consistent scan reads the mirror, then only the items that differ are
    written (writes are what cost: one request each, as each is conditional):
    a missing balance item is created (balance_create), a different one
    rewritten at its version or a newer one (balance_write with force), never
    an older state. Postgres is read 500 balances at a time, in a fixed number
    of queries per chunk.
    The outbox rows that were there before Postgres was read are deleted when
    every write succeeded: what they named is written, from a later read.
    `progress_factory(total, desc)`: a progress bar (total None: not known).
    """
    client = mirror_client()
    outbox = list(MirrorOutbox.objects.values_list("pk", flat=True))
    state = _mirror_state(mirror_reader(), progress_factory(None, "read the mirror") if progress_factory else None)
    balances = balances_for_mirror().order_by("pk")
    routes = {row.api_id: row.product for row in ProductApi.objects.select_related("product")}
    stale_routes = {pk.removeprefix(m.API_PREFIX) for pk, sk in state if pk.startswith(m.API_PREFIX)} - routes.keys()
    api_keys = list(ApiKey.objects.select_related("customer").order_by("pk"))
    total = balances.count() + len(routes) + len(stale_routes) + len(api_keys)
    progress = progress_factory(total, "sync_mirror") if progress_factory else None
    report = WriteReport()

    def write(chunk: list[Balance]) -> WriteReport:
        jobs, current = [], []
        for balance in chunk:
            key = key_of(balance_key(balance))
            have = state.get(key)
            if have is None:
                jobs.append((key, functools.partial(balance_create, client, balance)))
            elif have == _in_order(balance_owned(balance), m.BALANCE_OWNED):
                current.append(key)
            else:
                jobs.append((key, functools.partial(balance_write, client, balance, force=True)))
        return writes_run(jobs, progress=progress, current=current)

    chunk: list[Balance] = []
    for balance in balances.iterator(chunk_size=CHUNK):
        chunk.append(balance)
        if len(chunk) == CHUNK:
            report += write(chunk)
            chunk = []
    report += write(chunk)
    differ = {
        api_id
        for api_id, product in routes.items()
        if state.get(key_of(m.route_key(api_id))) != _in_order(route_owned(product), m.ROUTE_OWNED)
    }
    current = [key_of(m.route_key(api_id)) for api_id in routes.keys() - differ]
    jobs = route_jobs(client, {api_id: routes.get(api_id) for api_id in differ | stale_routes})
    report += writes_run(jobs, progress=progress, current=current)
    differ_keys = [
        k for k in api_keys if state.get(key_of(m.key_key(k.key_hash))) != _in_order(key_owned(k), m.KEY_OWNED)
    ]
    differ_pks = {k.pk for k in differ_keys}
    current = [key_of(m.key_key(k.key_hash)) for k in api_keys if k.pk not in differ_pks]
    report += writes_run(key_jobs(client, differ_keys, force=True), progress=progress, current=current)
    if progress is not None:
        progress.close()
    if not report.failed:
        mirror_outbox_clear(outbox)
    return report


def mirror_drift() -> list[str]:
    """How the mirror differs from Postgres: one line per difference (empty: none)."""
    client = mirror_reader()
    expected: dict[Key, dict[str, Any]] = {}
    floors: dict[Key, int] = {}
    for balance in balances_for_mirror().iterator(chunk_size=CHUNK):
        key = key_of(balance_key(balance))
        expected[key] = balance_owned(balance)
        floors[key] = balance.used
    for row in ProductApi.objects.select_related("product"):
        expected[key_of(m.route_key(row.api_id))] = {m.PRODUCT: row.product.slug, m.ROUTES: dict(row.product.routes)}
    for api_key in ApiKey.objects.select_related("customer"):
        expected[key_of(m.key_key(api_key.key_hash))] = key_owned(api_key)

    lines = []
    seen = set()
    for item in scan(client, ConsistentRead=True):
        key = key_of(item)
        seen.add(key)
        want = expected.get(key)
        if want is None:
            lines.append(f"{key[0]} {key[1]}: in the mirror only (no such row in Postgres)")
            continue
        have = {attr: plain(value) for attr, value in item.items() if attr in want}
        for attr, value in want.items():
            if have.get(attr) != value:
                lines.append(f"{key[0]} {key[1]}: {attr} is {have.get(attr)!r} in the mirror, {value!r} in Postgres")
        if key in floors:
            used = plain(item[m.USED]) if m.USED in item else None
            if used is None or used < floors[key]:
                lines.append(
                    f"{key[0]} {key[1]}: used is {used!r} in the mirror, below the {floors[key]} recorded in Postgres"
                )
    for key in sorted(expected.keys() - seen):
        lines.append(f"{key[0]} {key[1]}: missing from the mirror")
    return lines


def mirror_drift_check() -> list[str]:
    """`mirror_drift`, with its result recorded (a DriftCheck row: the overview shows the last).

    A mirror that cannot be read is recorded as a failed check, and the error raised again.
    """
    try:
        lines = mirror_drift()
    except Exception as e:
        DriftCheck.objects.create(result=DriftCheck.Result.FAILED, detail=f"{type(e).__name__}: {e}"[:2000])
        raise
    DriftCheck.objects.create(
        result=DriftCheck.Result.DRIFT if lines else DriftCheck.Result.OK,
        differences=len(lines),
        detail="\n".join(lines[:DRIFT_DETAIL_LINES]),
    )
    return lines
