"""The customer portal at /account/ through real URLs: who gets in, what each
customer sees (their own things only), rotation and revocation, CSRF."""

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Credential, Customer, User
from accounts.services import MAX_ACTIVE_CREDENTIALS
from ledger.services import usage_record

DASHBOARD = reverse("account_dashboard")


def rotate_url(client_id: str) -> str:
    return reverse("account_credential_rotate", args=[client_id])


def revoke_url(client_id: str) -> str:
    return reverse("account_credential_revoke", args=[client_id])


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice.user)
    return client


@pytest.fixture
def bob_client(bob):
    client = Client()
    client.force_login(bob.user)
    return client


def snapshot(credential: Credential) -> tuple:
    credential.refresh_from_db()
    return (
        credential.secret_hash,
        credential.secret_last4,
        credential.secret_version,
        credential.rotated_at,
        credential.revoked_at,
    )


@pytest.mark.parametrize(
    "url", [DASHBOARD, rotate_url("cli_whatever"), revoke_url("cli_whatever")], ids=["dashboard", "rotate", "revoke"]
)
def test_an_anonymous_visitor_is_sent_to_the_login_page(client, db, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next={url}"


def test_anonymous_posts_change_nothing(client, alice):
    before = snapshot(alice.credential)

    for url in [
        rotate_url(alice.credential.client_id),
        revoke_url(alice.credential.client_id),
        reverse("account_credential_add"),
    ]:
        response = client.post(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))

    assert snapshot(alice.credential) == before
    assert alice.credentials.count() == 1


def test_alice_sees_her_balances_credentials_and_purchases(alice_client, alice, products, purchase):
    purchase(alice, products["weather"], 100, order_id="#A-1001")
    purchase(alice, products["maps"], 500, order_id="#A-1002")
    usage_record(customer=alice, product=products["weather"], amount=15)

    response = alice_client.get(DASHBOARD)

    assert response.status_code == 200
    html = response.content.decode()
    weather = re.search(r'id="product-weather".*?</article>', html, re.DOTALL).group(0)
    assert re.search(r'data-testid="remaining">85<', weather)
    assert re.search(r'data-testid="granted">100<', weather)
    assert re.search(r'data-testid="used">15<', weather)
    maps = re.search(r'id="product-maps".*?</article>', html, re.DOTALL).group(0)
    assert re.search(r'data-testid="remaining">500<', maps)
    assert "2 credits per call" in maps
    assert alice.credential.client_id in html
    assert "#A-1001" in html and "#A-1002" in html
    assert alice.public_id in html
    assert response["Cache-Control"].startswith("max-age=0") and "no-store" in response["Cache-Control"]


def test_balances_are_read_fresh_on_every_request(alice_client, alice, products, purchase):
    purchase(alice, products["weather"], 100)
    assert 'data-testid="remaining">100<' in alice_client.get(DASHBOARD).content.decode()

    usage_record(customer=alice, product=products["weather"], amount=40)

    assert 'data-testid="remaining">60<' in alice_client.get(DASHBOARD).content.decode()


def test_two_customers_never_see_each_others_data(alice_client, bob_client, alice, bob, products, purchase):
    purchase(alice, products["weather"], 100, order_id="#ALICE-ORDER")
    purchase(bob, products["maps"], 777, order_id="#BOB-ORDER")

    alice_html = alice_client.get(DASHBOARD).content.decode()
    bob_html = bob_client.get(DASHBOARD).content.decode()

    for own, other, html in [(alice, bob, alice_html), (bob, alice, bob_html)]:
        assert own.credential.client_id in html
        assert other.credential.client_id not in html
        assert other.public_id not in html
        assert other.email not in html
    assert "#ALICE-ORDER" in alice_html and "#BOB-ORDER" not in alice_html
    assert "#BOB-ORDER" in bob_html and "#ALICE-ORDER" not in bob_html
    assert 'id="product-maps"' not in alice_html and 'id="product-weather"' not in bob_html


def test_no_secret_is_in_the_page_except_its_last_four(alice_client, alice):
    html = alice_client.get(DASHBOARD).content.decode()

    assert alice.secret not in html
    assert alice.secret[:-4] not in html
    assert alice.credential.secret_hash not in html
    assert f"…{alice.secret[-4:]}" in html


def test_rotation_asks_to_confirm_before_it_changes_anything(alice_client, alice):
    before = snapshot(alice.credential)

    response = alice_client.get(rotate_url(alice.credential.client_id))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Rotate the secret?" in html
    assert 'method="post"' in html and "csrfmiddlewaretoken" in html
    assert snapshot(alice.credential) == before


