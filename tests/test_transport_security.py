"""Production's transport settings: HTTPS only, secure cookies, HSTS, a Content-Security-Policy,
an idle session timeout; and `manage.py check --deploy` finds nothing to warn about.

The suite's own settings turn the HTTPS redirect off (pyproject.toml: the test client speaks
plain HTTP); the tests here turn it back on where they look at it. Chromium's view of the CSP
(the header arrives, no page violates it) is in tests/test_portal_browser.py."""

import datetime
import os
import secrets
import subprocess
import sys

from django.contrib.sessions.models import Session
from django.utils import timezone

from tests.test_settings import PRODUCTION, ROOT, loaded

PORTAL = "/account/"
LOGIN = "/account/login/"


def test_check_deploy_finds_nothing_with_production_settings():
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "creditportal.settings",
        **PRODUCTION,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),  # as long and random as check --deploy asks
    }
    command = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_make_run_keeps_plain_http_working():
    names = ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS")
    development = loaded({"DJANGO_DEBUG": "1"}, *names)
    assert development == dict.fromkeys(names[:3], False) | {"SECURE_HSTS_SECONDS": 0}
    production = loaded(PRODUCTION, *names, "SECURE_PROXY_SSL_HEADER")
    assert production == dict.fromkeys(names[:3], True) | {
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


def test_plain_http_is_sent_to_https_and_api_gateways_https_is_served_with_hsts_and_the_csp(client, settings, db):
    settings.SECURE_SSL_REDIRECT = True  # as in production

    plain = client.get(LOGIN)
    assert (plain.status_code, plain["Location"]) == (301, f"https://testserver{LOGIN}")
    assert "csrftoken" not in plain.cookies

    # What API Gateway (through Zappa) hands the function: HTTPS, said in X-Forwarded-Proto.
    answer = client.get(LOGIN, HTTP_X_FORWARDED_PROTO="https")
    assert answer.status_code == 200
    assert answer["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert answer.cookies["csrftoken"]["secure"] is True
    policy = answer["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy


def test_every_page_carries_the_csp(client, staff, alice, products, purchase):
    purchase(alice, products["weather"], 10)
    client.force_login(staff)
    for path in (
        "/admin/",
        f"/admin/accounts/customer/{alice.pk}/change/",
        "/admin/ledger/purchase/",
        "/admin/ledger/ledgerentry/",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "default-src 'self'" in response["Content-Security-Policy"], path
        assert b' style="' not in response.content and b" style='" not in response.content, path


def test_a_session_ends_when_idle_and_each_request_renews_it(client, alice, settings):
    assert settings.SESSION_COOKIE_AGE == 30 * 60 and settings.SESSION_SAVE_EVERY_REQUEST
    client.force_login(alice.user)
    session = Session.objects.get(session_key=client.session.session_key)

    # Almost idle for 30 minutes: a request renews it for another 30.
    Session.objects.filter(pk=session.pk).update(expire_date=timezone.now() + datetime.timedelta(minutes=1))
    response = client.get(PORTAL)
    assert response.status_code == 200
    assert response.cookies["sessionid"]["max-age"] == 1800
    renewed = Session.objects.get(pk=session.pk).expire_date
    assert renewed > timezone.now() + datetime.timedelta(minutes=29)

    # Idle past the timeout: logged out.
    Session.objects.filter(pk=session.pk).update(expire_date=timezone.now() - datetime.timedelta(seconds=1))
    response = client.get(PORTAL)
    assert (response.status_code, response["Location"]) == (302, f"{LOGIN}?next={PORTAL}")
