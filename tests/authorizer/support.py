"""Django-free helpers for the gate's tests: a test key pair, access tokens per the
contract (as Django's token endpoint issues them), API Gateway events, mirror items."""

import json
import os
import secrets
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authorizer import mirror
from authorizer.tokens import jwk_thumbprint

EVENTS = Path(__file__).parent / "events"
EVENT_KINDS = ["rest_token", "rest_request", "http_api_v2"]
EVENT_API_ID = "abcdef123"  # the API id in the sample events
ISSUER = "creditportal"
AUDIENCE = "creditportal-api"


@dataclass(frozen=True)
class KeyPair:
    private_key: object
    algorithm: str

    @classmethod
    def generate(cls, algorithm: str = "ES256") -> "KeyPair":
        if algorithm == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()), algorithm)
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm)

    @cached_property
    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    @cached_property
    def kid(self) -> str:
        return jwk_thumbprint(self.private_key.public_key())


KEY = KeyPair.generate("ES256")


def mint(
    *,
    sub: str,
    client_id: str,
    ver: int,
    scope: str,
    key: KeyPair = KEY,
    iat: int | None = None,
    lifetime: int = 300,
    headers: dict | None = None,
    drop: tuple[str, ...] = (),
    **claims,
) -> str:
    """An access token as the contract says (override or `drop` claims to forge bad ones)."""
    iat = int(time.time()) if iat is None else iat
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "client_id": client_id,
        "ver": ver,
        "scope": scope,
        "iat": iat,
        "exp": iat + lifetime,
        "jti": secrets.token_urlsafe(12),
    } | claims
    for name in drop:
        payload.pop(name)
    header = {"typ": "at+jwt", "kid": key.kid} | (headers or {})
    return jwt.encode(payload, key.private_key, algorithm=key.algorithm, headers=header)


def full_dynamodb_client():
    """A plain botocore DynamoDB client (every operation) to set the mirror up and read it back:
    the gate's own knows only GetItem and UpdateItem. botocore reads AWS_ENDPOINT_URL itself."""
    import botocore.session

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return botocore.session.get_session().create_client("dynamodb", region_name=region)


def load_event(kind: str, *, token: str | None, api_id: str = EVENT_API_ID) -> dict:
    """A sample event from tests/authorizer/events/, carrying `Bearer <token>` (None: no token at all)."""
    text = (EVENTS / f"{kind}.json").read_text().replace(EVENT_API_ID, api_id)
    event = json.loads(text.replace("{caller-supplied-token}", token or ""))
    if token is None:
        for headers in (event.get("headers"), event.get("multiValueHeaders")):
            for name in [n for n in (headers or {}) if n.lower() == "authorization"]:
                del headers[name]
        event.pop("authorizationToken", None)
        event.pop("identitySource", None)
    return event


def gate_environ(key: KeyPair = KEY, **overrides) -> dict[str, str]:
    """The authorizer's environment for tests (MIRROR_TABLE and AWS_ENDPOINT_URL come from the test session)."""
    return {
        "JWT_PUBLIC_KEY": key.public_pem,
        "JWT_ALGORITHM": key.algorithm,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
    } | overrides


def balance_item(
    *,
    customer: str,
    product: str,
    granted: int,
    used: int = 0,
    cost: int = 1,
    active: bool = True,
    product_active: bool = True,
    creds: dict[str, int],
    version: int = 1,
    route_costs: tuple[int, ...] = (),
) -> dict:
    """A balance item as Django writes it (typed, for put_item); `route_costs`: the product's route prices' costs."""
    return mirror.balance_key(customer, product) | {
        mirror.GRANTED: {"N": str(granted)},
        mirror.USED: {"N": str(used)},
        mirror.COST: {"N": str(cost)},
        mirror.CEILING: {"N": str(granted - cost)},
        mirror.CEILINGS: {"M": {str(c): {"N": str(granted - c)} for c in set(route_costs) if c > 0}},
        mirror.ACTIVE: {"BOOL": active},
        mirror.PRODUCT_ACTIVE: {"BOOL": product_active},
        mirror.CREDS: {"M": {cid: {"N": str(v)} for cid, v in creds.items()}},
        mirror.VERSION: {"N": str(version)},
    }


