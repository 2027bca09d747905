"""The Lambda authorizer: `authorizer.handler.lambda_handler`.

Per call: find the token, verify it, find the product the called API serves,
check the token covers it, then spend the product's cost with one conditional
`UpdateItem` on the mirror. Answers:

* allowed: REST -> an IAM policy allowing exactly the called method, `principalId`
  = the customer, context `customerId`, `product`, `remaining`, `credentialId`;
  HTTP API -> `{"isAuthorized": true, "context": {...}}`.
* refused for a valid token (no credits, suspended, revoked, other product,
  unknown API, internal error): REST -> a Deny policy with `context.reason`
  (API Gateway answers 403); HTTP API -> `{"isAuthorized": false, "context": {"reason": ...}}`.
* no usable token (missing, malformed, expired, forged): REST -> raise
  `Exception("Unauthorized")` (API Gateway answers 401); HTTP API -> `{"isAuthorized": false}`.

It fails closed: any error becomes a Deny with reason `internal_error`, never
an Allow, and a refused token never reaches DynamoDB.

Imports nothing from Django or outside `authorizer/`, and botocore rather than
boto3 (boto3 would also load s3transfer and the resource layer, which a
cold start pays for and the gate never uses); its botocore client knows the
two operations the gate sends and leaves botocore's docs machinery unloaded
(see authorizer/dynamodb.py and authorizer/deferred.py).
"""

import gc

# Cold start: importing botocore and building its client allocate hundreds of
# thousands of objects, and the cyclic garbage collector would walk them again
# and again for nothing (measured: about a sixth of a cold start). Collection
# is off until the module is set up, then everything made so far is frozen out
# of later collections (see the end of this module and bench/authorizer_cold.py).
gc.disable()

import logging  # noqa: E402
import os  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from authorizer import deferred  # noqa: E402

deferred.defer_heavy_imports()  # before anything imports botocore or cryptography

from authorizer import dynamodb  # noqa: E402
from authorizer.config import Config, ConfigError, config_from_env  # noqa: E402
from authorizer.events import AuthorizerEvent, BadEvent, event_view  # noqa: E402
from authorizer.gate import INTERNAL_ERROR, PRODUCT_NOT_IN_TOKEN, UNKNOWN_API, Gate  # noqa: E402
from authorizer.responses import IamPolicyResponse, SimpleResponse  # noqa: E402
from authorizer.snapstart import register as register_snapstart_hooks  # noqa: E402
from authorizer.tokens import TokenError, Verifier, load_public_keys  # noqa: E402

logger = logging.getLogger("authorizer")
logger.setLevel(os.environ.get("AUTHORIZER_LOG_LEVEL", "INFO").upper())

UNAUTHORIZED = "Unauthorized"  # the exact message API Gateway turns into a 401


@dataclass(frozen=True)
class Decision:
    allow: bool
    principal_id: str = "unknown"
    reason: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    unauthorized: bool = False  # no usable token: 401, not a policy


@dataclass(frozen=True)
class Runtime:
    config: Config
    verifier: Verifier
    gate: Gate


def runtime_from_env(environ: Mapping[str, str] | None = None) -> Runtime:
    config = config_from_env(environ)
    verifier = Verifier(
        keys=load_public_keys(config.public_keys_pem, config.algorithm),
        algorithm=config.algorithm,
        issuer=config.issuer,
        audience=config.audience,
        leeway=config.leeway,
    )
    gate = Gate(
        client=dynamodb.client(read_timeout=config.dynamodb_timeout),
        table=config.table,
        route_ttl=config.route_ttl,
        product=config.product,
    )
    return Runtime(config=config, verifier=verifier, gate=gate)


_runtime: Runtime | None = None


def reset() -> None:
    """Read the environment again and start afresh (new client, empty caches).

    Runs once when Lambda imports this module (the init phase); tests call it
    after changing the environment.
    """
    global _runtime
    _runtime = None
    try:
        _runtime = runtime_from_env()
    except Exception as e:  # noqa: BLE001 - a bad configuration must not break the import; calls deny
        logger.error("authorizer not configured: %s", e)


def runtime() -> Runtime:
    """The configured runtime; tried again per call while the configuration is broken."""
    if _runtime is None:
        reset()
    if _runtime is None:
        raise ConfigError("the authorizer is not configured (see the log)")
    return _runtime


def decide(view: AuthorizerEvent, rt: Runtime) -> Decision:
    config = rt.config
    token_text = view.token(
        header=config.token_header, scheme_required=config.bearer_required, query=config.token_query
    )
    if token_text is None:
        return Decision(allow=False, unauthorized=True)
    try:
        token = rt.verifier.verify(token_text)
    except TokenError as e:
        logger.info("unauthorized: %s", e)
        return Decision(allow=False, unauthorized=True)

    def deny(reason: str | None) -> Decision:
        logger.info("deny %s: customer=%s client=%s api=%s", reason, token.customer_id, token.client_id, view.api_id)
        return Decision(allow=False, principal_id=token.customer_id, reason=reason)

    try:
        product = rt.gate.product_for(view.api_id)
        if product is None:
            return deny(UNKNOWN_API)
        if not token.covers(product):
            return deny(PRODUCT_NOT_IN_TOKEN)
        spend = rt.gate.spend(token, product)
    except Exception:
        logger.exception("internal error: the call is denied")
        return deny(INTERNAL_ERROR)
    if not spend.allowed:
        return deny(spend.reason)
    logger.debug("allow: customer=%s product=%s remaining=%s", token.customer_id, product, spend.remaining)
    return Decision(
        allow=True,
        principal_id=token.customer_id,
        context={
            "customerId": token.customer_id,
            "product": product,
            "remaining": spend.remaining,
            "credentialId": token.client_id,
        },
    )


def lambda_handler(event: object, context: object) -> dict[str, Any]:
    try:
        view = event_view(event)
    except BadEvent as e:
        logger.error("not an authorizer event: %s", e)
        raise Exception(UNAUTHORIZED) from None
    try:
        decision = decide(view, runtime())
    except Exception:
        logger.exception("internal error: the call is denied")
        decision = Decision(allow=False, reason=INTERNAL_ERROR)

    if decision.unauthorized:
        if view.http_api:
            return SimpleResponse(authorized=False).asdict()
        raise Exception(UNAUTHORIZED)
    context_values = decision.context if decision.allow else {"reason": decision.reason}
    if view.http_api:
        return SimpleResponse(authorized=decision.allow, context=context_values).asdict()
    return IamPolicyResponse(
        principal_id=decision.principal_id, allow=decision.allow, resource=view.arn, context=context_values
    ).asdict()


try:
    reset()
    register_snapstart_hooks(runtime)  # only on Lambda's runtime, where SnapStart calls them
finally:
    gc.freeze()
    gc.enable()
