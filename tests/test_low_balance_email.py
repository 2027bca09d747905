"""The low-balance email: once when remaining credits fall below the threshold
(LOW_BALANCE_FRACTION of the last purchase, at least 1), not once per call; a
new grant re-arms it; it goes out after commit and a failed send loses nothing."""

import logging
import socket

import boto3
import pytest
from django.db import transaction

from accounts.models import Customer
from ledger.low_balance import low_balance_threshold
from ledger.models import Balance, LedgerEntry
from ledger.services import credits_adjust, credits_grant, usage_record


@pytest.fixture
def spend(django_capture_on_commit_callbacks):
    """Record usage as sync_usage does, and run what it schedules after commit."""

    def run(customer: Customer, product, amount: int) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            usage_record(customer=customer, product=product, amount=amount)

    return run


def balance_of(customer, product) -> Balance:
    return Balance.objects.get(customer=customer, product=product)


def test_one_email_when_remaining_falls_below_the_threshold_not_one_per_call(
    alice, products, purchase, spend, mailoutbox, settings
):
    weather = products["weather"]
    purchase(alice, weather, 100)  # threshold: 10

    spend(alice, weather, 85)
    spend(alice, weather, 5)
    assert mailoutbox == []  # 10 left is not below 10
    assert balance_of(alice, weather).low_balance_notified is None

    spend(alice, weather, 1)  # 9 left
    for _ in range(5):
        spend(alice, weather, 1)

    assert len(mailoutbox) == 1
    email = mailoutbox[0]
    assert email.to == [alice.email]
    assert email.subject == "Your Weather API credits are running low"
    assert "9 of the 100 you were granted are left" in email.body
    assert settings.STORE_URL in email.body
    assert "Buy more credits" in email.alternatives[0][0]
    assert balance_of(alice, weather).low_balance_notified is not None
    assert balance_of(alice, weather).remaining == 4


@pytest.mark.parametrize("spent", [5, 7], ids=["all of it", "more than granted (usage reported past a cut)"])
def test_with_nothing_left_it_says_the_credits_are_used_up(
    alice, products, purchase, spend, mailoutbox, settings, spent
):
    weather = products["weather"]
    purchase(alice, weather, 5)  # threshold: 1
    spend(alice, weather, 3)
    assert mailoutbox == []

    spend(alice, weather, spent - 3)

    [email] = mailoutbox
    assert email.subject == "Your Weather API credits are used up"
    assert "Your Weather API credits are used up: none of the 5 you were granted are left" in email.body
    assert "calls to the API are refused until you buy more" in email.body
    assert "running low" not in email.body
    html = email.alternatives[0][0]
    assert "<strong>used up</strong>" in html and "running low" not in html
    assert settings.STORE_URL in email.body and "Buy more credits" in html


def test_a_new_grant_rearms_it(alice, products, purchase, spend, mailoutbox):
    weather = products["weather"]
    purchase(alice, weather, 100)
    spend(alice, weather, 95)
    assert len(mailoutbox) == 1

    purchase(alice, weather, 50)  # 55 left; the threshold is now 5 (10% of 50)
    assert balance_of(alice, weather).low_balance_notified is None
    spend(alice, weather, 50)
    assert len(mailoutbox) == 1  # 5 left is not below 5

    spend(alice, weather, 1)

    assert len(mailoutbox) == 2
    assert "4 of the 150 you were granted are left" in mailoutbox[1].body


def test_a_staff_top_up_rearms_it_too(alice, staff, products, purchase, spend, mailoutbox):
    weather = products["weather"]
    purchase(alice, weather, 100)
    spend(alice, weather, 95)

    credits_adjust(customer=alice, product=weather, amount=100, reason="goodwill", by=staff)
    assert balance_of(alice, weather).low_balance_notified is None
    spend(alice, weather, 100)

    assert len(mailoutbox) == 2


def test_a_staff_cut_does_not_rearm_it(alice, staff, products, purchase, spend, mailoutbox):
    weather = products["weather"]
    purchase(alice, weather, 100)
    spend(alice, weather, 95)

    credits_adjust(customer=alice, product=weather, amount=-2, reason="double counted", by=staff)
    spend(alice, weather, 1)

    assert len(mailoutbox) == 1


