"""The portal's API keys (/account/): create (shown once), list (last 4 only), revoke, each
customer's own only. Real URLs and Postgres; the mirror is what tests/test_api_keys.py checks."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey
from accounts.services import api_key_create
from authorizer.keys import KEY_FORMAT, key_hash
from ledger.services import credits_grant

DASHBOARD = reverse("account_dashboard")
ADD = reverse("account_api_key_add")


def revoke_url(key_id: str) -> str:
    return reverse("account_api_key_revoke", args=[key_id])


@pytest.fixture
def alice_client(client, alice, products):
    credits_grant(customer=alice, product=products["weather"], amount=10)
    credits_grant(customer=alice, product=products["maps"], amount=10)
    client.force_login(alice.user)
    return client


def test_a_key_is_shown_once_then_only_its_last_four(alice_client, alice):
    response = alice_client.post(ADD, {"name": "cron", "products": ["maps"]})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = re.search(r'data-testid="new-key">([^<]+)<', response.content.decode()).group(1)
    assert KEY_FORMAT.fullmatch(key)
    stored = ApiKey.objects.get(customer=alice)
    assert (stored.name, stored.products, stored.key_hash, stored.created_by) == ("cron", ["maps"], key_hash(key), None)

    page = alice_client.get(DASHBOARD).content.decode()
    assert key not in page
    assert f"cpk_…{key[-4:]}" in page
    assert f'data-key-id="{stored.public_id}"' in page


def test_a_product_the_customer_lacks_is_refused_and_nothing_is_made(alice_client, alice, bob, products):
    response = alice_client.post(ADD, {"products": ["nope"]}, follow=True)

    assert "Select a valid choice" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_revoking_asks_first_then_revokes(alice_client, alice):
    api_key, _ = api_key_create(customer=alice)

    confirm = alice_client.get(revoke_url(api_key.public_id))
    assert confirm.status_code == 200
    assert "Revoke this API key?" in confirm.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked_at is None

    done = alice_client.post(revoke_url(api_key.public_id), follow=True)
    assert "is revoked" in done.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None


def test_bob_can_neither_see_nor_revoke_alices_keys(alice_client, alice, bob):
    api_key, _ = api_key_create(customer=alice)
    bob_client = Client()
    bob_client.force_login(bob.user)

    assert api_key.public_id not in bob_client.get(DASHBOARD).content.decode()
    assert bob_client.get(revoke_url(api_key.public_id)).status_code == 404
    assert bob_client.post(revoke_url(api_key.public_id)).status_code == 404
    api_key.refresh_from_db()
    assert api_key.revoked_at is None


def test_creating_wants_a_post_with_csrf(alice, products):
    credits_grant(customer=alice, product=products["weather"], amount=10)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)

    assert client.get(ADD).status_code == 405
    assert client.post(ADD, {"name": "x"}).status_code == 403
    assert not ApiKey.objects.exists()


def test_staff_revoke_a_key_in_admin_and_see_keys_on_the_customers_page(client, alice, staff, products):
    credits_grant(customer=alice, product=products["weather"], amount=10)
    api_key, key = api_key_create(customer=alice, name="leaked")
    client.force_login(staff)

    page = client.get(reverse("admin:accounts_customer_change", args=[alice.pk])).content.decode()
    assert api_key.public_id in page and f"cpk_…{key[-4:]}" in page and key not in page

    response = client.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke", "_selected_action": [api_key.pk], "index": 0},
        follow=True,
    )
    assert "1 API key(s) revoked." in response.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
