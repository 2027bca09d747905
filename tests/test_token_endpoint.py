"""POST /api/token/: the client credentials grant, every way to ask and every way to be refused."""

import base64
import json
import re
from urllib.parse import urlencode

import jwt
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import credential_revoke, credential_rotate, customer_reactivate, customer_suspend
from accounts.tokens import CLAIMS
from ledger.models import Product
from ledger.selectors import _credential_with_products_orm, credential_with_products
from ledger.services import credits_grant, product_upsert

URL = "/api/token/"
FORM = "application/x-www-form-urlencoded"
# RFC 6749 section 5.2: what error_description may contain.
DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")


@pytest.fixture
def alice_credits(alice, products):
    """Alice has bought weather and maps credits; a third product exists that she has not bought."""
    credits_grant(customer=alice, product=products["weather"], amount=100)
    credits_grant(customer=alice, product=products["maps"], amount=50)
    product_upsert(slug="geo", name="Geo API", api_ids=["geo0000001"])
    return alice


def form(client, data, **extra):
    return client.post(URL, urlencode(data), content_type=FORM, **extra)


def basic(client_id, secret):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def creds(customer, **more):
    return {
        "grant_type": "client_credentials",
        "client_id": customer.credential.client_id,
        "client_secret": customer.secret,
        **more,
    }


def claims_of(response, jwt_keys):
    return jwt.decode(
        response.json()["access_token"],
        jwt_keys.public_pem,
        algorithms=[jwt_keys.algorithm],
        audience=jwt_keys.audience,
        issuer=jwt_keys.issuer,
    )


def assert_refused(response, status, error, *, says=""):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert DESCRIPTION.fullmatch(body["error_description"]), body["error_description"]
    assert says in body["error_description"]
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"
    if status == 401:
        assert response["WWW-Authenticate"] == 'Basic realm="creditportal"'
    return body["error_description"]


def assert_issued(response, jwt_keys, scope="maps weather"):
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 300, scope)
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"
    claims = claims_of(response, jwt_keys)
    assert claims["scope"] == scope
    return claims


# --- getting a token ---------------------------------------------------------------------------


def test_it_issues_a_token_for_credentials_in_a_form_body(client, alice_credits, jwt_keys):
    assert_issued(form(client, creds(alice_credits)), jwt_keys)


def test_it_issues_a_token_for_credentials_in_a_json_body(client, alice_credits, jwt_keys):
    assert_issued(client.post(URL, creds(alice_credits), content_type="application/json"), jwt_keys)


def test_it_issues_a_token_for_http_basic_credentials(client, alice_credits, jwt_keys):
    response = form(
        client, {"grant_type": "client_credentials"}, **basic(alice_credits.credential.client_id, alice_credits.secret)
    )
    assert_issued(response, jwt_keys)


def test_basic_credentials_are_form_decoded_as_rfc_6749_says(client, alice_credits, jwt_keys):
    # Our ids and secrets need no escaping, but a client that escapes everything still gets in.
    escaped = lambda s: "".join(f"%{b:02X}" for b in s.encode())  # noqa: E731
    response = form(
        client,
        {"grant_type": "client_credentials"},
        **basic(escaped(alice_credits.credential.client_id), escaped(alice_credits.secret)),
    )
    assert_issued(response, jwt_keys)


def test_basic_with_the_same_client_id_in_the_body_is_fine(client, alice_credits, jwt_keys):
    response = form(
        client,
        {"grant_type": "client_credentials", "client_id": alice_credits.credential.client_id},
        **basic(alice_credits.credential.client_id, alice_credits.secret),
    )
    assert_issued(response, jwt_keys)


