"""Access tokens: made and verified with simplejwt, signed with accounts/keys.py.

The contract the balance API and the Lambda authorizer rely on (RFC 9068 style):

    header  {"alg": "ES256" | "RS256", "typ": "at+jwt", "kid": <RFC 7638 thumbprint>}
    claims  iss        SIMPLE_JWT ISSUER (JWT_ISSUER, default "creditportal")
            aud        SIMPLE_JWT AUDIENCE (JWT_AUDIENCE, default "creditportal-api")
            sub        the customer's public id ("cus_..."), never a database id
            client_id  the credential's client id ("cli_...")
            ver        the credential's secret_version: a rotation or revocation
                       makes older tokens useless at once
            scope      space-separated product slugs, sorted ("maps weather")
            iat, exp   exp = iat + 300
            jti        random (uuid4 hex)

Nothing else, nothing secret. Verifiers pin the algorithm, pick the key by kid
(unknown kid: refuse), and check iss, aud, exp and iat (JWT_LEEWAY seconds of
skew) and that every claim above is present.
"""

import contextlib
import hmac
import re

from django.core.exceptions import ValidationError
from rest_framework_simplejwt import settings as simplejwt_settings
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import Token

from accounts import keys
from accounts.ids import CLIENT_ID_FORMAT
from accounts.models import Credential, hash_secret
from ledger.models import Balance

CLAIMS = ("iss", "aud", "sub", "client_id", "ver", "scope", "iat", "exp", "jti")
_CLIENT_ID = CLIENT_ID_FORMAT
_CLAIM_FORMATS = [
    ("sub", re.compile(r"cus_[a-z0-9]{1,64}"), "a customer id (cus_...)"),
    ("client_id", _CLIENT_ID, "a client id (cli_...)"),
    ("scope", re.compile(r"[-a-zA-Z0-9_]+( [-a-zA-Z0-9_]+)*"), "product slugs separated by spaces"),
]
_NO_SUCH_HASH = "0" * 64


class AccessToken(Token):
    """A machine access token: simplejwt's Token with our backend and claims.

    `AccessToken(raw)` verifies a token (signature by kid, pinned algorithm,
    iss, aud, exp, iat, required claims) or raises simplejwt's TokenError.
    """

    token_type = "access"  # simplejwt wants one; it is not a claim (the header's typ says it)

    @property
    def lifetime(self):
        return simplejwt_settings.api_settings.ACCESS_TOKEN_LIFETIME

    @property
    def token_backend(self) -> keys.AccessTokenBackend:
        return keys.token_backend()

    def __init__(self, token: str | bytes | None = None, verify: bool = True) -> None:
        super().__init__(token, verify)
        if token is None:
            # simplejwt starts a new token with its type claim; keep only the times and id.
            self.payload = {claim: self.payload[claim] for claim in ("iat", "exp", "jti")}

    @classmethod
    def for_credential(cls, credential: Credential, products: list[str]) -> "AccessToken":
        token = cls()
        token.payload.update(
            iss=token.token_backend.issuer,
            aud=token.token_backend.audience,
            sub=credential.customer.public_id,
            client_id=credential.client_id,
            ver=credential.secret_version,
            scope=" ".join(sorted(products)),
        )
        return token

    def verify(self) -> None:
        super().verify()  # exp and jti; PyJWT checked the signature, iss, aud and iat
        missing = [claim for claim in CLAIMS if claim not in self.payload]
        if missing:
            raise TokenError(f"Token has no {', '.join(missing)} claim")
        if type(self.payload["ver"]) is not int:
            raise TokenError("Token claim ver is not an integer")
        for claim, pattern, what in _CLAIM_FORMATS:
            value = self.payload[claim]
            if not isinstance(value, str) or not pattern.fullmatch(value):
                raise TokenError(f"Token claim {claim} is not {what}")

    def verify_token_type(self) -> None:
        pass  # the backend checked the header's typ

    @property
    def products(self) -> list[str]:
        return self.payload["scope"].split()


def credential_authenticate(*, client_id: str, client_secret: str) -> Credential | None:
    """The credential `client_id` names, if `client_secret` is its secret; else None.

    One keyed hash and a constant-time compare, whether or not the client id
    exists: timing does not tell which ids exist. Revoked credentials are
    returned too; token_issue refuses them, once the secret has been proved.
    """
    credential = None
    if _CLIENT_ID.fullmatch(client_id):
        with contextlib.suppress(Credential.DoesNotExist):
            credential = Credential.objects.select_related("customer").get(client_id=client_id)
    if credential is None:
        hmac.compare_digest(_NO_SUCH_HASH, hash_secret(client_secret))
        return None
    return credential if credential.check_secret(client_secret) else None


def token_issue(*, credential: Credential, scope: list[str] | None = None) -> tuple[str, dict]:
    """A signed access token for `credential` and its claims. Writes nothing.

    The token covers the customer's products (those it has a balance for), or
    the part of them `scope` names. Raises ValidationError with an RFC 6749
    error code: `invalid_client` for a revoked credential or a suspended
    customer, `invalid_scope` for a scope naming anything else, or when the
    customer has no product yet (a token for nothing is of no use).
    """
    customer = credential.customer
    if credential.is_revoked:
        raise ValidationError(
            "This client id was revoked. Create a new credential in the portal.", code="invalid_client"
        )
    if not customer.is_active:
        raise ValidationError("This customer account is suspended.", code="invalid_client")
    owned = set(Balance.objects.filter(customer=customer).values_list("product__slug", flat=True))
    if not owned:
        raise ValidationError(
            "This customer has no products yet: tokens are issued once credits for a product are bought.",
            code="invalid_scope",
        )
    products = owned if scope is None else set(scope)
    if not products:
        raise ValidationError("The scope names no product.", code="invalid_scope")
    unknown = sorted(products - owned)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ValidationError(
            f"Not among this customer's products: {shown}. The products are: {', '.join(sorted(owned))}.",
            code="invalid_scope",
        )
    token = AccessToken.for_credential(credential, sorted(products))
    return str(token), dict(token.payload)
