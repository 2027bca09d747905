"""Forged and refused access tokens against all three doors that take one.

One table of tokens, each run against:

* the Lambda authorizer (`authorizer.handler.lambda_handler`) with the REST `TOKEN`, REST
  `REQUEST` and HTTP API 2.0 sample events: a token that is not ours is a 401 (REST: raise
  exactly `Exception("Unauthorized")`; HTTP API: `{"isAuthorized": false}`) and never reaches
  DynamoDB; a valid token we refuse (another product, revoked, rotated, suspended) is a Deny
  with its reason. Either way the mirror's `used` does not move.
* the balance API: 401 with a Bearer challenge (or, for a token of another product, only the
  token's own products), and not one row written.
* the token endpoint: a JWT is no client credential, as a Bearer header, as the client secret,
  or as the secret in HTTP Basic: `invalid_client`, no token issued, nothing written.

Django and the authorizer trust the same two public keys (the session's signing key and a
second one, as during a key rotation), so the swapped-kid cases are real: each door holds a
key for the kid, just not the one that signed.
"""

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from accounts.services import credential_revoke, credential_rotate, customer_suspend
from authorizer.tokens import public_jwk
from ledger.services import credits_grant
from tests.authorizer.support import EVENT_KINDS, KeyPair, RequestCounter, load_event

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

WEATHER_API = "wthr000001"
SECOND = KeyPair.generate("ES256")  # trusted too: the next signing key during a rotation
STRANGER = KeyPair.generate("ES256")  # not ours
RSA_STRANGER = KeyPair.generate("RS256")
REASONS = {"other product": "product_not_in_token", "revoked": "credential_revoked",
           "rotated": "credential_rotated", "suspended": "customer_suspended"}  # fmt: skip


