"""accounts.tokens.token_issue: the service behind /api/token/, which other parts call to get real tokens."""

import jwt
import pytest
from django.core.exceptions import ValidationError

from accounts import keys
from accounts.services import credential_revoke, customer_suspend
from accounts.tokens import credential_authenticate, token_issue
from ledger.services import credits_grant


@pytest.fixture
def alice_credits(alice, products):
    credits_grant(customer=alice, product=products["weather"], amount=10)
    credits_grant(customer=alice, product=products["maps"], amount=10)
    return alice


def test_it_returns_the_signed_token_and_its_claims(alice_credits, jwt_keys):
    token, claims = token_issue(credential=alice_credits.credential)

    assert (
        jwt.decode(token, jwt_keys.public_pem, algorithms=["ES256"], audience=jwt_keys.audience, issuer=jwt_keys.issuer)
        == claims
    )
    assert claims["scope"] == "maps weather"
    assert keys.verifier().verify(token).scope == {"maps", "weather"}  # and our own verifier takes it


def test_a_scope_narrows_it(alice_credits):
    _, claims = token_issue(credential=alice_credits.credential, scope=["weather"])
    assert claims["scope"] == "weather"


@pytest.mark.parametrize(
    "scope, says",
    [([], "names no product"), (["geo"], "Not among this customer's products: geo")],
)
def test_a_scope_beyond_the_customers_products_is_refused(alice_credits, scope, says):
    with pytest.raises(ValidationError, match=says) as refused:
        token_issue(credential=alice_credits.credential, scope=scope)
    assert refused.value.code == "invalid_scope"


def test_revoked_credentials_and_suspended_customers_get_nothing(alice_credits, bob, products):
    credits_grant(customer=bob, product=products["weather"], amount=1)
    credential_revoke(credential=alice_credits.credential)
    customer_suspend(customer=bob)

    for credential, says in [(alice_credits.credential, "revoked"), (bob.credential, "suspended")]:
        credential.refresh_from_db()
        with pytest.raises(ValidationError, match=says) as refused:
            token_issue(credential=credential)
        assert refused.value.code == "invalid_client"


def test_credential_authenticate_needs_the_right_secret(alice, bob):
    assert credential_authenticate(client_id=alice.credential.client_id, client_secret=alice.secret) == alice.credential
    assert credential_authenticate(client_id=alice.credential.client_id, client_secret=bob.secret) is None
    assert credential_authenticate(client_id="cli_unknown", client_secret=alice.secret) is None
    assert credential_authenticate(client_id="not an id\x00", client_secret=alice.secret) is None
