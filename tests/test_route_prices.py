"""Route prices through Django: `upsert_product --route`, the admin's "Route prices" box, and what the
mirror then holds (the route item's `routes`, the balance items' `ceilings`, following every grant)."""

import io
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from ledger.models import Product
from ledger.services import credits_adjust, credits_grant, product_upsert
from tests.authorizer.support import called
from tests.conftest import admin_form_data
from tests.test_gate import WEATHER_API, token_for


def upsert(*args: str) -> str:
    out = io.StringIO()
    call_command("upsert_product", "--slug", "weather", "--name", "Weather API", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_the_routes_given_are_the_whole_table_and_running_it_twice_changes_nothing():
    args = ["--route", "POST /jobs=10", "--route", "get /health=0", "--route", "ANY /files/{proxy+}=3"]
    assert upsert(*args) == "product weather: saved\n"
    assert upsert(*args) == "product weather: unchanged\n"
    product = Product.objects.get()
    assert product.routes == {"ANY /files/{proxy+}": 3, "GET /health": 0, "POST /jobs": 10}

    version = product.version
    assert upsert("--route", "POST /jobs=12") == "product weather: saved\n"
    product.refresh_from_db()
    assert product.routes == {"POST /jobs": 12} and product.version == version + 1
    assert upsert("--cost", "2") == "product weather: saved\n"  # no --route: the table is left alone
    product.refresh_from_db()
    assert (product.routes, product.cost_per_call) == ({"POST /jobs": 12}, 2)
    assert upsert("--no-routes") == "product weather: saved\n"
    product.refresh_from_db()
    assert product.routes == {}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "routes, error",
    [
        (["POST /jobs"], "write a route and its cost as METHOD /path=COST"),
        (["POST /jobs=ten"], "write a route and its cost as METHOD /path=COST"),
        (["POST /jobs=-1"], "write a route and its cost as METHOD /path=COST"),
        (["FETCH /jobs=1"], "must start with a method"),
        (["GET /jobs/=1"], "empty segment"),
        (["GET /{proxy+}/x=1"], "last segment"),
        (["GET /jobs/{id}=1", "GET /jobs/{job}=2"], "are the same route"),
        (["GET /jobs=1", "GET /jobs=2"], "GET /jobs is given twice"),
        (["GET /jobs=10000001"], "whole number from 0 to 1000000"),
    ],
)
def test_a_bad_route_is_refused_in_words_and_nothing_is_written(routes, error):
    upsert("--route", "POST /jobs=10")
    with pytest.raises(CommandError, match=error):
        upsert(*[a for r in routes for a in ("--route", r)])
    assert Product.objects.get().routes == {"POST /jobs": 10}


def test_the_mirror_holds_the_prices_on_the_route_and_a_ceiling_per_cost_that_follows_granted(
    mirror, alice, staff, committed
):
    with committed():
        weather, _ = product_upsert(slug="weather", name="Weather API", api_ids=["wthr000001"])
        credits_grant(customer=alice, product=weather, amount=50)
    assert mirror.route("wthr000001")["routes"] == {}
    assert mirror.balance(alice, weather)["ceilings"] == {}

    with committed():
        product_upsert(slug="weather", name="Weather API", routes={"POST /jobs": 10, "GET /health": 0, "GET /x": 1})
    assert mirror.route("wthr000001")["routes"] == {"GET /health": 0, "GET /x": 1, "POST /jobs": 10}
    item = mirror.balance(alice, weather)
    assert (item["cost"], item["ceiling"], item["ceilings"]) == (1, 49, {"1": 49, "10": 40})

    with committed():
        credits_grant(customer=alice, product=weather, amount=25)
    assert mirror.balance(alice, weather)["ceilings"] == {"1": 74, "10": 65}
    with committed():
        credits_adjust(customer=alice, product=weather, amount=-70, reason="test", by=staff)
    item = mirror.balance(alice, weather)
    assert (item["granted"], item["ceiling"], item["ceilings"]) == (5, 4, {"1": 4, "10": -5})


