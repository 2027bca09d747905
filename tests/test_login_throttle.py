"""Login, logout and the login throttle (django-axes, in Postgres): per (account, IP)
pair, and with a much higher limit per IP, with a clear message, for the portal and the
admin alike; and the client IP that Zappa hands Django behind API Gateway."""

import datetime
import json
import os
import subprocess
from pathlib import Path

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


def test_the_lock_holds_for_any_spelling_of_the_email(alice):
    spellings = [
        "alice@example.com",
        "ALICE@example.com",
        " Alice@Example.COM",
        "alice@EXAMPLE.com",
        "alice@example.com ",
    ]
    for email in spellings:
        login(Client(), email, "wrong")

    locked = Client()
    assert login(locked, alice.email, PASSWORD).status_code == 429
    assert logged_in_as(locked) is None


def test_one_accounts_lockout_leaves_everyone_else_on_its_ip_alone(alice, bob, staff):
    """An office, a NAT, a VPN: five typos of one person lock that person there, nobody else."""
    for _ in range(5):
        login(Client(), alice.email, "wrong")
    assert login(Client(), alice.email, PASSWORD).status_code == 429

    other = Client()
    assert login(other, bob.email, PASSWORD).status_code == 302
    assert logged_in_as(other) == str(bob.user.pk)
    admin = Client()  # staff's admin login from the same IP, which used to be locked with it
    assert login(admin, staff.email, "staff password 123", url=reverse("admin:login")).status_code == 302
    assert logged_in_as(admin) == str(staff.pk)


def test_the_lock_is_the_pairs_the_same_account_from_elsewhere_logs_in(alice):
    for _ in range(5):
        login(Client(), alice.email, "wrong", ip="203.0.113.7")

    elsewhere = Client()
    assert login(elsewhere, alice.email, PASSWORD, ip="198.51.100.1").status_code == 302
    assert logged_in_as(elsewhere) == str(alice.user.pk)


@pytest.mark.usefixtures("fast_password_hashing")
def test_the_ip_limit_trips_for_every_account_at_its_own_much_higher_limit(alice, bob, settings):
    limit = settings.LOGIN_IP_FAILURE_LIMIT
    assert limit == 50 and limit >= 10 * settings.AXES_FAILURE_LIMIT
    ip = "203.0.113.50"
    guesses = [f"guess{i}@example.com" for i in range(limit)]  # one try each: no pair comes near its 5
    for email in guesses[:-1]:
        assert login(Client(), email, "wrong", ip=ip).status_code == 200
    assert login(Client(), bob.email, PASSWORD, ip=ip).status_code == 302  # one short of the IP's limit

    assert login(Client(), guesses[-1], "wrong", ip=ip).status_code == 429  # the IP's 50th failure

    from_that_ip = Client()
    response = login(from_that_ip, alice.email, PASSWORD, ip=ip)
    assert response.status_code == 429
    html = response.content.decode()
    assert "Too many failed logins" in html and "50 failed logins from your network" in html
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


# --- The client IP behind API Gateway --------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_PYTHON = ROOT / os.getenv("DEPLOY_VENV", ".venv-deploy") / "bin" / "python"
# An edge-optimized REST API's proxy event, after AWS's sample (`sam local generate-event
# apigateway aws-proxy`): the client sent an X-Forwarded-For of its own (203.0.113.66);
# API Gateway saw the client at 198.51.100.23 (identity.sourceIp) through CloudFront's
# edge (130.176.88.35, last in X-Forwarded-For).
EDGE_EVENT = json.loads((ROOT / "tests" / "events" / "rest_proxy_edge.json").read_text())


def zappa_remote_addr(event: dict) -> str:
    """REMOTE_ADDR as Zappa's own WSGI adapter (the deploy venv's zappa) builds it from `event`."""
    code = "import json, sys; from zappa.wsgi import create_wsgi_request; "
    code += "print(create_wsgi_request(json.load(sys.stdin))['REMOTE_ADDR'])"
    done = subprocess.run(
        [str(DEPLOY_PYTHON), "-c", code], input=json.dumps(event), capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_zappa_gives_django_the_client_ip_of_an_edge_rest_api_not_the_clients_header():
    assert zappa_remote_addr(EDGE_EVENT) == EDGE_EVENT["requestContext"]["identity"]["sourceIp"] == "198.51.100.23"


def test_behind_a_regional_endpoint_the_client_would_choose_its_own_ip():
    """Why the stages pin EDGE: without CloudFront's hop, Zappa's "second from the right" is
    whatever the client put in X-Forwarded-For, so anyone could pick the IP axes counts."""
    regional = json.loads(json.dumps(EDGE_EVENT))
    regional["headers"]["X-Forwarded-For"] = "203.0.113.66, 198.51.100.23"
    regional["multiValueHeaders"]["X-Forwarded-For"] = ["203.0.113.66, 198.51.100.23"]

    assert zappa_remote_addr(regional) == "203.0.113.66"


@pytest.mark.parametrize("stage", ["dev", "production"])
def test_every_stage_is_an_edge_optimized_rest_api(stage):
    stages = json.loads((ROOT / "zappa_settings.json").read_text())
    config = {**stages.get(stages[stage].get("extends", ""), {}), **stages[stage]}
    assert config["apigateway_version"] == "v1"  # REST API, not HTTP API
    assert config["endpoint_configuration"] == ["EDGE"]


def test_axes_reads_the_ip_from_remote_addr_alone(alice, settings):
    assert settings.AXES_IPWARE_META_PRECEDENCE_ORDER == ("REMOTE_ADDR",)
    for _ in range(5):  # a client-sent X-Forwarded-For changes nothing
        Client().post(LOGIN, {"username": alice.email, "password": "wrong"}, REMOTE_ADDR="198.51.100.23",
                      HTTP_X_FORWARDED_FOR=f"203.0.113.{_}")  # fmt: skip

    assert list(AccessAttempt.objects.values_list("ip_address", "failures_since_start")) == [("198.51.100.23", 5)]
