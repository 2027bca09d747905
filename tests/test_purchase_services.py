"""purchase_record, purchase_apply, purchase_email_resend and customer_get_or_create,
including the races they must win: a second writer really blocked by the first."""

import threading
import time

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction

from accounts.models import Credential, Customer, User
from accounts.services import credential_revoke, customer_get_or_create
from ledger.models import Balance, LedgerEntry, Purchase
from ledger.services import purchase_apply, purchase_email_resend
from ledger.store.orders import purchase_record


def record(**overrides) -> Purchase:
    data = {
        "source": Purchase.Source.ZAPIER,
        "order_id": "1001",
        "email": "nina@example.com",
        "name": "Nina",
        "product_ref": "weather",
        "quantity": 10,
    }
    return purchase_record(**{**data, **overrides})


def test_a_new_email_gets_a_customer_a_login_and_one_credential(db):
    customer, credential, secret = customer_get_or_create(email="  Nina@Example.COM ", name=" Nina ")

    assert (customer.email, customer.name) == ("nina@example.com", "Nina")
    assert customer.user.email == "nina@example.com" and not customer.user.has_usable_password()
    assert credential.customer == customer and credential.check_secret(secret)
    assert credential.secret_hash != secret and credential.secret_last4 == secret[-4:]


def test_a_known_email_gets_the_same_customer_and_no_secret(alice):
    assert customer_get_or_create(email="ALICE@example.com", name="Someone else") == (alice, None, None)
    assert Credential.objects.count() == 1


def test_a_staff_user_who_buys_gets_a_customer_on_the_same_login(staff):
    customer, _credential, secret = customer_get_or_create(email="Staff@CreditPortal.test", name="")

    assert customer.user == staff and secret is not None
    assert User.objects.count() == 1


def test_a_repeated_record_changes_nothing_and_says_so(products):
    first = record()
    second = record(email="NINA@example.com")

    assert first.created and not second.created
    assert second.purchase.pk == first.purchase.pk
    assert LedgerEntry.objects.count() == 1 and Balance.objects.get().granted == 10


def test_a_record_needs_a_positive_quantity(products):
    with pytest.raises(ValidationError, match="positive number of credits"):
        record(quantity=0)
    assert not Purchase.objects.exists()


def test_applying_twice_is_refused_clearly(products, staff):
    purchase = record(product_ref="GIFT-CARD").purchase
    purchase_apply(purchase=purchase, product=products["weather"], by=staff)

    with pytest.raises(ValidationError) as refused:
        purchase_apply(purchase=purchase, product=products["maps"], by=staff)

    purchase.refresh_from_db()
    assert refused.value.messages == [
        f"zapier:1001 was already applied on {purchase.applied:%Y-%m-%d %H:%M} UTC (10 weather credits); "
        "nothing changed."
    ]
    assert purchase.product == products["weather"]
    assert LedgerEntry.objects.count() == 1 and not Balance.objects.filter(product=products["maps"]).exists()


def test_only_staff_apply_or_resend(products, alice):
    purchase = record(product_ref="GIFT-CARD").purchase

    with pytest.raises(PermissionDenied):
        purchase_apply(purchase=purchase, product=products["weather"], by=alice.user)
    with pytest.raises(PermissionDenied):
        purchase_email_resend(purchase=purchase, by=alice.user)
    assert Purchase.objects.get().status == Purchase.Status.UNMATCHED


def test_an_unmatched_purchase_cannot_be_resent(products, staff):
    purchase = record(product_ref="GIFT-CARD").purchase

    with pytest.raises(ValidationError, match="apply it to a product first"):
        purchase_email_resend(purchase=purchase, by=staff)


def test_resending_a_welcome_after_every_credential_was_revoked_makes_a_new_one(
    products, staff, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        purchase = record().purchase
    credential_revoke(credential=Credential.objects.get())

    with django_capture_on_commit_callbacks(execute=True):
        purchase_email_resend(purchase=purchase, by=staff)

    new = Credential.objects.get(revoked_at__isnull=True)
    assert f"Client ID: {new.client_id}" in mailoutbox[-1].body
    assert Credential.objects.count() == 2


def wait_until_a_query_waits_on_a_lock(timeout: float = 10) -> None:
    """Block until another connection is waiting on a row lock (proves the race is real)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the second writer never waited on the first")


def race(first, second) -> tuple:
    """Run `first` in a transaction kept open until `second` is blocked by it, then commit."""
    results, errors = {}, []
    inside, release = threading.Event(), threading.Event()

    def run_first():
        try:
            with transaction.atomic():
                results["first"] = first()
                inside.set()
                release.wait(10)
        except Exception as e:  # surfaced below
            errors.append(e)
            inside.set()
        finally:
            connection.close()

    def run_second():
        try:
            inside.wait(10)
            results["second"] = second()
        except Exception as e:
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=run_first), threading.Thread(target=run_second)]
    for t in threads:
        t.start()
    try:
        wait_until_a_query_waits_on_a_lock()
    finally:
        release.set()
        for t in threads:
            t.join()
    assert errors == []
    return results["first"], results["second"]


@pytest.mark.django_db(transaction=True)
def test_a_first_purchase_blocked_by_another_for_the_same_email_finds_its_customer():
    first, second = race(
        lambda: customer_get_or_create(email="nina@example.com", name="Nina"),
        lambda: customer_get_or_create(email="NINA@example.com", name="Nina"),
    )

    customer = Customer.objects.get()
    assert first[0] == customer and first[2] is not None
    assert second == (customer, None, None)
    assert User.objects.count() == Credential.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_delivery_blocked_by_the_same_order_line_returns_the_first_purchase(products):
    first, second = race(record, record)

    assert first.created and not second.created
    assert second.purchase.pk == first.purchase.pk
    assert second.purchase.remaining_after == 10 and second.purchase.customer.email == "nina@example.com"
    assert Purchase.objects.count() == LedgerEntry.objects.count() == Customer.objects.count() == 1
