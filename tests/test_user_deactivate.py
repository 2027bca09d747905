"""Deactivating a customer's login (User.is_active off, `user_deactivate`) stops its API
access too: the customer is suspended, so the token endpoint refuses its credentials and the
gate's mirror says inactive. Reactivating the login leaves the customer suspended."""

import json
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Customer, User
from accounts.services import user_deactivate
from ledger.services import credits_grant

PASSWORD = "correct horse battery staple"


def token(customer):
    """Ask the token endpoint for a token with the customer's client credentials, as a client library does."""
    data = {"grant_type": "client_credentials", "client_id": customer.credential.client_id,
            "client_secret": customer.secret}  # fmt: skip
    return Client().post(reverse("token"), urlencode(data), content_type="application/x-www-form-urlencoded")


@pytest.fixture
def alice_with_credits(alice, products, mirror, committed):
    with committed():
        credits_grant(customer=alice, product=products["weather"], amount=10)
    assert mirror.balance(alice, products["weather"])["active"] is True
    assert token(alice).status_code == 200
    return alice


def test_deactivating_alices_login_stops_her_api_access(alice_with_credits, products, mirror, committed):
    alice = alice_with_credits
    with committed():
        user_deactivate(user=alice.user)

    assert Customer.objects.get(pk=alice.pk).status == Customer.Status.SUSPENDED
    refused = token(alice)
    assert refused.status_code == 401
    assert json.loads(refused.content)["error"] == "invalid_client"
    assert mirror.balance(alice, products["weather"])["active"] is False  # the gate denies her next call
    login = Client().post(reverse("account_login"), {"username": alice.email, "password": PASSWORD})
    assert login.status_code == 200  # no login either


def test_a_staff_login_without_a_customer_is_just_deactivated(staff):
    user_deactivate(user=staff)

    assert User.objects.get(pk=staff.pk).is_active is False
    assert not Customer.objects.exists()


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def user_form(user: User, **changes) -> dict:
    data = {"email": user.email, "name": user.name, "date_joined_0": f"{user.date_joined:%Y-%m-%d}",
            "date_joined_1": f"{user.date_joined:%H:%M:%S}", "last_login_0": "", "last_login_1": ""}  # fmt: skip
    if user.is_active:
        data["is_active"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_unticking_active_in_admin_suspends_the_customer_and_says_so(
    staff_client, alice_with_credits, products, mirror, committed
):
    alice = alice_with_credits
    url = reverse("admin:accounts_user_change", args=[alice.user.pk])
    page = staff_client.get(url).content.decode()
    assert "the customer is suspended too" in page and "does not reactivate the customer" in page

    with committed():
        response = staff_client.post(url, user_form(alice.user, is_active=None), follow=True)

    assert response.status_code == 200
    assert "alice@example.com's customer is suspended too: API calls are denied." in [
        str(m) for m in response.context["messages"]
    ]
    assert User.objects.get(pk=alice.user.pk).is_active is False
    assert Customer.objects.get(pk=alice.pk).status == Customer.Status.SUSPENDED
    assert token(alice).status_code == 401
    assert mirror.balance(alice, products["weather"])["active"] is False

    # Ticking it again gives the login back, not the API access: staff reactivate the customer.
    staff_client.post(url, user_form(User.objects.get(pk=alice.user.pk), is_active="on"))
    assert User.objects.get(pk=alice.user.pk).is_active is True
    assert Customer.objects.get(pk=alice.pk).status == Customer.Status.SUSPENDED
