"""Attacks on POST /api/purchases/zapier/ with the right secret: malformed bodies and replays.

What tests/test_zapier_webhook.py already refuses field by field (zero, negative and huge
quantities, blank and long fields, broken JSON, text/plain) is not repeated here. This adds
wrong types, unicode tricks, text Postgres cannot store, a 1 MB body, deep nesting, many
fields, other content types; each answer is a 4xx in JSON and not one row is written in any
accounts_* or ledger_* table (nor an email sent). Then replays, re-encoded the ways a retry
might re-encode them: one grant.
"""

import json

import pytest

from accounts.models import Customer
from ledger.models import Balance, LedgerEntry, Purchase

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


@pytest.fixture(autouse=True)
def _no_mirror(settings):
    settings.MIRROR_ENABLED = False  # not under test here: the replays write no DynamoDB items


GOOD = {"order_id": "1001", "email": "nina@example.com", "product": "weather", "quantity": 5}
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
NOT_WHOLE = "Enter a whole number of credits, like 100."
NOT_POSITIVE = "Enter a positive number of credits (1 or more)."
TOO_MANY = "At most 1,000,000 credits per order line."
BAD_EMAIL = "Enter a valid email address."
LONG_EMAIL = "Ensure this field has no more than 254 characters."
NOT_STRING = "Not a valid string."
NUL = "Null characters are not allowed."
SURROGATE = "Unpaired surrogate characters are not allowed."
TWICE = "Sent more than once: send each field once."
ONE_LINE = "Control characters and line breaks are not allowed."
MB = 1024 * 1024


def body(**changes) -> str:
    """GOOD with changes, as JSON text (json.dumps escapes what the test client would)."""
    return json.dumps({k: v for k, v in (GOOD | changes).items() if v is not ...})


def _multipart() -> tuple[bytes, str]:
    parts = "".join(f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in GOOD.items())
    return f"{parts}--b--\r\n".encode(), "multipart/form-data; boundary=b"


