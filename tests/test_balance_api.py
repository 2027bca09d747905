"""GET /api/balance/: the customer's balances for a valid access token; 401 for anything else; spends nothing."""

import base64
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import urlencode

import jwt
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import keys
from accounts.models import Credential, Customer
from accounts.services import credential_revoke, credential_rotate, customer_reactivate, customer_suspend
from authorizer.tokens import jwk_thumbprint
from ledger.models import Balance, LedgerEntry
from ledger.services import credits_grant, usage_record

URL = "/api/balance/"


@pytest.fixture
def alice_credits(alice, products):
    """Alice bought 100 weather and 50 maps credits and has spent 7 weather credits."""
    credits_grant(customer=alice, product=products["weather"], amount=100)
    credits_grant(customer=alice, product=products["maps"], amount=50)
    usage_record(customer=alice, product=products["weather"], amount=7)
    return alice


@pytest.fixture
def bob_credits(bob, products):
    credits_grant(customer=bob, product=products["weather"], amount=3)
    return bob


def get_token(client, customer, **more) -> str:
    data = {
        "grant_type": "client_credentials",
        "client_id": customer.credential.client_id,
        "client_secret": customer.secret,
    }
    response = client.post("/api/token/", urlencode({**data, **more}), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def mint(customer, jwt_keys, *, key=None, headers=None, **changes) -> str:
    """A token signed by hand (with the session key unless `key`); a claim or header set to None is left out."""
    now = int(time.time())
    claims = {
        "iss": jwt_keys.issuer,
        "aud": jwt_keys.audience,
        "sub": customer.public_id,
        "client_id": customer.credential.client_id,
        "ver": customer.credential.secret_version,
        "scope": "maps weather",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        **changes,
    }
    claims = {name: value for name, value in claims.items() if value is not None}
    headers = {"kid": jwt_keys.kid, "typ": "at+jwt", **(headers or {})}
    headers = {name: value for name, value in headers.items() if value is not None}
    return jwt.encode(claims, key or jwt_keys.private_pem, algorithm="ES256", headers=headers)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def balance(client, token: str):
    return client.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}")


def assert_refused(response, says: str):
    assert response.status_code == 401, response.content
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="creditportal", error="invalid_token", error_description="')
    assert says in challenge
    assert says in response.json()["detail"]
    assert "balances" not in response.json()


def test_it_shows_the_customers_balances_per_product(client, alice_credits):
    response = balance(client, get_token(client, alice_credits))

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "customer": alice_credits.public_id,
        "balances": [
            {
                "product": "maps",
                "name": "Maps API",
                "granted": 50,
                "used": 0,
                "remaining": 50,
                "credited_back_calls": 0,
                "credited_back": 0,
                "cost_per_call": 2,
                "routes": [],
            },
            {
                "product": "weather",
                "name": "Weather API",
                "granted": 100,
                "used": 7,
                "remaining": 93,
                "credited_back_calls": 0,
                "credited_back": 0,
                "cost_per_call": 1,
                "routes": [],
            },
        ],
    }


def test_it_lists_each_products_route_prices(client, alice_credits):
    from ledger.services import product_upsert

    product_upsert(slug="weather", name="Weather API", routes={"POST /jobs": 10, "GET /health": 0, "ANY /{proxy+}": 2})
    weather = balance(client, get_token(client, alice_credits)).json()["balances"][1]
    assert (weather["product"], weather["cost_per_call"]) == ("weather", 1)
    assert weather["routes"] == [
        {"route": "ANY /{proxy+}", "cost": 2},
        {"route": "GET /health", "cost": 0},
        {"route": "POST /jobs", "cost": 10},
    ]


def test_a_narrowed_token_shows_only_its_products(client, alice_credits):
    response = balance(client, get_token(client, alice_credits, scope="maps"))

    assert [b["product"] for b in response.json()["balances"]] == ["maps"]


def test_alice_never_sees_bobs_balances(client, alice_credits, bob_credits, jwt_keys):
    alices = balance(client, get_token(client, alice_credits)).json()
    bobs = balance(client, get_token(client, bob_credits)).json()

    assert alices["customer"] == alice_credits.public_id
    assert [(b["product"], b["granted"]) for b in alices["balances"]] == [("maps", 50), ("weather", 100)]
    assert bobs == {
        "customer": bob_credits.public_id,
        "balances": [
            {
                "product": "weather",
                "name": "Weather API",
                "granted": 3,
                "used": 0,
                "remaining": 3,
                "credited_back_calls": 0,
                "credited_back": 0,
                "cost_per_call": 1,
                "routes": [],
            }
        ],
    }
    # A token with bob's sub but alice's credential is refused, not answered for either.
    assert_refused(balance(client, mint(alice_credits, jwt_keys, sub=bob_credits.public_id)), "no known client")


def test_asking_spends_nothing(client, alice_credits):
    token = get_token(client, alice_credits)

    def state():
        return (
            list(Balance.objects.order_by("pk").values()),
            list(LedgerEntry.objects.order_by("pk").values()),
            list(Customer.objects.order_by("pk").values()),
            list(Credential.objects.order_by("pk").values()),
        )

    before = state()
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert balance(client, token).status_code == 200

    assert state() == before
    statements = {q["sql"].split()[0].upper() for q in queries.captured_queries}
    assert statements <= {"SELECT", "SAVEPOINT", "RELEASE"}, statements  # reads only; no DynamoDB either


def test_a_hand_minted_token_with_the_contracts_claims_works(client, alice_credits, jwt_keys):
    # What the authorizer's tests can rely on: the contract, not our issuing code.
    assert balance(client, mint(alice_credits, jwt_keys)).status_code == 200


def test_no_token_is_401_with_a_bearer_challenge(client, alice_credits):
    response = client.get(URL)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="creditportal"'


