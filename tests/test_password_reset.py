"""Setting and resetting a password by email: the welcome email's link
(/account/reset/<uidb64>/<token>/), "forgot my password", and changing it."""

import re

from django.contrib.auth.tokens import default_token_generator
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import Customer, User


def welcome_link_path(user: User) -> str:
    """The path the purchase webhook's welcome email links to (see accounts/urls.py)."""
    return f"/account/reset/{urlsafe_base64_encode(force_bytes(user.pk))}/{default_token_generator.make_token(user)}/"


def new_customer(email: str = "carol@example.com") -> Customer:
    """A customer as a first purchase makes them: no password yet."""
    user = User.objects.create_user(email, None, name="Carol")
    return Customer.objects.create(user=user, email=email, name="Carol")


def test_the_welcome_link_lets_a_new_customer_set_a_password_and_logs_them_in(client, db):
    carol = new_customer()
    link = welcome_link_path(carol.user)
    assert link == reverse("password_reset_confirm", kwargs={"uidb64": link.split("/")[3], "token": link.split("/")[4]})

    landing = client.get(link, follow=True)

    assert landing.status_code == 200
    html = landing.content.decode()
    assert "<h1>Set your password</h1>" in html
    assert "carol@example.com" in html
    set_password_url = landing.redirect_chain[-1][0]

    response = client.post(
        set_password_url, {"new_password1": "a long new passphrase", "new_password2": "a long new passphrase"}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("account_dashboard")
    carol.user.refresh_from_db()
    assert carol.user.check_password("a long new passphrase")
    assert client.session.get("_auth_user_id") == str(carol.user.pk)
    assert "Your password is set. Welcome!" in client.get(reverse("account_dashboard")).content.decode()

    reused = Client().get(link, follow=True)  # a used link is dead
    assert "This link no longer works" in reused.content.decode()


def test_a_weak_password_is_refused_with_the_reason(client, db):
    carol = new_customer()
    landing = client.get(welcome_link_path(carol.user), follow=True)

    response = client.post(landing.redirect_chain[-1][0], {"new_password1": "12345678", "new_password2": "12345678"})

    assert response.status_code == 200
    assert "This password is too common." in response.content.decode()
    carol.user.refresh_from_db()
    assert not carol.user.has_usable_password()


def test_a_customer_who_never_had_a_password_can_ask_for_a_link(client, db, mailoutbox, settings):
    carol = new_customer()

    response = client.post(reverse("password_reset"), {"email": "Carol@Example.com"})

    assert response.status_code == 302
    assert response["Location"] == reverse("password_reset_done")
    assert len(mailoutbox) == 1
    email = mailoutbox[0]
    assert email.to == ["carol@example.com"]
    assert email.subject == "Set your CreditPortal password"
    link = re.search(r"(http\S+/account/reset/\S+/)", email.body).group(1)
    assert link.startswith(f"{settings.PORTAL_BASE_URL}/account/reset/")  # not from the Host header
    assert link in email.alternatives[0][0]

    landing = client.get(link.removeprefix(settings.PORTAL_BASE_URL), follow=True)
    assert "<h1>Set your password</h1>" in landing.content.decode()
    assert carol.user.pk  # the same account


def test_a_customer_with_a_password_gets_a_reset_link(client, alice, mailoutbox):
    client.post(reverse("password_reset"), {"email": alice.email})

    assert len(mailoutbox) == 1
    assert mailoutbox[0].subject == "Reset your CreditPortal password"
    link = re.search(r"http://[^/]+(/account/reset/\S+/)", mailoutbox[0].body).group(1)
    landing = client.get(link, follow=True)
    assert "<h1>Choose a new password</h1>" in landing.content.decode()


def test_an_unknown_email_gets_the_same_answer_and_no_email(client, db, mailoutbox):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"}, follow=True)

    assert response.status_code == 200
    assert "Check your email" in response.content.decode()
    assert mailoutbox == []


def test_an_inactive_user_gets_no_link(client, alice, mailoutbox):
    User.objects.filter(pk=alice.user.pk).update(is_active=False)

    client.post(reverse("password_reset"), {"email": alice.email})

    assert mailoutbox == []


def test_the_reset_form_refuses_a_missing_csrf_token(alice, mailoutbox):
    response = Client(enforce_csrf_checks=True).post(reverse("password_reset"), {"email": alice.email})

    assert response.status_code == 403
    assert mailoutbox == []


def test_a_logged_in_customer_changes_their_password(client, alice):
    client.force_login(alice.user)

    response = client.post(
        reverse("password_change"),
        {
            "old_password": "correct horse battery staple",
            "new_password1": "another fine passphrase",
            "new_password2": "another fine passphrase",
        },
    )

    assert response.status_code == 302
    alice.user.refresh_from_db()
    assert alice.user.check_password("another fine passphrase")
    assert client.get(reverse("account_dashboard")).status_code == 200  # still logged in


# --- The throttle: per address and per IP (accounts.services.throttle_hit) ----------------


def reset(email: str, ip: str = "203.0.113.7"):
    return Client().post(reverse("password_reset"), {"email": email}, REMOTE_ADDR=ip, follow=True)


def test_links_to_one_address_stop_after_the_limit_with_the_same_answer(alice, mailoutbox, settings):
    assert settings.PASSWORD_RESET_EMAIL_LIMIT == 3
    answers = [reset(spelling, ip=f"198.51.100.{i}") for i, spelling in enumerate(
        ["alice@example.com", "ALICE@example.com", " Alice@Example.com", "alice@example.com", "alice@EXAMPLE.com",
         "alice@example.com", "alice@example.com", "alice@example.com"])]  # fmt: skip

    assert len(mailoutbox) == 3  # 8 requests (each from its own IP), 3 emails
    assert {a.status_code for a in answers} == {200}
    assert {a.redirect_chain[-1][0] for a in answers} == {reverse("password_reset_done")}
    assert len({a.content for a in answers}) == 1  # sent or not, one answer, byte for byte


def test_the_answer_is_the_same_for_an_address_nobody_has(alice, mailoutbox):
    """Past the limit or not, with an account or not: one page, so nothing tells them apart."""
    known = [reset(alice.email, ip=f"198.51.100.{i}") for i in range(5)]
    unknown = [reset("nobody@example.com", ip=f"192.0.2.{i}") for i in range(5)]

    assert {(a.status_code, a.redirect_chain[-1][0], a.content) for a in known + unknown} == {
        (200, reverse("password_reset_done"), known[0].content)
    }
    assert [m.to for m in mailoutbox] == [[alice.email]] * 3


def test_one_ip_is_paused_after_its_limit_whatever_addresses_it_asks_for(alice, mailoutbox, settings):
    assert settings.PASSWORD_RESET_IP_LIMIT == 20
    for i in range(20):
        assert reset(f"someone{i}@example.com", ip="203.0.113.99").status_code == 200

    paused = reset(alice.email, ip="203.0.113.99")

    assert paused.status_code == 429
    assert "Too many password links asked for" in paused.content.decode()
    assert "try again in 60 minutes" in paused.content.decode()
    assert mailoutbox == []  # alice's link was not sent from there
    assert reset(alice.email, ip="203.0.113.100").status_code == 200  # nor is anyone else held up
    assert [m.to for m in mailoutbox] == [[alice.email]]


def test_the_limits_start_again_in_the_next_window(alice, mailoutbox):
    import datetime

    from accounts.models import Throttle

    for _ in range(4):
        reset(alice.email)
    assert len(mailoutbox) == 3
    Throttle.objects.update(window_start=F("window_start") - datetime.timedelta(hours=1))

    reset(alice.email)

    assert len(mailoutbox) == 4
    assert alice.email not in str(list(Throttle.objects.values()))  # only keyed hashes are kept
