"""What the authorizer answers, modelled on Powertools' `APIGatewayAuthorizerResponse`
(REST: an IAM policy) and `APIGatewayAuthorizerResponseV2` (HTTP API simple response).

`context` values must be flat (string, number or boolean): API Gateway rejects
nested objects, and passes the values on as `$context.authorizer.<key>`.
"""

from typing import Any

from authorizer.record import Record, setfield

ContextValue = str | int | bool


class IamPolicyResponse(Record):
    """A REST API authorizer answer: Allow or Deny `execute-api:Invoke` on exactly the called method.

    Only the called method (not a wildcard): with result caching off, as a
    metered route must have it, a policy never outlives the call it was made for.
    """

    __slots__ = ("allow", "context", "principal_id", "resource")
    principal_id: str
    allow: bool
    resource: str
    context: dict[str, ContextValue]

    def __init__(
        self, principal_id: str, allow: bool, resource: str, context: dict[str, ContextValue] | None = None
    ) -> None:
        setfield(self, "principal_id", principal_id)
        setfield(self, "allow", allow)
        setfield(self, "resource", resource)
        setfield(self, "context", {} if context is None else context)

    def asdict(self) -> dict[str, Any]:
        return {
            "principalId": self.principal_id,
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Action": "execute-api:Invoke",
                        "Effect": "Allow" if self.allow else "Deny",
                        "Resource": [self.resource],
                    }
                ],
            },
            "context": dict(self.context),
        }


class SimpleResponse(Record):
    """An HTTP API (payload 2.0) simple response."""

    __slots__ = ("authorized", "context")
    authorized: bool
    context: dict[str, ContextValue]

    def __init__(self, authorized: bool, context: dict[str, ContextValue] | None = None) -> None:
        setfield(self, "authorized", authorized)
        setfield(self, "context", {} if context is None else context)

    def asdict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"isAuthorized": self.authorized}
        if self.context:
            answer["context"] = dict(self.context)
        return answer