def test_the_token_carries_exactly_the_contract(client, alice_credits, jwt_keys):
    response = form(client, creds(alice_credits))

    claims = assert_issued(response, jwt_keys)
    token = response.json()["access_token"]
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "typ": "at+jwt", "kid": jwt_keys.kid}
    assert set(claims) == set(CLAIMS)
    assert claims["iss"] == "creditportal"
    assert claims["aud"] == "creditportal-api"
    assert claims["sub"] == alice_credits.public_id and claims["sub"].startswith("cus_")
    assert claims["client_id"] == alice_credits.credential.client_id
    assert claims["ver"] == alice_credits.credential.secret_version == 1
    assert claims["exp"] - claims["iat"] == 300
    assert re.fullmatch(r"[0-9a-f]{32}", claims["jti"])
    payload = base64.urlsafe_b64decode(token.split(".")[1] + "==").decode()
    for secret in [alice_credits.secret, alice_credits.credential.secret_hash, alice_credits.credential.secret_last4]:
        assert secret not in payload


def test_every_token_has_its_own_jti(client, alice_credits, jwt_keys):
    jtis = {claims_of(form(client, creds(alice_credits)), jwt_keys)["jti"] for _ in range(3)}
    assert len(jtis) == 3


def test_a_token_names_exactly_the_customers_products(client, alice_credits, bob, products, jwt_keys):
    credits_grant(customer=bob, product=products["maps"], amount=10)

    assert_issued(form(client, creds(alice_credits)), jwt_keys, scope="maps weather")  # not geo, never bought
    assert_issued(form(client, creds(bob)), jwt_keys, scope="maps")


def test_a_product_used_up_is_still_in_scope(client, alice_credits, products, jwt_keys):
    from ledger.services import usage_record

    usage_record(customer=alice_credits, product=products["weather"], amount=100)
    assert_issued(form(client, creds(alice_credits)), jwt_keys, scope="maps weather")  # the gate says no, per call


@pytest.mark.parametrize(
    "scope, granted", [("weather", "weather"), ("maps  weather maps", "maps weather"), ("maps", "maps")]
)
def test_a_scope_narrows_the_token(client, alice_credits, jwt_keys, scope, granted):
    assert_issued(form(client, creds(alice_credits, scope=scope)), jwt_keys, scope=granted)


def test_an_empty_scope_counts_as_no_scope(client, alice_credits, jwt_keys):
    assert_issued(form(client, creds(alice_credits, scope="")), jwt_keys, scope="maps weather")


def test_issuing_a_token_writes_nothing(client, alice_credits, jwt_keys):
    with CaptureQueriesContext(connection) as queries:
        assert_issued(form(client, creds(alice_credits)), jwt_keys)
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert set(statements) <= {"SELECT", "SAVEPOINT", "RELEASE"}, statements
    assert statements.count("SELECT") == 1  # the credential with its customer and the customer's products


@pytest.mark.parametrize(
    "ask, scope",
    [
        (lambda c, a: form(c, creds(a)), "maps weather"),
        (lambda c, a: form(c, creds(a, scope="weather")), "weather"),
        (lambda c, a: form(c, {"grant_type": "client_credentials"}, **basic(a.credential.client_id, a.secret)),
         "maps weather"),
        (lambda c, a: c.post(URL, creds(a), content_type="application/json"), "maps weather"),
    ],
    ids=["form", "narrowed scope", "basic", "json"],
)  # fmt: skip
def test_a_token_costs_one_query(client, alice_credits, jwt_keys, django_assert_num_queries, ask, scope):
    with django_assert_num_queries(1):  # the credential, its customer and the customer's products, joined
        response = ask(client, alice_credits)
    assert_issued(response, jwt_keys, scope=scope)


@pytest.mark.parametrize(
    "refused, queries",
    [
        (lambda a, b: creds(a, client_secret=b.secret), 1),
        (lambda a, b: creds(a, scope="geo"), 1),
        (lambda a, b: creds(a, client_id="cli_nosuchclient2345678"), 1),
        (lambda a, b: creds(a, client_id="not a client id"), 0),
        (lambda a, b: creds(a, grant_type="password"), 0),
    ],
    ids=["wrong secret", "scope not owned", "unknown client", "not a client id", "another grant type"],
)
def test_a_refused_token_request_costs_at_most_one_query(
    client, alice_credits, bob, django_assert_num_queries, refused, queries
):
    with django_assert_num_queries(queries):
        response = form(client, refused(alice_credits, bob))
    assert response.status_code in (400, 401)