def session_text(client: Client) -> str:
    """Everything the client's session holds, decoded (Django stores it signed, compressed, base64)."""
    return repr(dict(client.session.items()))


def test_rotating_shows_the_new_secret_exactly_once(alice_client, alice):
    credential = alice.credential
    version, customer_version = credential.secret_version, alice.version

    response = alice_client.post(rotate_url(credential.client_id))

    assert response.status_code == 200  # the secret is in this answer, not waiting for another page
    assert "no-store" in response["Cache-Control"]
    credential.refresh_from_db()
    assert credential.secret_version == version + 1
    assert credential.rotated_at is not None
    assert not credential.check_secret(alice.secret)  # the old secret gets no new tokens
    alice.refresh_from_db()
    assert alice.version > customer_version  # the gate's mirror sees the change: old tokens are refused
    assert credential.client_id == alice.credential.client_id

    html = response.content.decode()
    new_secret = re.search(r'data-testid="new-secret">([^<]+)<', html).group(1)
    assert credential.check_secret(new_secret)
    assert "only time it is shown" in html
    assert f'data-testid="new-client-id">{credential.client_id}<' in html
    assert new_secret[-4:] == credential.secret_last4
    assert new_secret not in session_text(alice_client)

    again = alice_client.get(DASHBOARD).content.decode()
    assert new_secret not in again
    assert 'data-testid="new-secret"' not in again
    assert f"…{new_secret[-4:]}" in again


def test_revoking_stops_the_credential_and_hides_its_actions(alice_client, alice):
    credential = alice.credential
    confirm = alice_client.get(revoke_url(credential.client_id))
    assert confirm.status_code == 200
    assert "This is your only active credential" in confirm.content.decode()
    assert credential.revoked_at is None

    response = alice_client.post(revoke_url(credential.client_id), follow=True)

    assert response.status_code == 200
    credential.refresh_from_db()
    assert credential.revoked_at is not None
    html = response.content.decode()
    assert f"{credential.client_id} is revoked" in html
    assert rotate_url(credential.client_id) not in html
    assert revoke_url(credential.client_id) not in html


def test_a_revoked_credential_cannot_be_rotated(alice_client, alice):
    alice_client.post(revoke_url(alice.credential.client_id))
    before = snapshot(alice.credential)

    response = alice_client.post(rotate_url(alice.credential.client_id), follow=True)

    assert "cannot be rotated" in response.content.decode()
    assert 'data-testid="new-secret"' not in response.content.decode()
    assert snapshot(alice.credential) == before


@pytest.mark.parametrize("action", ["rotate", "revoke"])
def test_bob_cannot_rotate_or_revoke_alices_credential(bob_client, alice, bob, action):
    before = snapshot(alice.credential)
    bob_before = snapshot(bob.credential)
    url = {"rotate": rotate_url, "revoke": revoke_url}[action](alice.credential.client_id)

    assert bob_client.get(url).status_code == 404
    assert bob_client.post(url).status_code == 404

    assert snapshot(alice.credential) == before
    assert snapshot(bob.credential) == bob_before


@pytest.mark.parametrize("action", ["rotate", "revoke"])
def test_a_client_id_that_cannot_be_one_is_a_404_not_a_query(alice_client, alice, action):
    client_id = alice.credential.client_id
    url = {"rotate": rotate_url, "revoke": revoke_url}[action](client_id)
    before = snapshot(alice.credential)

    for bad in [url.replace(client_id, f"{client_id}%00"), url.replace(client_id, client_id.upper())]:
        assert alice_client.get(bad).status_code == 404
        assert alice_client.post(bad).status_code == 404

    assert snapshot(alice.credential) == before


def test_adding_a_credential_shows_its_secret_once(alice_client, alice):
    response = alice_client.post(reverse("account_credential_add"))

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    new = alice.credentials.exclude(pk=alice.credential.pk).get()
    html = response.content.decode()
    secret = re.search(r'data-testid="new-secret">([^<]+)<', html).group(1)
    assert new.check_secret(secret)
    assert new.client_id in html and "only time it is shown" in html
    assert secret not in session_text(alice_client)
    dashboard = alice_client.get(DASHBOARD).content.decode()
    assert new.client_id in dashboard and secret not in dashboard


def test_active_credentials_are_capped(alice_client, alice):
    for _ in range(MAX_ACTIVE_CREDENTIALS - 1):
        alice_client.post(reverse("account_credential_add"))
    assert alice.credentials.count() == MAX_ACTIVE_CREDENTIALS

    response = alice_client.post(reverse("account_credential_add"), follow=True)

    assert "revoke one before adding another" in response.content.decode()
    assert alice.credentials.count() == MAX_ACTIVE_CREDENTIALS


