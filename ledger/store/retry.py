"""A store door's transaction that Postgres broke off to resolve a conflict is run once more.

Postgres ends a transaction caught in a deadlock (SQLSTATE 40P01) or a serialization failure
(40001) and rolls it back whole: nothing of it stays. The store doors may simply run it again,
because every handler is idempotent by the store's own ids, checked inside its transaction under
the order's lock (order line ids, refund ids, `cancelled:<order id>`): a second run after a
rollback is a first run, and even after a commit it would change nothing. A second conflict in a
row raises BrokenOff, which the doors answer 503: nothing was written and the store delivers again later.
The store's own lock order (balances by (customer, product), docs/architecture.md) keeps
deliveries from deadlocking one another; this is for what else may hold a lock (staff, scripts).
"""

import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONFLICTS = {"40P01": "deadlock", "40001": "serialization failure"}
RETRY_AFTER = "5"  # seconds: what the 503 asks the store to wait


def conflict_of(error: BaseException) -> str | None:
    """What conflict broke the transaction ("deadlock", "serialization failure"), or None."""
    if not isinstance(error, OperationalError):
        return None
    return CONFLICTS.get(getattr(error.__cause__, "sqlstate", None) or "")


class BrokenOff(Exception):
    """Postgres broke the door's transaction off in a conflict, and it is not run again: nothing was written."""

    def __init__(self, conflict: str) -> None:
        super().__init__(conflict)
        self.conflict = conflict

    @property
    def answer(self) -> dict[str, str]:
        """The body of the door's 503."""
        return {"detail": f"This delivery met a concurrent write twice ({self.conflict}) and nothing of it was "
                          f"recorded; deliver it again."}  # fmt: skip


def conflict_retried(run: Callable[[], T], *, what: str) -> T:
    """`run()` (it opens and commits its own transaction); run once more if Postgres broke it off in a
    conflict. A second conflict, or one inside a caller's transaction (nothing to retry there), raises
    BrokenOff; any other error is raised as it is."""
    for attempt in (1, 2):
        try:
            return run()
        except OperationalError as e:
            conflict = conflict_of(e)
            if conflict is None:
                raise
            if attempt == 2 or connection.in_atomic_block:
                raise BrokenOff(conflict) from e
            logger.warning("%s: rolled back by a %s (%s); running it once more", what, conflict, str(e).splitlines()[0])
    raise AssertionError("unreachable")
