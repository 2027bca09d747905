"""Access tokens: the contract and its one verifier, for both sides (docs/api.md, "The token").

Django signs tokens (accounts/tokens.py, with PyJWT) and verifies them for the balance API
with the `Verifier` here; the Lambda authorizer verifies them with the same `Verifier`. The
contract, written once:

    header  {"alg": "ES256" | "RS256", "typ": "at+jwt", "kid": <RFC 7638 thumbprint of the key>}
    claims  iss, aud            JWT_ISSUER, JWT_AUDIENCE
            sub                 the customer's public id ("cus_...")
            client_id, ver      the credential and its secret_version: a rotation or a
                                revocation makes older tokens useless at the next call
            scope               space-separated product slugs
            iat, exp, jti       exp = iat + 300; jti random

Verification uses `cryptography` directly: the gate needs one pinned algorithm and a handful
of claims, and PyJWT's import (x509, EdDSA, a JWKS client over urllib) cost about 15 ms more of
every cold start (bench/authorizer_cold.py). tests/authorizer/test_tokens_differential.py shows
that it refuses and accepts exactly what PyJWT does with the contract's rules added.

Only public keys are used here. The algorithm is pinned by configuration, never taken from
the token; the key is chosen by the token's `kid`, so several keys can be trusted at once
while signing keys rotate. Error messages are the API's words: the balance API shows them
to the caller, the authorizer logs them.
"""

import base64
import binascii
import hashlib
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

# Not `serialization` itself: its __init__ imports SSH key support, which the
# gate never uses (authorizer/deferred.py defers that package for the handler).
from cryptography.hazmat.primitives.serialization.base import load_pem_public_key

from authorizer.config import ConfigError
from authorizer.record import Record, setfield

if TYPE_CHECKING:  # types imports every key type's module (DH, DSA, EdDSA, ML-DSA, ML-KEM, X25519...): annotations only
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

ALGORITHMS = ("ES256", "RS256")
TOKEN_TYPE = "at+jwt"  # RFC 9068; "application/at+jwt" is the same type (RFC 7515 section 4.1.9)
TOKEN_TYPES = {TOKEN_TYPE, f"application/{TOKEN_TYPE}"}
CLAIMS = ("iss", "aud", "sub", "client_id", "ver", "scope", "iat", "exp", "jti")
CUSTOMER_ID_FORMAT = re.compile(r"cus_[a-z0-9]{1,64}")
CLIENT_ID_FORMAT = re.compile(r"cli_[a-z0-9]{1,64}")
SCOPE_FORMAT = re.compile(r"[-a-zA-Z0-9_]+( [-a-zA-Z0-9_]+)*")
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)
SEGMENT = re.compile(r"[A-Za-z0-9_-]*")  # base64url without padding (RFC 7515 section 2)
NOT_A_JWT = "The token is not a JWT (three base64url parts separated by dots)"

# The keys a token may be verified with: what load_public_keys lets through.
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class VerifyingECDSA(ec.ECDSA):
    """cryptography's ECDSA signature algorithm, made without importing cryptography's OpenSSL backend.

    `ec.ECDSA.__init__` imports `cryptography.hazmat.backends.openssl.backend`
    (its cffi bindings and the cipher modules, measured: about a twentieth of
    the gate's cold start) only to ask whether deterministic *signing* is
    supported; verifying is done by the key in cryptography's Rust core and
    reads `algorithm` alone. This sets what `ECDSA.__init__` sets for
    `deterministic_signing=False` and nothing else (a test compares both).
    """

    def __init__(self, algorithm: hashes.HashAlgorithm) -> None:
        self._algorithm = algorithm
        self._deterministic_signing = False


ES256_SIGNATURE = VerifyingECDSA(hashes.SHA256())


class TokenError(Exception):
    """The token is missing, malformed, expired, or not signed by a key we trust. The message says which."""


class TokenExpired(TokenError):
    """A token that was good and has expired: the client should get a new one."""


class AccessToken(Record):
    __slots__ = ("client_id", "customer_id", "expires", "scope", "version")
    customer_id: str  # sub
    client_id: str
    version: int  # ver: the credential's secret version
    scope: frozenset[str]  # product slugs
    expires: int  # exp

    def __init__(self, customer_id: str, client_id: str, version: int, scope: frozenset[str], expires: int) -> None:
        setfield(self, "customer_id", customer_id)
        setfield(self, "client_id", client_id)
        setfield(self, "version", version)
        setfield(self, "scope", scope)
        setfield(self, "expires", expires)

    def covers(self, product: str) -> bool:
        return product in self.scope