def logged_call(client_id: str) -> str:
    """The token query as Django's query log shows it, prepared or not: the call with its argument written in."""
    return f"SELECT * FROM ledger_token_credential('{client_id}')"


def test_the_one_query_is_the_functions_fixed_text(client, alice_credits, jwt_keys):
    """Nothing is built per request: the text Postgres gets is the same every time, the call of
    ledger_token_credential (migration 0015), whose plan the server session keeps."""
    with CaptureQueriesContext(connection) as queries:
        assert_issued(form(client, creds(alice_credits)), jwt_keys)
    (select,) = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert select == logged_call(alice_credits.credential.client_id)


PREPARED_CALL = "SELECT * FROM ledger_token_credential($1)"  # what Postgres keeps of _TOKEN_CREDENTIAL


def prepared_runs() -> dict[str, int]:
    """This server session's prepared statements, by text: how many times each has run."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        return dict(cursor.fetchall())


def test_the_one_query_runs_prepared_and_nothing_of_the_orms_is_prepared(client, alice_credits, jwt_keys):
    """DATABASE_PREPARED_STATEMENTS (on unless set off): the session parses the call once, at the first
    request; psycopg prepares only what is sent with its parameters apart, which the ORM never does."""
    before = prepared_runs().get(PREPARED_CALL, 0)
    for _ in range(3):
        assert_issued(form(client, creds(alice_credits)), jwt_keys)
    Product.objects.filter(slug="geo").update(name="Geo API, again")  # the ORM, for contrast
    runs = prepared_runs()
    assert runs[PREPARED_CALL] == before + 3
    assert set(runs) == {PREPARED_CALL}


@pytest.fixture
def unprepared():
    """The connection as DATABASE_PREPARED_STATEMENTS=0 opens it (psycopg's prepare_threshold None)."""
    connection.ensure_connection()
    raw = connection.connection
    threshold, raw.prepare_threshold = raw.prepare_threshold, None
    yield
    raw.prepare_threshold = threshold


def test_without_prepared_statements_the_same_call_runs_unprepared(client, alice_credits, jwt_keys, unprepared):
    before = prepared_runs().get(PREPARED_CALL, 0)
    with CaptureQueriesContext(connection) as queries:
        assert_issued(form(client, creds(alice_credits)), jwt_keys)
    assert [q["sql"] for q in queries.captured_queries] == [logged_call(alice_credits.credential.client_id)]
    assert prepared_runs().get(PREPARED_CALL, 0) == before  # nothing ran prepared
    credential_revoke(credential=alice_credits.credential)
    assert_refused(form(client, creds(alice_credits)), 401, "invalid_client", says="revoked")


@pytest.mark.parametrize(
    "change", ["nothing", "no products", "revoked", "suspended", "rotated", "unknown"]
)  # fmt: skip
def test_the_lookup_agrees_with_the_join_it_replaces(alice, products, change):
    if change != "no products":
        credits_grant(customer=alice, product=products["maps"], amount=5)
        credits_grant(customer=alice, product=products["weather"], amount=5)
    if change == "revoked":
        credential_revoke(credential=alice.credential)
    elif change == "suspended":
        customer_suspend(customer=alice)
    elif change == "rotated":
        credential_rotate(credential=alice.credential)
    client_id = "cli_nosuchclient2345678" if change == "unknown" else alice.credential.client_id

    got, want = credential_with_products(client_id=client_id), _credential_with_products_orm(client_id=client_id)
    if change == "unknown":
        assert got is None and want is None
        return
    fields = ["pk", "client_id", "secret_hash", "secret_version", "revoked_at", "is_revoked", "customer_products"]
    assert {f: getattr(got, f) for f in fields} == {f: getattr(want, f) for f in fields}
    assert (got.customer.pk, got.customer.public_id, got.customer.is_active) == (
        want.customer.pk,
        want.customer.public_id,
        want.customer.is_active,
    )
    assert got.customer_products == ([] if change == "no products" else ["maps", "weather"])


def test_the_kept_plan_still_sees_each_change_at_the_next_request(client, alice_credits, jwt_keys):
    """Postgres switches to a generic plan after five calls in a session; the rows are read anew
    each time, so a new product, a suspension and a revocation show at the very next request."""
    for _ in range(7):
        assert_issued(form(client, creds(alice_credits)), jwt_keys)
    credits_grant(customer=alice_credits, product=Product.objects.get(slug="geo"), amount=1)
    assert_issued(form(client, creds(alice_credits)), jwt_keys, scope="geo maps weather")
    customer_suspend(customer=alice_credits)
    assert_refused(form(client, creds(alice_credits)), 401, "invalid_client", says="suspended")
    customer_reactivate(customer=alice_credits)
    assert_issued(form(client, creds(alice_credits)), jwt_keys, scope="geo maps weather")
    credential_revoke(credential=alice_credits.credential)
    assert_refused(form(client, creds(alice_credits)), 401, "invalid_client", says="revoked")


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "text/plain;q=0.9, image/png"])
def test_the_answer_is_json_whatever_accept_asks(client, alice_credits, jwt_keys, accept):
    """RFC 6749 section 5.1: tokens and errors come as application/json, never a 406."""
    response = form(client, creds(alice_credits), HTTP_ACCEPT=accept)
    assert response["Content-Type"] == "application/json"
    assert_issued(response, jwt_keys)
    refused = form(client, creds(alice_credits, grant_type="password"), HTTP_ACCEPT=accept)
    assert refused["Content-Type"] == "application/json"
    assert_refused(refused, 400, "unsupported_grant_type")


