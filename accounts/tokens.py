"""Access tokens, Django's side: who may have one (`credential_authenticate`) and the signed token
itself (`token_issue`). The contract, the keys' ids and the verifier are authorizer/tokens.py,
shared with the Lambda authorizer; tokens are signed here with PyJWT (accounts/keys.py holds the keys).

Nothing in a token is secret. `exp` is `iat` + 300 (`expires_in`); `jti` is a random uuid4 hex.
"""

import hmac
import time
import uuid

import jwt
from django.conf import settings
from django.core.exceptions import ValidationError

from accounts import keys
from accounts.models import Credential, hash_secret
from authorizer.tokens import CLAIMS, CLIENT_ID_FORMAT, TOKEN_TYPE
from ledger.selectors import credential_with_products, product_slugs_owned

__all__ = ["CLAIMS", "LIFETIME", "credential_authenticate", "token_issue"]

LIFETIME = 300  # seconds; part of the contract (expires_in)
_NO_SUCH_HASH = "0" * 64


def credential_authenticate(*, client_id: str, client_secret: str) -> Credential | None:
    """The credential `client_id` names, if `client_secret` is its secret; else None.

    One query (the credential, its customer and `credential.customer_products`, the slugs of the
    customer's products: token_issue needs no other), one keyed hash and a constant-time
    compare, whether or not the client id exists: timing does not tell which ids exist.
    Revoked credentials are returned too; token_issue refuses them, once the secret has been proved.
    """
    credential = credential_with_products(client_id=client_id) if CLIENT_ID_FORMAT.fullmatch(client_id) else None
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
    customer has no product yet (a token for nothing is of no use). Reads the
    customer's products unless `credential_authenticate` already did.
    """
    customer = credential.customer
    if credential.is_revoked:
        raise ValidationError(
            "This client id was revoked. Create a new credential in the portal.", code="invalid_client"
        )
    if not customer.is_active:
        raise ValidationError("This customer account is suspended.", code="invalid_client")
    owned = getattr(credential, "customer_products", None)
    owned = set(product_slugs_owned(customer=customer) if owned is None else owned)
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
    conf, ring = settings.JWT, keys.keyring()
    now = int(time.time())
    claims = {
        "iss": conf["ISSUER"],
        "aud": conf["AUDIENCE"],
        "sub": customer.public_id,
        "client_id": credential.client_id,
        "ver": credential.secret_version,
        "scope": " ".join(sorted(products)),
        "iat": now,
        "exp": now + LIFETIME,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, ring.signing_key, algorithm=ring.algorithm, headers={"kid": ring.kid, "typ": TOKEN_TYPE})
    return token, claims