# --- Making tokens ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(value) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def jws(header: dict | bytes, claims: dict | bytes, key: KeyPair | None = None, *, hmac_key: bytes | None = None):
    """A compact JWS over exactly these bytes: signed by `key` (ES256 or RS256), an HMAC, or nothing."""
    signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}".encode()
    if hmac_key is not None:
        signature = hmac.new(hmac_key, signing_input, hashlib.sha256).digest()
    elif key is None:
        signature = b""
    elif key.algorithm == "ES256":
        r, s = decode_dss_signature(key.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{_b64(signature)}"


@dataclass
class Ctx:
    """What a token builder needs: alice, the keys, and a way to make a change land in the mirror."""

    alice: object
    ours: KeyPair  # the session's signing key (jwt_keys)
    public_pem: str
    committed: object

    def claims(self, **changes) -> dict:
        now = int(time.time())
        credential = self.alice.credential
        credential.refresh_from_db()
        claims = {
            "iss": "creditportal",
            "aud": "creditportal-api",
            "sub": self.alice.public_id,
            "client_id": credential.client_id,
            "ver": credential.secret_version,
            "scope": "weather",
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        return {k: v for k, v in (claims | changes).items() if v is not ...}

    def header(self, key: KeyPair | None = None, **changes) -> dict:
        header = {"alg": (key or self.ours).algorithm, "typ": "at+jwt", "kid": (key or self.ours).kid}
        return {k: v for k, v in (header | changes).items() if v is not ...}

    def good(self, key: KeyPair | None = None, **claims) -> str:
        return jws(self.header(key), self.claims(**claims), key or self.ours)


def _tampered(ctx: Ctx) -> str:
    header, _, signature = ctx.good().split(".")
    return f"{header}.{_b64(_json(ctx.claims(scope='maps weather', ver=99)))}.{signature}"


def _signature_of_another_token(ctx: Ctx) -> str:
    header, payload, _ = ctx.good().split(".")
    return f"{header}.{payload}.{ctx.good(scope='maps').split('.')[2]}"


def _header_swapped(ctx: Ctx) -> str:
    _, payload, signature = ctx.good().split(".")
    return f"{_b64(_json(ctx.header(alg='RS256')))}.{payload}.{signature}"


def _after(change):
    """A token issued now, then `change` made to alice (through the services, the mirror written after commit)."""

    def build(ctx: Ctx) -> str:
        token = ctx.good()
        with ctx.committed():
            change(ctx.alice)
        return token

    return build


def now() -> int:
    return int(time.time())


FORGED = {
    "alg none": lambda c: jws(c.header(alg="none"), c.claims()),
    "alg NONE with our signature kept": lambda c: f"{_b64(_json(c.header(alg='NONE')))}.{c.good().split('.', 1)[1]}",
    "HS256 keyed with our public key": lambda c: jws(c.header(alg="HS256"), c.claims(), hmac_key=c.public_pem.encode()),
    "HS256 keyed with our kid": lambda c: jws(c.header(alg="HS256"), c.claims(), hmac_key=c.ours.kid.encode()),
    "RS256 by a key not ours, under our kid": lambda c: jws(c.header(RSA_STRANGER, kid=c.ours.kid), c.claims(),
                                                            RSA_STRANGER),
    "an unknown kid": lambda c: jws(c.header(kid="no-such-key"), c.claims(), c.ours),
    "no kid": lambda c: jws(c.header(kid=...), c.claims(), c.ours),
    "a kid that is not a string": lambda c: jws(c.header(kid=[c.ours.kid]), c.claims(), c.ours),
    "our kid on a token signed by a key not ours": lambda c: jws(c.header(STRANGER, kid=c.ours.kid), c.claims(),
                                                                 STRANGER),
    "the second key's kid on a token signed by the first": lambda c: jws(c.header(kid=SECOND.kid), c.claims(), c.ours),
    "the first key's kid on a token signed by the second": lambda c: jws(c.header(SECOND, kid=c.ours.kid), c.claims(),
                                                                         SECOND),
    "a key not ours, under its own kid": lambda c: jws(c.header(STRANGER), c.claims(), STRANGER),
    "a key not ours, embedded in the header (jwk)": lambda c: jws(
        c.header(STRANGER, jwk=public_jwk(STRANGER.private_key.public_key())), c.claims(), STRANGER
    ),
    "a key not ours, by URL (jku)": lambda c: jws(c.header(STRANGER, jku="https://evil.example/jwks.json"), c.claims(),
                                                  STRANGER),
    "expired": lambda c: c.good(iat=now() - 400, exp=now() - 60),
    "not yet valid (iat)": lambda c: c.good(iat=now() + 60, exp=now() + 360),
    "not yet valid (nbf)": lambda c: c.good(nbf=now() + 60),
    "wrong iss": lambda c: c.good(iss="https://evil.example"),
    "wrong aud": lambda c: c.good(aud="another-api"),
    "an aud list without ours": lambda c: c.good(aud=["another-api", "a-third-api"]),
    "a tampered payload": _tampered,
    "a tampered header": _header_swapped,
    "the signature of another of our tokens": _signature_of_another_token,
    "truncated signature": lambda c: c.good()[:-20],
    "no signature": lambda c: c.good().rsplit(".", 1)[0] + ".",
    "two segments": lambda c: c.good().rsplit(".", 1)[0],
    "the header alone": lambda c: c.good().split(".")[0],
    "an oversized header (64 KB), signed by a key not ours under our kid": lambda c: jws(
        c.header(STRANGER, kid=c.ours.kid, x="x" * 65536), c.claims(), STRANGER
    ),
    "a header nested 4096 deep (8 KB)": lambda c: jws(b"[" * 4096 + b"]" * 4096, c.claims(), STRANGER),
    "a payload nested 4096 deep (8 KB)": lambda c: jws(c.header(kid=STRANGER.kid), b"[" * 4096 + b"]" * 4096, STRANGER),
    "64 KB of junk": lambda c: "x" * 65536,
}  # fmt: skip
# Valid tokens, signed by us, that must still be refused: they name a product they do not cover,
# or speak for a credential revoked or rotated since, or for a suspended customer.
REFUSED = {
    "other product": lambda c: c.good(scope="maps"),
    "revoked": _after(lambda alice: credential_revoke(credential=alice.credential)),
    "rotated": _after(lambda alice: credential_rotate(credential=alice.credential)),
    "suspended": _after(lambda alice: customer_suspend(customer=alice)),
}
TOKENS = FORGED | REFUSED


@pytest.fixture
def trusted_keys(jwt_keys, settings):
    """Django trusts the session's key and SECOND (as mid-rotation); the PEM text both doors are given."""
    pem = jwt_keys.public_pem + SECOND.public_pem
    settings.SIMPLE_JWT = {**settings.SIMPLE_JWT, "VERIFYING_KEY": pem}
    return pem


@pytest.fixture
def ctx(alice, products, jwt_keys, committed, trusted_keys) -> Ctx:
    """alice with 10 weather and 10 maps credits (written to the mirror when it is on)."""
    with committed():
        credits_grant(customer=alice, product=products["weather"], amount=10)
        credits_grant(customer=alice, product=products["maps"], amount=10)
    ours = KeyPair(serialization.load_pem_private_key(jwt_keys.private_pem.encode(), None), "ES256")
    assert ours.kid == jwt_keys.kid
    return Ctx(alice=alice, ours=ours, public_pem=jwt_keys.public_pem, committed=committed)


@pytest.fixture
def no_mirror(settings):
    """The Django doors alone: no mirror writes (nothing here reads the mirror)."""
    settings.MIRROR_ENABLED = False


@pytest.fixture
def door(gate, monkeypatch, trusted_keys):
    """The authorizer, trusting the same two keys as Django, routed, counting its DynamoDB requests."""
    monkeypatch.setenv("JWT_PUBLIC_KEY", trusted_keys)
    gate.reset()
    return SimpleNamespace(handler=gate, sent=RequestCounter(gate.runtime().gate.client).operations)


def decide(handler, kind: str, token: str):
    """The authorizer's answer; REST's 401 (exactly `Exception("Unauthorized")`) as the string "401"."""
    try:
        return handler.lambda_handler(load_event(kind, token=token, api_id=WEATHER_API), None)
    except Exception as e:
        assert type(e) is Exception and e.args == ("Unauthorized",), repr(e)
        assert kind != "http_api_v2", "an HTTP API authorizer answers, it never raises"
        return "401"


def used(mirror, alice, products) -> dict[str, int]:
    return {slug: mirror.balance(alice, product)["used"] for slug, product in products.items()}


# --- The authorizer ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", FORGED)
def test_the_authorizer_answers_401_to_a_forged_token_without_asking_dynamodb(door, ctx, mirror, products, case):
    token = FORGED[case](ctx)
    before = used(mirror, ctx.alice, products)

    answers = {kind: decide(door.handler, kind, token) for kind in EVENT_KINDS}

    assert answers == {"rest_token": "401", "rest_request": "401", "http_api_v2": {"isAuthorized": False}}
    assert door.sent == []  # a refused token never reaches DynamoDB
    assert used(mirror, ctx.alice, products) == before == {"weather": 0, "maps": 0}


@pytest.mark.parametrize("case", REFUSED)
def test_the_authorizer_denies_a_valid_token_it_must_refuse_and_spends_nothing(door, ctx, mirror, products, case):
    token = REFUSED[case](ctx)
    reason = {"reason": REASONS[case]}

    answers = {kind: decide(door.handler, kind, token) for kind in EVENT_KINDS}

    for kind in ("rest_token", "rest_request"):
        assert answers[kind]["principalId"] == ctx.alice.public_id
        assert answers[kind]["policyDocument"]["Statement"][0]["Effect"] == "Deny"
        assert answers[kind]["context"] == reason
    assert answers["http_api_v2"] == {"isAuthorized": False, "context": reason}
    assert used(mirror, ctx.alice, products) == {"weather": 0, "maps": 0}


def test_a_well_made_token_opens_each_door_so_the_refusals_above_mean_something(door, ctx, mirror, products, client):
    token = ctx.good()
    second = ctx.good(SECOND)

    for kind in EVENT_KINDS:
        assert decide(door.handler, kind, token) != "401"
    assert decide(door.handler, "rest_token", second)["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert used(mirror, ctx.alice, products) == {"weather": 4, "maps": 0}
    for good in (token, second):
        assert client.get("/api/balance/", HTTP_AUTHORIZATION=f"Bearer {good}").status_code == 200


# --- The balance API ---------------------------------------------------------------------------


def balance(client, token: str):
    return client.get("/api/balance/", HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.parametrize("case", FORGED | {k: REFUSED[k] for k in ("revoked", "rotated", "suspended")})
def test_the_balance_api_answers_401_and_writes_nothing(no_mirror, ctx, client, app_rows, case):
    token = TOKENS[case](ctx)
    before = app_rows()

    response = balance(client, token)

    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith('Bearer realm="creditportal", error="invalid_token"')
    assert set(response.json()) == {"detail"}
    assert app_rows() == before


def test_the_balance_api_shows_a_token_only_its_own_products(no_mirror, ctx, client, app_rows):
    before = app_rows()

    response = balance(client, REFUSED["other product"](ctx))

    assert response.status_code == 200
    assert [b["product"] for b in response.json()["balances"]] == ["maps"]
    assert app_rows() == before


# --- The token endpoint ------------------------------------------------------------------------


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.mark.parametrize("case", TOKENS)
def test_the_token_endpoint_takes_no_jwt_for_client_credentials(no_mirror, ctx, client, app_rows, case):
    token = TOKENS[case](ctx)
    client_id = ctx.alice.credential.client_id
    grant = {"grant_type": "client_credentials"}
    form = "application/x-www-form-urlencoded"
    before = app_rows()

    responses = {
        "bearer": client.post("/api/token/", urlencode(grant | {"client_id": client_id}), content_type=form,
                              HTTP_AUTHORIZATION=f"Bearer {token}"),
        "client_secret": client.post("/api/token/", urlencode(grant | {"client_id": client_id, "client_secret": token}),
                                     content_type=form),
        "basic": client.post("/api/token/", urlencode(grant), content_type=form,
                             HTTP_AUTHORIZATION=_basic(client_id, token)),
    }  # fmt: skip

    for way, response in responses.items():
        assert response.status_code == 401, (way, response.content)
        assert response.json()["error"] == "invalid_client", way
        assert "access_token" not in response.json()
    assert app_rows() == before
