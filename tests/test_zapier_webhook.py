"""POST /api/purchases/zapier/ end to end: real URL, real Postgres, the emails it sends."""

import json
import logging
from functools import partial

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import Credential, Customer, User
from ledger.models import Balance, LedgerEntry, Purchase
from ledger.services import usage_record
from tests.concurrency import at_once
from tests.conftest import ZAPIER_URL


def secret_from(email) -> tuple[str, str]:
    """(client id, secret) from a welcome email's text part."""
    lines = dict(line.split(": ", 1) for line in email.body.splitlines() if line.startswith("Client "))
    return lines["Client ID"], lines["Client secret"]


def nothing_written() -> bool:
    return not (
        Purchase.objects.exists()
        or Customer.objects.exists()
        or User.objects.exists()
        or Credential.objects.exists()
        or LedgerEntry.objects.exists()
        or Balance.objects.exists()
    )


def test_a_first_purchase_creates_the_customer_and_one_credential_and_grants(zapier, products, mailoutbox):
    response = zapier(
        {"order_id": "1001", "email": "Nina@Example.com", "product": "weather", "quantity": 100, "name": "Nina"}
    )

    assert response.status_code == 201
    customer = Customer.objects.get()
    purchase = Purchase.objects.get()
    assert response.json() == {
        "id": purchase.pk,
        "status": "applied",
        "order_id": "1001",
        "line_id": "",
        "email": "nina@example.com",
        "customer": customer.public_id,
        "product": "weather",
        "product_ref": "weather",
        "credits": 100,
        "remaining": 100,
    }
    assert (customer.email, customer.name, customer.user.email, customer.user.name) == (
        "nina@example.com", "Nina", "nina@example.com", "Nina"
    )  # fmt: skip
    assert not customer.user.has_usable_password()  # set through the welcome email's link
    assert (purchase.status, purchase.customer, purchase.product, purchase.quantity) == (
        Purchase.Status.APPLIED, customer, products["weather"], 100
    )  # fmt: skip
    assert purchase.created_customer and purchase.remaining_after == 100
    assert purchase.email_status == Purchase.EmailStatus.SENT and purchase.emailed is not None
    entry = LedgerEntry.objects.get()
    assert (entry.customer, entry.product, entry.kind, entry.amount, entry.purchase) == (
        customer, products["weather"], LedgerEntry.Kind.PURCHASE, 100, purchase
    )  # fmt: skip
    assert Balance.objects.get(customer=customer, product=products["weather"]).remaining == 100

    credential = Credential.objects.get()
    assert credential.customer == customer
    [email] = mailoutbox
    assert email.to == ["nina@example.com"]
    client_id, secret = secret_from(email)
    assert client_id == credential.client_id
    assert credential.check_secret(secret) and credential.secret_last4 == secret[-4:]
    assert len(secret) >= 43  # 32 random bytes, url-safe base64


def test_a_later_purchase_by_sku_as_form_data_tops_up_without_a_new_secret(zapier, alice, products, mailoutbox):
    zapier({"order_id": "1001", "email": "alice@example.com", "product": "weather", "quantity": "100"})
    usage_record(customer=alice, product=products["weather"], amount=30)

    response = zapier(
        {"order_id": "1002", "email": "alice@example.com", "product": "WTHR-100", "quantity": "50"}, form=True
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["customer"], body["product"], body["product_ref"], body["credits"], body["remaining"]) == (
        alice.public_id, "weather", "WTHR-100", 50, 120
    )  # fmt: skip
    assert Customer.objects.count() == 1 and Credential.objects.count() == 1
    assert alice.credential.check_secret(alice.secret)  # her programs keep working
    purchase = Purchase.objects.get(order_id="1002")
    assert purchase.payload == {
        "order_id": "1002",
        "email": "alice@example.com",
        "product": "WTHR-100",
        "quantity": "50",
    }
    assert not purchase.created_customer
    assert [e.subject for e in mailoutbox] == [
        "100 Weather API credits added to your CreditPortal account",
        "50 Weather API credits added to your CreditPortal account",
    ]
    assert "secret:" not in mailoutbox[1].body.lower()
    assert "120 credits remaining" in mailoutbox[1].body


@pytest.mark.parametrize("product_ref", ["maps", "MAPS-500"])
@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_a_product_is_found_by_slug_or_sku_in_json_or_form_bodies(zapier, products, product_ref, form):
    response = zapier(
        {"order_id": "7", "email": "nina@example.com", "product": product_ref, "quantity": "20"}, form=form
    )

    assert response.status_code == 201
    assert response.json()["product"] == "maps"
    assert Balance.objects.get(product=products["maps"]).granted == 20


