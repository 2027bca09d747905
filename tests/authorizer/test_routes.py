"""A cost per route: which route a call is (for each of the three event kinds, from AWS's documented
sample events), the most specific match, and what the gate spends for it against a real moto server."""

import pytest

from authorizer.events import event_view
from authorizer.routes import Call, RouteError, RouteTable, parse_route, table_check
from tests.authorizer.support import (
    EVENT_KINDS,
    RequestCounter,
    balance_item,
    called,
    load_event,
    mint,
    route_item,
)

WEATHER_API = "wthr000001"
ARN = f"arn:aws:execute-api:us-east-1:123456789012:{WEATHER_API}"

PRICES = {
    "POST /jobs": 10,
    "GET /jobs/{id}": 2,
    "ANY /jobs/{id}": 3,
    "GET /health": 0,
    "ANY /files/{proxy+}": 5,
    "GET /files/public/{name}": 1,
    "GET /": 0,
}


# (method, API Gateway's template for the call, the concrete path, the cost; None: no route, the default)
CALLS = [
    ("POST", "/jobs", "/jobs", 10),
    ("GET", "/jobs", "/jobs", None),  # no GET /jobs route
    ("GET", "/jobs/{id}", "/jobs/42", 2),  # an exact method before ANY
    ("DELETE", "/jobs/{id}", "/jobs/42", 3),
    ("GET", "/jobs/{id}/logs", "/jobs/42/logs", None),  # {id} is one segment
    ("GET", "/health", "/health", 0),
    ("GET", "/files/{proxy+}", "/files/a/b/c.txt", 5),
    ("GET", "/files/public/{name}", "/files/public/x.png", 1),  # a literal before a greedy parameter
    ("PUT", "/files/public/{name}", "/files/public/x.png", 5),  # GET only: the greedy ANY then
    ("GET", "/", "/", 0),
    ("GET", "/other", "/other", None),
]


@pytest.mark.parametrize("kind", EVENT_KINDS)
@pytest.mark.parametrize("method, template, path, cost", CALLS)
def test_each_event_kind_is_priced_by_the_most_specific_route(kind, method, template, path, cost):
    view = event_view(called(kind, method, template, path))
    assert RouteTable(PRICES).cost(view.call) == cost


def test_the_sample_events_as_aws_documents_them_are_their_own_routes():
    table = RouteTable({"GET /forecast": 4, "GET /request": 7})
    assert table.cost(event_view(load_event("rest_token", token="t")).call) == 4  # .../prod/GET/forecast
    assert table.cost(event_view(load_event("rest_request", token="t")).call) == 7  # resource /request
    assert table.cost(event_view(load_event("http_api_v2", token="t")).call) == 4  # routeKey GET /forecast


def test_a_rest_resource_or_http_route_is_matched_as_a_template_not_as_a_path():
    """API Gateway's own route decides: a call it routed to `/{proxy+}` is not the product's `/jobs`,
    whatever the path; a TOKEN event has only the path, so there the path decides."""
    table = RouteTable({"POST /jobs": 10, "GET /jobs/{id}": 2})
    for kind in ("rest_request", "http_api_v2"):
        assert table.cost(event_view(called(kind, "POST", "/{proxy+}", "/jobs")).call) is None
        assert table.cost(event_view(called(kind, "GET", "/jobs/{jobId}", "/jobs/7")).call) == 2
        assert table.cost(event_view(called(kind, "GET", "/jobs/latest", "/jobs/latest")).call) == 2
    assert table.cost(event_view(called("rest_token", "POST", "/{proxy+}", "/jobs")).call) == 10


def test_an_http_api_default_route_is_priced_by_the_request_path():
    table = RouteTable(PRICES)
    assert table.cost(event_view(called("http_api_v2", "POST", "$default", "/jobs")).call) == 10
    assert table.cost(event_view(called("http_api_v2", "GET", "$default", "/nowhere")).call) is None


def test_an_http_api_any_route_is_priced_by_the_request_method():
    event = called("http_api_v2", "DELETE", "/jobs/{id}", "/jobs/1")
    event["routeKey"] = "ANY /jobs/{id}"
    assert RouteTable(PRICES).cost(event_view(event).call) == 3


