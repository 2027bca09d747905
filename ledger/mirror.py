"""Keeps the gate's DynamoDB mirror in step with Postgres (the item contract is authorizer/mirror.py).

Postgres is the truth; each write here rebuilds items from a fresh read of it,
after the transaction that changed them has committed (see ledger/signals.py).

* Balance items: Django sets everything it owns under the condition that the
  item's version is older (`version < :v`), so a late write of an older state
  is refused, and writing the same state twice changes nothing. `used` is never
  written, except to start a new item at what Postgres already knows was spent
  (`if_not_exists`), so a recreated table cannot hand out spent credits again.
* Route items (API id -> product) hold nothing the authorizer writes, so they
  are put (or deleted) outright from the current rows.

A write that fails after botocore's retries (endpoint down, throttled) is
recorded as a `MirrorPending` row and logged; the request that caused it
still succeeds. `sync_mirror --pending` and every `sync_usage` run write those
items again from Postgres and clear the rows.
"""

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError
from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from accounts.models import Credential
from authorizer import mirror as m
from ledger.models import Balance, MirrorPending, Product, ProductApi
from ledger.services import usage_record

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (pk, sk) of an item, as plain strings

BALANCE_PREFIX = "CUSTOMER#"
PRODUCT_PREFIX = "PRODUCT#"
ROUTE_PREFIX = "API#"
ROUTE_SK = "ROUTE"
# The attributes Django owns on a balance item (everything but `used`).
OWNED = (m.GRANTED, m.COST, m.CEILING, m.ACTIVE, m.PRODUCT_ACTIVE, m.CREDS, m.VERSION)


@functools.lru_cache(maxsize=8)
def _client(region: str, endpoint_url: str | None, timeout: int, attempts: int, pool: int):
    import boto3  # here, not at import: Django starts without loading boto3 until the mirror is written
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"mode": "standard", "total_max_attempts": attempts},
        max_pool_connections=pool,
    )
    return boto3.session.Session().client("dynamodb", region_name=region, endpoint_url=endpoint_url, config=config)


def mirror_client(*, timeout: int | None = None):
    """The DynamoDB client for the mirror, built from settings when first needed (never at import).

    `timeout`: seconds to connect and to read an answer, MIRROR_TIMEOUT_SECONDS unless given.
    """
    return _client(
        settings.AWS_REGION,
        settings.MIRROR_ENDPOINT_URL,
        timeout or settings.MIRROR_TIMEOUT_SECONDS,
        settings.MIRROR_WRITE_ATTEMPTS,
        max(10, settings.MIRROR_WRITE_THREADS),
    )


def mirror_reader():
    """The client for whole-table scans: a page (up to 1 MB) may take far longer than one write to answer."""
    return mirror_client(timeout=max(settings.MIRROR_TIMEOUT_SECONDS, 120))


def _key(typed: dict) -> Key:
    return typed[m.PK]["S"], typed[m.SK]["S"]


def plain(value: dict):
    """A DynamoDB typed value as plain Python (the few types the mirror uses)."""
    ((kind, inner),) = value.items()
    if kind == "N":
        return int(inner)
    if kind == "M":
        return {k: plain(v) for k, v in inner.items()}
    return inner  # S, BOOL


# --- Balance items -----------------------------------------------------------


def balances_for_mirror(queryset: QuerySet[Balance] | None = None) -> QuerySet[Balance]:
    """Balances with everything their items need: one query, plus one for the customers' live credentials."""
    live = Credential.objects.filter(revoked_at__isnull=True).order_by("pk")
    queryset = Balance.objects.all() if queryset is None else queryset
    return queryset.select_related("customer", "product").prefetch_related(
        Prefetch("customer__credentials", queryset=live, to_attr="live_credentials")
    )


def balance_key(balance: Balance) -> dict:
    return m.balance_key(balance.customer.public_id, balance.product.slug)


def balance_values(balance: Balance) -> dict:
    """The attributes Django owns on the balance's item, typed for botocore."""
    customer, product = balance.customer, balance.product
    cost = product.cost_per_call
    return {
        m.GRANTED: {"N": str(balance.granted)},
        m.COST: {"N": str(cost)},
        m.CEILING: {"N": str(balance.granted - cost)},
        m.ACTIVE: {"BOOL": customer.is_active},
        m.PRODUCT_ACTIVE: {"BOOL": product.active},
        m.CREDS: {"M": {c.client_id: {"N": str(c.secret_version)} for c in customer.live_credentials}},
        m.VERSION: {"N": str(balance.version + customer.version + product.version)},
    }


