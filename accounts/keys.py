"""The keys access tokens are signed and verified with.

Read from SIMPLE_JWT (filled from JWT_PRIVATE_KEY / JWT_PUBLIC_KEY, or their
*_FILE variants, in settings.py):
- SIGNING_KEY: one PEM private key; it signs every new token.
- VERIFYING_KEY: one or more PEM public keys, concatenated. All of them are
  accepted, chosen by the token header's `kid`, so a new signing key can be
  published before it is used and an old one kept until its tokens expire.
  The signing key's public half must be among them.

A key's `kid` is its RFC 7638 JWK thumbprint (SHA-256, base64url, no padding):
anyone holding the public key computes the same id. It is computed by the
authorizer's own function, so the issuer and the gate cannot disagree on it.

In DEBUG with no keys configured, a development key pair is generated once
into JWT_DEV_KEY_DIR (outside the repository). Without DEBUG, missing keys are
an ImproperlyConfigured error naming the variable to set.

Keys are parsed once and cached; the cache is dropped when SIMPLE_JWT, DEBUG or
JWT_DEV_KEY_DIR change (tests override them).
"""

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from rest_framework_simplejwt import settings as simplejwt_settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenBackendError

from authorizer.tokens import jwk_thumbprint, public_jwk

logger = logging.getLogger(__name__)

ALGORITHMS = ("ES256", "RS256")
TOKEN_TYP = "at+jwt"  # RFC 9068 access token
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def private_key_generate(algorithm: str) -> str:
    """A new private key fit for `algorithm`, as PKCS#8 PEM."""
    if algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key(private_pem: str) -> Any:
    """The public half of a PEM private key."""
    return serialization.load_pem_private_key(private_pem.encode(), password=None).public_key()


def public_pem(private_pem: str) -> str:
    """The public half of a PEM private key, as PEM."""
    return (
        public_key(private_pem)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _check_fits(key: Any, algorithm: str, variable: str) -> None:
    if algorithm == "ES256":
        fits = isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and isinstance(
            key.curve, ec.SECP256R1
        )
        wanted = "an EC P-256 key"
    else:
        fits = isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) and key.key_size >= 2048
        wanted = "an RSA key of at least 2048 bits"
    if not fits:
        raise ImproperlyConfigured(f"{variable}: JWT_ALGORITHM {algorithm} needs {wanted}")


@dataclass(frozen=True)
class Keyring:
    algorithm: str
    signing_key: Any  # a cryptography private key
    kid: str  # the signing key's kid
    public_keys: dict[str, Any]  # kid -> cryptography public key, every key a token may be signed with

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The active public keys as a JWK Set (RFC 7517)."""
        return {
            "keys": [
                {**public_jwk(key), "kid": kid, "alg": self.algorithm, "use": "sig"}
                for kid, key in self.public_keys.items()
            ]
        }


def _dev_keys(algorithm: str) -> tuple[str, str]:
    """The development key pair in JWT_DEV_KEY_DIR, generated on first use."""
    directory = Path(settings.JWT_DEV_KEY_DIR)
    private_path = directory / f"{algorithm.lower()}-private.pem"
    if not private_path.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Write aside, then link into place: if two processes (runserver and
        # its reloader) race, one key wins and both use it.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(private_key_generate(algorithm))
            os.link(tmp, private_path)
            logger.warning(
                "Generated a development JWT signing key in %s. Set JWT_PRIVATE_KEY and JWT_PUBLIC_KEY outside DEBUG.",
                private_path,
            )
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    private = private_path.read_text()
    public = public_pem(private)
    public_path = directory / f"{algorithm.lower()}-public.pem"  # for a local authorizer to read
    if not public_path.exists():
        public_path.write_text(public)
    return private, public


@lru_cache(maxsize=1)
def keyring() -> Keyring:
    conf = simplejwt_settings.api_settings
    algorithm = conf.ALGORITHM
    if algorithm not in ALGORITHMS:
        raise ImproperlyConfigured(f"JWT_ALGORITHM must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
    private, public = (conf.SIGNING_KEY or "").strip(), (conf.VERIFYING_KEY or "").strip()
    if not private and not public and settings.DEBUG:
        private, public = _dev_keys(algorithm)
    for variable, value in [("JWT_PRIVATE_KEY", private), ("JWT_PUBLIC_KEY", public)]:
        if not value:
            raise ImproperlyConfigured(f"{variable} (or {variable}_FILE) must be set to a PEM key")

    try:
        signing_key = serialization.load_pem_private_key(private.encode(), password=None)
    except (ValueError, TypeError) as e:
        raise ImproperlyConfigured(f"JWT_PRIVATE_KEY is not an unencrypted PEM private key: {e}") from e
    _check_fits(signing_key, algorithm, "JWT_PRIVATE_KEY")

    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(public)]
    if not blocks:
        raise ImproperlyConfigured("JWT_PUBLIC_KEY holds no PEM public key")
    public_keys = {}
    for number, block in enumerate(blocks, 1):
        try:
            key = serialization.load_pem_public_key(block.encode())
        except ValueError as e:
            raise ImproperlyConfigured(f"JWT_PUBLIC_KEY: key {number} is not a PEM public key: {e}") from e
        _check_fits(key, algorithm, f"JWT_PUBLIC_KEY (key {number})")
        public_keys[jwk_thumbprint(key)] = key

    kid = jwk_thumbprint(signing_key.public_key())
    if kid not in public_keys:
        raise ImproperlyConfigured(
            "JWT_PUBLIC_KEY must include the public half of JWT_PRIVATE_KEY "
            f"(kid {kid}): tokens it signs would be refused"
        )
    return Keyring(algorithm=algorithm, signing_key=signing_key, kid=kid, public_keys=public_keys)


class AccessTokenBackend(TokenBackend):
    """simplejwt's backend with our two additions: the header names the key
    (`kid`) and the token type (`typ: at+jwt`), and a token is verified with
    the active public key its `kid` names. The algorithm stays pinned:
    simplejwt passes only ours to PyJWT, whatever the header says."""

    def __init__(self, *, keys: Keyring, issuer: str, audience: str, leeway: int) -> None:
        super().__init__(keys.algorithm, signing_key=None, audience=audience, issuer=issuer, leeway=leeway)
        self.keys = keys

    def encode(self, payload: dict[str, Any]) -> str:
        payload = {**payload, "iss": self.issuer, "aud": self.audience}
        return jwt.encode(
            payload, self.keys.signing_key, algorithm=self.algorithm, headers={"kid": self.keys.kid, "typ": TOKEN_TYP}
        )

    def get_verifying_key(self, token: str | bytes) -> Any:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as e:
            raise TokenBackendError(f"Token is malformed: {e}") from e
        if str(header.get("typ", "")).lower() not in (TOKEN_TYP, f"application/{TOKEN_TYP}"):
            raise TokenBackendError(f"Token is not an access token (typ is not {TOKEN_TYP})")
        key = self.keys.public_keys.get(header.get("kid"))
        if key is None:
            raise TokenBackendError("Token is signed with an unknown key (kid)")
        return key


@lru_cache(maxsize=1)
def token_backend() -> AccessTokenBackend:
    conf = simplejwt_settings.api_settings
    return AccessTokenBackend(keys=keyring(), issuer=conf.ISSUER, audience=conf.AUDIENCE, leeway=conf.LEEWAY)


@receiver(setting_changed)
def _forget_keys(*, setting: str, **kwargs) -> None:
    if setting in ("SIMPLE_JWT", "DEBUG", "JWT_DEV_KEY_DIR"):
        keyring.cache_clear()
        token_backend.cache_clear()