# --- Keys and their ids -------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(n: int, length: int | None = None) -> bytes:
    return n.to_bytes(length or max(1, (n.bit_length() + 7) // 8), "big")


def public_jwk(public_key: "PublicKeyTypes") -> dict[str, str]:
    """The public JWK members RFC 7638 hashes (EC P-256 or RSA)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise ConfigError(f"EC keys must be on P-256, not {public_key.curve.name}")
        numbers = public_key.public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": _b64url(_int_bytes(numbers.x, 32)),
            "y": _b64url(_int_bytes(numbers.y, 32)),
        }
    if isinstance(public_key, rsa.RSAPublicKey):
        rsa_numbers = public_key.public_numbers()
        return {"e": _b64url(_int_bytes(rsa_numbers.e)), "kty": "RSA", "n": _b64url(_int_bytes(rsa_numbers.n))}
    raise ConfigError(f"unsupported key type {type(public_key).__name__}")


def jwk_thumbprint(public_key: "PublicKeyTypes") -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` of tokens signed by this key's private half."""
    members = json.dumps(public_jwk(public_key), separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(members.encode()).digest())


def algorithm_check(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"JWT_ALGORITHM must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")


def key_check(key: "PublicKeyTypes | PrivateKeyTypes", algorithm: str, variable: str) -> None:
    """`key` (public or private) can sign or verify `algorithm`: EC P-256 for ES256, RSA of 2048 bits or more for RS256."""
    if algorithm == "ES256":
        fits = isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
            key.curve, ec.SECP256R1
        )
        wanted = "an EC P-256 key"
    else:
        fits = isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) and key.key_size >= 2048
        wanted = "an RSA key of at least 2048 bits"
    if not fits:
        raise ConfigError(f"{variable}: JWT_ALGORITHM {algorithm} needs {wanted}")


def load_public_keys(pem_text: str, algorithm: str) -> dict[str, PublicKey]:
    """{kid: public key} of every PEM block in `pem_text` (JWT_PUBLIC_KEY); each must suit `algorithm`."""
    algorithm_check(algorithm)
    keys: dict[str, PublicKey] = {}
    for number, block in enumerate(PEM_BLOCK.finditer(pem_text), 1):
        try:
            key = load_pem_public_key(block.group(0).encode())
        except ValueError as e:
            raise ConfigError(f"JWT_PUBLIC_KEY: key {number} is not a PEM public key: {e}") from e
        key_check(key, algorithm, f"JWT_PUBLIC_KEY (key {number})")
        keys[jwk_thumbprint(key)] = cast(PublicKey, key)  # key_check let only these through
    if not keys:
        raise ConfigError("JWT_PUBLIC_KEY holds no PEM public key")
    return keys


# --- Verification -------------------------------------------------------------------------------


