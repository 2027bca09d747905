"""Bob against alice through the self-service pages: every URL of accounts/urls.py, with
alice's identifiers put into every part of the URL and every form field bob can send.

Bob knows alice's public ids (client id, customer id, email, user and row ids): they are
not secrets. What he must never see is anything about her (her orders, balances, name,
other credentials, secret), and nothing of hers may change: after each attack, alice's
rows (user, customer, credentials, balances, purchases, ledger entries) are exactly as
before, bob is still himself (or logged out), and no email went anywhere but to alice.

tests/test_account_pages.py already proves the basics (bob's dashboard shows only his
things; bob gets 404 for alice's rotate and revoke URLs); this runs the whole surface.
"""

from urllib.parse import quote

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.test import Client
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

import accounts.urls
from accounts.models import ApiKey, Credential, Customer, User
from accounts.services import api_key_create, credential_create, credential_revoke
from ledger.models import Balance, LedgerEntry, Purchase
from tests.test_password_reset import welcome_link_path

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

PASSWORD = "correct horse battery staple"  # every persona's (tests/conftest.py)
DASHBOARD = reverse("account_dashboard")


@pytest.fixture
def world(alice, bob, products, purchase, past_usage):
    """alice: two orders, usage, a second (revoked) credential, an API key; bob: one order of his own."""
    purchase(alice, products["weather"], 4242, order_id="#ALICE-ORDER-1")
    purchase(alice, products["maps"], 77, order_id="#ALICE-ORDER-2")
    past_usage(alice, products["weather"], {2: 17})
    alice.old_credential, _ = credential_create(customer=alice)
    credential_revoke(credential=alice.old_credential)
    alice.api_key, alice.key = api_key_create(customer=alice, name="Alice's CI", products=["maps"])
    purchase(bob, products["weather"], 10, order_id="#BOB-ORDER")
    return alice, bob


def alice_rows(alice) -> dict:
    """Every row that is alice's."""
    return {
        "user": list(User.objects.filter(pk=alice.user.pk).values()),
        "customer": list(Customer.objects.filter(pk=alice.pk).values()),
        "credentials": list(Credential.objects.filter(customer=alice).order_by("pk").values()),
        "api_keys": list(ApiKey.objects.filter(customer=alice).order_by("pk").values()),
        "balances": list(Balance.objects.filter(customer=alice).order_by("pk").values()),
        "purchases": list(Purchase.objects.filter(customer=alice).order_by("pk").values()),
        "ledger": list(LedgerEntry.objects.filter(customer=alice).order_by("pk").values()),
    }


def secrets_of(alice) -> list[str]:
    """What bob never sends and must never see: things about alice, not her public ids."""
    return [
        "#ALICE-ORDER-1",
        "#ALICE-ORDER-2",
        "Alice",
        alice.secret,
        alice.credential.masked_secret,
        alice.credential.secret_hash,
        alice.old_credential.client_id,
        alice.key,
        alice.api_key.key_hash,
        alice.api_key.masked,
        ">4242<",  # granted weather credits, as the dashboard shows them
        ">4225<",  # remaining
    ]


def uid(user: User) -> str:
    return urlsafe_base64_encode(force_bytes(user.pk))


def credential_urls(name: str, alice) -> list[str]:
    """Alice's credential named every way a URL can name it."""
    cid = alice.credential.client_id
    return [
        reverse(name, args=[cid]),
        reverse(name, args=[cid.upper()]),
        reverse(name, args=[f" {cid} "]),
        reverse(name, args=[cid]).replace(cid, "".join(f"%{b:02X}" for b in cid.encode())),
        reverse(name, args=[alice.public_id]),
        reverse(name, args=[str(alice.credential.pk)]),
        reverse(name, args=[alice.old_credential.client_id]),
        reverse(name, args=[cid]).replace(cid, cid + "%00"),
        reverse(name, args=[cid]).replace(cid, cid + "%2F"),
    ]


def credential_action(name: str):
    def attack(bob_client, alice, bob):
        responses = []
        for url in credential_urls(name, alice):
            responses += [bob_client.get(url), bob_client.post(url, {"client_id": alice.credential.client_id})]
        assert {r.status_code for r in responses} == {404}
        # His own URL, alice's client id in every field: bob's credential only.
        own = reverse(name, args=[bob.credential.client_id])
        responses.append(bob_client.post(own, {"client_id": alice.credential.client_id, "customer": alice.pk,
                                               "credential": alice.credential.pk}, follow=True))  # fmt: skip
        return responses

    return attack


def api_key_urls(alice) -> list[str]:
    """Alice's API key named every way a URL can name it."""
    kid = alice.api_key.public_id
    url = reverse("account_api_key_revoke", args=[kid])
    return [
        url,
        reverse("account_api_key_revoke", args=[kid.upper()]),
        reverse("account_api_key_revoke", args=[f" {kid} "]),
        url.replace(kid, "".join(f"%{b:02X}" for b in kid.encode())),
        reverse("account_api_key_revoke", args=[str(alice.api_key.pk)]),
        reverse("account_api_key_revoke", args=[alice.api_key.last4]),
        reverse("account_api_key_revoke", args=[alice.key]),
        url.replace(kid, kid + "%00"),
    ]


