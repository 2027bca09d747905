"""Access-token verification (the contract: docs/api.md, "The token"; docs/architecture.md, "The decision").

An RFC 9068-style JWT (JWS compact serialization), verified with
`cryptography` directly: the gate needs one pinned algorithm (ES256 or RS256)
and a handful of claims, and PyJWT's import (x509, EdDSA, a JWKS client over
urllib) cost about 15 ms more of every cold start (bench/authorizer_cold.py).
The tests mint their tokens with PyJWT, so the two implementations check each other.

Only public keys are held here. The algorithm is pinned by configuration, never
taken from the token; the key is chosen by the token's `kid`, the RFC 7638
thumbprint of the public key, so several keys can be trusted at once while
signing keys rotate.
"""

import base64
import binascii
import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from authorizer.config import ConfigError

REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "client_id", "ver", "scope")
TOKEN_TYPES = {"at+jwt", "application/at+jwt"}
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)
SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


class TokenError(Exception):
    """The token is missing, malformed, expired, or not signed by a key we trust."""


@dataclass(frozen=True)
class AccessToken:
    customer_id: str  # sub
    client_id: str
    version: int  # ver: the credential's secret version
    scope: frozenset[str]  # product slugs
    expires: int  # exp

    def covers(self, product: str) -> bool:
        return product in self.scope


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(n: int, length: int | None = None) -> bytes:
    return n.to_bytes(length or max(1, (n.bit_length() + 7) // 8), "big")


def public_jwk(public_key) -> dict:
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
        numbers = public_key.public_numbers()
        return {"e": _b64url(_int_bytes(numbers.e)), "kty": "RSA", "n": _b64url(_int_bytes(numbers.n))}
    raise ConfigError(f"unsupported key type {type(public_key).__name__}")


def jwk_thumbprint(public_key) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` of tokens signed by this key's private half."""
    members = json.dumps(public_jwk(public_key), separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(members.encode()).digest())


KEY_TYPES = {"ES256": ec.EllipticCurvePublicKey, "RS256": rsa.RSAPublicKey}


def load_public_keys(pem_text: str, algorithm: str) -> dict[str, object]:
    """{kid: public key} of every PEM block in `pem_text`; each must suit `algorithm`."""
    keys = {}
    for block in PEM_BLOCK.finditer(pem_text):
        try:
            key = serialization.load_pem_public_key(block.group(0).encode())
        except ValueError as e:
            raise ConfigError(f"JWT_PUBLIC_KEY holds a PEM block that is not a public key: {e}") from e
        if not isinstance(key, KEY_TYPES[algorithm]):
            raise ConfigError(f"JWT_PUBLIC_KEY holds a {type(key).__name__}, which cannot verify {algorithm}")
        keys[jwk_thumbprint(key)] = key
    if not keys:
        raise ConfigError("JWT_PUBLIC_KEY holds no PEM public key")
    return keys


class Verifier:
    """Checks access tokens, remembering the ones it has verified until they expire.

    A warm Lambda sees the same token many times (a client reuses it for five
    minutes); the cache, keyed by the whole token string, skips the signature
    check for exact repeats. It is bounded (least recently used goes first).
    """

    def __init__(
        self,
        *,
        keys: dict,
        algorithm: str,
        issuer: str,
        audience: str,
        leeway: float,
        cache_size: int = 1024,
        clock=time.time,
    ):
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
            if self.clock() > known.expires + self.leeway:
                raise TokenError("the token has expired")
            return known
        access = self._verify(token)
        with self._lock:
            self._cache[token] = access
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return access

    def _verify(self, token: str) -> AccessToken:
        _header, claims = self._signed_parts(token)
        now = self.clock()
        for name in REQUIRED_CLAIMS:
            if claims.get(name) is None:
                raise TokenError(f"the {name} claim is missing")
        exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf", 0)
        if not all(_is_number(v) for v in (exp, iat, nbf)):
            raise TokenError("exp, iat and nbf must be numbers")
        if now > exp + self.leeway:
            raise TokenError("the token has expired")
        if iat > now + self.leeway or nbf > now + self.leeway:
            raise TokenError("the token is not valid yet")
        if claims["iss"] != self.issuer:
            raise TokenError("wrong issuer")
        aud = claims["aud"]
        if not (aud == self.audience or (isinstance(aud, list) and self.audience in aud)):
            raise TokenError("wrong audience")
        sub, client_id, ver, scope = claims["sub"], claims["client_id"], claims["ver"], claims["scope"]
        if not (isinstance(sub, str) and sub and isinstance(client_id, str) and client_id):
            raise TokenError("sub and client_id must be non-empty strings")
        if not isinstance(ver, int) or isinstance(ver, bool) or not isinstance(scope, str):
            raise TokenError("ver must be an integer and scope a string")
        return AccessToken(
            customer_id=sub, client_id=client_id, version=ver, scope=frozenset(scope.split()), expires=int(exp)
        )

    def _signed_parts(self, token: str) -> tuple[dict, dict]:
        """The header and claims of a JWS compact token whose signature checks out with a trusted key."""
        parts = token.split(".")
        if len(parts) != 3 or not all(SEGMENT.fullmatch(p) for p in parts):
            raise TokenError("malformed token")
        header = _json_segment(parts[0])
        if header.get("alg") != self.algorithm:
            raise TokenError("not the pinned algorithm")
        if "crit" in header:
            raise TokenError("critical header extensions are not supported")
        if str(header.get("typ", "")).lower() not in TOKEN_TYPES:
            raise TokenError("not an access token (typ)")
        key = self.keys.get(header.get("kid")) if isinstance(header.get("kid"), str) else None
        if key is None:
            raise TokenError("signed by a key we do not trust (kid)")
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
        signature = _b64decode(parts[2])
        try:
            if self.algorithm == "ES256":
                if len(signature) != 64:
                    raise InvalidSignature
                r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
            else:
                key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise TokenError("bad signature") from None
        return header, _json_segment(parts[1])


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _b64decode(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed token") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a token may carry")  # NaN, Infinity: exp would never come


def _json_segment(segment: str) -> dict:
    try:
        value = json.loads(_b64decode(segment), parse_constant=_no_constant)
    except (ValueError, RecursionError):  # RecursionError: arrays nested past the interpreter's limit
        raise TokenError("malformed token") from None
    if not isinstance(value, dict):
        raise TokenError("malformed token")
    return value