class Verifier:
    """Checks access tokens, remembering the ones it has verified until they expire.

    A warm Lambda sees the same token many times (a client reuses it for five
    minutes); the cache, keyed by the whole token string, skips the signature
    check for exact repeats. It is bounded (least recently used goes first).
    Times are compared in whole seconds, as PyJWT does: a token has expired
    once `exp` <= now - leeway, and is not valid yet while `iat` or `nbf` > now + leeway.
    """

    def __init__(
        self,
        *,
        keys: Mapping[str, PublicKey],
        algorithm: str,
        issuer: str,
        audience: str,
        leeway: float,
        cache_size: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        algorithm_check(algorithm)
        self.keys = keys
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.cache_size = cache_size
        self.clock = clock
        self._cache: OrderedDict[str, AccessToken] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: str) -> AccessToken:
        with self._lock:
            known = self._cache.get(token)
            if known is not None:
                self._cache.move_to_end(token)
        if known is not None:
            if known.expires <= self.clock() - self.leeway:
                raise TokenExpired("The token has expired")
            return known
        access = self._verify(token)
        with self._lock:
            self._cache[token] = access
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return access

    def _verify(self, token: str) -> AccessToken:
        claims = self._signed_claims(token)
        missing = [name for name in CLAIMS if name != "jti" and claims.get(name) is None]
        if missing:
            raise TokenError(f"The token has no {', '.join(missing)} claim{'s' if len(missing) > 1 else ''}")
        if claims.get("jti") is None:
            raise TokenError("The token has no id (jti)")
        exp, iat, nbf = (_seconds(claims.get(name, 0)) for name in ("exp", "iat", "nbf"))
        now = self.clock()
        if exp <= now - self.leeway:
            raise TokenExpired("The token has expired")
        if iat > now + self.leeway or nbf > now + self.leeway:
            raise TokenError(f"The token is not yet valid ({'iat' if iat > now + self.leeway else 'nbf'})")
        if claims["iss"] != self.issuer:
            raise TokenError(f"The issuer (iss) is not {self.issuer}")
        aud = claims["aud"]
        audiences = [aud] if isinstance(aud, str) else aud
        if not (isinstance(audiences, list) and all(isinstance(a, str) for a in audiences)):
            raise TokenError("Audience (aud) must be a string or a list of strings")
        if self.audience not in audiences:
            raise TokenError(f"Audience (aud) is not {self.audience}")
        sub, client_id, ver, scope = claims["sub"], claims["client_id"], claims["ver"], claims["scope"]
        if not (isinstance(sub, str) and CUSTOMER_ID_FORMAT.fullmatch(sub)):
            raise TokenError("Subject must be a string: a customer id (cus_...)")
        if not (isinstance(client_id, str) and CLIENT_ID_FORMAT.fullmatch(client_id)):
            raise TokenError("The claim client_id is not a client id (cli_...)")
        if type(ver) is not int:
            raise TokenError("The claim ver is not an integer")
        if not (isinstance(scope, str) and SCOPE_FORMAT.fullmatch(scope)):
            raise TokenError("The claim scope is not product slugs separated by spaces")
        if not isinstance(claims["jti"], str):
            raise TokenError("The claim jti is not a string")
        return AccessToken(
            customer_id=sub, client_id=client_id, version=ver, scope=frozenset(scope.split()), expires=exp
        )

    def _signed_claims(self, token: str) -> dict[str, Any]:
        """The claims of a JWS compact token whose header suits us and whose signature checks out."""
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3 or not (parts[0] and parts[1] and all(SEGMENT.fullmatch(p) for p in parts)):
            raise TokenError(NOT_A_JWT)
        header = _json_segment(parts[0], "header is")
        if header.get("alg") != self.algorithm:
            raise TokenError(f"The alg value is not allowed: tokens here are signed with {self.algorithm}")
        if "crit" in header or header.get("b64", True) is False:
            raise TokenError("Critical header extensions (crit, b64) are not supported")
        typ = header.get("typ")
        if not (isinstance(typ, str) and typ.lower() in TOKEN_TYPES):
            raise TokenError(f"The token is not an access token (typ is not {TOKEN_TYPE})")
        kid = header.get("kid")
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("The token is signed with an unknown key (kid): not one of the keys we publish")
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
        signature = _b64decode(parts[2])
        try:
            if self.algorithm == "ES256":
                if len(signature) != 64 or not isinstance(key, ec.EllipticCurvePublicKey):
                    raise InvalidSignature
                r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                key.verify(encode_dss_signature(r, s), signing_input, ES256_SIGNATURE)
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            else:
                raise InvalidSignature
        except InvalidSignature:
            raise TokenError(
                "Signature verification failed: the token was altered, or its signature is not ours"
            ) from None
        return _json_segment(parts[1], "claims are")


def _seconds(value: object) -> int:
    """A NumericDate (RFC 7519: a JSON number of seconds since 1970) in whole seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenError("The claims exp, iat and nbf must be numbers (seconds since 1970)")
    return int(value)


def _b64decode(segment: str) -> bytes:
    """Strict base64url: only the one canonical spelling of the bytes (as PyJWT insists too)."""
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenError(NOT_A_JWT) from None
    if _b64url(data) != segment:
        raise TokenError(NOT_A_JWT)
    return data


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number a token may carry")  # NaN, Infinity: exp would never come


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment), parse_constant=_no_constant)
    except (ValueError, RecursionError):  # RecursionError: arrays nested past the interpreter's limit
        raise TokenError(f"The token's {what} not a JSON object") from None
    if not isinstance(value, dict):
        raise TokenError(f"The token's {what} not a JSON object")
    return value
