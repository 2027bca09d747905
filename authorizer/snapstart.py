"""Lambda SnapStart runtime hooks: prime the client before the snapshot, make the restored copy its own.

With SnapStart (deploy/template.yaml, `AuthorizerSnapStart`), Lambda runs the
init phase once per published version, snapshots the memory, and starts every
new execution environment from that snapshot. Two hooks, registered with the
`snapshot_restore_py` library that Lambda's Python runtimes (3.12+) include;
elsewhere the import fails and nothing is registered:

* before the snapshot, `prime`: one GetItem of a route no API has (nothing is
  written, no cache is filled), so that what botocore builds on a client's first
  request (credentials, the endpoint rules' answer, the signer, the operation's
  serializer) is in the snapshot; then the client's connections are closed,
  because a socket restored from a snapshot is not connected to anything.
* after a restore, `restored`: Python's `random` is seeded afresh (every
  environment restored from one snapshot would otherwise draw the same
  numbers; botocore's retry jitter draws from it). Kernel randomness
  (os.urandom, secrets, uuid4) is fresh after a restore without help, and
  the gate draws no random numbers at init.
"""

import logging
import random
from collections.abc import Callable
from typing import Any

from authorizer import mirror

logger = logging.getLogger("authorizer")

PRIME_API_ID = "snapstart-prime"  # no API Gateway id looks like this (ten lower-case letters and digits)


def prime(runtime: Callable[[], Any]) -> None:
    """Send one GetItem through the gate's client, then close its connections (see the module docstring)."""
    try:
        rt = runtime()
    except Exception as e:  # noqa: BLE001 - not configured: calls deny, there is nothing to prime
        logger.warning("snapstart: nothing to prime: %s", e)
        return
    client = rt.gate.client
    try:
        client.get_item(
            TableName=rt.gate.table,
            Key=mirror.route_key(PRIME_API_ID),
            ProjectionExpression="#product",
            ExpressionAttributeNames={"#product": mirror.PRODUCT},
        )
    except Exception as e:  # noqa: BLE001 - a snapshot without a primed client is slower, not wrong
        logger.warning("snapstart: priming GetItem failed: %s", e)
    client.meta.service_model.operation_model("UpdateItem")  # built once, kept in the snapshot
    client.close()  # botocore opens new connections for the next request


def restored() -> None:
    random.seed()


def register(runtime: Callable[[], Any]) -> bool:
    """Register the hooks when the runtime offers them; False where it does not (anywhere but Lambda)."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(prime, runtime)
    register_after_restore(restored)
    return True
