"""Property-based fuzzing of `authorizer.handler.lambda_handler` (hypothesis), without Django,
against a real moto server.

Events are the three sample events bent every way (headers in any case, repeated, in
`multiValueHeaders`, of the wrong type, schemes mangled, keys dropped or replaced by any
JSON value, API ids swapped) carrying a mix of valid tokens, tokens we must refuse and
garbage; and, separately, any JSON value at all. The properties:

* the answer is one of the documented ones: REST shapes raise exactly
  `Exception("Unauthorized")` or return an Allow/Deny IAM policy; an HTTP API event never
  raises and gets `{"isAuthorized": ...}`; no other exception ever escapes;
* an Allow only ever comes for a token that is valid, sits in the event's Authorization
  header (REST TOKEN: `authorizationToken`), covers the product, and belongs to an active
  customer with credits left; it allows exactly the method the event names;
* every Allow spends the product's cost once, and nothing else spends anything.

Reproducible in CI: `derandomize=True` (examples derived from the test itself) and no
example database. Raise `FUZZ_EXAMPLES` to search longer locally.
"""

import base64
import json
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.authorizer.support import EVENT_KINDS, KeyPair, balance_item, load_event, mint, route_item

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
APIS = {"wthr000001": "weather", "maps000001": "maps"}
COST = {"weather": 1, "maps": 2}
REASONS = {"credits_exhausted", "no_credits", "customer_suspended", "product_inactive", "credential_revoked",
           "credential_rotated", "product_not_in_token", "unknown_api", "internal_error"}  # fmt: skip
PLENTY = 10**9
DAY = 86400  # the tokens are made at import: they must outlive any test run


@pytest.fixture
def fuzz_mirror(mirror_items):
    """alice: weather and maps, plenty, two credentials; bob: suspended; carol: no credits left."""
    alice = {"cli_alice": 1, "cli_alice2": 1}
    mirror_items.put(
        *(route_item(api, product) for api, product in APIS.items()),
        balance_item(customer="cus_alice", product="weather", granted=PLENTY, creds=alice),
        balance_item(customer="cus_alice", product="maps", granted=PLENTY, cost=2, creds=alice),
        balance_item(customer="cus_bob", product="weather", granted=PLENTY, active=False, creds={"cli_bob": 1}),
        balance_item(customer="cus_carol", product="weather", granted=5, used=5, creds={"cli_carol": 1}),
    )
    return mirror_items


def tokens() -> tuple[list[str], list[str]]:
    """([tokens that may be allowed], [tokens that never may])."""
    may = [
        mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="weather", lifetime=DAY),
        mint(sub="cus_alice", client_id="cli_alice2", ver=1, scope="maps weather", lifetime=DAY),
        mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="maps", lifetime=DAY),
    ]
    stranger = KeyPair.generate()
    header, payload, signature = may[2].split(".")
    never = [
        mint(sub="cus_bob", client_id="cli_bob", ver=1, scope="weather", lifetime=DAY),  # suspended
        mint(sub="cus_carol", client_id="cli_carol", ver=1, scope="weather", lifetime=DAY),  # no credits left
        mint(sub="cus_alice", client_id="cli_alice", ver=2, scope="weather", lifetime=DAY),  # not the mirror's version
        mint(sub="cus_alice", client_id="cli_gone", ver=1, scope="weather maps", lifetime=DAY),  # revoked
        mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="weather", iat=1_600_000_000),  # expired
        mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="weather", key=stranger),  # not our key
        mint(
            sub="cus_alice",
            client_id="cli_alice",
            ver=1,
            scope="weather",
            key=stranger,
            headers={"kid": KeyPair.generate().kid},
        ),
        f"{header}.{may[0].split('.')[1]}.{signature}",  # tampered
        f"{header}.{payload}.",  # unsigned
    ]
    return may, never


MAY, NEVER = tokens()
CLAIMS = {t: json.loads(base64.urlsafe_b64decode(t.split(".")[1] + "==")) for t in MAY}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["", "x" * 70_000, "\x00", "\ud800", "Bearer", "Bearer ", "null", "REQUEST", "TOKEN", "2.0"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
token_text = st.one_of(
    st.sampled_from(MAY),
    st.sampled_from(NEVER),
    st.sampled_from(MAY).map(lambda t: t[:-1]),
    st.sampled_from(MAY).map(lambda t: t + "A"),
    st.sampled_from(MAY).map(lambda t: t.replace(".", "..", 1)),
    st.text(max_size=40),
)
auth_values = st.one_of(
    st.builds(
        lambda scheme, token, tail: f"{scheme}{token}{tail}",
        st.sampled_from(["Bearer ", "bearer ", "BEARER ", "Bearer  ", " Bearer ", "Bearer\t", "Basic ", "Token ", ""]),
        token_text,
        st.sampled_from(["", " ", "\n", ",", ", Bearer " + MAY[0], " Bearer " + NEVER[0]]),
    ),
    json_values,
)
header_names = st.one_of(
    st.sampled_from(["Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn", "Authorization ",
                     "X-Authorization", "Proxy-Authorization", "Auth\u0131rization", "authorizationToken"]),
    st.text(max_size=15),
)  # fmt: skip
TOP_KEYS = ["type", "version", "methodArn", "routeArn", "headers", "multiValueHeaders", "authorizationToken",
            "requestContext", "queryStringParameters", "identitySource"]  # fmt: skip
api_ids = st.sampled_from([*APIS, "nobody0001", "", "wthr000001/../maps000001"])


@st.composite
def bent_events(draw) -> dict:
    """A sample event, carrying authorization values in several places, then mutated."""
    kind = draw(st.sampled_from(EVENT_KINDS))
    token = draw(st.none() | st.sampled_from(MAY) | st.sampled_from(NEVER))  # where API Gateway puts it
    event = load_event(kind, token=token, api_id=draw(api_ids))
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(["header", "multi", "token"]))
        name, value = draw(header_names), draw(auth_values)
        if where == "token":
            event["authorizationToken"] = value
        elif where == "multi":
            values = event.setdefault("multiValueHeaders", {}).setdefault(name, [])
            if isinstance(values, list):
                values.append(value)
        elif isinstance(event.get("headers"), dict):
            event["headers"][name] = value
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(TOP_KEYS))
        action = draw(st.sampled_from(["set", "delete", "api"]))
        if action == "delete":
            event.pop(key, None)
        elif action == "api":
            context = event.get("requestContext")
            if isinstance(context, dict):
                context["apiId"] = draw(api_ids | json_scalars)
        else:
            event[key] = draw(json_values)
    return event