def test_staff_edit_the_route_prices_in_the_admin_and_the_gate_follows(client, staff, mirror, alice, committed):
    with committed():
        weather, _ = product_upsert(slug="weather", name="Weather API", api_ids=["wthr000001"])
        credits_grant(customer=alice, product=weather, amount=30)
    client.force_login(staff)
    url = reverse("admin:ledger_product_change", args=[weather.pk])
    data = admin_form_data(client, url)
    assert data["routes"].strip() == ""

    bad = client.post(url, data | {"routes": "POST /jobs=10\nGET /jobs/{id=2"})
    assert bad.status_code == 200
    assert "is not a path segment" in bad.content.decode()
    weather.refresh_from_db()
    assert weather.routes == {}

    with committed():
        response = client.post(url, data | {"routes": "POST /jobs = 10\r\n\r\nget /health=0\r\n"})
    assert response.status_code == 302
    weather.refresh_from_db()
    assert weather.routes == {"GET /health": 0, "POST /jobs": 10}
    assert mirror.route("wthr000001")["routes"] == {"GET /health": 0, "POST /jobs": 10}
    assert mirror.balance(alice, weather)["ceilings"] == {"10": 20}
    assert admin_form_data(client, url)["routes"].strip() == "GET /health=0\nPOST /jobs=10"
    changelist = client.get(reverse("admin:ledger_product_changelist")).content.decode()
    assert "GET /health=0, POST /jobs=10" in changelist


def effect(answer: dict) -> str:
    """Allow or Deny, from a REST policy or an HTTP API simple response."""
    if "isAuthorized" in answer:
        return "Allow" if answer["isAuthorized"] else "Deny"
    return answer["policyDocument"]["Statement"][0]["Effect"]


def test_sync_mirror_finds_and_repairs_lost_route_prices_and_ceilings(mirror, alice, committed):
    from authorizer import mirror as m
    from ledger.mirror.client import mirror_client

    with committed():
        weather, _ = product_upsert(
            slug="weather", name="Weather API", api_ids=["wthr000001"], routes={"POST /jobs": 10}
        )
        credits_grant(customer=alice, product=weather, amount=30)
    client = mirror_client()
    client.update_item(  # both lost behind our back: the gate would charge POST /jobs the default
        TableName=mirror.table,
        Key=m.route_key("wthr000001"),
        UpdateExpression="REMOVE #routes",
        ExpressionAttributeNames={"#routes": m.ROUTES},
    )
    client.update_item(
        TableName=mirror.table,
        Key=m.balance_key(alice.public_id, "weather"),
        UpdateExpression="SET #ceilings = :none",
        ExpressionAttributeNames={"#ceilings": m.CEILINGS},
        ExpressionAttributeValues={":none": {"M": {}}},
    )
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("sync_mirror", "--check", stdout=out)
    assert sorted(out.getvalue().splitlines()) == [
        "API#wthr000001 ROUTE: routes is None in the mirror, {'POST /jobs': 10} in Postgres",
        f"CUSTOMER#{alice.public_id} PRODUCT#weather: ceilings is {{}} in the mirror, {{'10': 20}} in Postgres",
    ]
    call_command("sync_mirror", stdout=io.StringIO(), stderr=io.StringIO())
    assert mirror.route("wthr000001")["routes"] == {"POST /jobs": 10}
    assert mirror.balance(alice, weather)["ceilings"] == {"10": 20}