def test_an_event_that_names_no_route_costs_the_default():
    token = load_event("rest_token", token="t") | {"methodArn": f"{ARN}/prod"}
    request = load_event("rest_request", token="t")
    del request["resource"], request["httpMethod"]
    request["methodArn"] = "not an arn"
    http = load_event("http_api_v2", token="t")
    http["routeKey"] = "GET /bad{segment"
    for event in (token, request, http):
        assert RouteTable(PRICES).cost(event_view(event).call) is None


@pytest.mark.parametrize(
    "text, error",
    [
        ("FETCH /jobs", "must start with a method"),
        ("/jobs", "must start with a method"),
        ("GET", "has no path"),
        ("GET jobs", "must start with /"),
        ("GET /jobs/", "empty segment"),
        ("GET /jobs//x", "empty segment"),
        ("GET /{proxy+}/x", "only be the path's last segment"),
        ("GET /jobs/{id", "is not a path segment"),
        ("GET /a b", "is not a path segment"),
        ("GET /{id}/{id}", "names a parameter twice"),
    ],
)
def test_a_route_api_gateway_would_not_write_is_refused_in_words(text, error):
    with pytest.raises(RouteError, match=error):
        parse_route(text)


def test_routes_are_stored_in_one_canonical_form():
    assert str(parse_route("  post   /jobs/{id} ")) == "POST /jobs/{id}"
    assert table_check({"get /b": 1, "ANY /a": 0}) == {"ANY /a": 0, "GET /b": 1}


@pytest.mark.parametrize(
    "table, error",
    [
        ({"GET /jobs/{id}": 1, "GET /jobs/{job}": 2}, "are the same route"),
        ({"GET /x": 1, "get /x": 2}, "are the same route"),
        ({"GET /x": -1}, "whole number from 0"),
        ({"GET /x": 1.5}, "whole number from 0"),
        ({"GET /x": True}, "whole number from 0"),
        ({"GET /x": 10**7}, "whole number from 0"),
        ({f"GET /r{i}": 1 for i in range(101)}, "at most 100 routes"),
    ],
)
def test_a_route_table_with_a_mistake_is_refused(table, error):
    with pytest.raises(RouteError, match=error):
        table_check(table)


def test_a_template_call_is_never_a_literal_route():
    assert not parse_route("GET /jobs/latest").matches(Call.from_template("GET", "/jobs/{id}"))
    assert not parse_route("GET /jobs/{id}").matches(Call.from_template("GET", "/jobs/{proxy+}"))
    assert parse_route("GET /jobs/{proxy+}").matches(Call.from_template("GET", "/jobs/{proxy+}"))
    assert not parse_route("ANY /{proxy+}").matches(Call.from_path("GET", "/"))


# --- The spend, against the mirror ---------------------------------------------------------------


def alice_token() -> str:
    return mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="weather")


def decide(authorizer, kind: str, method: str, template: str, path: str):
    try:
        return authorizer.lambda_handler(called(kind, method, template, path, token=alice_token()), None)
    except Exception as e:
        assert str(e) == "Unauthorized"
        return "401"


def context(answer) -> dict:
    return answer["context"]


@pytest.fixture
def priced(mirror_items):
    """alice with 25 weather credits; weather's routes priced as PRICES, its default 1."""
    mirror_items.put(
        route_item(WEATHER_API, "weather", routes=PRICES),
        balance_item(
            customer="cus_alice", product="weather", granted=25, creds={"cli_alice": 1}, route_costs=(10, 2, 3, 5, 1)
        ),
    )
    return mirror_items


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_a_priced_route_spends_its_cost_and_says_so(authorizer, priced, kind):
    answers = [decide(authorizer, kind, "POST", "/jobs", "/jobs") for _ in range(3)]
    assert [context(a).get("cost") for a in answers[:2]] == [10, 10]
    assert [context(a).get("remaining") for a in answers[:2]] == [15, 5]
    assert context(answers[2]) == {"reason": "credits_exhausted"}  # 5 left, the route costs 10
    # ...while a cheaper route still fits, to the last credit.
    assert [context(decide(authorizer, kind, "GET", "/jobs/{id}", "/jobs/1")).get("remaining") for _ in range(2)] == [
        3,
        1,
    ]
    assert context(decide(authorizer, kind, "GET", "/other", "/other")) | {"customerId": "-"} == {
        "customerId": "-",
        "product": "weather",
        "remaining": 0,
        "credentialId": "cli_alice",
        "cost": 1,  # no route: the product's default
    }
    assert context(decide(authorizer, kind, "GET", "/files/public/{name}", "/files/public/a")) == {
        "reason": "credits_exhausted"
    }
    assert priced.used("cus_alice", "weather") == 25


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_a_free_route_is_allowed_with_no_credits_left_in_one_request_and_spends_nothing(authorizer, mirror_items, kind):
    mirror_items.put(
        route_item(WEATHER_API, "weather", routes=PRICES),
        balance_item(customer="cus_alice", product="weather", granted=3, used=3, creds={"cli_alice": 1}),
    )
    sent = RequestCounter(authorizer.runtime().gate.client).operations
    assert context(decide(authorizer, kind, "GET", "/jobs", "/jobs")) == {"reason": "credits_exhausted"}
    sent.clear()  # the route is cached now
    answers = [decide(authorizer, kind, "GET", "/health", "/health") for _ in range(3)]
    assert [(context(a)["cost"], context(a)["remaining"]) for a in answers] == [(0, 0)] * 3
    assert sent == ["UpdateItem"] * 3  # one request per decision, free or not
    assert mirror_items.used("cus_alice", "weather") == 3