def balance_write(client, balance: Balance, *, force: bool = False) -> bool:
    """Write what Django owns of one balance item. False: the item already holds a newer state.

    `force` also rewrites an item at the same version (sync_mirror's repair of
    an item changed behind our back); an older state is never written.
    """
    values = balance_values(balance)
    names = {f"#{attr}": attr for attr in values} | {"#used": m.USED}
    expression_values = {f":{attr}": value for attr, value in values.items()} | {":used": {"N": str(balance.used)}}
    sets = ", ".join(f"#{attr} = :{attr}" for attr in values)
    try:
        client.update_item(
            TableName=settings.MIRROR_TABLE,
            Key=balance_key(balance),
            UpdateExpression=f"SET {sets}, #used = if_not_exists(#used, :used)",
            ConditionExpression=f"attribute_not_exists(#version) OR #version {'<=' if force else '<'} :version",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=expression_values,
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False  # a newer state (or this very one) is there already: nothing to do
        raise
    return True


def balance_create(client, balance: Balance) -> bool:
    """Create a balance item the mirror does not have yet; when it has appeared since, write it as balance_write.

    One conditional PutItem (`attribute_not_exists(pk)`): it lands only where
    no item is, so it neither touches a `used` the gate wrote nor replaces a
    newer state, and leaves the same item balance_write would have created.
    """
    item = balance_key(balance) | balance_values(balance) | {m.USED: {"N": str(balance.used)}}
    try:
        client.put_item(
            TableName=settings.MIRROR_TABLE,
            Item=item,
            ConditionExpression="attribute_not_exists(#pk)",
            ExpressionAttributeNames={"#pk": m.PK},
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return balance_write(client, balance, force=True)
        raise
    return True


# --- Route items -------------------------------------------------------------


def route_write(client, api_id: str, product: Product | None) -> bool:
    """Point an API id at its product, or delete the route when no product has it any more."""
    if product is None:
        client.delete_item(TableName=settings.MIRROR_TABLE, Key=m.route_key(api_id))
    else:
        item = m.route_key(api_id) | {m.PRODUCT: {"S": product.slug}, m.VERSION: {"N": str(product.version)}}
        client.put_item(TableName=settings.MIRROR_TABLE, Item=item)
    return True


# --- Running writes, remembering failures ------------------------------------


@dataclass
class WriteReport:
    written: int = 0
    current: int = 0  # already as new as Postgres: nothing written
    failed: dict[Key, str] = field(default_factory=dict)

    def __iadd__(self, other: "WriteReport") -> "WriteReport":
        self.written += other.written
        self.current += other.current
        self.failed |= other.failed
        return self


Job = tuple[Key, Callable[[], bool]]


def _run(
    jobs: list[Job],
    *,
    read_at: datetime,
    progress=None,
    current: Iterable[Key] = (),
    pending: set[Key] | None = None,
) -> WriteReport:
    """Run writes (in a thread pool when there are several); record failures as pending, clear successes.

    `read_at`: when the written state was read from Postgres. A success clears
    only pending rows older than that: a failure recorded since then was about
    a newer state than the one this run wrote. `current`: keys found already
    as Postgres has them (nothing to write; their pending rows are cleared too).
    `pending`: the keys with pending rows, when the caller has read them, so
    that only those are looked for.
    """
    report = WriteReport()
    current = list(current)
    report.current += len(current)
    if progress is not None and current:
        progress.update(len(current))
    if not jobs:
        _pending_clear(current, before=read_at, pending=pending)
        return report
    unreachable = threading.Event()  # once the endpoint is down, don't make every write wait for it
    lock = threading.Lock()

    def run(job: Job) -> None:
        key, write = job
        error = None
        if unreachable.is_set():
            error = "not tried: the endpoint was unreachable"
        else:
            try:
                written = write()
            except (EndpointConnectionError, ConnectTimeoutError) as e:
                unreachable.set()
                error = f"{type(e).__name__}: {e}"
            except (BotoCoreError, ClientError) as e:
                error = f"{type(e).__name__}: {e}"
        with lock:
            if error is not None:
                report.failed[key] = error
            elif written:
                report.written += 1
            else:
                report.current += 1
            if progress is not None:
                progress.update(1)

    if len(jobs) == 1:
        run(jobs[0])
    else:
        with ThreadPoolExecutor(max_workers=settings.MIRROR_WRITE_THREADS) as pool:
            list(pool.map(run, jobs))
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


def _balance_jobs(client, balances: Iterable[Balance], *, force: bool) -> list[Job]:
    return [(_key(balance_key(b)), functools.partial(balance_write, client, b, force=force)) for b in balances]


def _route_jobs(client, api_ids: Iterable[str]) -> list[Job]:
    api_ids = set(api_ids)
    rows = {row.api_id: row.product for row in ProductApi.objects.filter(api_id__in=api_ids).select_related("product")}
    return [
        (_key(m.route_key(api_id)), functools.partial(route_write, client, api_id, rows.get(api_id)))
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
    return _run(_balance_jobs(mirror_client(), balances, force=False), read_at=read_at)


def mirror_routes_write(*, api_ids: Iterable[str] = (), product_ids: Iterable[int] = ()) -> WriteReport:
    """Rewrite the route items of these API ids and of all of these products' API ids."""
    if not settings.MIRROR_ENABLED:
        return WriteReport()
    api_ids = set(api_ids) | set(
        ProductApi.objects.filter(product_id__in=list(product_ids)).values_list("api_id", flat=True)
    )
    read_at = timezone.now()
    return _run(_route_jobs(mirror_client(), api_ids), read_at=read_at)


# --- sync_mirror ---------------------------------------------------------------


def mirror_pending_retry() -> WriteReport:
    """Write again every item whose last write failed (from Postgres as it is now)."""
    client = mirror_client()
    read_at = timezone.now()
    pending = list(MirrorPending.objects.values_list("item_pk", "item_sk"))
    balance_q, api_ids = Q(pk__in=[]), set()
    for pk, sk in pending:
        if pk.startswith(BALANCE_PREFIX) and sk.startswith(PRODUCT_PREFIX):
            balance_q |= Q(
                customer__public_id=pk.removeprefix(BALANCE_PREFIX), product__slug=sk.removeprefix(PRODUCT_PREFIX)
            )
        elif pk.startswith(ROUTE_PREFIX) and sk == ROUTE_SK:
            api_ids.add(pk.removeprefix(ROUTE_PREFIX))
    jobs = _balance_jobs(client, list(balances_for_mirror(Balance.objects.filter(balance_q))), force=True)
    jobs += _route_jobs(client, api_ids)
    report = _run(jobs, read_at=read_at)
    # Keys with nothing behind them in Postgres any more have nothing to write.
    tried = {key for key, _ in jobs}
    _pending_clear([key for key in pending if key not in tried], before=read_at)
    return report


def scan(client, **params) -> Iterator[dict]:
    """Every item of the mirror table (paginated)."""
    for page in client.get_paginator("scan").paginate(TableName=settings.MIRROR_TABLE, **params):
        yield from page.get("Items", [])


def _mirror_state(client, progress=None) -> dict[Key, tuple]:
    """What the mirror holds of what Django owns, from one consistent scan: {key: values}.

    Balance items map to their OWNED values in order, route items to
    (product, version); plain values, so they compare with what Postgres says.
    """
    attrs = (m.PK, m.SK, *OWNED, m.PRODUCT)
    names = {f"#a{i}": attr for i, attr in enumerate(attrs)}
    state: dict[Key, tuple] = {}
    for item in scan(
        client, ConsistentRead=True, ProjectionExpression=", ".join(names), ExpressionAttributeNames=names
    ):
        key = _key(item)
        owned = (m.PRODUCT, m.VERSION) if key[0].startswith(ROUTE_PREFIX) else OWNED
        state[key] = tuple(plain(item[attr]) if attr in item else None for attr in owned)
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()
    return state


def _owned(values: dict) -> tuple:
    return tuple(plain(values[attr]) for attr in OWNED)


def mirror_full_write(progress_factory=None) -> WriteReport:
    """Bring every item to what Postgres holds (repairing drift), delete routes no product has; never touches `used`.

    One consistent scan reads the mirror, then only the items that differ are
    written (writes are what cost: one request each, as each is conditional):
    a missing balance item is created (balance_create), a different one
    rewritten at its version or a newer one (balance_write with force), never
    an older state. Postgres is read 500 balances at a time, in a fixed number
    of queries per chunk.
    `progress_factory(total, desc)`: a progress bar (total None: not known).
    """
    client = mirror_client()
    read_at = timezone.now()
    pending = set(MirrorPending.objects.values_list("item_pk", "item_sk"))
    state = _mirror_state(mirror_reader(), progress_factory(None, "read the mirror") if progress_factory else None)
    balances = balances_for_mirror().order_by("pk")
    routes = {row.api_id: row.product for row in ProductApi.objects.select_related("product")}
    stale_routes = {pk.removeprefix(ROUTE_PREFIX) for pk, sk in state if pk.startswith(ROUTE_PREFIX)} - routes.keys()
    total = balances.count() + len(routes) + len(stale_routes)
    progress = progress_factory(total, "sync_mirror") if progress_factory else None
    report = WriteReport()

    def write(chunk: list[Balance]) -> WriteReport:
        jobs, current = [], []
        for balance in chunk:
            key = _key(balance_key(balance))
            have = state.get(key)
            if have is None:
                jobs.append((key, functools.partial(balance_create, client, balance)))
            elif have == _owned(balance_values(balance)):
                current.append(key)
            else:
                jobs.append((key, functools.partial(balance_write, client, balance, force=True)))
        return _run(jobs, read_at=read_at, progress=progress, current=current, pending=pending)

    chunk: list[Balance] = []
    for balance in balances.iterator(chunk_size=500):
        chunk.append(balance)
        if len(chunk) == 500:
            report += write(chunk)
            chunk = []
    report += write(chunk)
    differ = {
        api_id
        for api_id, product in routes.items()
        if state.get(_key(m.route_key(api_id))) != (product.slug, product.version)
    }
    current = [_key(m.route_key(api_id)) for api_id in routes.keys() - differ]
    report += _run(
        _route_jobs(client, differ | stale_routes), read_at=read_at, progress=progress, current=current, pending=pending
    )
    if progress is not None:
        progress.close()
    return report


def mirror_drift() -> list[str]:
    """How the mirror differs from Postgres: one line per difference (empty: none)."""
    client = mirror_reader()
    expected: dict[Key, dict] = {}
    floors: dict[Key, int] = {}
    for balance in balances_for_mirror().iterator(chunk_size=500):
        key = _key(balance_key(balance))
        expected[key] = {attr: plain(value) for attr, value in balance_values(balance).items()}
        floors[key] = balance.used
    for row in ProductApi.objects.select_related("product"):
        expected[_key(m.route_key(row.api_id))] = {m.PRODUCT: row.product.slug}

    lines = []
    seen = set()
    for item in scan(client, ConsistentRead=True):
        key = _key(item)
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


# --- sync_usage ----------------------------------------------------------------


@dataclass
class UsageReport:
    items: int = 0
    balances: int = 0  # balances that got a usage entry
    credits: int = 0  # credits recorded


def _usage_catch_up(balance_id: int, mirror_used: int) -> int:
    """Record in the ledger what the gate spent beyond what Postgres has, under the balance's lock."""
    with transaction.atomic():
        balance = Balance.objects.select_for_update().select_related("customer", "product").get(pk=balance_id)
        new = mirror_used - balance.used
        if new <= 0:
            return 0
        usage_record(
            customer=balance.customer, product=balance.product, amount=new, reason=f"gate: {mirror_used} used in all"
        )
        return new


def mirror_usage_pull(progress_factory=None) -> UsageReport:
    """Bring what the gate spent into the ledger: only what is new since the last run, so a second run records nothing.

    Scans every balance item each run (a page of items, one Postgres query per page).
    """
    client = mirror_client()
    report = UsageReport()
    progress = progress_factory(None) if progress_factory else None
    pages = client.get_paginator("scan").paginate(
        TableName=settings.MIRROR_TABLE,
        FilterExpression="begins_with(#pk, :customer)",
        ProjectionExpression="#pk, #sk, #used",
        ExpressionAttributeNames={"#pk": m.PK, "#sk": m.SK, "#used": m.USED},
        ExpressionAttributeValues={":customer": {"S": BALANCE_PREFIX}},
    )
    for page in pages:
        used_by_key = {}
        for item in page.get("Items", []):
            pk, sk = _key(item)
            if m.USED in item and sk.startswith(PRODUCT_PREFIX):
                used_by_key[(pk.removeprefix(BALANCE_PREFIX), sk.removeprefix(PRODUCT_PREFIX))] = plain(item[m.USED])
        report.items += len(used_by_key)
        rows = Balance.objects.filter(
            customer__public_id__in={c for c, _ in used_by_key}, product__slug__in={p for _, p in used_by_key}
        ).values_list("pk", "customer__public_id", "product__slug", "used")
        for balance_id, customer_id, slug, used in rows:
            mirror_used = used_by_key.get((customer_id, slug))
            if mirror_used is not None and mirror_used > used:
                recorded = _usage_catch_up(balance_id, mirror_used)
                if recorded:
                    report.balances += 1
                    report.credits += recorded
        if progress is not None:
            progress.update(len(page.get("Items", [])))
    if progress is not None:
        progress.close()
    return report