def test_basic_credentials_are_not_a_token(client, alice_credits):
    header = (
        "Basic " + base64.b64encode(f"{alice_credits.credential.client_id}:{alice_credits.secret}".encode()).decode()
    )
    response = client.get(URL, HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="creditportal"'


def test_an_expired_token_is_refused(client, alice_credits, jwt_keys):
    now = int(time.time())
    assert_refused(balance(client, mint(alice_credits, jwt_keys, iat=now - 400, exp=now - 60)), "expired")


def test_a_token_expired_within_the_leeway_is_still_taken(client, alice_credits, jwt_keys):
    now = int(time.time())
    assert jwt_keys.leeway == 5
    assert balance(client, mint(alice_credits, jwt_keys, iat=now - 301, exp=now - 1)).status_code == 200


def test_a_token_issued_in_the_future_is_refused(client, alice_credits, jwt_keys):
    now = int(time.time())
    assert_refused(balance(client, mint(alice_credits, jwt_keys, iat=now + 60, exp=now + 360)), "not yet valid")


def test_a_tampered_payload_is_refused(client, alice_credits, bob_credits):
    header, payload, signature = get_token(client, bob_credits).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims.update(sub=alice_credits.public_id, client_id=alice_credits.credential.client_id)
    assert_refused(balance(client, f"{header}.{b64(claims)}.{signature}"), "Signature verification failed")


def test_a_token_signed_by_another_key_under_our_kid_is_refused(client, alice_credits, jwt_keys):
    other = keys.private_key_generate("ES256")
    assert_refused(balance(client, mint(alice_credits, jwt_keys, key=other)), "Signature verification failed")


def test_a_token_signed_by_a_key_we_do_not_know_is_refused(client, alice_credits, jwt_keys):
    other = keys.private_key_generate("ES256")
    kid = jwk_thumbprint(keys.public_key(other))
    assert_refused(balance(client, mint(alice_credits, jwt_keys, key=other, headers={"kid": kid})), "unknown key")
    assert_refused(balance(client, mint(alice_credits, jwt_keys, headers={"kid": None})), "unknown key")


def test_a_token_with_another_algorithm_is_refused(client, alice_credits, jwt_keys):
    claims = jwt.decode(mint(alice_credits, jwt_keys), options={"verify_signature": False})
    headers = {"kid": jwt_keys.kid, "typ": "at+jwt"}
    # The classic confusion: HMAC keyed with the (public) public key, made by hand
    # since PyJWT refuses to. And no signature at all.
    signing_input = f"{b64(dict(alg='HS256', **headers))}.{b64(claims)}"
    mac = hmac.new(jwt_keys.public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    unsigned = jwt.encode(claims, None, algorithm="none", headers=headers)

    assert_refused(balance(client, forged), "alg value is not allowed")
    assert_refused(balance(client, unsigned), "alg value is not allowed")


@pytest.mark.parametrize(
    "changes, says",
    [
        ({"aud": "someone-else"}, "Audience"),
        ({"iss": "someone-else"}, "issuer"),
        ({"ver": None}, "no ver claim"),
        ({"scope": None, "ver": None}, "no ver, scope claim"),
        ({"jti": None}, "no id"),
        ({"ver": "1"}, "ver is not an integer"),
        ({"client_id": "cli_\x00"}, "client_id is not a client id"),
        ({"scope": ["maps"]}, "scope is not product slugs"),
        ({"sub": 42}, "Subject must be a string"),
    ],
)
def test_a_token_off_the_contract_is_refused(client, alice_credits, jwt_keys, changes, says):
    assert_refused(balance(client, mint(alice_credits, jwt_keys, **changes)), says)


def test_a_token_not_typed_as_an_access_token_is_refused(client, alice_credits, jwt_keys):
    assert_refused(balance(client, mint(alice_credits, jwt_keys, headers={"typ": "JWT"})), "not an access token")


def test_a_malformed_token_or_header_is_refused(client, alice_credits):
    assert_refused(balance(client, "not-a-token"), "invalid")
    assert_refused(client.get(URL, HTTP_AUTHORIZATION="Bearer a b"), "Bearer <access token>")


def test_a_token_of_a_credential_revoked_after_issue_is_refused(client, alice_credits):
    token = get_token(client, alice_credits)
    assert balance(client, token).status_code == 200

    credential_revoke(credential=alice_credits.credential)

    assert_refused(balance(client, token), "revoked")


def test_a_token_from_before_a_rotation_is_refused(client, alice_credits):
    token = get_token(client, alice_credits)

    credential_rotate(credential=alice_credits.credential)

    assert_refused(balance(client, token), "rotated")


def test_a_token_of_a_suspended_customer_is_refused_until_reactivated(client, alice_credits):
    token = get_token(client, alice_credits)

    customer_suspend(customer=alice_credits)
    assert_refused(balance(client, token), "suspended")

    customer_reactivate(customer=alice_credits)
    assert balance(client, token).status_code == 200


def test_a_token_of_the_previous_signing_key_still_works_during_a_rotation(client, settings, alice_credits, jwt_keys):
    token = get_token(client, alice_credits)
    new_private = keys.private_key_generate("ES256")
    settings.JWT = {
        **settings.JWT,
        "SIGNING_KEY": new_private,
        "VERIFYING_KEY": jwt_keys.public_pem + keys.public_pem(new_private),
    }
    assert balance(client, token).status_code == 200
    assert balance(client, get_token(client, alice_credits)).status_code == 200

    # Rotation done: the old key is withdrawn, and its tokens with it.
    settings.JWT = {**settings.JWT, "VERIFYING_KEY": keys.public_pem(new_private)}
    assert_refused(balance(client, token), "unknown key")
