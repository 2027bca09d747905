"""How API Gateway reads a Lambda authorizer's IAM policy, for the local stand-in (local/gateway.py). Django-free."""

import re


def _arn_pattern(resource: str) -> re.Pattern:
    """An IAM resource pattern (`*` any run of characters, `?` one) as a regular expression."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in resource) + r"\Z")


def policy_effect(answer: dict, method_arn: str) -> str | None:
    """How an authorizer's IAM policy treats `method_arn`: "Deny" (an explicit deny wins),
    "Allow", or None (nothing matches: an implicit deny). ValueError if it is not a policy."""
    try:
        statements = answer["policyDocument"]["Statement"]
        answer["principalId"]  # API Gateway requires it
    except (KeyError, TypeError):
        raise ValueError("the authorizer's answer has no principalId or policyDocument.Statement") from None
    if isinstance(statements, dict):
        statements = [statements]
    effects = set()
    for statement in statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if not any(a in ("execute-api:Invoke", "execute-api:*", "*") for a in actions):
            continue
        if any(_arn_pattern(r).match(method_arn) for r in resources):
            effects.add(statement.get("Effect"))
    if "Deny" in effects:
        return "Deny"
    return "Allow" if "Allow" in effects else None