def api_key_revoke_of_alice(bob_client, alice, bob):
    responses = []
    for url in api_key_urls(alice):
        responses += [bob_client.get(url), bob_client.post(url, {"key_id": alice.api_key.public_id})]
    assert {r.status_code for r in responses} == {404}
    return responses


def api_key_add_for_alice(bob_client, alice, bob):
    fields = {"customer": alice.pk, "customer_id": alice.public_id, "user": alice.user.pk,
              "client_id": alice.credential.client_id, "email": alice.email, "name": "bob's"}  # fmt: skip
    responses = [
        bob_client.post(reverse("account_api_key_add"), fields | {"products": ["maps"]}, follow=True),  # alice's
        bob_client.post(reverse("account_api_key_add"), fields, follow=True),
    ]
    assert [r.status_code for r in responses] == [200, 200]
    # The first is refused (maps is not bob's product); the second is bob's, opening what bob has.
    assert list(ApiKey.objects.filter(customer=bob).values_list("name", "products")) == [("bob's", [])]
    return responses


def usage_csv_of_alice(bob_client, alice, bob):
    query = {"customer": alice.public_id, "customer_id": alice.pk, "client_id": alice.credential.client_id,
             "user": alice.user.pk, "email": alice.email}  # fmt: skip
    own = bob_client.get(reverse("account_usage_csv"))
    responses = [bob_client.get(reverse("account_usage_csv"), query), bob_client.post(reverse("account_usage_csv"))]
    assert [r.status_code for r in responses] == [200, 405]
    assert responses[0].content == own.content  # bob's own month, whatever names alice
    assert "maps" not in own.content.decode() and own.content.decode().count("\n") > 1
    return responses


def dashboard_query(bob_client, alice, bob):
    query = {"customer": alice.public_id, "customer_id": alice.pk, "client_id": alice.credential.client_id,
             "user": alice.user.pk, "email": alice.email, "id": alice.pk}  # fmt: skip
    responses = [bob_client.get(DASHBOARD, query), bob_client.post(DASHBOARD, query)]
    assert [r.status_code for r in responses] == [200, 405]
    assert bob.public_id in responses[0].content.decode()
    return responses


def login_as_alice(bob_client, alice, bob):
    anonymous = Client()
    response = anonymous.post(reverse("account_login"), {"username": alice.email, "password": PASSWORD + "!"})
    assert response.status_code == 200 and "_auth_user_id" not in anonymous.session
    for username in (alice.email, alice.email.upper(), alice.public_id, str(alice.user.pk)):
        response = anonymous.post(reverse("account_login"), {"username": username, "password": "bob's guess"})
        assert "_auth_user_id" not in anonymous.session
    # Already logged in as bob: posting alice's email changes nobody.
    return [response, bob_client.post(reverse("account_login"), {"username": alice.email, "password": PASSWORD})]


