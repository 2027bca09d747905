"""Admin permissions, walked from the admin's own registry: a staff user who may only view
gets no action, no custom view and no form that changes anything.

Every ModelAdmin in `admin.site._registry` (ours and those of the apps we install, e.g.
django-axes') and every action it has (its own and the site's), every URL it adds to
Django's, and its change and delete forms are tried as that user, over real URLs, with
everything an action or form needs to go through in one request. Afterwards every row of
every table is as it was and no email went out.
"""

import datetime
import re

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from ledger.models import DriftCheck, MirrorOutbox, Purchase
from ledger.store.models import StoreWebhook

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

# What a completed action or form of each kind would post along, so that one request is
# enough when the door is open: delete_selected's confirmation, the apply form's product.
ACTION_EXTRAS = {"post": "yes", "apply": "Grant the credits"}
# The custom admin views (ModelAdmin.get_urls beyond Django's own), with what a staff user
# allowed to would post. A guard below fails when a new view has no entry here.
CUSTOM_VIEW_POSTS = {
    "accounts_customer_adjust": lambda world: {
        "product": world["products"]["weather"].pk,
        "amount": "1000",
        "reason": "view-only staff try",
    },
    "accounts_customer_status": lambda world: {"status": "suspended"},
    "accounts_customer_email": lambda world: {"email": "view-only@example.com"},
    "auth_user_password_change": lambda world: {
        "password1": "view only took over",
        "password2": "view only took over",
        "usable_password": "true",
    },
}


# Custom admin views that only read: a view-only user may GET them (that is what viewing means),
# and a POST is refused. The CSV downloads of the lists (ledger/overview/exports.py).
READ_ONLY_VIEWS = {"ledger_ledgerentry_export", "ledger_purchase_export"}


def every_row() -> dict[str, list[str]]:
    """Every row of every table (the login's own session aside), as JSON text."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_type = 'BASE TABLE' AND table_name <> 'django_session' ORDER BY table_name"
        )
        tables = [name for (name,) in cursor.fetchall()]
        rows = {}
        for table in tables:
            cursor.execute(f'SELECT row_to_json(t)::text FROM "{table}" t ORDER BY 1')
            rows[table] = [row for (row,) in cursor.fetchall()]
    return rows


@pytest.fixture
def world(mirror_table, zapier, alice, bob, staff, products, purchase):
    """A row for every registered model, and the states every action acts on: an active and a
    suspended customer, an applied first purchase, an unmatched one, an expired lockout."""
    from accounts.services import customer_suspend

    purchase(alice, products["weather"], 10)
    customer_suspend(customer=bob)
    zapier({"order_id": "2001", "email": "nina@example.com", "product": "weather", "quantity": "5"})
    zapier({"order_id": "2002", "email": "omar@example.com", "product": "GIFT-CARD", "quantity": "5"})
    assert Purchase.objects.filter(status=Purchase.Status.UNMATCHED).exists()
    assert Purchase.objects.filter(created_customer=True).exists()
    MirrorOutbox.objects.create(scope=MirrorOutbox.Scope.ROUTE, ref="gone00001", attempts=1, error="timeout")
    DriftCheck.objects.create(result=DriftCheck.Result.DRIFT, differences=1, detail="API#gone00001 ROUTE: missing")
    from ledger.store.refunds import order_cancel

    order_cancel(order_id="2001", reason="customer")  # a refund with its line (and a take-back entry)
    StoreWebhook.objects.create(webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", topic="orders/paid")
    long_ago = timezone.now() - datetime.timedelta(days=2)
    AccessAttempt.objects.create(
        username="alice@example.com", ip_address="203.0.113.1", failures_since_start=5, attempt_time=long_ago
    )
    AccessLog.objects.create(username="alice@example.com", ip_address="203.0.113.1", attempt_time=long_ago)
    AccessFailureLog.objects.create(username="alice@example.com", ip_address="203.0.113.1", attempt_time=long_ago)
    Group.objects.create(name="support")
    from accounts.services import api_key_create

    api_key_create(customer=alice, name="nightly")  # a live key, for "Revoke selected API keys"
    return {"products": products, "alice": alice, "bob": bob}


@pytest.fixture
def viewer(db) -> User:
    """Staff who may look at everything and change nothing: every view_* permission, no other."""
    user = User.objects.create_user("viewer@creditportal.test", "viewer password 123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return user


@pytest.fixture
def viewer_client(viewer) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


def registry() -> list[tuple[type, admin.ModelAdmin]]:
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def every_action() -> list[tuple[type, str]]:
    return [(model, name) for model, model_admin in registry() for _, name, _ in model_admin._get_base_actions()]


def custom_views() -> list[tuple[type, object]]:
    """The URLs each ModelAdmin adds to the ones Django's ModelAdmin gives every model."""
    found = []
    for model, model_admin in registry():
        django_own = {p.name for p in admin.ModelAdmin.get_urls(model_admin)}
        found += [(model, p) for p in model_admin.get_urls() if p.name and p.name not in django_own]
    return found


