"""The emails a purchase sends: content (locmem), delivery through django-ses to a
real moto SES server over HTTP, and what happens when sending fails."""

import logging
import re
from email import message_from_string, policy

import boto3
import pytest
import requests
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import get_connection
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from accounts.links import password_set_url
from accounts.models import Credential, Customer
from ledger.models import Balance, Purchase
from ledger.services import usage_record

FIRST = {"order_id": "1001", "email": "nina@example.com", "product": "weather", "quantity": "100", "name": "Nina"}
PASSWORD_LINK = re.compile(r"http://portal\.test/account/reset/(?P<uid>[\w-]+)/(?P<token>[\w-]+)/")


def credentials_in(text: str) -> tuple[str, str]:
    client_id = re.search(r"^Client ID: (\S+)", text, re.M).group(1)
    secret = re.search(r"^Client secret: (\S+)", text, re.M).group(1)
    return client_id, secret


def test_the_welcome_email_has_the_credentials_a_token_example_the_balance_and_a_password_link(
    zapier, products, mailoutbox
):
    assert zapier(FIRST).status_code == 201

    [email] = mailoutbox
    customer = Customer.objects.get()
    credential = Credential.objects.get()
    assert email.subject == "Your CreditPortal API credentials and 100 Weather API credits"
    assert email.to == ["nina@example.com"]
    assert email.from_email == "CreditPortal <credits@example.com>"
    client_id, secret = credentials_in(email.body)
    assert client_id == credential.client_id and credential.check_secret(secret)
    assert (
        f"curl -s -X POST http://portal.test/api/token/ -d grant_type=client_credentials"
        f" -d client_id={client_id} -d client_secret={secret}"
    ) in email.body
    assert "Weather API (weather): 100 credits remaining." in email.body
    link = PASSWORD_LINK.search(email.body)
    assert urlsafe_base64_decode(link["uid"]).decode() == str(customer.user.pk)
    assert default_token_generator.check_token(customer.user, link["token"])

    [(html, mimetype)] = email.alternatives
    assert mimetype == "text/html"
    assert f"<code>{client_id}</code>" in html and f"<code>{secret}</code>" in html
    assert f'href="{link.group(0)}"' in html
    assert "<strong>100</strong> credits remaining" in html


def test_a_later_purchase_sends_credits_added_with_the_new_balance_and_no_secret(zapier, alice, products, mailoutbox):
    zapier({**FIRST, "email": "alice@example.com"})
    usage_record(customer=alice, product=products["weather"], amount=25)

    zapier({**FIRST, "email": "alice@example.com", "order_id": "1002", "quantity": "10"})

    email = mailoutbox[-1]
    assert email.subject == "10 Weather API credits added to your CreditPortal account"
    assert "Weather API (weather): 85 credits remaining." in email.body
    assert "<strong>85</strong> credits remaining" in email.alternatives[0][0]
    for part in [email.body, email.alternatives[0][0]]:
        assert "secret:" not in part.lower() and "/account/reset/" not in part


def test_the_password_link_is_built_from_the_portal_base_url(alice, settings):
    settings.PORTAL_BASE_URL = "https://credits.example.org"

    url = password_set_url(alice.user)

    uidb64 = urlsafe_base64_encode(force_bytes(alice.user.pk))
    match = re.fullmatch(rf"https://credits\.example\.org/account/reset/{uidb64}/(?P<token>[0-9a-z]+-[0-9a-f]+)/", url)
    assert match, url
    assert default_token_generator.check_token(alice.user, match["token"])


@pytest.fixture
def ses(aws, settings):
    """django-ses sending to the moto server; the sender is NOT verified yet."""
    settings.EMAIL_BACKEND = "creditportal.mail.SESBackend"
    return boto3.client("ses", region_name="us-east-1")


def sent_through_ses(aws) -> list:
    data = requests.get(f"{aws}/moto-api/data.json", timeout=10).json()
    return [message_from_string(m["raw_data"], policy=policy.default) for m in data["ses"]["RawMessage"]]


def test_the_welcome_email_goes_out_through_django_ses(zapier, products, ses, aws):
    ses.verify_email_identity(EmailAddress="credits@example.com")

    assert zapier(FIRST).status_code == 201

    [message] = sent_through_ses(aws)
    assert message["To"] == "nina@example.com"
    assert message["Subject"] == "Your CreditPortal API credentials and 100 Weather API credits"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    client_id, secret = credentials_in(text)
    assert Credential.objects.get(client_id=client_id).check_secret(secret)
    assert secret in html
    purchase = Purchase.objects.get()
    assert purchase.email_status == Purchase.EmailStatus.SENT and purchase.emailed is not None