def test_each_product_is_told_on_its_own(alice, products, purchase, spend, mailoutbox):
    purchase(alice, products["weather"], 100)
    purchase(alice, products["maps"], 20)  # threshold 2

    spend(alice, products["weather"], 95)
    spend(alice, products["maps"], 19)

    assert sorted(m.subject for m in mailoutbox) == [
        "Your Maps API credits are running low",
        "Your Weather API credits are running low",
    ]


def test_nothing_is_sent_when_the_usage_is_rolled_back(
    alice, products, purchase, mailoutbox, django_capture_on_commit_callbacks
):
    weather = products["weather"]
    purchase(alice, weather, 100)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        usage_record(customer=alice, product=weather, amount=99)
        raise RuntimeError("the sync failed later in the same transaction")

    assert mailoutbox == []
    balance = balance_of(alice, weather)
    assert (balance.used, balance.low_balance_notified) == (0, None)


def test_the_email_waits_for_the_commit(alice, products, purchase, mailoutbox, django_capture_on_commit_callbacks):
    purchase(alice, products["weather"], 100)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        usage_record(customer=alice, product=products["weather"], amount=99)

    assert mailoutbox == []
    # The email (and the gate's mirror write) waits for the commit; running them sends it once.
    for callback in callbacks:
        callback()
    assert len(mailoutbox) == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: nothing listens there


def test_a_failed_send_is_logged_and_the_usage_stands(alice, products, purchase, spend, settings, caplog):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", _closed_port(), 5
    weather = products["weather"]
    purchase(alice, weather, 100)

    with caplog.at_level(logging.ERROR, logger="ledger.low_balance"):
        spend(alice, weather, 95)

    assert "Low-balance email for balance" in caplog.text
    assert "ConnectionRefusedError" in caplog.text
    balance = balance_of(alice, weather)
    assert balance.used == 95
    assert LedgerEntry.objects.filter(customer=alice, kind=LedgerEntry.Kind.USAGE, amount=-95).exists()


@pytest.mark.parametrize(
    "bought, fraction, threshold",
    [(100, 0.1, 10), (15, 0.1, 2), (5, 0.1, 1), (1, 0.1, 1), (1000, 0.25, 250), (30, 0.1, 3)],
)
def test_the_threshold_is_a_fraction_of_the_last_purchase_and_at_least_one(
    alice, products, purchase, settings, bought, fraction, threshold
):
    settings.LOW_BALANCE_FRACTION = fraction
    purchase(alice, products["weather"], 999, days_ago=3)
    purchase(alice, products["weather"], bought)

    assert low_balance_threshold(balance=balance_of(alice, products["weather"])) == threshold


def test_without_a_purchase_the_threshold_follows_what_is_granted(alice, staff, products):
    credits_adjust(customer=alice, product=products["weather"], amount=40, reason="trial", by=staff)

    assert low_balance_threshold(balance=balance_of(alice, products["weather"])) == 4


def test_it_goes_out_through_django_ses_to_the_moto_server(alice, products, purchase, spend, settings, aws):
    settings.EMAIL_BACKEND = "creditportal.mail.SESBackend"
    settings.AWS_SES_REGION_ENDPOINT_URL = aws  # django-ses passes its own endpoint_url to boto3
    ses = boto3.client("ses", region_name="us-east-1", endpoint_url=aws)
    ses.verify_email_identity(EmailAddress="credits@example.com")  # DEFAULT_FROM_EMAIL's address
    credits_grant(customer=alice, product=products["weather"], amount=100)

    spend(alice, products["weather"], 90)
    assert ses.get_send_quota()["SentLast24Hours"] == 0

    spend(alice, products["weather"], 5)
    after_one_email = ses.get_send_quota()["SentLast24Hours"]
    # moto counts a raw email's recipient once from the envelope and once from its To header
    assert after_one_email == 2
    spend(alice, products["weather"], 1)
    spend(alice, products["weather"], 1)

    assert ses.get_send_quota()["SentLast24Hours"] == after_one_email
