"""Token verification on its own: the contract's checks, the key set, the cache of verified tokens."""

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from authorizer.config import ConfigError
from authorizer.tokens import TokenError, Verifier, jwk_thumbprint, load_public_keys
from tests.authorizer.support import AUDIENCE, ISSUER, KEY, KeyPair, mint

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = {"sub": "cus_alice", "client_id": "cli_alice", "ver": 3, "scope": "maps weather"}


def verifier(*keys: KeyPair, algorithm="ES256", **kwargs) -> Verifier:
    pem = "".join(k.public_pem for k in keys or [KEY])
    return Verifier(
        keys=load_public_keys(pem, algorithm), algorithm=algorithm, issuer=ISSUER, audience=AUDIENCE, leeway=5, **kwargs
    )


def test_a_good_token_gives_the_customer_credential_and_products():
    token = verifier().verify(mint(**CLAIMS))
    assert (token.customer_id, token.client_id, token.version) == ("cus_alice", "cli_alice", 3)
    assert token.scope == {"maps", "weather"}
    assert token.covers("maps") and not token.covers("map")


def test_the_kid_is_the_rfc7638_thumbprint():
    # RFC 7638 section 3.1: this RSA key's thumbprint.
    n = int.from_bytes(
        __import__("base64").urlsafe_b64decode(
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMs"
            "tn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajr"
            "n1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
            + "=="
        ),
        "big",
    )
    key = rsa.RSAPublicNumbers(65537, n).public_key()
    assert jwk_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_tokens_of_every_trusted_key_pass_and_others_fail():
    old, new, stranger = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    both = verifier(old, new)
    assert both.verify(mint(**CLAIMS, key=old)).customer_id == "cus_alice"
    assert both.verify(mint(**CLAIMS, key=new)).customer_id == "cus_alice"
    with pytest.raises(TokenError, match="kid"):
        both.verify(mint(**CLAIMS, key=stranger))


def test_a_key_that_cannot_verify_the_pinned_algorithm_is_a_configuration_error():
    with pytest.raises(ConfigError):
        load_public_keys(KeyPair.generate("RS256").public_pem, "ES256")
    with pytest.raises(ConfigError):
        load_public_keys("no pem here", "ES256")
    for other in (ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP384R1())):
        with pytest.raises(ConfigError, match="JWT_ALGORITHM ES256 needs an EC P-256 key"):
            load_public_keys(public_pem(other), "ES256")


def test_the_leeway_forgives_a_few_seconds_of_clock_skew_and_no_more():
    now = int(time.time())
    assert verifier().verify(mint(**CLAIMS, iat=now - 302)).client_id == "cli_alice"  # expired 2 s ago
    with pytest.raises(TokenError):
        verifier().verify(mint(**CLAIMS, iat=now - 310))  # expired 10 s ago
    assert verifier().verify(mint(**CLAIMS, iat=now + 2)).client_id == "cli_alice"  # issued 2 s ahead
    with pytest.raises(TokenError):
        verifier().verify(mint(**CLAIMS, iat=now + 60))


def test_a_verified_token_is_remembered_until_it_expires():
    clock = [time.time()]
    checker = verifier(clock=lambda: clock[0])
    text = mint(**CLAIMS)
    first = checker.verify(text)
    assert checker.verify(text) is first  # from the cache, not checked again
    clock[0] = first.expires + 6  # past exp and the leeway
    with pytest.raises(TokenError, match="expired"):
        checker.verify(text)


def test_the_cache_is_bounded():
    checker = verifier(cache_size=3)
    tokens = [mint(**CLAIMS) for _ in range(5)]
    for t in tokens:
        checker.verify(t)
    assert list(checker._cache) == tokens[2:]


def test_a_refused_token_is_not_remembered():
    checker = verifier()
    with pytest.raises(TokenError):
        checker.verify(mint(**CLAIMS, aud="elsewhere"))
    assert not checker._cache


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _with(token: str, *, header: dict | None = None, payload: bytes | None = None, signature: bytes | None = None):
    h, p, s = token.split(".")
    if header is not None:
        h = _segment(json.dumps(header).encode())
    if payload is not None:
        p = _segment(payload)
    if signature is not None:
        s = _segment(signature)
    return f"{h}.{p}.{s}"


