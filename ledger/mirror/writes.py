"""The mirror's writes: each conditional, so a late or repeated write can do no harm.

* Balance items: Django sets everything it owns under the condition that the
  item's version is older (`version < :v`), so a late write of an older state
  is refused, and writing the same state twice changes nothing. `used` is never
  written, except to start a new item at what Postgres already knows was spent
  (`if_not_exists`), so a recreated table cannot hand out spent credits again.
* Route items (API id -> product) hold nothing the authorizer writes, so they
  are put (or deleted) outright from the current rows.

`writes_run` runs many of them (in a thread pool) and reports, per item key, what failed.
"""

import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError
from django.conf import settings

from accounts.models import ApiKey
from authorizer import mirror as m
from ledger.mirror.client import Client, Progress
from ledger.mirror.items import Key, balance_key, balance_values, key_item, key_of, route_item, typed
from ledger.models import Balance, Product


def _refused(error: ClientError) -> bool:
    return bool(error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


def balance_write(client: Client, balance: Balance, *, force: bool = False) -> bool:
    """Write what Django owns of one balance item. False: the item already holds a newer state.

    `force` also rewrites an item at the same version (sync_mirror's repair of
    an item changed behind our back); an older state is never written.
    """
    values = balance_values(balance)
    names = {f"#{attr}": attr for attr in values} | {"#used": m.USED}
    expression_values = {f":{attr}": value for attr, value in values.items()} | {":used": typed(balance.used)}
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
        if _refused(e):
            return False  # a newer state (or this very one) is there already: nothing to do
        raise
    return True


def balance_create(client: Client, balance: Balance) -> bool:
    """Create a balance item the mirror does not have yet; when it has appeared since, write it as balance_write.

    One conditional PutItem (`attribute_not_exists(pk)`): it lands only where
    no item is, so it neither touches a `used` the gate wrote nor replaces a
    newer state, and leaves the same item balance_write would have created.
    """
    item = balance_key(balance) | balance_values(balance) | {m.USED: typed(balance.used)}
    try:
        client.put_item(
            TableName=settings.MIRROR_TABLE,
            Item=item,
            ConditionExpression="attribute_not_exists(#pk)",
            ExpressionAttributeNames={"#pk": m.PK},
        )
    except ClientError as e:
        if _refused(e):
            return balance_write(client, balance, force=True)
        raise
    return True


def route_write(client: Client, api_id: str, product: Product | None) -> bool:
    """Point an API id at its product, or delete the route when no product has it any more."""
    if product is None:
        client.delete_item(TableName=settings.MIRROR_TABLE, Key=m.route_key(api_id))
    else:
        client.put_item(TableName=settings.MIRROR_TABLE, Item=route_item(api_id, product))
    return True


def route_jobs(client: Client, routes: dict[str, Product | None]) -> list["Job"]:
    """A write for each route item: to its product, or a deletion (None: no product has the API id)."""
    return [
        (key_of(m.route_key(api_id)), functools.partial(route_write, client, api_id, product))
        for api_id, product in sorted(routes.items())
    ]


def key_write(client: Client, api_key: ApiKey, *, force: bool = False) -> bool:
    """Put an API key's item, unless the mirror holds a newer state of it (a revoked key is never restored).
    False: it is there already. The gate never writes key items, so they are put whole."""
    item = key_item(api_key)
    try:
        client.put_item(
            TableName=settings.MIRROR_TABLE,
            Item=item,
            ConditionExpression=f"attribute_not_exists(#version) OR #version {'<=' if force else '<'} :version",
            ExpressionAttributeNames={"#version": m.VERSION},
            ExpressionAttributeValues={":version": item[m.VERSION]},
        )
    except ClientError as e:
        if _refused(e):
            return False
        raise
    return True


def key_jobs(client: Client, api_keys: Iterable[ApiKey], *, force: bool = False) -> list["Job"]:
    return [
        (key_of(m.key_key(k.key_hash)), functools.partial(key_write, client, k, force=force))
        for k in sorted(api_keys, key=lambda k: k.pk)
    ]


# --- Running many writes -------------------------------------------------------


@dataclass
class WriteReport:
    written: int = 0
    current: int = 0  # already as new as Postgres: nothing written
    failed: dict[Key, str] = field(default_factory=dict)
    left: int = 0  # outbox rows not tried, left to the next scheduled run (ledger/mirror/outbox.py)

    def __iadd__(self, other: "WriteReport") -> "WriteReport":
        self.written += other.written
        self.current += other.current
        self.failed |= other.failed
        self.left += other.left
        return self


Job = tuple[Key, Callable[[], bool]]


def writes_run(jobs: Sequence[Job], *, progress: Progress | None = None, current: Iterable[Key] = ()) -> WriteReport:
    """Run writes (in a thread pool of MIRROR_WRITE_THREADS when there are several) and report them.

    A write that fails after botocore's retries is reported in `failed` with its
    error, never raised. Once the endpoint is known to be unreachable, the rest
    are reported failed without being tried, rather than each waiting for it.
    `current`: keys the caller found already as Postgres has them (counted, nothing written).
    """
    report = WriteReport()
    current = list(current)
    report.current += len(current)
    if progress is not None and current:
        progress.update(len(current))
    unreachable = threading.Event()
    lock = threading.Lock()

    def run(job: Job) -> None:
        key, write = job
        error: str | None = None
        written = False
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
    elif jobs:
        with ThreadPoolExecutor(max_workers=settings.MIRROR_WRITE_THREADS) as pool:
            list(pool.map(run, jobs))
    return report
