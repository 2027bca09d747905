"""The portal's usage download: a month's credits used per day and product, as CSV, only the
customer's own, the figures the ledger's sums."""

import csv
import datetime
import io

import pytest
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from ledger.models import LedgerEntry

URL = "/account/usage.csv"


def rows_of(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(response.content.decode())))


def at(day: datetime.date, hour: int = 12) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(hour), tzinfo=datetime.UTC)


def use(customer, product, when: datetime.datetime, credits: int) -> None:
    LedgerEntry.objects.create(customer=customer, product=product, kind="usage", amount=-credits, created=when)


@pytest.fixture
def month_of_use(alice, bob, products, purchase):
    """Alice uses weather and maps in the previous month (and on its edges); bob uses weather too."""
    weather, maps = products["weather"], products["maps"]
    purchase(alice, weather, 1000)
    purchase(alice, maps, 1000)
    purchase(bob, weather, 1000)
    first = (timezone.now().astimezone(datetime.UTC).date().replace(day=1) - datetime.timedelta(days=1)).replace(day=1)
    use(alice, weather, at(first, 0), 3)  # 00:00 UTC on the first: in the month
    use(alice, weather, at(first, 18), 4)
    use(alice, maps, at(first + datetime.timedelta(days=9)), 10)
    use(alice, weather, at(first - datetime.timedelta(days=1), 23), 50)  # the month before
    use(bob, weather, at(first + datetime.timedelta(days=9)), 77)
    return first


def test_a_customer_downloads_a_months_usage_per_day_and_product(client, alice, month_of_use, products):
    client.force_login(alice.user)

    rows = rows_of(client.get(URL, {"month": f"{month_of_use:%Y-%m}"}))

    assert rows[0] == ["date", "product", "product name", "credits used"]
    next_month = (month_of_use + datetime.timedelta(days=32)).replace(day=1)
    days = (next_month - month_of_use).days
    assert len(rows) == 1 + days * 2  # every day, each product alice holds (maps, weather by name)
    assert rows[1:3] == [
        [month_of_use.isoformat(), "maps", "Maps API", "0"],
        [month_of_use.isoformat(), "weather", "Weather API", "7"],
    ]
    tenth = (month_of_use + datetime.timedelta(days=9)).isoformat()
    assert [r for r in rows[1:] if r[0] == tenth] == [
        [tenth, "maps", "Maps API", "10"],
        [tenth, "weather", "Weather API", "0"],
    ]
    # Every figure is the ledger's sum of alice's usage that day.
    for day, slug, _, credits in rows[1:]:
        start = at(datetime.date.fromisoformat(day), 0)
        used = LedgerEntry.objects.filter(
            customer=alice, product__slug=slug, kind="usage", created__gte=start,
            created__lt=start + datetime.timedelta(days=1),
        ).aggregate(s=Sum("amount"))["s"] or 0  # fmt: skip
        assert int(credits) == -used


def test_a_customers_csv_holds_only_their_own_usage(client, bob, month_of_use):
    client.force_login(bob.user)

    rows = rows_of(client.get(URL, {"month": f"{month_of_use:%Y-%m}"}))

    assert {r[1] for r in rows[1:]} == {"weather"}  # bob holds no maps
    assert sum(int(r[3]) for r in rows[1:]) == 77  # not alice's 7, 10 or 50


def test_without_a_month_it_is_this_months(client, alice, products, purchase):
    purchase(alice, products["weather"], 10)
    use(alice, products["weather"], timezone.now(), 2)
    client.force_login(alice.user)

    response = client.get(URL)

    rows = rows_of(response)
    this_month = timezone.now().astimezone(datetime.UTC).date().replace(day=1)
    assert rows[1][0] == this_month.isoformat()
    assert sum(int(r[3]) for r in rows[1:]) == 2
    assert f'filename="usage-{this_month:%Y-%m}.csv"' in response["Content-Disposition"]


@pytest.mark.parametrize(
    "month, error",
    [("2026-13", "must be a year and month as YYYY-MM"), ("last month", "must be a year and month"),
     ("2999-01", "has not begun")],
)  # fmt: skip
def test_a_bad_month_is_a_clear_400(client, alice, month, error):
    client.force_login(alice.user)
    response = client.get(URL, {"month": month})
    assert response.status_code == 400
    assert error in response.content.decode()


def test_only_a_logged_in_customer_gets_one(client, staff):
    response = client.get(URL)
    assert response.status_code == 302 and reverse("account_login") in response["Location"]
    client.force_login(staff)
    assert client.get(URL).status_code == 302  # staff go to the admin


def test_the_dashboard_offers_the_download(client, alice, products, purchase):
    purchase(alice, products["weather"], 10)
    client.force_login(alice.user)
    html = client.get(reverse("account_dashboard")).content.decode()
    assert f'action="{URL}"' in html and 'type="month" id="usage-month" name="month"' in html