def test_the_portal_lists_a_products_route_prices(client, alice, products):
    product_upsert(slug="weather", name="Weather API", routes={"POST /jobs": 10, "GET /health": 0})
    credits_grant(customer=alice, product=products["weather"], amount=5)
    credits_grant(customer=alice, product=products["maps"], amount=5)
    client.force_login(alice.user)
    page = client.get(reverse("account_dashboard")).content.decode()
    weather = page[page.index('id="product-weather"') :]
    weather = weather[: weather.index("</article>")]
    assert "Priced routes (any other call: 1 credit)" in weather
    cells = re.findall(r"<tr><td><code>([^<]*)</code></td><td>([^<]*)</td></tr>", weather)
    assert cells == [("GET /health", "free"), ("POST /jobs", "10")]
    maps = page[page.index('id="product-maps"') :]
    assert "Priced routes" not in maps[: maps.index("</article>")]  # maps has none: every call 2 credits


# --- At the gate: mixed costs against one balance, at once ---------------------------------------


@pytest.mark.parametrize("granted", [57, 100, 9])
def test_mixed_costs_at_once_never_spend_more_than_granted_and_refuse_only_what_does_not_fit(
    gate, alice, products, mirror, committed, atomic_moto_server, monkeypatch, granted
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", atomic_moto_server)  # moto's own server is not atomic (docs/testing.md)
    monkeypatch.setenv("AUTHORIZER_DYNAMODB_TIMEOUT", "60")  # this test counts atomicity, not speed
    gate.reset()
    with committed():
        product_upsert(slug="weather", name="Weather API", routes={"POST /jobs": 10, "GET /jobs/{id}": 1})
        credits_grant(customer=alice, product=products["weather"], amount=granted)
    token = token_for(alice)
    kinds = ["rest_token", "rest_request", "http_api_v2"]
    calls = [
        ("POST", "/jobs", "/jobs", 10) if i % 3 == 0 else ("GET", "/jobs/{id}", f"/jobs/{i}", 1) for i in range(90)
    ]
    threads = 12
    start = threading.Barrier(threads)

    def one_call(i: int) -> tuple[int, str, int | None]:
        if i < threads:
            start.wait()
        method, template, path, cost = calls[i]
        answer = gate.lambda_handler(called(kinds[i % 3], method, template, path, token=token), None)
        context = answer.get("context", {})
        return cost, effect(answer), context.get("cost")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(one_call, range(len(calls))))

    spent = sum(cost for cost, what, _ in results if what == "Allow")
    assert spent <= granted
    assert all(charged == cost for cost, what, charged in results if what == "Allow")
    assert mirror.balance(alice, products["weather"])["used"] == spent
    # A refusal only when fewer credits remained than its cost: at the end, fewer than the
    # cheapest refused call's cost remain (every refusal came after the credits had gone down to it).
    refused = [cost for cost, what, _ in results if what == "Deny"]
    assert refused  # 30 calls at 10 and 60 at 1 ask for more than was granted
    assert granted - spent < min(refused)
    if 1 in refused:
        assert spent == granted


def test_a_free_route_is_open_with_no_credits_left_but_not_to_another_customers_token(
    gate, alice, bob, products, mirror, committed
):
    with committed():
        product_upsert(slug="weather", name="Weather API", routes={"GET /health": 0})
        credits_grant(customer=alice, product=products["weather"], amount=1)
    token = token_for(alice)
    answers = [
        gate.lambda_handler(called("rest_request", "GET", "/jobs", "/jobs", token=token), None) for _ in range(2)
    ]
    assert [a["context"].get("reason") for a in answers] == [None, "credits_exhausted"]
    free = gate.lambda_handler(called("rest_request", "GET", "/health", "/health", token=token), None)
    assert (effect(free), free["context"]["cost"], free["context"]["remaining"]) == ("Allow", 0, 0)
    stranger = token_for(bob)
    refused = gate.lambda_handler(called("rest_request", "GET", "/health", "/health", token=stranger), None)
    assert refused["context"] == {"reason": "no_credits"}
    assert mirror.balance(alice, products["weather"])["used"] == 1
    assert WEATHER_API in free["policyDocument"]["Statement"][0]["Resource"][0]