# (id, body, content type, status, what the JSON answer says: {field: [message]} or a substring)
MALFORMED = [
    # Wrong types
    ("order_id an object", body(order_id={"id": 1}), JSON, 400, {"order_id": [NOT_STRING]}),
    ("order_id a list", body(order_id=["1001"]), JSON, 400, {"order_id": [NOT_STRING]}),
    ("order_id a boolean", body(order_id=True), JSON, 400, {"order_id": [NOT_STRING]}),
    ("email a list", body(email=["nina@example.com"]), JSON, 400, {"email": [BAD_EMAIL]}),
    ("email a number", body(email=42), JSON, 400, {"email": [BAD_EMAIL]}),
    ("product an object", body(product={"slug": "weather"}), JSON, 400, {"product": [NOT_STRING]}),
    ("quantity a list", body(quantity=[5]), JSON, 400, {"quantity": [NOT_WHOLE]}),
    ("quantity an object", body(quantity={"n": 5}), JSON, 400, {"quantity": [NOT_WHOLE]}),
    ("quantity in Arabic-Indic digits", body(quantity="٥"), JSON, 400, {"quantity": [NOT_WHOLE]}),
    ("quantity with a plus sign", body(quantity="+5"), JSON, 400, {"quantity": [NOT_WHOLE]}),
    ("quantity in hex", body(quantity="0x10"), JSON, 400, {"quantity": [NOT_WHOLE]}),
    ("quantity in exponent form", body(quantity="1e3"), JSON, 400, {"quantity": [NOT_WHOLE]}),
    ("quantity a JSON float 1e3", body().replace('"quantity": 5', '"quantity": 1e3'), JSON, 400,
     {"quantity": [NOT_WHOLE]}),
    # Zero, negative, huge
    ("quantity minus zero", body(quantity="-0"), JSON, 400, {"quantity": [NOT_POSITIVE]}),
    ("quantity 2**63", body(quantity=2**63), JSON, 400, {"quantity": [TOO_MANY]}),
    ("quantity -2**63 - 1", body(quantity=-(2**63) - 1), JSON, 400, {"quantity": [NOT_POSITIVE]}),
    ("quantity 1e400 (infinite)", body().replace('"quantity": 5', '"quantity": 1e400'), JSON, 400,
     {"quantity": [NOT_WHOLE]}),
    ("quantity NaN", body().replace('"quantity": 5', '"quantity": NaN'), JSON, 400, "JSON parse error"),
    ("quantity Infinity", body().replace('"quantity": 5', '"quantity": Infinity'), JSON, 400, "JSON parse error"),
    ("quantity of 5000 digits, unquoted", body().replace('"quantity": 5', '"quantity": ' + "9" * 5000), JSON, 400,
     "JSON parse error"),
    ("quantity the string NaN", body(quantity="NaN"), JSON, 400, {"quantity": [NOT_WHOLE]}),
    # Unicode and very long emails
    ("email with a Cyrillic a", body(email="\u0430lice@example.com"), JSON, 400, {"email": [BAD_EMAIL]}),
    ("email with a zero-width space", body(email="ni\u200bna@example.com"), JSON, 400, {"email": [BAD_EMAIL]}),
    ("email with a fullwidth at sign", body(email="nina\uff20example.com"), JSON, 400, {"email": [BAD_EMAIL]}),
    ("email with a right-to-left override", body(email="\u202enina@example.com"), JSON, 400, {"email": [BAD_EMAIL]}),
    ("email of emoji", body(email="\U0001f600@example.com"), JSON, 400, {"email": [BAD_EMAIL]}),
    ("email with a header injection", body(email="nina@example.com\nBcc: eve@example.com"), JSON, 400,
     {"email": [BAD_EMAIL]}),
    ("email with a NUL", body(email="nina@example.com\x00"), JSON, 400, {"email": [NUL, BAD_EMAIL]}),
    ("email of 1000 characters", body(email="n" * 988 + "@example.com"), JSON, 400, {"email": [LONG_EMAIL, BAD_EMAIL]}),
    ("email with a local part of 10 KB", body(email="n" * 10_000 + "@example.com"), JSON, 400,
     {"email": [LONG_EMAIL, BAD_EMAIL]}),
    # Text Postgres cannot store, in fields read and in fields only kept in the payload
    ("order_id with a NUL", body(order_id="10\x0001"), JSON, 400, {"order_id": [NUL]}),
    ("name with an unpaired surrogate", body(name="Nina \ud800"), JSON, 400,
     {"name": ["Surrogate characters are not allowed: U+D800."]}),
    ("an extra field with a NUL", body(note="a\x00b"), JSON, 400, {"note": [NUL]}),
    ("an extra field with an unpaired surrogate", body(note="\udfff"), JSON, 400, {"note": [SURROGATE]}),
    ("an extra field nesting a NUL", body(line={"props": [{"k": "\x00"}]}), JSON, 400, {"line": [NUL]}),
    ("an extra field named with a NUL", body(**{"no\x00te": "x"}), JSON, 400,
     {"non_field_errors": ["A field name holds a null or unpaired surrogate character."]}),
    ("an extra form field with a NUL", "order_id=1001&email=nina%40example.com&product=weather&quantity=5&note=%00",
     FORM, 400, {"note": [NUL]}),
    # A key sent twice: the last value would win (issue 12, finding 9)
    ("a form quantity sent twice", "order_id=1001&email=nina%40example.com&product=weather&quantity=1&quantity=1000000",
     FORM, 400, {"quantity": [TWICE]}),
    ("a form email sent twice", "order_id=1001&email=nina%40example.com&email=eve%40example.com&product=weather"
     "&quantity=5", FORM, 400, {"email": [TWICE]}),
    ("an extra form field sent twice, quantity too", "order_id=1001&email=nina%40example.com&product=weather"
     "&quantity=5&note=a&note=b&quantity=5", FORM, 400, {"note": [TWICE], "quantity": [TWICE]}),
    ("a JSON quantity sent twice", '{"order_id": "1001", "email": "nina@example.com", "product": "weather",'
     ' "quantity": 1, "quantity": 1000000}', JSON, 400, {"detail": "JSON parse error - quantity is sent more than once"}),
    ("a JSON key sent twice in a nested object", body(line={"sku": "B"}).replace('"sku": "B"', '"sku": "A", "sku": "B"'), JSON, 400, {"detail": "JSON parse error - sku is sent more than once"}),
    # Line breaks in the identifiers our plain-text emails print (issue 12, finding 6)
    ("order_id with a line break", body(order_id="1001\n\nSECURITY NOTICE"), JSON, 400, {"order_id": [ONE_LINE]}),
    ("line_id with a carriage return", body(line_id="1\rBcc"), JSON, 400, {"line_id": [ONE_LINE]}),
    ("order_id with a line separator", body(order_id="1001\u2028x"), JSON, 400, {"order_id": [ONE_LINE]}),
    # Size and shape
    ("a 1 MB JSON body", body(note="x" * MB), JSON, 413, "this webhook reads at most 65,536"),
    ("a 1 MB form body", "order_id=1001&email=nina%40example.com&product=weather&quantity=5&note=" + "x" * MB, FORM,
     413, "this webhook reads at most 65,536"),
    ("a 1 MB body of another type", b"\x00" * MB, "application/octet-stream", 413, "bytes; this webhook reads"),
    ("JSON nested 5000 deep", body(quantity="QQ").replace('"QQ"', "[" * 5000 + "]" * 5000), JSON, 400,
     "nested too deeply"),
    ("1200 form fields", "order_id=1001&email=nina%40example.com&product=weather&quantity=5" + "&a=1" * 1200, FORM,
     400, "too many fields"),
    ("a JSON null", "null", JSON, 400, "No data provided"),
    ("a JSON number", "5", JSON, 400, "Expected a dictionary, but got int"),
    # Content types
    ("XML", "<order><order_id>1001</order_id></order>", "application/xml", 415, "Unsupported media type"),
    ("multipart form data", *_multipart(), 415, "Unsupported media type"),
    ("no content type", body(), "", 415, "Unsupported media type"),
    ("JSON sent as form data", body(), FORM, 400, "This field is required."),
    ("form data sent as JSON", "order_id=1001&email=nina%40example.com&product=weather&quantity=5", JSON, 400,
     "JSON parse error"),
    ("JSON in UTF-16", body().encode("utf-16"), JSON, 400, "JSON parse error"),
]  # fmt: skip