def test_the_email_is_trimmed_and_matched_case_insensitively(zapier, alice, products):
    response = zapier({"order_id": "8", "email": "  ALICE@Example.COM ", "product": "weather", "quantity": 5})

    assert response.status_code == 201
    assert response.json()["customer"] == alice.public_id
    assert Customer.objects.count() == 1


def test_a_repeated_delivery_grants_once_and_answers_the_same_body(zapier, products, mailoutbox):
    data = {"order_id": "1001", "email": "nina@example.com", "product": "weather", "quantity": "100"}
    first = zapier(data)
    customer = Customer.objects.get()
    usage_record(customer=customer, product=products["weather"], amount=40)

    again = zapier(data, form=True)  # a retry may well arrive as form data
    and_again = zapier({**data, "email": "NINA@example.com "})

    assert first.status_code == 201
    assert again.status_code == and_again.status_code == 200
    # The answer is the purchase's, as it was: `remaining` right after its grant,
    # not the balance now (60).
    assert again.json() == and_again.json() == first.json()
    assert first.json()["remaining"] == 100
    assert Purchase.objects.count() == 1
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.PURCHASE).count() == 1
    assert Balance.objects.get(customer=customer).granted == 100
    assert len(mailoutbox) == 1


def test_each_line_of_an_order_is_its_own_purchase(zapier, products):
    base = {"order_id": "2001", "email": "nina@example.com", "quantity": "10"}

    responses = [
        zapier({**base, "line_id": "1", "product": "weather"}),
        zapier({**base, "line_id": "2", "product": "maps"}),
        zapier({**base, "line_id": "1", "product": "weather"}),
    ]

    assert [r.status_code for r in responses] == [201, 201, 200]
    assert sorted(Purchase.objects.values_list("line_id", flat=True)) == ["1", "2"]
    assert Balance.objects.get(product=products["weather"]).granted == 10
    assert Balance.objects.get(product=products["maps"]).granted == 10


def test_an_order_line_sent_again_with_other_content_is_a_conflict(zapier, products, mailoutbox):
    zapier({"order_id": "3001", "email": "nina@example.com", "product": "weather", "quantity": "10"})

    response = zapier({"order_id": "3001", "email": "nina@example.com", "product": "weather", "quantity": "99"})

    assert response.status_code == 409
    assert response.json()["detail"] == "zapier:3001 was already recorded with quantity 10; nothing changed."
    assert response.json()["purchase"]["credits"] == 10
    assert Balance.objects.get().granted == 10
    assert len(mailoutbox) == 1


def test_an_unknown_product_is_stored_unmatched_and_nothing_is_granted(zapier, products, mailoutbox):
    data = {"order_id": "4001", "email": "nina@example.com", "product": "GIFT-CARD", "quantity": "10", "name": "Nina"}

    response = zapier(data)
    again = zapier(data)

    assert response.status_code == again.status_code == 202
    purchase = Purchase.objects.get()
    assert (
        response.json()
        == again.json()
        == {
            "id": purchase.pk,
            "status": "unmatched",
            "order_id": "4001",
            "line_id": "",
            "email": "nina@example.com",
            "customer": None,
            "product": None,
            "product_ref": "GIFT-CARD",
            "credits": 0,
            "remaining": None,
        }
    )
    assert (purchase.status, purchase.email, purchase.name, purchase.quantity) == (
        Purchase.Status.UNMATCHED, "nina@example.com", "Nina", 10
    )  # fmt: skip
    assert purchase.customer is None and purchase.product is None
    assert not (Customer.objects.exists() or LedgerEntry.objects.exists() or mailoutbox)


BLANK_LINE = "This field may not be blank: leave line_id out for a one-line order, or send the line's id."
GOOD = {"order_id": "1001", "email": "nina@example.com", "product": "weather", "quantity": "5"}


