"""manage.py mailbox (local/mailbox.py): reading back what django-ses sent to the moto server."""

import io
import os
import subprocess
from pathlib import Path

import pytest
from django.core.mail import EmailMultiAlternatives
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Credential, Customer
from local.mailbox import mail_sent
from local.stack import ses_sender_verify


@pytest.fixture(autouse=True)
def debug(debug_settings):
    return debug_settings  # as under make mailbox


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


def test_the_command_prints_every_email_in_full_newest_last(ses):
    send("alice@example.com", "First", "Client ID: cli_1")
    send("bob@example.com", "Second", "two")
    send("alice@example.com", "Third", "three")

    output = mailbox("--moto", ses)

    assert "3 email(s) in the mailbox of" in output and "all, newest last" in output
    assert output.index("--- email 1 of 3") < output.index("Subject: First") < output.index("Client ID: cli_1")
    assert output.index("Subject: First") < output.index("Subject: Second") < output.index("Subject: Third")
    assert "To:      bob@example.com" in output and "three" in output
    assert "(as HTML)" not in output


def test_count_shows_only_the_latest(ses):
    send("alice@example.com", "First", "one")
    send("bob@example.com", "Second", "two")

    output = mailbox("--moto", ses, "--count", "1")

    assert "2 email(s)" in output and "the latest 1, newest last" in output
    assert "--- email 2 of 2" in output and "Subject: Second" in output
    assert "First" not in output


def test_it_filters_by_recipient_case_insensitively(ses):
    send("alice@example.com", "For Alice 1", "a1")
    send("bob@example.com", "For Bob", "b")
    send("alice@example.com", "For Alice 2", "a2")

    output = mailbox("--moto", ses, "--to", "ALICE@example.com")

    assert "2 email(s) to ALICE@example.com" in output
    assert output.index("For Alice 1") < output.index("For Alice 2")
    assert "For Bob" not in output


def test_an_empty_mailbox_says_so(ses):
    assert "No emails in the mailbox" in mailbox("--moto", ses)


def test_without_a_moto_server_it_says_to_start_one():
    from tests.conftest import _free_port

    with pytest.raises(CommandError, match="is `make run` running"):
        mailbox("--moto", f"http://127.0.0.1:{_free_port()}")


# --- The credentials, for the walkthrough's shell (issue 12, first hour) ----------------------------

WALKTHROUGH = Path(__file__).resolve().parent.parent / "docs" / "walkthrough.md"
REPO = WALKTHROUGH.parent.parent


def walkthrough_credentials_line() -> str:
    """The walkthrough's line that puts the client id and secret into the shell, as a reader copies it."""
    [line] = [line for line in WALKTHROUGH.read_text().splitlines() if "eval" in line]
    return line


def run_in_bash(script: str, moto_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOTO_PORT": moto_url.rsplit(":", 1)[1], "HOST": "127.0.0.1"}
    return subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_credentials_come_from_the_newest_email_that_holds_them(ses):
    send("alice@example.com", "Welcome", "Client ID: cli_1\nClient secret: old-secret")
    send("alice@example.com", "Welcome again", "Client ID: cli_1\nClient secret: new-secret")  # a resent welcome
    send("alice@example.com", "Credits added", "Client ID is the same: nothing changes")

    assert mailbox("--moto", ses, "--to", "alice@example.com", "--credentials") == (
        "CLIENT_ID=cli_1\nCLIENT_SECRET=new-secret\n"
    )


def test_credentials_fail_saying_why_when_no_email_holds_them(ses):
    send("alice@example.com", "Credits added", "Hello Alice")

    with pytest.raises(
        CommandError, match=r"none of the 1 email\(s\) to alice@example.com .* holds a client id and secret"
    ):
        mailbox("--moto", ses, "--to", "alice@example.com", "--credentials")


@pytest.fixture
def webhook_emails(ses, settings, zapier, products):
    """The walkthrough's purchases through the real webhook, emailed through django-ses to moto."""
    settings.MIRROR_ENABLED = False  # not under test: the emails are

    def buy(order_id: str, email: str = "you@example.com") -> None:
        data = {"order_id": order_id, "email": email, "name": "You", "product": "WTHR-100", "quantity": "5"}
        assert zapier(data, form=True).status_code == 201

    return buy


def test_the_walkthroughs_eval_line_sets_the_credentials_after_later_emails_arrived(webhook_emails, ses):
    webhook_emails("1001")  # the welcome email, with the credentials
    webhook_emails("1002")  # "credits added": newer, and without them
    credential = Customer.objects.get(email="you@example.com").credentials.get()

    done = run_in_bash(walkthrough_credentials_line() + '\nprintf "%s %s" "$CLIENT_ID" "$CLIENT_SECRET" >&2', ses)

    assert done.returncode == 0, done.stderr
    client_id, secret = done.stderr.split()
    assert client_id == credential.client_id
    assert Credential.objects.get(client_id=client_id).check_secret(secret)


def test_the_walkthroughs_eval_line_fails_loudly_when_no_email_holds_credentials(webhook_emails, ses):
    webhook_emails("1001", email="someone.else@example.com")

    done = run_in_bash(walkthrough_credentials_line() + '\necho "status=$? CLIENT_ID=[$CLIENT_ID]"', ses)

    assert "none of the 0 email(s) to you@example.com" in done.stderr  # said, not silent
    assert "status=2 CLIENT_ID=[]" in done.stdout  # the line itself failed (make's status), and set nothing
