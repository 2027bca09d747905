"""Differential test of `authorizer.tokens.Verifier` against PyJWT (hypothesis, no Django).

Tokens are generated valid and then bent: headers (alg, typ, kid, crit, b64, extra members),
claims (each dropped, nulled, retyped, reformatted; extra ones), times around the leeway's
edges (whole and fractional seconds, strings, booleans, huge numbers), the JSON itself (NaN,
Infinity, 1e400, duplicate members, not an object, not UTF-8), signatures (ours, a second trusted
key, a stranger's, RSA for ES256, HMAC keyed with our public key, none, flipped, truncated,
another token's) and the compact encoding (padding, non-canonical base64url, extra dots).

The property: our verifier accepts a token exactly when PyJWT accepts it, configured as the
contract says (the key the `kid` names, the pinned algorithm, iss, aud, the required claims,
the leeway) with the contract's own rules added where PyJWT checks less (`reference` lists
them, each with its reason); when both accept, they read the same claims. Our verifier never
raises anything but TokenError.

PyJWT reads the real clock; ours is pinned to the whole second PyJWT's reading falls in (a
case that straddles a second is simply run again), so the edges of exp, iat and nbf are
compared exactly. Reproducible: `derandomize=True`, no example database; raise
`DIFF_EXAMPLES` to search longer.
"""

import base64
import hashlib
import hmac
import json
import os
import time
from collections import Counter

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authorizer.tokens import (
    CLAIMS,
    CLIENT_ID_FORMAT,
    CUSTOMER_ID_FORMAT,
    SCOPE_FORMAT,
    TOKEN_TYPES,
    AccessToken,
    TokenError,
    Verifier,
    load_public_keys,
)
from tests.authorizer.support import AUDIENCE, ISSUER, KeyPair

EXAMPLES = int(os.environ.get("DIFF_EXAMPLES", "600"))
DIFF = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LEEWAY = 5
PAIRS = {
    "ES256": (KeyPair.generate("ES256"), KeyPair.generate("ES256"), KeyPair.generate("ES256")),
    "RS256": (KeyPair.generate("RS256"), KeyPair.generate("RS256"), KeyPair.generate("RS256")),
}  # per algorithm: ours, a second trusted key (mid-rotation), a stranger's


# --- PyJWT, configured as the contract says ------------------------------------------------------


def _no_constant(name):
    raise ValueError(name)


def reference(token: str, *, trusted: dict, algorithm: str) -> dict | None:
    """The claims PyJWT accepts `token` with, under the contract's rules; None if it is refused."""
    try:
        header = jwt.get_unverified_header(token)
        key = trusted.get(header.get("kid"))  # PyJWT has checked that a kid is a string
        if key is None:
            return None
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY,
            options={"require": list(CLAIMS)},
        )
    except jwt.InvalidTokenError:
        return None
    # Where the contract asks for more than PyJWT checks:
    typ = header.get("typ")
    if not (isinstance(typ, str) and typ.lower() in TOKEN_TYPES):
        return None  # RFC 9068 section 4: an access token says so (PyJWT ignores typ)
    if "crit" in header:
        return None  # we understand no extension (PyJWT knows b64)
    if "=" in token:
        return None  # RFC 7515 section 2: base64url with the padding omitted (PyJWT forgives padding)
    for segment in token.split(".")[:2]:
        try:
            json.loads(base64.urlsafe_b64decode(segment + "=="), parse_constant=_no_constant)
        except ValueError:
            return None  # RFC 8259 has no NaN or Infinity (Python's json reads them)
    if any(type(claims[name]) not in (int, float) for name in ("exp", "iat", "nbf") if name in claims):
        return None  # RFC 7519 section 2: a NumericDate is a JSON number (PyJWT takes "123" and true)
    if not (
        CUSTOMER_ID_FORMAT.fullmatch(claims["sub"])
        and isinstance(claims["client_id"], str)
        and CLIENT_ID_FORMAT.fullmatch(claims["client_id"])
        and type(claims["ver"]) is int
        and isinstance(claims["scope"], str)
        and SCOPE_FORMAT.fullmatch(claims["scope"])
    ):
        return None  # the contract's claims (docs/api.md, "The token")
    return claims


# --- Tokens --------------------------------------------------------------------------------------

