"""The Lambda authorizer: `authorizer.handler.lambda_handler`.

Per call: find the token, verify it, find the product the called API serves,
check the token covers it, then spend the called route's cost with one conditional
`UpdateItem` on the mirror. Answers:

* allowed: REST -> an IAM policy allowing exactly the called method, `principalId`
  = the customer, context `customerId`, `product`, `remaining`, `credentialId`, `cost`
  (what the called route cost, authorizer/routes.py);
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

from authorizer import regexes  # noqa: E402

# The patterns compiled ahead (authorizer/regexes.py), before any module compiles one at import.
regexes.load()

from authorizer import deferred  # noqa: E402

# Before anything imports botocore or cryptography, and before logging (which imports traceback).
deferred.defer_heavy_imports()

import logging  # noqa: E402
import os  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from typing import Any  # noqa: E402

from authorizer import dynamodb  # noqa: E402
from authorizer.config import Config, ConfigError, config_from_env  # noqa: E402
from authorizer.events import AuthorizerEvent, BadEvent, event_view  # noqa: E402
from authorizer.gate import (  # noqa: E402
    CREDENTIAL_REVOKED,
    INTERNAL_ERROR,
    PRODUCT_NOT_IN_TOKEN,
    UNKNOWN_API,
    Gate,
)
from authorizer.keys import KEY_REVOKED, PRODUCT_NOT_IN_KEY, KeyHolder, KeyRing, find_credential, is_api_key  # noqa: E402
from authorizer.record import Record, setfield  # noqa: E402
from authorizer.responses import IamPolicyResponse, SimpleResponse  # noqa: E402
from authorizer.snapstart import register as register_snapstart_hooks  # noqa: E402
from authorizer.tokens import AccessToken, TokenError, Verifier, load_public_keys  # noqa: E402

logger = logging.getLogger("authorizer")
logger.setLevel(os.environ.get("AUTHORIZER_LOG_LEVEL", "INFO").upper())

UNAUTHORIZED = "Unauthorized"  # the exact message API Gateway turns into a 401


class Decision(Record):
    __slots__ = ("allow", "context", "principal_id", "reason", "unauthorized")
    allow: bool
    principal_id: str
    reason: str | None
    context: dict[str, Any]
    unauthorized: bool  # no usable token: 401, not a policy

    def __init__(
        self,
        allow: bool,
        principal_id: str = "unknown",
        reason: str | None = None,
        context: dict[str, Any] | None = None,
        unauthorized: bool = False,
    ) -> None:
        setfield(self, "allow", allow)
        setfield(self, "principal_id", principal_id)
        setfield(self, "reason", reason)
        setfield(self, "context", {} if context is None else context)
        setfield(self, "unauthorized", unauthorized)


class Runtime(Record):
    __slots__ = ("config", "gate", "keys", "verifier")
    config: Config
    verifier: Verifier
    gate: Gate
    keys: KeyRing

    def __init__(self, config: Config, verifier: Verifier, gate: Gate, keys: KeyRing) -> None:
        setfield(self, "config", config)
        setfield(self, "verifier", verifier)
        setfield(self, "gate", gate)
        setfield(self, "keys", keys)


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
    return Runtime(config=config, verifier=verifier, gate=gate, keys=KeyRing(read=gate.get_item, ttl=config.key_ttl))


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


def _caller(view: AuthorizerEvent, rt: Runtime) -> AccessToken | KeyHolder | Decision:
    """Who the call speaks for: a verified token or a key's holder; else the Decision to answer."""
    config = rt.config
    text = find_credential(
        view,
        token_header=config.token_header,
        bearer_required=config.bearer_required,
        token_query=config.token_query,
        key_header=config.key_header,
    )
    if text is None:
        return Decision(allow=False, unauthorized=True)
    if is_api_key(text):
        try:
            holder = rt.keys.holder(text)
        except Exception:
            logger.exception("internal error: the call is denied")
            return Decision(allow=False, reason=INTERNAL_ERROR)
        if holder is None:
            logger.info("unauthorized: an API key nobody has")
            return Decision(allow=False, unauthorized=True)
        return holder
    try:
        return rt.verifier.verify(text)
    except TokenError as e:
        logger.info("unauthorized: %s", e)
        return Decision(allow=False, unauthorized=True)


def decide(view: AuthorizerEvent, rt: Runtime) -> Decision:
    caller = _caller(view, rt)
    if isinstance(caller, Decision):
        return caller
    is_key = isinstance(caller, KeyHolder)

    def deny(reason: str | None) -> Decision:
        if is_key and reason == CREDENTIAL_REVOKED:
            reason = KEY_REVOKED  # the key's id is gone from the item's creds
        logger.info("deny %s: customer=%s client=%s api=%s", reason, caller.customer_id, caller.client_id, view.api_id)
        return Decision(allow=False, principal_id=caller.customer_id, reason=reason)

    if isinstance(caller, KeyHolder) and caller.revoked:
        return deny(KEY_REVOKED)
    try:
        route = rt.gate.resolve(view.api_id)
        product = route.product
        if product is None:
            return deny(UNKNOWN_API)
        if not caller.covers(product):
            return deny(PRODUCT_NOT_IN_KEY if is_key else PRODUCT_NOT_IN_TOKEN)
        call = view.call
        spend = rt.gate.spend(
            caller, product, cost=route.prices.cost(call), api_id=view.api_id, call=call, request_id=view.request_id
        )
    except Exception:
        logger.exception("internal error: the call is denied")
        return deny(INTERNAL_ERROR)
    if not spend.allowed:
        return deny(spend.reason)
    logger.debug("allow: customer=%s product=%s remaining=%s", caller.customer_id, product, spend.remaining)
    return Decision(
        allow=True,
        principal_id=caller.customer_id,
        context={
            "customerId": caller.customer_id,
            "product": product,
            "remaining": spend.remaining,
            "credentialId": caller.client_id,
            # What the call spent, for the access log: a failed call is credited back this (ledger/failed_calls.py).
            "cost": spend.cost,
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