def url_of(model, name: str, pattern=None) -> str:
    """The admin URL `name`, its object id(s) filled with the pk of the model's first row."""
    pk = model._default_manager.order_by("pk").values_list("pk", flat=True).first()
    kwargs = dict.fromkeys(pattern.pattern.converters if pattern else ["object_id"], pk)
    return reverse(f"admin:{name}", kwargs=kwargs)


def test_the_walk_finds_the_actions_and_views_it_must_cover():
    actions = {f"{model._meta.label}.{name}" for model, name in every_action()}
    assert {
        "accounts.Customer.suspend",
        "accounts.Customer.reactivate",
        "ledger.Purchase.apply_to_product",
        "ledger.Purchase.resend_welcome_email",
        "ledger.Purchase.resend_credits_added_email",
        "axes.AccessAttempt.cleanup_expired_attempts",
        "accounts.ApiKey.revoke",
    } <= actions
    assert {pattern.name for _, pattern in custom_views()} == set(CUSTOM_VIEW_POSTS) | READ_ONLY_VIEWS


def test_every_state_changing_action_declares_a_permission():
    """Django runs an action without `allowed_permissions` for anyone who may view the list."""
    undeclared = [
        f"{model._meta.label}.{name}"
        for model, model_admin in registry()
        for func, name, _ in model_admin._get_base_actions()
        if not getattr(func, "allowed_permissions", ())
    ]
    assert undeclared == []


@pytest.mark.parametrize("model, action", [pytest.param(m, a, id=f"{m._meta.label}.{a}") for m, a in every_action()])
def test_a_view_only_user_can_run_no_action(world, viewer_client, mailoutbox, model, action):
    changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert viewer_client.get(changelist).status_code == 200  # they may look
    selected = list(model._default_manager.values_list("pk", flat=True))
    assert selected, f"no {model._meta.label} rows: the action would have nothing to act on"
    before, sent = every_row(), len(mailoutbox)

    response = viewer_client.post(
        changelist,
        {"action": action, "_selected_action": selected, "index": 0, "product": world["products"]["weather"].pk,
         **ACTION_EXTRAS},
        follow=True,
    )  # fmt: skip

    assert response.status_code in (200, 403)
    if response.status_code == 200:  # the list again, offering no action (or saying none was chosen)
        assert {str(m) for m in response.context["messages"]} <= {"No action selected."}
    assert every_row() == before
    assert len(mailoutbox) == sent


@pytest.mark.parametrize(
    "model, pattern", [pytest.param(m, p, id=p.name) for m, p in custom_views() if p.name not in READ_ONLY_VIEWS]
)
def test_a_view_only_user_is_refused_every_custom_admin_view(world, viewer_client, mailoutbox, model, pattern):
    url = url_of(model, pattern.name, pattern)
    before, sent = every_row(), len(mailoutbox)

    got = viewer_client.get(url)
    posted = viewer_client.post(url, CUSTOM_VIEW_POSTS[pattern.name](world))

    assert got.status_code in (403, 405)
    assert posted.status_code == 403
    assert every_row() == before
    assert len(mailoutbox) == sent


@pytest.mark.parametrize(
    "model, pattern", [pytest.param(m, p, id=p.name) for m, p in custom_views() if p.name in READ_ONLY_VIEWS]
)
def test_a_view_only_user_may_read_the_read_only_views_and_post_to_none(world, viewer_client, model, pattern):
    url = url_of(model, pattern.name, pattern)
    before = every_row()

    got = viewer_client.get(url)
    posted = viewer_client.post(url, {})

    assert got.status_code == 200
    b"".join(got.streaming_content)  # read to the end, as a browser would
    assert posted.status_code == 405
    assert every_row() == before


def test_a_view_only_user_sees_the_overview_and_it_changes_nothing(world, viewer_client, mailoutbox):
    before, sent = every_row(), len(mailoutbox)

    response = viewer_client.get(reverse("admin:index"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Needs a hand" in html and 'id="overview-numbers"' in html
    assert "<form" not in html.split('id="content-main"', 1)[1].split('id="content-related"', 1)[0]
    # Its links are lists the user may view (each answers 200).
    for url in re.findall(r'<a href="(/admin/ledger/[^"]+)">', html):
        assert viewer_client.get(url.replace("&amp;", "&")).status_code == 200, url
    assert every_row() == before
    assert len(mailoutbox) == sent


@pytest.mark.parametrize("model", [model for model, _ in registry()], ids=lambda m: m._meta.label)
def test_a_view_only_user_can_neither_change_nor_delete_a_row(world, viewer_client, model):
    before = every_row()
    info = f"{model._meta.app_label}_{model._meta.model_name}"
    responses = [
        viewer_client.post(url_of(model, f"{info}_change"), {"name": "changed", "email": "x@example.com"}),
        viewer_client.post(url_of(model, f"{info}_delete"), {"post": "yes"}),
    ]

    assert {r.status_code for r in responses} == {403}
    assert every_row() == before
