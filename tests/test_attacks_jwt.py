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
    # Garbage of every other shape (issue 12, finding 11: none of it may be answered in Python's words).
    "no dots at all": lambda c: "not-a-token",
    "one dot": lambda c: "not.atoken",
    "three empty parts": lambda c: "..",
    "four segments": lambda c: c.good() + ".AAAA",
    "three parts, not base64url": lambda c: "%%%.%%%.%%%",
    "three parts of non-ASCII": lambda c: "\u00fc.\u00fc.\u00fc",
    "base64url padding": lambda c: c.good().replace(".", "==.", 1) if len(c.good().split(".")[0]) % 4 == 2 else
                                   c.good().replace(".", "=.", 1),
    "base64url, but not JSON": lambda c: f"{_b64(b'hello')}.{_b64(b'world')}.{_b64(b'sig')}",
    "a header that is not UTF-8": lambda c: f"{_b64(bytes([255, 254, 0]))}.{c.good().split('.', 1)[1]}",
    "a header that is a JSON array": lambda c: f"{_b64(b'[1]')}.{c.good().split('.', 1)[1]}",
    "well signed claims that are a JSON array": lambda c: jws(c.header(), b"[1, 2]", c.ours),
    "well signed claims that are not JSON": lambda c: jws(c.header(), b"claims", c.ours),
    "well signed, exp a string": lambda c: c.good(exp=str(now() + 300)),
    "well signed, exp infinite": lambda c: jws(c.header(), _json(c.claims())[:-1] + b', "exp": 1e400}', c.ours),
    "well signed, exp NaN": lambda c: jws(c.header(), _json(c.claims())[:-1] + b', "exp": NaN}', c.ours),
    "well signed, no claims at all": lambda c: jws(c.header(), {}, c.ours),
    "well signed, sub not a customer id": lambda c: c.good(sub="alice"),
    "well signed, ver a string": lambda c: c.good(ver="1"),
    "well signed, scope a list": lambda c: c.good(scope=["weather"]),
    "well signed, typ JWT": lambda c: jws(c.header(typ="JWT"), c.claims(), c.ours),
    "well signed, crit": lambda c: jws(c.header(crit=["exp"]), c.claims(), c.ours),
}  # fmt: skip
# What the balance API's 401 says about each (one of these phrases, in the API's words).
SAYS = {
    "alg none": "alg value is not allowed", "alg NONE with our signature kept": "alg value is not allowed",
    "HS256 keyed with our public key": "alg value is not allowed", "HS256 keyed with our kid": "alg value is not allowed",
    "RS256 by a key not ours, under our kid": "alg value is not allowed", "an unknown kid": "unknown key",
    "no kid": "unknown key", "a kid that is not a string": "unknown key",
    "our kid on a token signed by a key not ours": "Signature verification failed",
    "the second key's kid on a token signed by the first": "Signature verification failed",
    "the first key's kid on a token signed by the second": "Signature verification failed",
    "a key not ours, under its own kid": "unknown key", "a key not ours, embedded in the header (jwk)": "unknown key",
    "a key not ours, by URL (jku)": "unknown key", "expired": "has expired", "not yet valid (iat)": "not yet valid (iat)",
    "not yet valid (nbf)": "not yet valid (nbf)", "wrong iss": "issuer (iss) is not creditportal",
    "wrong aud": "Audience (aud) is not creditportal-api", "an aud list without ours": "Audience (aud) is not",
    "a tampered payload": "Signature verification failed", "a tampered header": "alg value is not allowed",
    "the signature of another of our tokens": "Signature verification failed",
    "truncated signature": ("not a JWT", "Signature verification failed"),  # a cut may leave canonical base64url
    "no signature": "Signature verification failed", "two segments": "not a JWT", "the header alone": "not a JWT",
    "an oversized header (64 KB), signed by a key not ours under our kid": "Signature verification failed",
    "a header nested 4096 deep (8 KB)": "header is not a JSON object",
    "a payload nested 4096 deep (8 KB)": "unknown key", "64 KB of junk": "not a JWT",
    "no dots at all": "not a JWT", "one dot": "not a JWT", "three empty parts": "not a JWT",
    "four segments": "not a JWT", "three parts, not base64url": "not a JWT", "three parts of non-ASCII": "not a JWT",
    "base64url padding": "not a JWT", "base64url, but not JSON": "header is not a JSON object",
    "a header that is not UTF-8": "header is not a JSON object",
    "a header that is a JSON array": "header is not a JSON object",
    "well signed claims that are a JSON array": "claims are not a JSON object",
    "well signed claims that are not JSON": "claims are not a JSON object",
    "well signed, exp a string": "must be numbers", "well signed, exp infinite": "must be numbers",
    "well signed, exp NaN": "claims are not a JSON object", "well signed, no claims at all": "has no iss, aud, sub",
    "well signed, sub not a customer id": "a customer id (cus_...)", "well signed, ver a string": "ver is not an integer",
    "well signed, scope a list": "scope is not product slugs", "well signed, typ JWT": "not an access token",
    "well signed, crit": "Critical header extensions",
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
    settings.JWT = {**settings.JWT, "VERIFYING_KEY": pem}
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


def python_says(token: str) -> set[str]:
    """What Python itself says when this token is taken apart naively (unpacking its parts, decoding
    them, reading their JSON and its times): texts that must never reach a caller."""
    said = set()
    steps = [
        lambda t: (lambda header, payload, signature: None)(*t.split(".")),
        lambda t: [base64.urlsafe_b64decode(part) for part in t.split(".")],
        lambda t: [base64.b64decode(part, validate=True) for part in t.split(".")],
        lambda t: [json.loads(base64.urlsafe_b64decode(part + "==")) for part in t.split(".")[:2]],
        lambda t: [json.loads(base64.urlsafe_b64decode(part + "==").decode()) for part in t.split(".")[:2]],
        lambda t: int(json.loads(base64.urlsafe_b64decode(t.split(".")[1] + "=="))["exp"]),
    ]
    for step in steps:
        try:
            step(token)
        except Exception as e:
            said |= {str(e), type(e).__name__}
    return {text for text in said if len(text) > 6}


PYTHON_WORDS = ["Traceback", "Error", "unpack", "line 1 column", "codec", "NoneType", "object has no attribute",
                "invalid literal", "Expecting", "Incorrect padding", "not subscriptable", "(char "]  # fmt: skip


@pytest.mark.parametrize("case", FORGED)
def test_the_balance_api_says_what_is_wrong_in_its_own_words(no_mirror, ctx, client, case):
    token = FORGED[case](ctx)

    response = balance(client, token)

    assert response.status_code == 401, response.content
    detail = response.json()["detail"]
    says = SAYS[case] if isinstance(SAYS[case], tuple) else (SAYS[case],)
    assert any(phrase in detail for phrase in says), (detail, says)
    assert detail.startswith(("The access token is invalid: ", "The access token has expired: ")), detail
    for text in python_says(token) | set(PYTHON_WORDS):
        assert text not in detail, (text, detail)
        assert text not in response["WWW-Authenticate"], (text, response["WWW-Authenticate"])


def test_every_forged_token_has_its_expected_answer():
    assert set(SAYS) == set(FORGED)


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