@pytest.mark.parametrize(
    "item_changes, token_changes, reason",
    [
        ({"active": False}, {}, "customer_suspended"),
        ({"creds": {}}, {}, "credential_revoked"),
        ({}, {"ver": 0}, "credential_rotated"),
        ({"product_active": False}, {}, "product_inactive"),
    ],
)
def test_a_free_route_still_needs_an_active_customer_and_a_current_credential(
    authorizer, mirror_items, item_changes, token_changes, reason
):
    item = {"customer": "cus_alice", "product": "weather", "granted": 5, "creds": {"cli_alice": 1}} | item_changes
    mirror_items.put(route_item(WEATHER_API, "weather", routes=PRICES), balance_item(**item))
    token = mint(**{"sub": "cus_alice", "client_id": "cli_alice", "ver": 1, "scope": "weather"} | token_changes)
    event = called("rest_request", "GET", "/health", "/health", token=token)
    assert authorizer.lambda_handler(event, None)["context"] == {"reason": reason}
    assert mirror_items.used("cus_alice", "weather") == 0


def test_a_free_route_needs_a_valid_token_and_a_balance(authorizer, mirror_items):
    mirror_items.put(route_item(WEATHER_API, "weather", routes=PRICES))
    event = called("rest_request", "GET", "/health", "/health", token="not.a.token")
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.lambda_handler(event, None)
    assert context(decide(authorizer, "rest_request", "GET", "/health", "/health")) == {"reason": "no_credits"}


def test_a_price_change_reaches_a_warm_gate_at_the_next_call(authorizer, priced):
    assert context(decide(authorizer, "rest_request", "POST", "/jobs", "/jobs"))["cost"] == 10  # cached: POST /jobs=10
    sent = RequestCounter(authorizer.runtime().gate.client).operations
    # Django rewrites the product's items: POST /jobs now costs 4 (its balance items first, then its routes).
    priced.put(
        balance_item(
            customer="cus_alice", product="weather", granted=25, used=10, creds={"cli_alice": 1}, route_costs=(4, 2)
        ),
    )
    assert context(decide(authorizer, "rest_request", "POST", "/jobs", "/jobs")) == {"reason": "prices_changing"}
    priced.put(route_item(WEATHER_API, "weather", routes={"POST /jobs": 4, "GET /jobs/{id}": 2}))
    answer = context(decide(authorizer, "rest_request", "POST", "/jobs", "/jobs"))
    assert (answer["cost"], answer["remaining"]) == (4, 11)
    # The refused spend, a fresh read, the same cost; then the refused spend, a fresh read, the new cost spent.
    assert sent == ["UpdateItem", "GetItem", "UpdateItem", "GetItem", "UpdateItem"]
    assert priced.used("cus_alice", "weather") == 14


def test_a_pinned_product_takes_its_prices_from_the_called_apis_route_item(authorizer, priced, monkeypatch):
    monkeypatch.setenv("AUTHORIZER_PRODUCT", "weather")
    authorizer.reset()
    assert context(decide(authorizer, "http_api_v2", "POST", "/jobs", "/jobs"))["cost"] == 10
    priced.put(route_item(WEATHER_API, "maps", routes={"POST /jobs": 3}))  # another product's prices: not these
    authorizer.reset()
    assert context(decide(authorizer, "http_api_v2", "POST", "/jobs", "/jobs"))["cost"] == 1
