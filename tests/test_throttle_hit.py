"""accounts.services.throttle_hit: a count per key in fixed windows, kept in Postgres, exact
under concurrency (requests on many Lambda instances share it)."""

import datetime
from functools import partial

import pytest
from django.db.models import F

from accounts.models import Throttle
from accounts.services import throttle_hit
from tests.concurrency import at_once

HOUR = datetime.timedelta(hours=1)


def test_it_allows_up_to_the_limit_then_refuses(db):
    assert [throttle_hit(scope="s", key="k", limit=3, window=HOUR) for _ in range(5)] == [True] * 3 + [False] * 2
    assert Throttle.objects.get().hits == 5


def test_keys_and_scopes_are_counted_apart(db):
    for _ in range(3):
        throttle_hit(scope="s", key="a", limit=3, window=HOUR)

    assert throttle_hit(scope="s", key="b", limit=3, window=HOUR)
    assert throttle_hit(scope="other", key="a", limit=3, window=HOUR)
    assert not throttle_hit(scope="s", key="a", limit=3, window=HOUR)


def test_ended_windows_are_deleted_as_it_goes(db):
    throttle_hit(scope="s", key="old", limit=1, window=HOUR)
    Throttle.objects.update(window_start=F("window_start") - 2 * HOUR)

    assert throttle_hit(scope="s", key="new", limit=1, window=HOUR)

    assert Throttle.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_hits_are_each_counted_once():
    """Twenty at once, each on its own connection: exactly `limit` allowed, every hit counted."""
    threads_n, limit = 20, 3
    allowed = at_once([partial(throttle_hit, scope="s", key="k", limit=limit, window=HOUR)] * threads_n)

    assert sorted(allowed) == [False] * (threads_n - limit) + [True] * limit
    assert Throttle.objects.get().hits == threads_n