def auth_sources(event) -> list[str]:
    """Every string in the places the token may come from: the Authorization header (any case,
    single or multi-valued) and REST TOKEN's authorizationToken."""
    if not isinstance(event, dict):
        return []
    found = [event.get("authorizationToken")]
    for headers in (event.get("headers"), event.get("multiValueHeaders")):
        if isinstance(headers, dict):
            for name, value in headers.items():
                if isinstance(name, str) and name.lower() == "authorization":
                    found.extend(value if isinstance(value, list) else [value])
    return [s for s in found if isinstance(s, str)]


def is_http_api(event) -> bool:
    return isinstance(event, dict) and event.get("version") == "2.0" and event.get("type") == "REQUEST"


class Ledger:
    """What the fuzzing has allowed so far, to compare with what the mirror says was spent."""

    def __init__(self, mirror_items, *, per_call: bool = True):
        self.items = mirror_items
        self.per_call = per_call  # read the mirror after every call (else: compare the totals at the end)
        self.allowed = Counter()
        self.answers = Counter()
        self.last = self.used()

    def used(self) -> dict[str, int]:
        return {p: self.items.used("cus_alice", p) for p in COST}

    def spent(self) -> dict[str, int]:
        """Spent at the gate since the last call, per product."""
        if not self.per_call:
            return {}
        now = self.used()
        spent, self.last = {p: now[p] - self.last[p] for p in COST}, now
        return spent

    def check(self, handler, event) -> None:
        try:
            answer = handler.lambda_handler(event, None)
        except Exception as e:
            assert type(e) is Exception and e.args == ("Unauthorized",), repr(e)
            assert not is_http_api(event), "an HTTP API authorizer answers, it never raises"
            self.answers["401"] += 1
            assert not any(self.spent().values())
            return
        allowed = self.shape(event, answer)
        self.answers["allow" if allowed else "deny"] += 1
        if not allowed:
            assert not any(self.spent().values())
            return
        context = answer["context"]
        product = context["product"]
        self.allowed[product] += 1
        if self.per_call:
            assert self.spent() == {p: COST[p] if p == product else 0 for p in COST}
        assert context["customerId"] == "cus_alice"
        assert context["remaining"] == PLENTY - COST[product] * self.allowed[product]
        tokens = [t for t in MAY if any(t in source for source in auth_sources(event))]
        assert any(
            CLAIMS[t]["client_id"] == context["credentialId"] and product in CLAIMS[t]["scope"].split() for t in tokens
        ), "allowed without a valid token for the product in the Authorization header"
        api = next(api for api, p in APIS.items() if p == product)
        assert api in json.dumps(event), "allowed for an API the event does not name"

    @staticmethod
    def shape(event, answer) -> bool:
        """Check the answer is a documented one; True when it allows."""
        assert isinstance(answer, dict)
        if is_http_api(event):
            assert set(answer) <= {"isAuthorized", "context"} and isinstance(answer["isAuthorized"], bool)
            context = answer.get("context", {})
            allowed = answer["isAuthorized"]
        else:
            assert set(answer) == {"principalId", "policyDocument", "context"}
            [statement] = answer["policyDocument"]["Statement"]
            assert statement["Action"] == "execute-api:Invoke" and statement["Effect"] in ("Allow", "Deny")
            context = answer["context"]
            allowed = statement["Effect"] == "Allow"
            if allowed:
                assert statement["Resource"] == [event["methodArn"]]
        assert all(isinstance(v, str | int | bool) for v in context.values())
        if not allowed and context:
            assert set(context) == {"reason"} and context["reason"] in REASONS
        return allowed


def test_bent_events_allow_only_a_valid_token_and_spend_once_per_allow(authorizer, fuzz_mirror):
    ledger = Ledger(fuzz_mirror)

    @FUZZ
    @given(bent_events())
    def run(event):
        ledger.check(authorizer, event)

    run()

    assert ledger.used() == {p: COST[p] * ledger.allowed[p] for p in COST}
    assert fuzz_mirror.used("cus_bob", "weather") == 0 and fuzz_mirror.used("cus_carol", "weather") == 5
    # The search reached every kind of answer (or the properties above were checked on little).
    assert min(ledger.answers["allow"], ledger.answers["deny"], ledger.answers["401"]) >= 10, ledger.answers


def test_any_json_at_all_is_refused_without_an_escape(authorizer, fuzz_mirror):
    ledger = Ledger(fuzz_mirror, per_call=False)  # nothing may be spent at all: the totals say it
    shapes = st.fixed_dictionaries({}, optional={k: json_values | st.sampled_from(["TOKEN", "REQUEST", "2.0"])
                                                 for k in TOP_KEYS})  # fmt: skip

    @FUZZ
    @given(json_values | shapes)
    def run(event):
        ledger.check(authorizer, event)

    run()

    assert ledger.allowed == Counter() and ledger.used() == {"weather": 0, "maps": 0}
