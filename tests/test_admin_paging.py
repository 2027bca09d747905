"""Admin lists over big tables: bounded counts (creditportal/paginator.py) and indexed searches.

The pages' speed is measured in bench/admin_pages.py (100k customers, 1M ledger
entries); these tests pin what makes it so: no COUNT(*) of a whole table, a
filtered count that stops early, and searches Postgres can answer from an index.
"""

import pytest
from django.contrib.admin.sites import site
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Customer
from ledger.models import LedgerEntry
from ledger.services import credits_adjust, credits_grant


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def eight_entries(alice, bob, staff, products):
    for customer in [alice, bob]:
        for _ in range(3):
            credits_grant(customer=customer, product=products["weather"], amount=10)
    credits_adjust(customer=alice, product=products["weather"], amount=5, reason="goodwill", by=staff)
    credits_adjust(customer=bob, product=products["maps"], amount=5, reason="goodwill", by=staff)
    assert LedgerEntry.objects.count() == 8


def _get(client, url):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return response, [q["sql"] for q in ctx.captured_queries]


def test_a_whole_big_table_shows_postgres_estimate_instead_of_counting_every_row(staff_client, eight_entries, settings):
    settings.ADMIN_EXACT_COUNT_BELOW = 5  # "big" from 5 rows on, so a test needs only a few
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ledger_ledgerentry")  # what autovacuum keeps up to date

    response, sql = _get(staff_client, reverse("admin:ledger_ledgerentry_changelist"))

    assert not [q for q in sql if "COUNT(" in q and "ledger_ledgerentry" in q]
    assert any("reltuples" in q for q in sql)
    assert response.context["cl"].result_count == 8  # the estimate: exact, for a freshly analyzed table
    assert len(response.context["cl"].result_list) == 8


def test_a_small_whole_table_is_counted_exactly(staff_client, eight_entries, settings):
    settings.ADMIN_EXACT_COUNT_BELOW = 100  # whatever Postgres estimates (or -1: never analyzed), 8 < 100

    response, sql = _get(staff_client, reverse("admin:ledger_ledgerentry_changelist"))

    assert [q for q in sql if "COUNT(" in q and "ledger_ledgerentry" in q]
    assert response.context["cl"].result_count == 8
    assert "8 ledger entries" in response.content.decode()


def test_a_filtered_list_counts_no_further_than_the_limit(staff_client, eight_entries, settings):
    settings.ADMIN_EXACT_COUNT_BELOW = 5
    url = reverse("admin:ledger_ledgerentry_changelist") + "?kind__exact=purchase"

    response, sql = _get(staff_client, url)

    counts = [q for q in sql if "COUNT(" in q and "ledger_ledgerentry" in q]
    assert len(counts) == 1 and "LIMIT 6" in counts[0]  # stops at limit + 1 rows
    assert any(q.startswith("EXPLAIN") for q in sql)  # past the limit: the planner's estimate
    assert response.context["cl"].result_count >= 6
    assert len(response.context["cl"].result_list) == 6  # the page itself shows every row


def test_a_filtered_list_under_the_limit_is_counted_exactly(staff_client, eight_entries, settings):
    settings.ADMIN_EXACT_COUNT_BELOW = 5
    url = reverse("admin:ledger_ledgerentry_changelist") + "?kind__exact=adjustment"

    response, sql = _get(staff_client, url)

    assert not any(q.startswith("EXPLAIN") for q in sql)
    assert response.context["cl"].result_count == 2
    assert "2 results" in response.content.decode()


@pytest.mark.parametrize("term, index", [("alice@exa", "customer_email_trgm"), ("Ali", "customer_name_trgm")])
def test_the_customer_search_can_use_its_trigram_indexes(staff, alice, bob, term, index):
    """icontains is UPPER(col) LIKE UPPER('%q%'): the index must be on that very expression."""
    admin = site.get_model_admin(Customer)
    request = RequestFactory().get("/", {"q": term})
    request.user = staff
    found, _ = admin.get_search_results(request, Customer.objects.all(), term)
    assert list(found) == [alice]

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a table of 2 rows would be scanned anyway
    plan = found.explain()

    assert index in plan
    assert "customer_public_id_upper" in plan  # the =public_id part of the search


def test_balances_list_newest_customers_first(staff_client, alice, bob, products):
    credits_grant(customer=alice, product=products["weather"], amount=1)
    credits_grant(customer=bob, product=products["maps"], amount=1)

    response, _ = _get(staff_client, reverse("admin:ledger_balance_changelist"))

    assert [b.customer for b in response.context["cl"].result_list] == [bob, alice]
