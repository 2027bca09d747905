"""GET /.well-known/jwks.json: the active public keys, and that they are all a verifier needs."""

from urllib.parse import urlencode

import jwt
import pytest

from accounts import keys
from authorizer.tokens import jwk_thumbprint
from ledger.services import credits_grant

URL = "/.well-known/jwks.json"


@pytest.fixture
def alice_credits(alice, products):
    credits_grant(customer=alice, product=products["weather"], amount=100)
    return alice


def get_token(client, customer) -> str:
    data = {
        "grant_type": "client_credentials",
        "client_id": customer.credential.client_id,
        "client_secret": customer.secret,
    }
    response = client.post("/api/token/", urlencode(data), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def verify_with_jwks_only(client, token: str, algorithm: str) -> dict:
    """What a third-party verifier does: fetch the JWKS, take the key the token's kid names, verify."""
    jwks = jwt.PyJWKSet.from_dict(client.get(URL).json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    return jwt.decode(token, key, algorithms=[algorithm], audience="creditportal-api", issuer="creditportal")


def test_it_lists_the_signing_key_as_a_public_jwk(client, jwt_keys):
    response = client.get(URL)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "max-age=300" in response["Cache-Control"] and "public" in response["Cache-Control"]
    [jwk] = response.json()["keys"]
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}  # no "d": nothing private
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"], jwk["kid"]) == ("EC", "P-256", "ES256", "sig", jwt_keys.kid)
    assert jwk_thumbprint(jwt.PyJWK(jwk).key) == jwk["kid"]  # anyone can check the kid


def test_a_token_verifies_with_nothing_but_the_jwks(client, alice_credits):
    claims = verify_with_jwks_only(client, get_token(client, alice_credits), "ES256")
    assert claims["sub"] == alice_credits.public_id


def test_two_active_keys_are_both_listed_and_a_token_of_the_second_verifies(client, settings, alice_credits, jwt_keys):
    old_token = get_token(client, alice_credits)
    # Rotation, step 2: the new key signs; the old one stays published until its tokens expire.
    new_private = keys.private_key_generate("ES256")
    new_public = keys.public_pem(new_private)
    settings.JWT = {
        **settings.JWT,
        "SIGNING_KEY": new_private,
        "VERIFYING_KEY": jwt_keys.public_pem + new_public,
    }

    kids = [jwk["kid"] for jwk in client.get(URL).json()["keys"]]
    new_token = get_token(client, alice_credits)

    assert kids == [jwt_keys.kid, keys.keyring().kid]
    assert jwt.get_unverified_header(new_token)["kid"] == kids[1]
    assert verify_with_jwks_only(client, new_token, "ES256")["sub"] == alice_credits.public_id
    assert verify_with_jwks_only(client, old_token, "ES256")["sub"] == alice_credits.public_id


def test_with_rs256_the_jwks_holds_rsa_keys_and_tokens_verify(client, settings, alice_credits):
    private = keys.private_key_generate("RS256")
    settings.JWT = {
        **settings.JWT,
        "ALGORITHM": "RS256",
        "SIGNING_KEY": private,
        "VERIFYING_KEY": keys.public_pem(private),
    }

    [jwk] = client.get(URL).json()["keys"]
    token = get_token(client, alice_credits)

    assert set(jwk) == {"kty", "n", "e", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["alg"]) == ("RSA", "RS256")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert verify_with_jwks_only(client, token, "RS256")["client_id"] == alice_credits.credential.client_id
    assert client.get("/api/balance/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