DROP = object()  # a member left out


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(signer: str, signing_input: bytes, algorithm: str, public_pem: str) -> bytes:
    ours, second, stranger = PAIRS[algorithm]
    if signer == "none":
        return b""
    if signer == "hmac":
        return hmac.new(public_pem.encode(), signing_input, hashlib.sha256).digest()
    other = {"ES256": "RS256", "RS256": "ES256"}[algorithm]
    key = {"ours": ours, "second": second, "stranger": stranger, "other kind": PAIRS[other][0]}[signer]
    if key.algorithm == "ES256":
        r, s = decode_dss_signature(key.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return key.private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


times = st.one_of(
    st.integers(-8, 8),  # around the leeway's edges, in whole seconds
    st.integers(-8, 8).map(lambda k: k + 0.5),
    st.sampled_from([-400, -301, 300, 400, 10**12, -(10**12)]),
)
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["", "cus_", "cli_alice\x00", "maps  weather", "maps weather", "cus_ALICE", "1700000000"]),
    st.lists(st.text(max_size=4), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)


@st.composite
def cases(draw, algorithm: str):
    """(header, claims, signer, finishing touch): a token's parts; times are offsets from now.

    A quarter of the cases are a good token as issued, its values varied within the contract (signed
    by either trusted key): with every part open to change, only about a tenth of the rest are
    accepted, and the test below wants both verdicts often (with a tenth it passed or failed by the
    order the tests ran in). Hypothesis runs no case twice, hence the variety."""
    ours, second, stranger = PAIRS[algorithm]
    header = {"alg": algorithm, "typ": "at+jwt", "kid": ours.kid}
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "cus_alice",
        "client_id": "cli_alice",
        "ver": 3,
        "scope": "maps weather",
        "iat": ("now", 0),
        "exp": ("now", 300),
        "jti": "7f0c2a",
    }
    if draw(st.sampled_from([True, False, False, False])):
        claims |= {
            "ver": draw(st.integers(1, 10**6)),
            "scope": draw(st.sampled_from(["maps", "weather", "maps weather", "weather maps"])),
            "iat": ("now", draw(st.integers(-300, LEEWAY))),
            "exp": ("now", draw(st.integers(1, 300))),
            "jti": draw(st.text("0123456789abcdef", min_size=1, max_size=32)),
        }
        return header, claims, draw(st.sampled_from(["ours", "second"])), None
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        name = draw(st.sampled_from(["alg", "typ", "kid", "crit", "b64", "jku", "x5u"]))
        header[name] = draw(
            {
                "alg": st.sampled_from(["ES256", "RS256", "HS256", "none", "NONE", "es256", "", DROP, 1]),
                "typ": st.sampled_from(["at+jwt", "AT+JWT", "application/at+jwt", "JWT", "", DROP, 5, ["at+jwt"]]),
                "kid": st.sampled_from([ours.kid, second.kid, stranger.kid, "", DROP, 5, [ours.kid]]),
                "crit": st.sampled_from([["b64"], ["exp"], [], "b64"]),
                "b64": st.sampled_from([True, False, "false"]),
            }.get(name, st.text(max_size=10))
        )
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        name = draw(st.sampled_from([*CLAIMS, "nbf", "nbf", "exp", "iat", "aud", "x"]))
        if name in ("exp", "iat", "nbf"):
            claims[name] = draw(st.one_of(times.map(lambda k: ("now", k)), odd_values))
        elif name == "aud":
            claims[name] = draw(
                st.sampled_from([AUDIENCE, "other", [AUDIENCE], ["x", AUDIENCE], ["x"], [AUDIENCE, 5], [], "", DROP])
            )
        else:
            claims[name] = draw(st.one_of(st.just(DROP), odd_values))
    signer = draw(st.sampled_from(["ours"] * 6 + ["second", "stranger", "other kind", "hmac", "none"]))
    touch = draw(
        st.sampled_from(
            [None] * 16
            + ["flip signature", "truncate signature", "another token's signature", "pad", "non-canonical",
               "extra dot", "NaN", "Infinity", "1e400", "exp 1e400", "duplicate sub", "payload an array", "not utf-8"]
        )
    )  # fmt: skip
    return header, claims, signer, touch


