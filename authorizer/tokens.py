"""Access-token verification (the contract: RFC 9068-style JWT, see README "The gate").

Only public keys are held here. The algorithm is pinned by configuration, never
taken from the token; the key is chosen by the token's `kid`, the RFC 7638
thumbprint of the public key, so several keys can be trusted at once while
signing keys rotate.
"""

import base64
import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authorizer.config import ConfigError

REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "client_id", "ver", "scope"]
TOKEN_TYPES = {"at+jwt", "application/at+jwt"}
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


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
        return {"crv": "P-256", "kty": "EC", "x": _b64url(_int_bytes(numbers.x, 32)), "y": _b64url(_int_bytes(numbers.y, 32))}
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
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise TokenError(f"malformed token: {e}") from e
        if str(header.get("typ", "")).lower() not in TOKEN_TYPES:
            raise TokenError("not an access token (typ)")
        key = self.keys.get(header.get("kid"))
        if key is None:
            raise TokenError("signed by a key we do not trust (kid)")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as e:
            raise TokenError(str(e)) from e
        sub, client_id, ver, scope, exp = (claims.get(k) for k in ("sub", "client_id", "ver", "scope", "exp"))
        if not (isinstance(sub, str) and sub and isinstance(client_id, str) and client_id):
            raise TokenError("sub and client_id must be non-empty strings")
        if not isinstance(ver, int) or isinstance(ver, bool) or not isinstance(scope, str):
            raise TokenError("ver must be an integer and scope a string")
        return AccessToken(
            customer_id=sub, client_id=client_id, version=ver, scope=frozenset(scope.split()), expires=int(exp)
        )