def test_adding_is_post_only(alice_client, alice):
    assert alice_client.get(reverse("account_credential_add")).status_code == 405
    assert alice.credentials.count() == 1


@pytest.fixture
def csrf_client(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    return client


@pytest.mark.parametrize("action", ["rotate", "revoke", "add", "logout"])
def test_forms_refuse_a_missing_csrf_token(csrf_client, alice, action):
    before = snapshot(alice.credential)
    url = {
        "rotate": rotate_url(alice.credential.client_id),
        "revoke": revoke_url(alice.credential.client_id),
        "add": reverse("account_credential_add"),
        "logout": reverse("account_logout"),
    }[action]

    response = csrf_client.post(url)

    assert response.status_code == 403
    assert "Nothing was changed" in response.content.decode()
    assert snapshot(alice.credential) == before
    assert alice.credentials.count() == 1
    assert csrf_client.get(DASHBOARD).status_code == 200  # still logged in


def test_the_login_form_refuses_a_missing_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)

    response = client.post(
        reverse("account_login"), {"username": alice.email, "password": "correct horse battery staple"}
    )

    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_the_forms_work_with_the_pages_csrf_token(csrf_client, alice):
    page = csrf_client.get(rotate_url(alice.credential.client_id)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    response = csrf_client.post(rotate_url(alice.credential.client_id), {"csrfmiddlewaretoken": token})

    assert response.status_code == 200
    alice.credential.refresh_from_db()
    assert not alice.credential.check_secret(alice.secret)


def test_staff_go_to_admin(client, staff):
    client.force_login(staff)

    response = client.get(DASHBOARD)

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def test_a_login_without_a_customer_gets_a_clear_page(client, db):
    user = User.objects.create_user("nobody@example.com", "some password 123")
    client.force_login(user)

    response = client.get(DASHBOARD)

    assert response.status_code == 403
    assert "no credits account belongs to this email" in response.content.decode()
    assert client.post(reverse("account_credential_add")).status_code == 403
    assert not Credential.objects.exists()


def test_a_suspended_customer_is_told_so(alice_client, alice):
    from accounts.services import customer_suspend

    customer_suspend(customer=alice)

    html = alice_client.get(DASHBOARD).content.decode()

    assert "Your account is suspended" in html
    assert Customer.objects.get(pk=alice.pk).status == Customer.Status.SUSPENDED


def test_the_curl_example_uses_the_customers_client_id_and_the_token_url(alice_client, alice, settings):
    html = alice_client.get(DASHBOARD).content.decode()

    assert f"curl -s -X POST {settings.PORTAL_BASE_URL}/api/token/" in html
    assert f"-d client_id={alice.credential.client_id}" in html
    assert "-d client_secret=YOUR_SECRET" in html
    assert "Authorization: Bearer $TOKEN" in html


def test_the_usage_chart_shows_30_days_of_own_usage_with_zeros(
    alice_client, alice, bob, products, purchase, past_usage
):
    purchase(alice, products["weather"], 1000)
    purchase(bob, products["weather"], 1000)
    past_usage(alice, products["weather"], {0: 7, 2: 30, 29: 5, 30: 999})  # 30 days ago is outside the window
    past_usage(bob, products["weather"], {0: 500})
    usage_record(customer=alice, product=products["weather"], amount=3)

    html = alice_client.get(DASHBOARD).content.decode()

    chart = re.search(r'id="product-weather".*?(<figure.*?</figure>)', html, re.DOTALL).group(1)  # not the meter
    assert "credits used per day, last 30 days" in chart
    assert "45 credits used in total" in chart  # 10 today + 30 + 5; not bob's 500, not the 999 of day 31
    assert len(re.findall(r"<rect ", chart)) == 30
    assert len(re.findall(r'<rect class="bar"', chart)) == 3
    numbers = re.findall(r'<td class="num">(\d+)</td>', chart)
    assert len(numbers) == 30
    assert numbers[0] == "10" and numbers[2] == "30" and numbers[29] == "5"  # newest first
    assert numbers.count("0") == 27
    assert 'role="img"' in chart and "<title" in chart and "<desc" in chart


def test_the_dashboard_makes_a_fixed_number_of_queries(alice_client, alice, products, purchase, past_usage):
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert alice_client.get(DASHBOARD).status_code == 200
        return len(ctx.captured_queries)

    purchase(alice, products["weather"], 100)
    few = queries()
    purchase(alice, products["maps"], 100)
    for i in range(8):
        purchase(alice, products["weather"], 10 + i)
    past_usage(alice, products["maps"], {1: 3, 4: 8})
    alice_client.post(reverse("account_credential_add"))
    assert queries() == few