BAD_PAYLOADS = [
    ({**GOOD, "quantity": "0"}, "quantity", "Enter a positive number of credits (1 or more)."),
    ({**GOOD, "quantity": 0}, "quantity", "Enter a positive number of credits (1 or more)."),
    ({**GOOD, "quantity": "-3"}, "quantity", "Enter a positive number of credits (1 or more)."),
    ({**GOOD, "quantity": -3}, "quantity", "Enter a positive number of credits (1 or more)."),
    ({**GOOD, "quantity": "1.5"}, "quantity", "Enter a whole number of credits, like 100."),
    ({**GOOD, "quantity": 1.5}, "quantity", "Enter a whole number of credits, like 100."),
    ({**GOOD, "quantity": "5.0"}, "quantity", "Enter a whole number of credits, like 100."),
    ({**GOOD, "quantity": 5.0}, "quantity", "Enter a whole number of credits, like 100."),
    ({**GOOD, "quantity": "abc"}, "quantity", "Enter a whole number of credits, like 100."),
    # Comma-separated values are an order's lines (ledger/store/zapier.py): here 1 product, 2 quantities.
    (
        {**GOOD, "quantity": "1,2"},
        "non_field_errors",
        "An order's lines are sent as the same number of comma-separated "
        "values in line_id, product and quantity; these carry line_id 0, product 1, quantity 2: nothing was recorded.",
    ),
    ({**GOOD, "quantity": ""}, "quantity", "Enter a whole number of credits, like 100."),
    ({**GOOD, "quantity": True}, "quantity", "Enter a whole number of credits, like 100."),
    ({**GOOD, "quantity": "1000001"}, "quantity", "At most 1,000,000 credits per order line."),
    ({**GOOD, "quantity": 10**30}, "quantity", "At most 1,000,000 credits per order line."),
    ({**GOOD, "quantity": "9" * 5000}, "quantity", "At most 1,000,000 credits per order line."),
    ({**GOOD, "quantity": None}, "quantity", "This field may not be null."),
    ({k: v for k, v in GOOD.items() if k != "quantity"}, "quantity", "This field is required."),
    ({**GOOD, "email": "not-an-email"}, "email", "Enter a valid email address."),
    ({**GOOD, "email": "a" * 245 + "@example.com"}, "email", "Ensure this field has no more than 254 characters."),
    ({**GOOD, "email": ""}, "email", "This field may not be blank."),
    ({k: v for k, v in GOOD.items() if k != "email"}, "email", "This field is required."),
    ({k: v for k, v in GOOD.items() if k != "order_id"}, "order_id", "This field is required."),
    ({**GOOD, "order_id": ""}, "order_id", "This field may not be blank."),
    ({**GOOD, "order_id": "   "}, "order_id", "This field may not be blank."),
    ({**GOOD, "order_id": "x" * 129}, "order_id", "Ensure this field has no more than 128 characters."),
    ({**GOOD, "line_id": ""}, "line_id", BLANK_LINE),
    ({**GOOD, "line_id": "  "}, "line_id", BLANK_LINE),
    ({**GOOD, "line_id": "x" * 129}, "line_id", "Ensure this field has no more than 128 characters."),
    ({k: v for k, v in GOOD.items() if k != "product"}, "product", "This field is required."),
    ({**GOOD, "product": ""}, "product", "This field may not be blank."),
]


def json_only(data: dict) -> bool:
    """Form data is all text: no null, boolean, float or number too big for a form test to mean anything new."""
    return any(v is None or isinstance(v, bool | float) or (isinstance(v, int) and v > 10**6) for v in data.values())


@pytest.mark.parametrize(
    "data, field, message, form",
    [(*case, form) for case in BAD_PAYLOADS for form in (False, True) if not (form and json_only(case[0]))],
)
def test_a_bad_payload_is_a_400_with_field_errors_and_writes_nothing(
    zapier, products, mailoutbox, data, field, message, form
):
    response = zapier(data, form=form)

    assert response.status_code == 400
    assert response.json() == {field: [message]}
    assert nothing_written() and not mailoutbox


@pytest.mark.parametrize(
    "body, detail",
    [
        (b'{"order_id": "1001", "email": ', "JSON parse error - Expecting value: line 1 column 31 (char 30)"),
        (b"", None),
        (b"[1, 2]", "Invalid data. Expected a dictionary, but got list."),
        (b'"just a string"', "Invalid data. Expected a dictionary, but got str."),
    ],
)
def test_a_broken_json_body_is_a_400_and_writes_nothing(zapier, products, mailoutbox, body, detail):
    response = zapier(body=body)

    assert response.status_code == 400
    if detail is None:  # an empty body: every required field is missing
        assert set(response.json()) == {"order_id", "email", "product", "quantity"}
    else:
        assert detail in json.dumps(response.json())
    assert nothing_written() and not mailoutbox


