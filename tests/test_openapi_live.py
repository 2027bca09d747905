"""schemathesis against the live API: every operation of /api/schema/ called over real HTTP on a live
server (real Postgres, the mirror on the moto server), with inputs generated from the schema, valid
and not. No answer is a 500, and every answer is one the schema describes: its status, its content
type, its body and its headers.

Bounded for CI: a fixed number of examples per operation, derandomized (the same inputs every run),
no example database. Each operation gets working credentials beside generated ones, so the
success paths are reached too, not only the 401s: a real access token for the balance and keys
doors, the webhook secret for the Zapier door, a real client id and secret for the token endpoint.
"""

import base64
import hashlib
import hmac
import json
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from accounts.services import api_key_create
from ledger.services import credits_grant

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 20}


@pytest.fixture
def live_api(transactional_db, mirror, live_server, alice, products, settings):
    """The live server with alice's credits and credential; her token; the schema it serves."""
    credits_grant(customer=alice, product=products["weather"], amount=1000)
    credits_grant(customer=alice, product=products["maps"], amount=1000)
    base = live_server.url
    issued = requests.post(
        f"{base}/api/token/",
        data={
            "grant_type": "client_credentials",
            "client_id": alice.credential.client_id,
            "client_secret": alice.secret,
        },
        timeout=30,
    )
    assert issued.status_code == 200, issued.text
    schema = schemathesis.openapi.from_url(f"{base}/api/schema/?format=json")
    return base, schema, issued.json()["access_token"]


def shopify_signed(case) -> dict[str, str]:
    """The headers Shopify would sign the case's body with: its HMAC, and a topic we handle."""
    from django.conf import settings

    if isinstance(case.body, bytes):
        body = case.body
    else:
        try:
            body = json.dumps(case.body, allow_nan=False).encode()  # as the request is sent (requests' json=)
        except (TypeError, ValueError):
            return {}
    digest = hmac.new(settings.SHOPIFY_WEBHOOK_SECRET.encode(), body, hashlib.sha256).digest()
    topic = ("orders/paid", "refunds/create", "orders/cancelled", "app/uninstalled")[len(body) % 4]
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(), "X-Shopify-Topic": topic}


def strategies(operation, alice, token: str, zapier_secret: str, mode: GenerationMode):
    """Generated cases, and cases with credentials that work, for one operation."""
    generated = operation.as_strategy(generation_mode=mode)
    bearer = {"Authorization": f"Bearer {token}"}
    label = operation.label
    if label == "POST /api/token/":
        valid = {
            "grant_type": "client_credentials",
            "client_id": alice.credential.client_id,
            "client_secret": alice.secret,
        }
        return st.one_of(
            generated.map(lambda case: (case, {})),
            operation.as_strategy(generation_mode=mode, body=valid, media_type="application/x-www-form-urlencoded").map(
                lambda case: (case, {})
            ),
        )
    if label == "POST /api/purchases/zapier/":
        secret = {"Authorization": f"Bearer {zapier_secret}"}
        line = {"email": "nina@example.com", "product": "WTHR-100", "quantity": 5}
        sale = st.integers(1000, 1010).flatmap(  # a few order ids: new ones (201) and repeats (200)
            lambda n: operation.as_strategy(
                generation_mode=mode, body=line | {"order_id": str(n)}, media_type="application/json"
            )
        )
        return st.one_of(generated, sale).flatmap(
            lambda case: st.sampled_from([(case, secret), (case, secret), (case, {})])
        )
    if label == "POST /api/purchases/shopify/":
        return generated.flatmap(lambda case: st.sampled_from([(case, {}), (case, shopify_signed(case))]))
    if label == "DELETE /api/keys/{key_id}/":
        real = api_key_create(customer=alice, name="to revoke")[0].public_id
        return st.one_of(
            generated, operation.as_strategy(generation_mode=mode, path_parameters={"key_id": real})
        ).flatmap(lambda case: st.sampled_from([(case, bearer), (case, {})]))
    if label == "POST /api/keys/":
        # A key that works, and products a list's item errors answer for (by index: {"products": {"0": [...]}}).
        chosen = st.sampled_from(
            [{"products": ["maps"]}, {"products": ["bad slug!"]}, {"products": ["maps", "x" * 60]}]
        )
        return st.one_of(
            generated,
            chosen.flatmap(
                lambda body: operation.as_strategy(generation_mode=mode, body=body, media_type="application/json")
            ),
        ).flatmap(lambda case: st.sampled_from([(case, bearer), (case, bearer), (case, {})]))
    return generated.flatmap(lambda case: st.sampled_from([(case, bearer), (case, {})]))


def explore(strategy, examples: int, base: str) -> set[int]:
    """Call the live API with `examples` cases drawn from `strategy`, checking each answer; the statuses seen."""
    statuses: set[int] = set()

    @hypothesis_settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(pair=strategy)
    def run(pair):
        case, headers = pair
        response = case.call_and_validate(base_url=base, headers=headers, checks=CHECKS, timeout=30)
        statuses.add(response.status_code)

    run()
    return statuses


def test_every_answer_of_the_live_api_is_one_its_schema_describes(live_api, alice, settings):
    base, schema, token = live_api
    operations = {result.ok().label: result.ok() for result in schema.get_all_operations()}
    # The doors issue 16 names: the token, the balance, the keys, the webhooks.
    assert {
        "POST /api/token/",
        "GET /api/balance/",
        "GET /api/keys/",
        "POST /api/keys/",
        "DELETE /api/keys/{key_id}/",
        "POST /api/purchases/zapier/",
        "POST /api/purchases/shopify/",
    } <= operations.keys()

    seen: dict[str, set[int]] = {}
    started = time.monotonic()
    for label, operation in sorted(operations.items()):
        for mode, examples in EXAMPLES.items():
            strategy = strategies(operation, alice, token, settings.ZAPIER_WEBHOOK_SECRET, mode)
            seen.setdefault(label, set()).update(explore(strategy, examples, base))
    print(f"schemathesis: {len(operations)} operations in {time.monotonic() - started:.1f} s; statuses seen: {seen}")

    # The working credentials reached the success paths, and the generated ones the refusals.
    assert {200, 400, 401} <= seen["POST /api/token/"]
    assert {200, 401} <= seen["GET /api/balance/"]
    assert {201, 400, 401} <= seen["POST /api/keys/"]
    assert {204, 404, 401} <= seen["DELETE /api/keys/{key_id}/"]
    assert {200, 201, 400, 401} <= seen["POST /api/purchases/zapier/"]
    assert {200, 400, 401} <= seen["POST /api/purchases/shopify/"]


def test_the_check_fails_where_the_schema_says_otherwise(live_api):
    """The proof's own test: the same run against a schema whose balance door documents no 401 fails."""
    base, schema, _ = live_api
    lying = schemathesis.openapi.from_dict(
        _without(schema.raw_schema, ["paths", "/api/balance/", "get", "responses", "401"])
    )
    operation = next(r.ok() for r in lying.get_all_operations() if r.ok().label == "GET /api/balance/")

    with pytest.raises(FailureGroup) as failed:
        explore(operation.as_strategy().map(lambda case: (case, {})), 5, base)
    assert "Undocumented status code" in repr(failed.value.exceptions), failed.value


def _without(schema: dict, path: list[str]) -> dict:
    import copy

    changed = copy.deepcopy(schema)
    node = changed
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return changed