def build(case, algorithm: str, now: int) -> str:
    header, claims, signer, touch = case
    ours = PAIRS[algorithm][0]
    header = {k: v for k, v in header.items() if v is not DROP}
    claims = {k: (now + v[1] if isinstance(v, tuple) else v) for k, v in claims.items() if v is not DROP}
    payload = json.dumps(claims).encode()
    if touch in ("NaN", "Infinity", "1e400"):
        payload = payload[:-1] + f', "x": {touch}}}'.encode()
    elif touch == "exp 1e400":  # Python reads it as infinity
        payload = payload[:-1] + b', "exp": 1e400}'
    elif touch == "duplicate sub":
        payload = payload[:-1] + b', "sub": "cus_mallory"}'
    elif touch == "payload an array":
        payload = b"[" + payload + b"]"
    elif touch == "not utf-8":
        payload = payload[:-1] + b', "x": "\xff"}'
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload)}".encode()
    signature = sign(signer, signing_input, algorithm, ours.public_pem)
    if touch == "flip signature" and signature:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    elif touch == "truncate signature":
        signature = signature[:-1]
    elif touch == "another token's signature":
        signature = sign(signer, signing_input + b"x", algorithm, ours.public_pem)
    token = f"{signing_input.decode()}.{b64(signature)}"
    if touch == "pad":
        token += "=" * (-len(token.rsplit(".", 1)[1]) % 4 or 4)
    elif touch == "non-canonical" and len(token.rsplit(".", 1)[1]) % 4 in (2, 3):
        last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(token[-1])
        token = token[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last | 1]
    elif touch == "extra dot":
        token = token.replace(".", "..", 1)
    return token


def verdicts(case, algorithm: str) -> tuple[str, AccessToken | dict | None, AccessToken | dict | None]:
    """(token, ours, PyJWT's) at one whole second: AccessToken / claims when accepted, None when refused."""
    ours, second, _ = PAIRS[algorithm]
    trusted = load_public_keys(ours.public_pem + second.public_pem, algorithm)
    while True:
        now = int(time.time())
        token = build(case, algorithm, now)
        theirs = reference(token, trusted=trusted, algorithm=algorithm)
        if int(time.time()) == now:  # PyJWT's clock read within this second
            break
    verifier = Verifier(
        keys=trusted, algorithm=algorithm, issuer=ISSUER, audience=AUDIENCE, leeway=LEEWAY, clock=lambda: now
    )
    try:
        mine = verifier.verify(token)
    except TokenError:
        mine = None
    return token, mine, theirs


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_our_verifier_accepts_exactly_what_pyjwt_accepts_under_the_contract(algorithm):
    seen = Counter()

    @DIFF
    @given(case=cases(algorithm))
    def agree(case):
        token, mine, theirs = verdicts(case, algorithm)
        assert (mine is not None) == (theirs is not None), (token, mine, theirs)
        seen["accepted" if mine else "refused"] += 1
        if mine is not None:
            assert mine == AccessToken(
                customer_id=theirs["sub"],
                client_id=theirs["client_id"],
                version=theirs["ver"],
                scope=frozenset(theirs["scope"].split()),
                expires=int(theirs["exp"]),
            )

    agree()
    # Both verdicts come up often, or agreeing would prove little.
    assert seen["accepted"] >= EXAMPLES // 10 and seen["refused"] >= EXAMPLES // 10, seen


def test_the_edges_of_time_agree_to_the_second():
    """exp at now - leeway has expired for both; one second later it has not; iat at now + leeway is
    still valid, one second later it is not (the cases the property above meets by chance, here surely)."""
    base = ({"alg": "ES256", "typ": "at+jwt", "kid": PAIRS["ES256"][0].kid}, None, "ours", None)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "cus_alice", "client_id": "cli_alice", "ver": 1,
              "scope": "maps", "jti": "j"}  # fmt: skip
    edges = {
        "expired at the leeway": ({"iat": ("now", -300), "exp": ("now", -LEEWAY)}, False),
        "a second inside it": ({"iat": ("now", -300), "exp": ("now", 1 - LEEWAY)}, True),
        "issued at the leeway ahead": ({"iat": ("now", LEEWAY), "exp": ("now", 300)}, True),
        "a second past it": ({"iat": ("now", LEEWAY + 1), "exp": ("now", 300)}, False),
        "nbf a second past it": ({"iat": ("now", 0), "exp": ("now", 300), "nbf": ("now", LEEWAY + 1)}, False),
    }
    for name, (times_, accepted) in edges.items():
        case = (base[0], claims | times_, "ours", None)
        _, mine, theirs = verdicts(case, "ES256")
        assert (mine is not None, theirs is not None) == (accepted, accepted), name
