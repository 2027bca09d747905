"""One email per customer: `customer_email_change` changes the customer's (purchases are
matched by it) and its login's (the portal's login) together, refusing an address someone
else has; admin edits it there and nowhere else."""

from html.parser import HTMLParser

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from accounts.models import Customer, User
from accounts.services import customer_email_change
from ledger.models import Purchase

PASSWORD = "correct horse battery staple"


def emails(customer) -> tuple[str, str]:
    customer = Customer.objects.select_related("user").get(pk=customer.pk)
    return customer.email, customer.user.email


def test_it_changes_both_the_customers_and_the_logins_email(alice):
    version = alice.version

    customer_email_change(customer=alice, email="  Alice.New@Example.com ")

    assert emails(alice) == ("alice.new@example.com", "alice.new@example.com")
    assert Customer.objects.get(pk=alice.pk).version > version


@pytest.mark.parametrize("taken", ["bob@example.com", "BOB@example.com", "staff@creditportal.test"])
def test_it_refuses_an_address_another_customer_or_login_has(alice, bob, staff, taken):
    with pytest.raises(ValidationError, match="already used by another customer or login") as refused:
        customer_email_change(customer=alice, email=taken)

    assert refused.value.code == "email_taken"
    assert emails(alice) == ("alice@example.com", "alice@example.com")
    assert emails(bob) == ("bob@example.com", "bob@example.com")


def test_it_refuses_what_is_not_an_email(alice):
    with pytest.raises(ValidationError):
        customer_email_change(customer=alice, email="not an email")
    assert emails(alice) == ("alice@example.com", "alice@example.com")


def test_after_a_change_she_logs_in_and_buys_with_the_new_address(alice, zapier, products, mailoutbox):
    customer_email_change(customer=alice, email="alice.new@example.com")

    new = Client()
    assert (
        new.post(reverse("account_login"), {"username": "alice.new@example.com", "password": PASSWORD}).status_code
        == 302
    )
    old = Client()
    assert (
        old.post(reverse("account_login"), {"username": "alice@example.com", "password": PASSWORD}).status_code == 200
    )
    zapier({"order_id": "4001", "email": "Alice.New@example.com", "product": "weather", "quantity": "5"})
    assert Purchase.objects.get(order_id="4001").customer == alice
    assert Customer.objects.count() == 1  # no second customer for the new address


# --- In admin --------------------------------------------------------------------------


class _Form(HTMLParser):
    """The fields of an admin change form, as a browser would post them back."""

    def __init__(self):
        super().__init__()
        self.data, self._select, self._textarea = {}, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name") and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.data.setdefault(a["name"], []).append(a.get("value", "on" if a.get("type") == "checkbox" else ""))
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
        elif tag == "option" and self._select and "selected" in a:
            self.data.setdefault(self._select, []).append(a.get("value", ""))
        elif tag == "textarea" and a.get("name"):
            self._textarea = a["name"]
            self.data[self._textarea] = [""]

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea][0] += data

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def change_form_data(client: Client, url: str) -> dict:
    parser = _Form()
    parser.feed(client.get(url).content.decode())
    return parser.data


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def test_no_admin_change_form_can_make_the_two_emails_drift(staff_client, alice):
    """They used to: the customer's page changed the customer's email, the user's page the login's."""
    for url in (
        reverse("admin:accounts_customer_change", args=[alice.pk]),
        reverse("admin:accounts_user_change", args=[alice.user.pk]),
    ):
        data = {**change_form_data(staff_client, url), "email": ["drifted@example.com"], "name": ["Alice B."]}
        response = staff_client.post(url, data)
        assert response.status_code == 302, response.content.decode()[:2000]  # saved (the other fields)

    assert emails(alice) == ("alice@example.com", "alice@example.com")
    assert Customer.objects.get(pk=alice.pk).name == "Alice B."  # the form did save
    assert User.objects.get(pk=alice.user.pk).name == "Alice B."


def test_staff_change_a_customers_email_on_its_own_page(staff_client, staff, alice):
    page = staff_client.get(reverse("admin:accounts_customer_change", args=[alice.pk])).content.decode()
    url = reverse("admin:accounts_customer_email", args=[alice.pk])
    assert url in page

    response = staff_client.post(url, {"email": "Alice.New@Example.com"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:accounts_customer_change", args=[alice.pk])
    assert emails(alice) == ("alice.new@example.com", "alice.new@example.com")
    assert [str(m) for m in response.context["messages"]] == [
        "alice@example.com is now alice.new@example.com, for purchases and login."
    ]
    history = staff_client.get(reverse("admin:accounts_customer_history", args=[alice.pk])).content.decode()
    assert "Email changed from alice@example.com to alice.new@example.com." in history


@pytest.mark.parametrize(
    "email, error",
    [("bob@example.com", "bob@example.com is already used by another customer or login."),
     ("nope", "Enter a valid email address."), ("", "This field is required.")],
)  # fmt: skip
def test_the_admin_form_says_why_and_changes_nothing(staff_client, alice, bob, email, error):
    response = staff_client.post(reverse("admin:accounts_customer_email", args=[alice.pk]), {"email": email})

    assert response.status_code == 200
    assert error in response.content.decode()
    assert emails(alice) == ("alice@example.com", "alice@example.com")
