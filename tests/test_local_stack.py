"""The whole stack end to end through the local API Gateway stand-in, over real HTTP only:

Zapier webhook (Django, live server) -> welcome email (django-ses -> moto SES) -> token ->
calls through the stand-in (local/gateway.py) and the real authorizer (DynamoDB in moto) ->
denied once the credits are gone -> sync_usage -> the balance API -> a second purchase opens
the gate again. The mirror is written by Django's after-commit signals, for real."""

import io
import re
import threading

import pytest
import requests
from django.core.management import call_command

from accounts.models import Customer
from ledger.models import Balance, LedgerEntry
from local.gateway import EXPLICIT_DENY, Gateway, GatewayServer
from local.mailbox import mail_to
from local.stack import authorizer_settings, ses_sender_verify

API_ID = "demoapi01"
BUYER = "newcomer@example.com"


@pytest.fixture
def demo_product(mirror_table, transactional_db):
    """A product sold through the stand-in's API id; its route reaches the mirror after commit."""
    from ledger.services import product_upsert

    product, _ = product_upsert(slug="demo-api", name="Demo API", api_ids=[API_ID], skus=["DEMO-100"])
    return product


@pytest.fixture
def ses(settings, aws):
    """Django sends email through django-ses to the moto server (AWS_ENDPOINT_URL), sender verified."""
    settings.EMAIL_BACKEND = "creditportal.mail.SESBackend"
    assert settings.AWS_SES_REGION_ENDPOINT_URL is None  # boto3 takes AWS_ENDPOINT_URL, as in `make run`
    ses_sender_verify(endpoint_url=aws, from_email=settings.DEFAULT_FROM_EMAIL)
    return aws


@pytest.fixture
def gateway(jwt_keys, mirror_table, monkeypatch):
    """The stand-in on a free port, its authorizer configured as runstack configures it (from this
    Django's keys and settings): the URL of its metered route."""
    from authorizer import handler

    for name, value in authorizer_settings().items():
        monkeypatch.setenv(name, value)
    handler.reset()
    server = GatewayServer(Gateway(api_id=API_ID), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"{server.url}{server.gateway.route_path}"
    server.shutdown()
    server.server_close()
    monkeypatch.undo()
    handler.reset()


def purchase(portal: str, settings, order_id: str, quantity: int) -> requests.Response:
    return requests.post(
        f"{portal}/api/purchases/zapier/",
        headers={"Authorization": f"Bearer {settings.ZAPIER_WEBHOOK_SECRET}"},
        data={"order_id": order_id, "email": BUYER, "name": "New Comer", "product": "DEMO-100", "quantity": quantity},
        timeout=30,
    )


def test_a_purchase_pays_for_exactly_its_calls_through_the_gateway_and_a_second_one_opens_it_again(
    live_server, settings, ses, demo_product, gateway
):
    portal = live_server.url

    bought = purchase(portal, settings, "5001", 3)
    assert bought.status_code == 201, bought.text
    assert bought.json()["credits"] == 3

    [welcome] = mail_to(ses, BUYER)
    assert welcome.subject == "Your CreditPortal API credentials and 3 Demo API credits"
    client_id = re.search(r"^Client ID: (cli_\w+)$", welcome.text, re.MULTILINE)[1]
    secret = re.search(r"^Client secret: (\S+)$", welcome.text, re.MULTILINE)[1]
    customer = Customer.objects.get(email=BUYER)
    assert customer.credentials.get().client_id == client_id

    issued = requests.post(
        f"{portal}/api/token/",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        timeout=30,
    )
    assert issued.status_code == 200, issued.text
    assert issued.json()["scope"] == "demo-api"
    auth = {"Authorization": f"Bearer {issued.json()['access_token']}"}

    allowed = [requests.get(gateway, headers=auth, timeout=30) for _ in range(3)]
    assert [a.status_code for a in allowed] == [200, 200, 200]
    assert [a.json() for a in allowed] == [
        {"customer": customer.public_id, "product": "demo-api", "remaining": str(left)} for left in (2, 1, 0)
    ]

    denied = requests.get(gateway, headers=auth, timeout=30)
    assert denied.status_code == 403
    assert denied.json() == {"message": EXPLICIT_DENY, "reason": "credits_exhausted"}
    assert requests.get(gateway, timeout=30).status_code == 401  # no token: the authorizer refuses it

    # Postgres learns what the gate spent when sync_usage runs (every minute on Lambda).
    balance = Balance.objects.get(customer=customer, product=demo_product)
    assert (balance.granted, balance.used) == (3, 0)
    call_command("sync_usage", stdout=io.StringIO(), stderr=io.StringIO())
    seen = requests.get(f"{portal}/api/balance/", headers=auth, timeout=30)
    assert seen.status_code == 200
    assert seen.json() == {
        "customer": customer.public_id,
        "balances": [
            {
                "product": "demo-api",
                "name": "Demo API",
                "granted": 3,
                "used": 3,
                "remaining": 0,
                "credited_back_calls": 0,
                "credited_back": 0,
                "cost_per_call": 1,
                "routes": [],
            }
        ],
    }
    assert LedgerEntry.objects.filter(customer=customer, kind=LedgerEntry.Kind.USAGE).count() == 1

    topped_up = purchase(portal, settings, "5002", 2)
    assert topped_up.status_code == 201, topped_up.text
    again = requests.get(gateway, headers=auth, timeout=30)
    assert again.status_code == 200
    assert again.json()["remaining"] == "1"

    # An API key made with the token opens the same credits, as x-api-key or as a bearer.
    made = requests.post(f"{portal}/api/keys/", json={"name": "demo"}, headers=auth, timeout=30)
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    with_key = requests.get(gateway, headers={"x-api-key": key}, timeout=30)
    assert (with_key.status_code, with_key.json()["remaining"]) == (200, "0")
    as_bearer = requests.get(gateway, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert (as_bearer.status_code, as_bearer.json()) == (403, {"message": EXPLICIT_DENY, "reason": "credits_exhausted"})

    assert [mail.subject for mail in mail_to(ses, BUYER)] == [
        welcome.subject,
        "Your Demo API credits are used up",  # sent by sync_usage, once it recorded the usage (0 left)
        "2 Demo API credits added to your CreditPortal account",
    ]