def route_item(api_id: str, product: str, version: int = 1, routes: dict[str, int] | None = None) -> dict:
    """A route item as Django writes it; `routes`: the product's route prices ({"POST /jobs": 10})."""
    return mirror.route_key(api_id) | {
        mirror.PRODUCT: {"S": product},
        mirror.ROUTES: {"M": {route: {"N": str(cost)} for route, cost in (routes or {}).items()}},
        mirror.VERSION: {"N": str(version)},
    }


def key_item(key: str, *, key_id: str, customer: str, products: tuple[str, ...] = (), revoked: bool = False) -> dict:
    """An API key's item as Django writes it (typed, for put_item)."""
    from authorizer.keys import key_hash

    return mirror.key_key(key_hash(key)) | {
        mirror.KEY_ID: {"S": key_id},
        mirror.CUSTOMER: {"S": customer},
        mirror.PRODUCTS: {"L": [{"S": p} for p in products]},
        mirror.REVOKED: {"BOOL": revoked},
        mirror.VERSION: {"N": "2" if revoked else "1"},
    }


def key_event(kind: str, key: str, *, how: str = "x-api-key", api_id: str = EVENT_API_ID) -> dict:
    """A sample event carrying an API key: `x-api-key: <key>` (for a REST TOKEN authorizer whose identity
    source is that header: the bare key) or `Authorization: Bearer <key>`."""
    if how == "bearer":
        return load_event(kind, token=key, api_id=api_id)
    event = load_event(kind, token=None, api_id=api_id)
    if kind == "rest_token":
        event["authorizationToken"] = key
    elif kind == "rest_request":
        event["headers"]["x-api-key"] = key
        event["multiValueHeaders"]["x-api-key"] = [key]
    else:
        event["headers"]["x-api-key"] = key
        event["identitySource"] = [key]
    return event


def called(
    kind: str, method: str, template: str, path: str, *, token: str = "tok.en.value", api_id: str = "wthr000001"
) -> dict:
    """The sample event of `kind`, for a request `method path` that API Gateway routed to `template`
    (the REST resource or HTTP API route path) — each kind carries what AWS documents it carries."""
    event = load_event(kind, token=token, api_id=api_id)
    arn = f"arn:aws:execute-api:us-east-1:123456789012:{api_id}"
    if kind == "rest_token":  # only the method ARN: the concrete path
        event["methodArn"] = f"{arn}/prod/{method}{path}"
    elif kind == "rest_request":
        event.update(methodArn=f"{arn}/test/{method}{path}", resource=template, path=path, httpMethod=method)
        event["requestContext"].update(resourcePath=template, httpMethod=method, path=f"/test{path}")
    else:
        route_key = "$default" if template == "$default" else f"{method} {template}"
        event.update(routeArn=f"{arn}/$default/{method}{path}", routeKey=route_key, rawPath=path)
        event["requestContext"].update(routeKey=route_key)
        event["requestContext"]["http"].update(method=method, path=path)
    return event


class RequestCounter:
    """Counts the HTTP requests a botocore client sends (a botocore event hook, nothing patched)."""

    def __init__(self, client):
        self.operations: list[str] = []
        self._client = client
        client.meta.events.register("before-send.dynamodb", self._count)

    def stop(self) -> None:
        """Count no more: for a client that outlives the test (Django's cached mirror client)."""
        self._client.meta.events.unregister("before-send.dynamodb", self._count)

    def _count(self, request, **kwargs):
        target = request.headers.get("X-Amz-Target", "")
        target = target.decode() if isinstance(target, bytes) else target
        self.operations.append(target.rsplit(".", 1)[-1])
        return  # None: botocore sends the request as usual
