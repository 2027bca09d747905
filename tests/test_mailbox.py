"""manage.py mailbox (local/mailbox.py): reading back what django-ses sent to the moto server."""

import io

import pytest
from django.core.mail import EmailMultiAlternatives
from django.core.management import call_command
from django.core.management.base import CommandError

from local.mailbox import mail_sent
from local.stack import ses_sender_verify


@pytest.fixture
def ses(settings, aws):
    settings.EMAIL_BACKEND = "creditportal.mail.SESBackend"
    ses_sender_verify(endpoint_url=aws, from_email=settings.DEFAULT_FROM_EMAIL)
    return aws


def send(to: str, subject: str, text: str) -> None:
    message = EmailMultiAlternatives(subject=subject, body=text, to=[to])
    message.attach_alternative(f"<p>{text} (as HTML)</p>", "text/html")
    assert message.send() == 1


def mailbox(*args: str) -> str:
    out = io.StringIO()
    call_command("mailbox", *args, stdout=out)
    return out.getvalue()


def test_it_reads_back_what_django_ses_sent_oldest_first_with_the_text_part(ses):
    send("alice@example.com", "First", "Client ID: cli_1\nClient secret: s3cret")
    send("bob@example.com", "Second", "Hello Bob")

    mails = mail_sent(ses)

    assert [(m.to, m.subject) for m in mails] == [(["alice@example.com"], "First"), (["bob@example.com"], "Second")]
    assert mails[0].text.strip() == "Client ID: cli_1\nClient secret: s3cret"
    assert mails[0].sender == "CreditPortal <credits@example.com>"


def test_the_command_prints_the_latest_email_in_full(ses):
    send("alice@example.com", "First", "one")
    send("bob@example.com", "Second", "two")

    output = mailbox("--moto", ses)

    assert "2 email(s)" in output
    assert "Subject: Second" in output and "To:      bob@example.com" in output
    assert "two" in output
    assert "First" not in output
    assert "(as HTML)" not in output


def test_it_shows_more_and_filters_by_recipient_case_insensitively(ses):
    send("alice@example.com", "For Alice 1", "a1")
    send("bob@example.com", "For Bob", "b")
    send("alice@example.com", "For Alice 2", "a2")

    output = mailbox("--moto", ses, "--to", "ALICE@example.com", "--count", "5")

    assert "2 email(s) to ALICE@example.com" in output
    assert output.index("For Alice 1") < output.index("For Alice 2")
    assert "For Bob" not in output


def test_an_empty_mailbox_says_so(ses):
    assert "No emails in the mailbox" in mailbox("--moto", ses)


def test_without_a_moto_server_it_says_to_start_one():
    from tests.conftest import _free_port

    with pytest.raises(CommandError, match="is `make run` running"):
        mailbox("--moto", f"http://127.0.0.1:{_free_port()}")
