"""The DynamoDB clients of the mirror, built from settings when first needed (never at import)."""

import functools
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from django.conf import settings

# A boto3 DynamoDB client (boto3 has no type information of its own: what it returns is Any).
Client = Any


class Progress(Protocol):
    """What the writes and scans use of a progress bar (tqdm's)."""

    def update(self, n: float | None = 1) -> bool | None: ...

    def close(self) -> None: ...


# progress_factory(total, desc) of sync_mirror and sync_usage: a bar (total None: not known).
ProgressFactory = Callable[..., Progress]


@functools.lru_cache(maxsize=8)
def _client(region: str, endpoint_url: str | None, timeout: int, attempts: int, pool: int) -> Client:
    import boto3  # here, not at import: Django starts without loading boto3 until the mirror is written
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"mode": "standard", "total_max_attempts": attempts},
        max_pool_connections=pool,
    )
    return boto3.session.Session().client("dynamodb", region_name=region, endpoint_url=endpoint_url, config=config)


def mirror_client(*, timeout: int | None = None) -> Client:
    """The DynamoDB client for the mirror.

    `timeout`: seconds to connect and to read an answer, MIRROR_TIMEOUT_SECONDS unless given.
    """
    return _client(
        settings.AWS_REGION,
        settings.MIRROR_ENDPOINT_URL,
        timeout or settings.MIRROR_TIMEOUT_SECONDS,
        settings.MIRROR_WRITE_ATTEMPTS,
        max(10, settings.MIRROR_WRITE_THREADS),
    )


def mirror_reader() -> Client:
    """The client for whole-table scans: a page (up to 1 MB) may take far longer than one write to answer."""
    return mirror_client(timeout=max(settings.MIRROR_TIMEOUT_SECONDS, 120))


def scan(client: Client, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item of the mirror table (paginated), typed as botocore returns them."""
    for page in client.get_paginator("scan").paginate(TableName=settings.MIRROR_TABLE, **params):
        yield from page.get("Items", [])
