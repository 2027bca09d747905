"""Token verification on its own: the contract's checks, the key set, the cache of verified tokens."""

import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from authorizer.config import ConfigError
from authorizer.tokens import TokenError, Verifier, jwk_thumbprint, load_public_keys
from tests.authorizer.support import AUDIENCE, ISSUER, KEY, KeyPair, mint

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
