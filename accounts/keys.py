"""The keys access tokens are signed and verified with (Django's side; the contract and the
verifier are authorizer/tokens.py, shared with the Lambda authorizer).

Read from settings.JWT (filled from JWT_PRIVATE_KEY / JWT_PUBLIC_KEY, or their *_FILE
variants, in settings.py):
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

Keys are parsed once and cached; the cache is dropped when JWT, DEBUG or
JWT_DEV_KEY_DIR change (tests override them).
"""

import logging
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from authorizer.config import ConfigError
from authorizer.tokens import Verifier, algorithm_check, jwk_thumbprint, key_check, load_public_keys, public_jwk

logger = logging.getLogger(__name__)


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
    conf = settings.JWT
    algorithm = conf["ALGORITHM"]
    private, public = (conf["SIGNING_KEY"] or "").strip(), (conf["VERIFYING_KEY"] or "").strip()
    try:
        algorithm_check(algorithm)
        if not private and not public and settings.DEBUG:
            private, public = _dev_keys(algorithm)
        for variable, value in [("JWT_PRIVATE_KEY", private), ("JWT_PUBLIC_KEY", public)]:
            if not value:
                raise ImproperlyConfigured(f"{variable} (or {variable}_FILE) must be set to a PEM key")
        try:
            signing_key = serialization.load_pem_private_key(private.encode(), password=None)
        except (ValueError, TypeError) as e:
            raise ImproperlyConfigured(f"JWT_PRIVATE_KEY is not an unencrypted PEM private key: {e}") from e
        key_check(signing_key, algorithm, "JWT_PRIVATE_KEY")
        public_keys = load_public_keys(public, algorithm)
    except ConfigError as e:
        raise ImproperlyConfigured(str(e)) from e

    kid = jwk_thumbprint(signing_key.public_key())
    if kid not in public_keys:
        raise ImproperlyConfigured(
            "JWT_PUBLIC_KEY must include the public half of JWT_PRIVATE_KEY "
            f"(kid {kid}): tokens it signs would be refused"
        )
    return Keyring(algorithm=algorithm, signing_key=signing_key, kid=kid, public_keys=public_keys)


@lru_cache(maxsize=1)
def verifier() -> Verifier:
    """The authorizer's verifier, trusting the keyring's public keys (it remembers tokens it has verified)."""
    conf = settings.JWT
    ring = keyring()
    return Verifier(
        keys=ring.public_keys,
        algorithm=ring.algorithm,
        issuer=conf["ISSUER"],
        audience=conf["AUDIENCE"],
        leeway=conf["LEEWAY"],
    )


@receiver(setting_changed)
def _forget_keys(*, setting: str, **kwargs) -> None:
    if setting in ("JWT", "DEBUG", "JWT_DEV_KEY_DIR"):
        keyring.cache_clear()
        verifier.cache_clear()