# --- refused -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scope, says", [("geo", "geo"), ("nosuchthing maps", "nosuchthing"), ("WEATHER", "WEATHER")])
def test_a_scope_beyond_the_customers_products_is_invalid_scope(client, alice_credits, scope, says):
    description = assert_refused(form(client, creds(alice_credits, scope=scope)), 400, "invalid_scope", says=says)
    assert "The products are: maps, weather" in description


def test_a_scope_with_characters_that_cannot_be_echoed_is_refused_cleanly(client, alice_credits):
    assert_refused(form(client, creds(alice_credits, scope='we"ather\\ é')), 400, "invalid_scope")


def test_a_customer_without_products_gets_invalid_scope_saying_why(client, alice):
    assert_refused(form(client, creds(alice)), 400, "invalid_scope", says="no products yet")


def test_a_missing_grant_type_is_invalid_request(client, alice_credits):
    data = creds(alice_credits)
    del data["grant_type"]
    assert_refused(form(client, data), 400, "invalid_request", says="grant_type is missing")


@pytest.mark.parametrize("grant_type", ["password", "authorization_code", "refresh_token", "CLIENT_CREDENTIALS"])
def test_another_grant_type_is_unsupported(client, alice_credits, grant_type):
    assert_refused(form(client, creds(alice_credits, grant_type=grant_type)), 400, "unsupported_grant_type")


@pytest.mark.parametrize("missing", ["client_id", "client_secret"])
def test_half_the_credentials_is_invalid_request(client, alice_credits, missing):
    data = creds(alice_credits)
    del data[missing]
    assert_refused(form(client, data), 400, "invalid_request", says=f"{missing} is missing")


def test_no_credentials_at_all_is_invalid_client(client, alice_credits):
    assert_refused(
        form(client, {"grant_type": "client_credentials"}), 401, "invalid_client", says="No client authentication"
    )


def test_a_wrong_secret_is_invalid_client(client, alice_credits, bob):
    wrong = assert_refused(form(client, creds(alice_credits, client_secret=bob.secret)), 401, "invalid_client")
    unknown = assert_refused(
        form(client, creds(alice_credits, client_id="cli_nosuchclient2345678")), 401, "invalid_client"
    )
    assert wrong == unknown == "Unknown client id or wrong client secret."  # which one it was is not said


def test_a_wrong_basic_secret_is_invalid_client_with_a_basic_challenge(client, alice_credits):
    response = form(client, {"grant_type": "client_credentials"}, **basic(alice_credits.credential.client_id, "wrong"))
    assert_refused(response, 401, "invalid_client")


