"""Login, logout and the login throttle (django-axes, in Postgres): per account
and per IP, with a clear message, for the portal and the admin alike."""

import datetime

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.urls import reverse
from django.utils import timezone

LOGIN = reverse("account_login")
PASSWORD = "correct horse battery staple"  # the personas' password (tests/conftest.py)


def login(client: Client, email: str, password: str, ip: str = "203.0.113.7", url: str = LOGIN):
    return client.post(url, {"username": email, "password": password}, REMOTE_ADDR=ip)


def logged_in_as(client: Client):
    return client.session.get("_auth_user_id")


def test_alice_logs_in_by_email_in_any_case_and_lands_on_her_account(client, alice):
    response = login(client, "  Alice@EXAMPLE.com ", PASSWORD)

    assert response.status_code == 302
    assert response["Location"] == reverse("account_dashboard")
    assert logged_in_as(client) == str(alice.user.pk)


def test_a_wrong_password_says_so_and_logs_nobody_in(client, alice):
    response = login(client, alice.email, "wrong")

    assert response.status_code == 200
    assert "That email and password do not match an account" in response.content.decode()
    assert logged_in_as(client) is None


def test_logout_is_a_post_and_says_so(client, alice):
    login(client, alice.email, PASSWORD)
    assert client.get(reverse("account_logout")).status_code == 405
    assert logged_in_as(client) == str(alice.user.pk)

    response = client.post(reverse("account_logout"), follow=True)

    assert response.redirect_chain[-1][0] == LOGIN
    assert "You are logged out." in response.content.decode()
    assert logged_in_as(client) is None
    assert client.get(reverse("account_dashboard")).status_code == 302


def test_five_wrong_passwords_lock_the_account_with_a_clear_message(client, alice, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    for _ in range(4):
        assert login(client, alice.email, "wrong").status_code == 200

    fifth = login(client, alice.email, "wrong")

    assert fifth.status_code == 429
    html = fifth.content.decode()
    assert "Too many failed logins" in html
    assert "paused after 5 failed attempts for 15 minutes" in html
    assert reverse("password_reset") in html

    right = login(client, alice.email, PASSWORD)  # even the right password waits
    assert right.status_code == 429
    assert logged_in_as(client) is None


def test_the_account_lock_holds_from_any_ip_and_any_spelling(alice, bob):
    spellings = [
        "alice@example.com",
        "ALICE@example.com",
        " Alice@Example.COM",
        "alice@EXAMPLE.com",
        "alice@example.com ",
    ]
    for i, email in enumerate(spellings):
        login(Client(), email, "wrong", ip=f"198.51.100.{i + 1}")

    locked = Client()
    assert login(locked, alice.email, PASSWORD, ip="192.0.2.99").status_code == 429
    assert logged_in_as(locked) is None

    other = Client()  # bob, from an address that failed once for alice, is not locked
    assert login(other, bob.email, PASSWORD, ip="198.51.100.1").status_code == 302
    assert logged_in_as(other) == str(bob.user.pk)


def test_the_ip_lock_holds_for_every_account(alice, bob):
    for i in range(5):
        login(Client(), f"guess{i}@example.com", "wrong", ip="203.0.113.50")

    from_that_ip = Client()
    response = login(from_that_ip, alice.email, PASSWORD, ip="203.0.113.50")
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert logged_in_as(from_that_ip) is None

    elsewhere = Client()
    assert login(elsewhere, alice.email, PASSWORD, ip="203.0.113.51").status_code == 302
    assert logged_in_as(elsewhere) == str(alice.user.pk)


def test_a_good_login_does_not_wipe_the_failures_of_its_ip(alice, bob):
    """An attacker's own good login must not reset the count against the account they guess at."""
    for _ in range(3):
        login(Client(), alice.email, "wrong", ip="203.0.113.9")
    assert login(Client(), bob.email, PASSWORD, ip="203.0.113.9").status_code == 302
    for _ in range(2):
        last = login(Client(), alice.email, "wrong", ip="203.0.113.9")

    assert last.status_code == 429


def test_the_lock_lifts_after_the_cool_off(client, alice):
    for _ in range(5):
        login(client, alice.email, "wrong")
    assert login(client, alice.email, PASSWORD).status_code == 429

    AccessAttempt.objects.update(attempt_time=timezone.now() - datetime.timedelta(minutes=16))

    assert login(client, alice.email, PASSWORD).status_code == 302
    assert logged_in_as(client) == str(alice.user.pk)


def test_attempts_during_the_lock_do_not_extend_it(client, alice):
    for _ in range(5):
        login(client, alice.email, "wrong")
    AccessAttempt.objects.update(attempt_time=timezone.now() - datetime.timedelta(minutes=14))
    login(client, alice.email, "wrong")  # refused while locked: not counted

    AccessAttempt.objects.update(attempt_time=timezone.now() - datetime.timedelta(minutes=16))

    assert login(client, alice.email, PASSWORD).status_code == 302


def test_the_admin_login_is_throttled_too(client, staff):
    admin_login = reverse("admin:login")
    for _ in range(5):
        login(client, staff.email, "wrong", url=admin_login)

    response = login(client, staff.email, "staff password 123", url=admin_login)

    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert logged_in_as(client) is None


@pytest.mark.parametrize("limit", [3])
def test_the_limit_comes_from_settings(client, alice, settings, limit):
    settings.AXES_FAILURE_LIMIT = limit
    responses = [login(client, alice.email, "wrong").status_code for _ in range(limit)]

    assert responses == [200] * (limit - 1) + [429]