def test_an_unsupported_content_type_is_a_415(zapier, products):
    response = zapier(body="order_id=1", content_type="text/plain")

    assert response.status_code == 415
    assert response.json() == {"detail": 'Unsupported media type "text/plain" in request.'}
    assert nothing_written()


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-secret", "Basic dGVzdC16YXBpZXItc2VjcmV0", "Token test-zapier-secret",
     "Bearer test-zapier-secret extra", "Bearer TEST-ZAPIER-SECRET"],
)  # fmt: skip
def test_a_missing_or_wrong_secret_is_a_401_and_writes_nothing(zapier, products, mailoutbox, authorization):
    response = zapier(GOOD, authorization=authorization)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="zapier"'
    assert nothing_written() and not mailoutbox


def test_the_secret_is_checked_before_the_body_is_read(zapier):
    assert zapier(body=b"{broken", authorization="Bearer wrong").status_code == 401
    assert zapier(body="x", content_type="text/plain", authorization=None).status_code == 401


def test_the_bearer_keyword_is_case_insensitive(zapier, products):
    assert zapier(GOOD, authorization=f"bearer {settings.ZAPIER_WEBHOOK_SECRET}").status_code == 201


def test_only_post_is_allowed(client):
    response = client.get(ZAPIER_URL, HTTP_AUTHORIZATION=f"Bearer {settings.ZAPIER_WEBHOOK_SECRET}")
    assert response.status_code == 405


def _post_in_threads(payloads: list[dict]) -> list:
    """Each payload posted by its own thread (own client, own DB connection), all released at once."""
    auth = f"Bearer {settings.ZAPIER_WEBHOOK_SECRET}"
    client = partial(Client, HTTP_AUTHORIZATION=auth)
    return at_once([partial(client().post, ZAPIER_URL, p, content_type="application/json") for p in payloads])


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_deliveries_of_one_order_grant_once(products, mailoutbox):
    data = {"order_id": "5001", "email": "nina@example.com", "product": "weather", "quantity": "100"}

    responses = _post_in_threads([data] * 10)

    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses}) == 1
    assert Purchase.objects.count() == 1
    assert Customer.objects.count() == User.objects.count() == Credential.objects.count() == 1
    assert LedgerEntry.objects.count() == 1
    assert Balance.objects.get().granted == 100
    assert len(mailoutbox) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_purchases_of_two_orders_make_one_customer(products, mailoutbox):
    payloads = [
        {"order_id": str(order), "email": email, "product": "weather", "quantity": "10"}
        for order, email in [(6001, "nina@example.com"), (6002, "NINA@example.com"), (6003, " nina@EXAMPLE.com")]
    ]

    responses = _post_in_threads(payloads)

    assert [r.status_code for r in responses] == [201, 201, 201]
    customer = Customer.objects.get()
    assert User.objects.count() == Credential.objects.count() == 1
    assert {r.json()["customer"] for r in responses} == {customer.public_id}
    assert sorted(r.json()["remaining"] for r in responses) == [10, 20, 30]
    assert Balance.objects.get().granted == 30
    assert Purchase.objects.filter(created_customer=True).count() == 1
    subjects = sorted(e.subject for e in mailoutbox)
    assert subjects == [
        "10 Weather API credits added to your CreditPortal account",
        "10 Weather API credits added to your CreditPortal account",
        "Your CreditPortal API credentials and 10 Weather API credits",
    ]


def test_the_plain_secret_appears_nowhere_in_the_database_or_the_logs(zapier, products, mailoutbox, caplog):
    caplog.set_level(logging.DEBUG)
    data = {"order_id": "1001", "email": "nina@example.com", "product": "weather", "quantity": "100", "name": "Nina"}
    with CaptureQueriesContext(connection) as queries:
        assert zapier(data).status_code == 201
        assert zapier(data).status_code == 200
        assert zapier({**data, "order_id": "1002"}).status_code == 201
    _, secret = secret_from(mailoutbox[0])

    assert not any(secret in q["sql"] for q in queries.captured_queries)  # it never even reached Postgres
    columns = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'json', 'jsonb')"
        )
        columns = cursor.fetchall()
        for table, column in columns:
            cursor.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE %s', [f"%{secret}%"])
            assert cursor.fetchone()[0] == 0, f"{table}.{column} holds the secret"
    assert ("accounts_credential", "secret_hash") in columns and ("ledger_purchase", "payload") in columns
    assert caplog.records  # the scan below looked at something
    assert not any(secret in record.getMessage() for record in caplog.records)
    assert secret not in caplog.text