@pytest.mark.parametrize("header", ["Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic"])
def test_unreadable_basic_credentials_are_invalid_client(client, alice_credits, header):
    response = form(client, {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=header)
    assert_refused(response, 401, "invalid_client", says="not base64 of client_id:client_secret")


def test_another_authorization_scheme_is_invalid_client(client, alice_credits):
    response = form(client, creds(alice_credits), HTTP_AUTHORIZATION="Bearer something")
    assert_refused(response, 401, "invalid_client", says="HTTP Basic")


@pytest.mark.parametrize(
    "body",
    [
        lambda a: {"grant_type": "client_credentials", "client_secret": a.secret},
        lambda a: {"grant_type": "client_credentials", "client_id": "cli_someoneelse234567892345"},
    ],
)
def test_credentials_in_basic_and_in_the_body_are_invalid_request(client, alice_credits, body):
    response = form(client, body(alice_credits), **basic(alice_credits.credential.client_id, alice_credits.secret))
    assert_refused(response, 400, "invalid_request", says="one way")


@pytest.mark.parametrize("in_url", [["client_id", "client_secret"], ["client_secret"], ["client_id"]])
def test_credentials_in_the_query_string_are_refused_saying_why(client, alice_credits, in_url):
    query = urlencode({name: creds(alice_credits)[name] for name in in_url})
    response = client.post(f"{URL}?{query}", urlencode(creds(alice_credits)), content_type=FORM)

    description = assert_refused(response, 400, "invalid_request", says="must not be sent in the URL")
    assert "access logs" in description
    assert ("Rotate this client secret" in description) == ("client_secret" in in_url)


def test_credentials_in_the_query_string_of_a_get_are_refused_too(client, alice_credits):
    response = client.get(URL, creds(alice_credits))
    assert_refused(response, 400, "invalid_request", says="must not be sent in the URL")


def test_a_get_without_credentials_is_method_not_allowed(client):
    response = client.get(URL)
    assert response.status_code == 405
    assert response["Cache-Control"] == "no-store"


def test_a_repeated_parameter_is_invalid_request(client, alice_credits):
    body = urlencode(creds(alice_credits)) + "&client_id=cli_another"
    assert_refused(
        client.post(URL, body, content_type=FORM), 400, "invalid_request", says="client_id is sent more than once"
    )


@pytest.mark.parametrize(
    "body, says",
    [
        ("{not json", "could not be read"),
        ('["grant_type", "client_credentials"]', "must be an object"),
        ('{"grant_type": "client_credentials", "client_id": 12, "client_secret": "x"}', "client_id must be a string"),
        ('{"grant_type": "client_credentials", "client_id": "cli_x", "client_secret": "\\ud800"}', "not valid text"),
        ('{"scope": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    ],
)
def test_an_unreadable_json_body_is_invalid_request(client, body, says):
    assert_refused(client.post(URL, body, content_type="application/json"), 400, "invalid_request", says=says)


def test_a_multipart_body_is_invalid_request(client, alice_credits):
    response = client.post(URL, creds(alice_credits))  # the test client's default: multipart/form-data
    assert_refused(response, 400, "invalid_request", says="form-encoded")


def test_a_suspended_customer_is_invalid_client(client, alice_credits):
    customer_suspend(customer=alice_credits)
    assert_refused(form(client, creds(alice_credits)), 401, "invalid_client", says="suspended")


def test_a_revoked_credential_is_invalid_client(client, alice_credits):
    credential_revoke(credential=alice_credits.credential)
    assert_refused(form(client, creds(alice_credits)), 401, "invalid_client", says="revoked")


def test_after_a_rotation_the_old_secret_is_refused_and_the_new_one_works(client, alice_credits, jwt_keys):
    old = alice_credits.secret
    new = credential_rotate(credential=alice_credits.credential)

    assert_refused(form(client, creds(alice_credits, client_secret=old)), 401, "invalid_client")
    claims = assert_issued(form(client, creds(alice_credits, client_secret=new)), jwt_keys)
    assert claims["ver"] == 2


def test_an_error_response_is_json_rfc_6749_style(client):
    response = form(client, {})
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["error"] == "invalid_request"
