"""Calls made at the same moment, each in its own thread with its own Postgres connection.

What the concurrency tests share: a race is only a race when the calls are released together
(one barrier) and each has a connection of its own (Django gives each thread one); a thread's
failure must fail the test, in the test's thread.
"""

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from django.db import connection

T = TypeVar("T")


def at_once(calls: Sequence[Callable[[], T]], *, timeout: float = 120) -> list[T]:
    """Each call in its own thread, all released together; their results, in the calls' order.

    Each thread closes its own database connection when its call is done. Once every thread has
    finished, the first call (by position) that raised is raised again here."""
    start = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = calls[i]()
        except BaseException as e:  # raised again below, in the test's thread
            errors[i] = e
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if stuck := sum(thread.is_alive() for thread in threads):
        raise AssertionError(f"{stuck} of {len(calls)} concurrent calls still running after {timeout} s")
    for error in errors:
        if error is not None:
            raise error
    return results