def _signed(header: dict, payload: bytes, key: KeyPair = KEY) -> str:
    """A token signed properly over whatever header and payload bytes (to reach the checks after the signature)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    signing_input = f"{_segment(json.dumps(header).encode())}.{_segment(payload)}"
    r, s = decode_dss_signature(key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_segment(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


HEADER = {"alg": "ES256", "typ": "at+jwt", "kid": KEY.kid}


def _payload(**changes) -> bytes:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, "jti": "j1", **CLAIMS} | changes
    return json.dumps({k: v for k, v in claims.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    "make",
    [
        lambda t: _with(t, signature=b"\x00" * 64),
        lambda t: _with(t, signature=b"\x01" * 63),
        lambda t: _with(t, signature=b""),
        lambda t: t + ".",
        lambda t: t.replace(".", ". ", 1),
        lambda t: t[:-2] + "é",
        lambda t: _with(t, header=HEADER | {"alg": "HS256"}),
        lambda t: _with(t, header={k: v for k, v in HEADER.items() if k != "kid"}),
        lambda t: _signed(HEADER | {"crit": ["exp"]}, _payload()),
        lambda t: _signed(HEADER | {"typ": "JWT"}, _payload()),
        lambda t: _signed(HEADER, b"[1, 2]"),
        lambda t: _signed(HEADER, b"not json"),
        lambda t: _signed(HEADER, _payload(exp="9999999999")),
        lambda t: _signed(HEADER, _payload(exp=True)),
        lambda t: _signed(HEADER, _payload().replace(b'"exp": ', b'"exp": Infinity, "x": ')),
        lambda t: _signed(HEADER, _payload(nbf=int(time.time()) + 600)),
        lambda t: _signed(HEADER, _payload(aud=["other-api"])),
        lambda t: _signed(HEADER, _payload(sub="")),
        lambda t: _signed(HEADER, _payload(ver=True)),
        lambda t: _signed(HEADER, _payload(client_id=...)),
        lambda t: _segment(b"[" * 5000 + b"]" * 5000) + "." + t.split(".", 1)[1],
    ],
    ids=[
        "zero signature",
        "short signature",
        "no signature",
        "four segments",
        "a space",
        "not ascii",
        "HS256 header",
        "no kid",
        "crit header",
        "typ JWT",
        "payload not an object",
        "payload not json",
        "exp a string",
        "exp a boolean",
        "exp infinite",
        "nbf in the future",
        "audience list without us",
        "empty sub",
        "ver a boolean",
        "no client_id",
        "header nested past the recursion limit",
    ],
)
def test_anything_but_a_well_formed_well_signed_token_is_refused(make):
    with pytest.raises(TokenError):
        verifier().verify(make(mint(**CLAIMS)))


def test_a_properly_signed_token_with_an_audience_list_passes():
    assert verifier().verify(_signed(HEADER, _payload(aud=["x", AUDIENCE]))).customer_id == "cus_alice"


def test_the_signature_covers_the_claims():
    header, payload, signature = mint(**CLAIMS).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    for change in [{"ver": 4}, {"scope": "maps weather everything"}, {"sub": "cus_bob"}]:
        forged = _segment(json.dumps(claims | change).encode())
        with pytest.raises(TokenError, match="signature"):
            verifier().verify(f"{header}.{forged}.{signature}")


def test_the_es256_signature_algorithm_is_cryptographys_ecdsa_with_sha256_as_ecdsa_makes_it():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from authorizer.tokens import ES256_SIGNATURE

    real = ec.ECDSA(hashes.SHA256())
    assert isinstance(ES256_SIGNATURE, ec.ECDSA)
    assert vars(ES256_SIGNATURE).keys() == vars(real).keys()
    assert (type(ES256_SIGNATURE.algorithm), ES256_SIGNATURE.deterministic_signing) == (hashes.SHA256, False)
    # And cryptography's verification takes it: a good signature passes, a flipped bit does not.
    token = mint(**CLAIMS)
    assert verifier().verify(token).client_id == "cli_alice"
    head, claims, signature = token.split(".")
    forged = f"{head}.{claims}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    with pytest.raises(TokenError, match="Signature verification failed"):
        verifier().verify(forged)


def public_pem(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# cryptography's asymmetric.types (a Union of every key type, for annotations) imports each key type's module.
OTHER_KEY_TYPES = [
    f"cryptography.hazmat.primitives.asymmetric.{name}"
    for name in ("types", "dh", "dsa", "ed448", "ed25519", "mldsa", "mlkem", "x448", "x25519")
]


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_verifying_a_token_leaves_cryptographys_openssl_backend_and_other_key_types_unloaded(algorithm):
    """A fresh interpreter (this one has the backend loaded by the fixtures' key generation).

    Another key type is still refused there, as in this process, by what it is not. The handler's
    deferrals first, as the handler makes them (cryptography's serialization package imports SSH keys' types).
    """
    key = KEY if algorithm == "ES256" else KeyPair.generate("RS256")
    token = mint(**CLAIMS, key=key)
    code = f"""
import json, sys
from authorizer import deferred
deferred.defer_heavy_imports()
from authorizer.config import ConfigError
from authorizer.tokens import Verifier, load_public_keys
v = Verifier(keys=load_public_keys({key.public_pem!r}, {algorithm!r}), algorithm={algorithm!r},
             issuer={ISSUER!r}, audience={AUDIENCE!r}, leeway=5)
report = {{"client": v.verify({token!r}).client_id,
          "backend": "cryptography.hazmat.backends.openssl.backend" in sys.modules,
          "key types": sorted(m for m in {OTHER_KEY_TYPES!r} if m in sys.modules)}}
try:
    load_public_keys({public_pem(ed25519.Ed25519PrivateKey.generate())!r}, {algorithm!r})
except ConfigError as e:
    report["ed25519"] = str(e)
print(json.dumps(report))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    wanted = "an EC P-256 key" if algorithm == "ES256" else "an RSA key of at least 2048 bits"
    assert json.loads(out.stdout) == {
        "client": "cli_alice",
        "backend": False,
        "key types": [],
        "ed25519": f"JWT_PUBLIC_KEY (key 1): JWT_ALGORITHM {algorithm} needs {wanted}",
    }