def login_next_to_alices_credential(bob_client, alice, bob):
    anonymous = Client()
    target = reverse("account_credential_revoke", args=[alice.credential.client_id])
    response = anonymous.post(
        f"{reverse('account_login')}?next={quote(target)}", {"username": bob.email, "password": PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == target
    landing = anonymous.post(target)
    assert landing.status_code == 404
    return [response, landing]


def logout_next_to_alices_credential(bob_client, alice, bob):
    target = reverse("account_credential_rotate", args=[alice.credential.client_id])
    response = bob_client.post(f"{reverse('account_logout')}?next={quote(target)}", follow=True)
    assert "_auth_user_id" not in bob_client.session
    return [response, bob_client.post(target)]


def credential_add_for_alice(bob_client, alice, bob):
    fields = {"customer": alice.pk, "customer_id": alice.public_id, "user": alice.user.pk,
              "client_id": alice.credential.client_id, "email": alice.email}  # fmt: skip
    response = bob_client.post(reverse("account_credential_add"), fields, follow=True)
    assert response.status_code == 200
    assert bob.credentials.count() == 2
    return [response]


def password_change_of_alice(bob_client, alice, bob):
    fields = {"old_password": PASSWORD, "new_password1": "bob's brand new passphrase",
              "new_password2": "bob's brand new passphrase", "user": alice.user.pk, "email": alice.email,
              "username": alice.email, "id": alice.user.pk}  # fmt: skip
    response = bob_client.post(reverse("password_change"), fields, follow=True)
    assert response.status_code == 200
    bob.user.refresh_from_db()
    assert bob.user.check_password("bob's brand new passphrase")
    return [response]


def password_reset_of_alice(bob_client, alice, bob):
    url = reverse("password_reset")
    emails = [alice.email, alice.email.upper(), "al\u0131ce@example.com", f"{alice.email}\n{bob.email}",
              f"{alice.email},{bob.email}", f"{bob.email}?{alice.email}"]  # fmt: skip
    return [bob_client.post(url, {"email": email}, follow=True) for email in emails]


def password_reset_done(bob_client, alice, bob):
    return [bob_client.get(reverse("password_reset_done"), {"email": alice.email, "uid": uid(alice.user)})]


def reset_link_mixing_alice_and_bob(bob_client, alice, bob):
    bobs_token = default_token_generator.make_token(bob.user)
    new = {"new_password1": "taken over at last", "new_password2": "taken over at last"}
    responses = []
    for token in (bobs_token, "set-password", "abc-123", default_token_generator.make_token(bob.user) + "x"):
        url = reverse("password_reset_confirm", kwargs={"uidb64": uid(alice.user), "token": token})
        responses += [bob_client.get(url, follow=True), bob_client.post(url, new, follow=True)]
    # bob opens his own link (his token goes into his session), then swaps in alice's uid
    landing = bob_client.get(welcome_link_path(bob.user), follow=True)
    set_password = landing.redirect_chain[-1][0]
    assert set_password.endswith("/set-password/")
    swapped = set_password.replace(f"/{uid(bob.user)}/", f"/{uid(alice.user)}/")
    responses += [bob_client.get(swapped), bob_client.post(swapped, new, follow=True)]
    for response in responses:
        assert "This link no longer works" in response.content.decode()
    return responses


def password_reset_complete(bob_client, alice, bob):
    return [bob_client.get(reverse("password_reset_complete"), {"uid": uid(alice.user)})]


ATTACKS = {
    ("account_dashboard", "alice's ids in the query string and a POST body"): dashboard_query,
    ("account_login", "alice's email with passwords bob can guess"): login_as_alice,
    ("account_login", "next= alice's revoke URL"): login_next_to_alices_credential,
    ("account_logout", "next= alice's rotate URL"): logout_next_to_alices_credential,
    ("account_credential_add", "alice's ids in every field"): credential_add_for_alice,
    ("account_credential_rotate", "alice's credential named every way"): credential_action("account_credential_rotate"),
    ("account_credential_revoke", "alice's credential named every way"): credential_action("account_credential_revoke"),
    ("account_api_key_add", "alice's ids in every field, alice's product"): api_key_add_for_alice,
    ("account_api_key_revoke", "alice's API key named every way"): api_key_revoke_of_alice,
    ("account_usage_csv", "alice's ids in the query string"): usage_csv_of_alice,
    ("password_change", "alice's ids in every field"): password_change_of_alice,
    ("password_reset", "alice's email, and tricks on it"): password_reset_of_alice,
    ("password_reset_done", "alice's ids in the query string"): password_reset_done,
    ("password_reset_confirm", "alice's uid with bob's token, or swapped in"): reset_link_mixing_alice_and_bob,
    ("password_reset_complete", "alice's uid in the query string"): password_reset_complete,
}  # fmt: skip


def test_every_portal_url_is_attacked():
    assert {name for name, _ in ATTACKS} == {pattern.name for pattern in accounts.urls.urlpatterns}


@pytest.mark.parametrize("url_name, how", ATTACKS, ids=[f"{name}: {how}" for name, how in ATTACKS])
def test_bob_reaches_nothing_of_alices(world, mailoutbox, url_name, how):
    alice, bob = world
    bob_client = Client()
    bob_client.force_login(bob.user)
    before = alice_rows(alice)

    responses = ATTACKS[url_name, how](bob_client, alice, bob)

    for response in responses:
        assert response.status_code < 500
        html = response.content.decode()
        assert [s for s in secrets_of(alice) if s in html] == []
    assert alice_rows(alice) == before
    assert all(email.to == [alice.email] for email in mailoutbox)  # a reset link goes to alice's inbox or nowhere
    if url_name != "password_reset":
        assert mailoutbox == []
    links = [word for email in mailoutbox for word in email.body.split() if "/account/reset/" in word]
    assert not any(link.split("/account/", 1)[1] in r.content.decode() for link in links for r in responses)
    if "_auth_user_id" in bob_client.session:
        assert bob_client.session["_auth_user_id"] == str(bob.user.pk)
        html = bob_client.get(DASHBOARD).content.decode()
        assert "#BOB-ORDER" in html
        for known in [alice.public_id, alice.credential.client_id, alice.email, *secrets_of(alice)]:
            assert known not in html


@pytest.mark.parametrize(
    "path",
    ["/admin/", "/admin/accounts/customer/{customer}/change/", "/admin/accounts/customer/",
     "/admin/ledger/purchase/?customer__id__exact={customer}", "/admin/ledger/balance/", "/admin/ledger/ledgerentry/"],
)  # fmt: skip
def test_bob_gets_nothing_from_the_admin(world, path):
    alice, bob = world
    bob_client = Client()
    bob_client.force_login(bob.user)

    response = bob_client.get(path.format(customer=alice.pk))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert [s for s in [alice.public_id, alice.email, *secrets_of(alice)] if s in response.content.decode()] == []