@pytest.mark.parametrize(
    "data, content_type, status, says", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_a_malformed_delivery_is_a_4xx_in_json_and_writes_nothing(
    zapier, products, mailoutbox, app_rows, data, content_type, status, says
):
    before = app_rows()

    response = zapier(body=data, content_type=content_type)

    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    if isinstance(says, dict):
        assert response.json() == says
    else:
        assert says in json.dumps(response.json())
    assert app_rows() == before
    assert mailoutbox == []


def test_the_size_limit_is_checked_after_the_secret_and_set_by_a_setting(zapier, products, settings):
    big = body(note="x" * MB)
    assert zapier(body=big, authorization="Bearer wrong").status_code == 401  # a stranger learns nothing

    settings.ZAPIER_WEBHOOK_MAX_BYTES = 2 * MB
    assert zapier(body=big).status_code == 201  # the limit, and nothing else, refused it above
    settings.ZAPIER_WEBHOOK_MAX_BYTES = len(body(order_id="1002")) - 1
    assert zapier(body=body(order_id="1002")).status_code == 413
    assert Purchase.objects.count() == 1


# --- Replays -------------------------------------------------------------------------------------

ORDER = {"order_id": "7001", "line_id": "1", "email": "nina@example.com", "product": "weather", "quantity": 100}


def test_a_delivery_replayed_however_it_is_encoded_grants_once(zapier, products, mailoutbox):
    first = zapier(ORDER | {"name": "Nina"})
    replays = [
        zapier(ORDER | {"name": "Nina"}),
        zapier(ORDER | {"quantity": "100"}, form=True),
        zapier({"quantity": "100", "product": "WTHR-100", "email": "  NINA@Example.COM ", "line_id": "1",
                "order_id": "7001"}),
        zapier(ORDER | {"name": "Nina N.", "note": "Zapier replay 4"}),
        zapier(body=json.dumps(ORDER, indent=4, ensure_ascii=True).encode()),
    ]  # fmt: skip

    assert first.status_code == 201
    assert [r.status_code for r in replays] == [200] * len(replays)
    assert all(r.json() == first.json() for r in replays)
    purchase = Purchase.objects.get()
    assert purchase.name == "Nina" and "note" not in purchase.payload  # the first delivery is what was kept
    assert LedgerEntry.objects.get().amount == 100
    assert Balance.objects.get().granted == 100
    assert Customer.objects.count() == 1
    assert len(mailoutbox) == 1


def test_a_replay_that_changes_what_was_bought_is_refused_and_grants_nothing(zapier, products, mailoutbox):
    assert zapier(ORDER).status_code == 201
    for change in [{"quantity": 1000}, {"product": "maps"}, {"email": "eve@example.com"}]:
        response = zapier(ORDER | change)
        assert response.status_code == 409, change
    assert zapier(ORDER).status_code == 200
    assert Balance.objects.get().granted == 100
    assert LedgerEntry.objects.count() == Purchase.objects.count() == Customer.objects.count() == 1
    assert len(mailoutbox) == 1
