"""The authorizer's settings, read from the environment once per cold start.

Lambda sets the environment before the handler module is imported, so the
handler reads it then (see `handler.reset()` for tests that change it).
"""

import os
from collections.abc import Mapping
from pathlib import Path

from authorizer.record import Record, setfield


class ConfigError(Exception):
    """The authorizer cannot decide anything with this configuration: every call is denied."""


class Config(Record):
    __slots__ = (
        "algorithm",
        "audience",
        "dynamodb_timeout",
        "issuer",
        "key_header",
        "key_ttl",
        "leeway",
        "product",
        "public_keys_pem",
        "route_ttl",
        "table",
        "token_header",
        "token_query",
    )
    table: str
    public_keys_pem: str
    algorithm: str
    issuer: str
    audience: str
    leeway: float
    product: str | None
    route_ttl: float
    token_header: str
    token_query: str | None
    dynamodb_timeout: float
    key_header: str
    key_ttl: float

    def __init__(
        self,
        table: str,
        public_keys_pem: str,
        algorithm: str = "ES256",
        issuer: str = "creditportal",
        audience: str = "creditportal-api",
        leeway: float = 5.0,
        # Pins one product instead of routing by API id (one authorizer per API).
        product: str | None = None,
        # How long an API id -> product route (or its absence) is remembered, in seconds.
        route_ttl: float = 60.0,
        # Where the token is: a header (case-insensitive), and optionally a query
        # string parameter, tried only when the header is absent.
        token_header: str = "Authorization",
        token_query: str | None = None,
        # How long one DynamoDB request may take before the call is denied, in seconds.
        dynamodb_timeout: float = 2.0,
        # Where an API key may also come (besides `Authorization: Bearer <key>`), and how long a key's
        # customer is remembered, in seconds (revocation does not wait for it: see authorizer/keys.py).
        key_header: str = "x-api-key",
        key_ttl: float = 60.0,
    ) -> None:
        setfield(self, "table", table)
        setfield(self, "public_keys_pem", public_keys_pem)
        setfield(self, "algorithm", algorithm)
        setfield(self, "issuer", issuer)
        setfield(self, "audience", audience)
        setfield(self, "leeway", leeway)
        setfield(self, "product", product)
        setfield(self, "route_ttl", route_ttl)
        setfield(self, "token_header", token_header)
        setfield(self, "token_query", token_query)
        setfield(self, "dynamodb_timeout", dynamodb_timeout)
        setfield(self, "key_header", key_header)
        setfield(self, "key_ttl", key_ttl)

    @property
    def bearer_required(self) -> bool:
        """In `Authorization` the token comes as `Bearer <jwt>`; a header of our own may carry it bare."""
        return self.token_header.lower() == "authorization"


def _secret(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "")
    if not value.strip() and environ.get(f"{name}_FILE"):
        try:
            value = Path(environ[f"{name}_FILE"]).read_text()
        except OSError as e:
            raise ConfigError(f"{name}_FILE cannot be read: {e}") from e
    return value.strip()


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} cannot be negative")
    return value


def config_from_env(environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    table = environ.get("MIRROR_TABLE", "").strip()
    if not table:
        raise ConfigError("MIRROR_TABLE is not set")
    keys = _secret(environ, "JWT_PUBLIC_KEY")
    if not keys:
        raise ConfigError("JWT_PUBLIC_KEY (or JWT_PUBLIC_KEY_FILE) is not set")
    algorithm = environ.get("JWT_ALGORITHM", "").strip() or "ES256"  # checked with the keys (authorizer.tokens)
    return Config(
        table=table,
        public_keys_pem=keys,
        algorithm=algorithm,
        issuer=environ.get("JWT_ISSUER", "").strip() or "creditportal",
        audience=environ.get("JWT_AUDIENCE", "").strip() or "creditportal-api",
        leeway=_number(environ, "JWT_LEEWAY", 5.0),
        product=environ.get("AUTHORIZER_PRODUCT", "").strip() or None,
        route_ttl=_number(environ, "AUTHORIZER_ROUTE_TTL", 60.0),
        token_header=environ.get("AUTHORIZER_TOKEN_HEADER", "").strip() or "Authorization",
        token_query=environ.get("AUTHORIZER_TOKEN_QUERY", "").strip() or None,
        dynamodb_timeout=_number(environ, "AUTHORIZER_DYNAMODB_TIMEOUT", 2.0) or 2.0,
        key_header=environ.get("AUTHORIZER_KEY_HEADER", "").strip() or "x-api-key",
        key_ttl=_number(environ, "AUTHORIZER_KEY_TTL", 60.0),
    )