def test_every_email_goes_out_through_one_ses_client_per_process(zapier, products, ses, aws):
    ses.verify_email_identity(EmailAddress="credits@example.com")
    first, second = get_connection(), get_connection()
    first.open(), second.open()

    assert first.connection is second.connection  # django-ses alone builds one per message
    assert zapier(FIRST).status_code == 201
    assert zapier(FIRST | {"order_id": "1002"}).status_code == 201
    assert [m["To"] for m in sent_through_ses(aws)] == ["nina@example.com", "nina@example.com"]
    statuses = Purchase.objects.order_by("pk").values_list("email_status", flat=True)
    assert list(statuses) == [Purchase.EmailStatus.SENT] * 2


@pytest.mark.django_db(transaction=True)  # commits for real: the email goes out inside the admin request
def test_a_failed_send_keeps_the_purchase_and_staff_can_resend_with_a_new_secret(
    zapier, products, ses, aws, client, staff, caplog
):
    # SES refuses: the sender is not verified. The purchase must stand anyway.
    response = zapier(FIRST)

    assert response.status_code == 201
    assert response.json()["remaining"] == 100
    purchase = Purchase.objects.get()
    assert purchase.status == Purchase.Status.APPLIED
    assert Balance.objects.get().granted == 100
    assert purchase.email_status == Purchase.EmailStatus.FAILED
    assert "MessageRejected" in purchase.email_error
    assert purchase.emailed is None
    assert sent_through_ses(aws) == []
    assert any(r.levelno == logging.ERROR and "the welcome email failed" in r.getMessage() for r in caplog.records)
    old_hash = Credential.objects.get().secret_hash

    # Staff see it, fix SES, and resend: a NEW secret, since the first one is gone.
    ses.verify_email_identity(EmailAddress="credits@example.com")
    client.force_login(staff)
    changelist = client.get(reverse("admin:ledger_purchase_changelist"), {"email_status__exact": "failed"})
    assert "Failed: MessageRejected" in changelist.content.decode()
    resent = client.post(
        reverse("admin:ledger_purchase_changelist"),
        {"action": "resend_welcome_email", "_selected_action": [purchase.pk], "index": 0},
        follow=True,
    )

    assert resent.status_code == 200
    assert f"Purchase {purchase}: welcome email with a new secret sent to nina@example.com." in resent.content.decode()
    [message] = sent_through_ses(aws)
    client_id, secret = credentials_in(message.get_body(preferencelist=("plain",)).get_content())
    assert message["Subject"] == "Your new CreditPortal API credentials (the previous secret no longer works)"
    credential = Credential.objects.get()
    assert credential.client_id == client_id and credential.check_secret(secret)
    assert credential.secret_hash != old_hash
    purchase.refresh_from_db()
    assert (purchase.email_status, purchase.email_error) == (Purchase.EmailStatus.SENT, "")
    assert Balance.objects.get().granted == 100  # resending grants nothing


# --- The buyer's name in the plain-text emails (issue 12, finding 6) -------------------------------

FAKE_NOTICE = (
    "Nina\r\n\r\nSECURITY NOTICE\n---------------\nYour account is locked. Confirm your card at"
    " https://evil.example/verify\u2028\u2029\x0b\x0c\x1b[2J\u202e\u200b within 24 hours."
)


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_a_buyer_name_cannot_add_lines_to_the_welcome_email(zapier, products, mailoutbox, form):
    assert zapier(FIRST | {"name": FAKE_NOTICE}, form=form).status_code == 201

    [email] = mailoutbox
    lines = email.body.splitlines()
    assert lines[0].startswith("Hello Nina SECURITY NOTICE --------------- Your account is locked.")
    assert len(lines[0]) <= len("Hello ,") + 80  # the name is cut at 80 characters
    assert not [line for line in lines[1:] if "SECURITY" in line or "evil.example" in line]
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029\u202e\u200b]", email.body)
    customer, purchase = Customer.objects.get(), Purchase.objects.get()
    assert customer.name == customer.user.name == purchase.name == lines[0].removeprefix("Hello ").removesuffix(",")
    assert purchase.payload["name"] == FAKE_NOTICE  # what the store sent is kept as sent, for staff


def test_a_buyer_name_cannot_add_lines_to_the_credits_added_email(zapier, alice, products, mailoutbox):
    # alice exists: her name stays hers, and this order's name only goes into the purchase row.
    assert zapier(FIRST | {"email": alice.email, "name": FAKE_NOTICE}).status_code == 201

    [email] = mailoutbox
    assert email.body.splitlines()[0] == "Hello Alice,"
    assert "SECURITY NOTICE" not in email.body
    assert "\n" not in Purchase.objects.get().name
