"""Demo data for a local stack: a staff login, a demo product, and a demo customer
with a purchase, two weeks of usage and API credentials. For local demos only.

The demo customer's history is made by the services the real one goes through (the
customer, its credential, the store purchase, the gate's usage as sync_usage records it),
each run with the clock set to the day it stands for (time-machine), so every row, the
ledger's dates and the portal's chart included, reads as if it had happened."""

import datetime
from dataclasses import dataclass

import time_machine
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Customer, User
from accounts.services import credential_create, credential_rotate, customer_get_or_create
from ledger.models import Product, Purchase
from ledger.services import product_upsert, usage_record
from ledger.store.orders import purchase_record

STAFF_EMAIL = "staff@example.com"
CUSTOMER_EMAIL = "demo.customer@example.com"
PRODUCT_SLUG = "demo-api"
PRODUCT_API_ID = "demoapi01"  # the API id the local API Gateway stand-in puts in methodArn
PRODUCT_SKU = "DEMO-100"
CUSTOMER_CREDITS = 100  # bought once, when the demo customer is created
ORDER_ID = "DEMO-1001"
BOUGHT_DAYS_AGO = 15
# Credits the demo customer spent on each of the 14 days before today, oldest first.
DAILY_USAGE = [3, 5, 2, 0, 6, 4, 7, 1, 0, 5, 8, 3, 4, 6]
CUSTOMER_REMAINING = CUSTOMER_CREDITS - sum(DAILY_USAGE)  # 46 at the start of a demo


@dataclass(frozen=True)
class Demo:
    staff_email: str
    staff_password: str
    customer_email: str
    customer_password: str
    customer_id: str  # cus_...
    product: Product
    client_id: str
    secret: str  # valid until the next seed: the demo credential's secret is new every time


def _login(email: str, password: str, *, staff: bool, name: str) -> User:
    user = User.objects.filter(email=email).first() or User.objects.create_user(email, None, name=name)
    user.set_password(password)
    user.is_active = True
    if staff:
        user.is_staff = user.is_superuser = True
    user.save()
    return user


@transaction.atomic
def demo_seed() -> Demo:
    """Bring the demo data to a known state; running it again adds nothing.

    The demo customer, when first created, buys CUSTOMER_CREDITS demo-api credits BOUGHT_DAYS_AGO
    days ago and spends DAILY_USAGE of them over the two weeks since (`_demo_customer_history`).
    Its credential gets a new secret at every run (a secret is stored only as a hash,
    so a new one is the only one that can be shown); the previous secret stops working.
    """
    staff_password, customer_password = settings.DEMO_STAFF_PASSWORD, settings.DEMO_CUSTOMER_PASSWORD
    _login(STAFF_EMAIL, staff_password, staff=True, name="Demo Staff")
    product, _ = product_upsert(
        slug=PRODUCT_SLUG, name="Demo API", api_ids=[PRODUCT_API_ID], skus=[PRODUCT_SKU], cost_per_call=1
    )

    if not Customer.objects.filter(email=CUSTOMER_EMAIL).exists():
        credential, secret = _demo_customer_history(product)
        customer = credential.customer
    else:
        customer, _, _ = customer_get_or_create(email=CUSTOMER_EMAIL)
        credential = customer.credentials.filter(revoked_at__isnull=True).order_by("pk").first()
        if credential is None:  # all revoked in the portal: a fresh one
            credential, secret = credential_create(customer=customer)
        else:
            secret = credential_rotate(credential=credential)
    _login(CUSTOMER_EMAIL, customer_password, staff=False, name="Demo Customer")
    return Demo(
        staff_email=STAFF_EMAIL,
        staff_password=staff_password,
        customer_email=customer.email,
        customer_password=customer_password,
        customer_id=customer.public_id,
        product=product,
        client_id=credential.client_id,
        secret=secret,
    )


def _demo_customer_history(product: Product) -> tuple:
    """Make the demo customer as a buyer would be made: customer and credential, then the store's
    purchase (through purchase_record, as the Zapier webhook does), then each day's usage (through
    usage_record, as sync_usage does), each at the time it stands for. Returns (credential, secret)."""
    now = timezone.now()
    bought = (now - datetime.timedelta(days=BOUGHT_DAYS_AGO)).replace(hour=9, minute=0, second=0, microsecond=0)
    with time_machine.travel(bought, tick=False):
        customer, credential, secret = customer_get_or_create(email=CUSTOMER_EMAIL, name="Demo Customer")
        purchase_record(
            source=Purchase.Source.ZAPIER,
            order_id=ORDER_ID,
            email=CUSTOMER_EMAIL,
            name="Demo Customer",
            product_ref=PRODUCT_SKU,
            quantity=CUSTOMER_CREDITS,
            payload={"order_id": ORDER_ID, "note": "made by seed_demo"},
        )
    for days_ago, credits in zip(range(len(DAILY_USAGE), 0, -1), DAILY_USAGE, strict=True):
        if credits:
            day = (now - datetime.timedelta(days=days_ago)).replace(hour=12, minute=0, second=0, microsecond=0)
            with time_machine.travel(day, tick=False):
                usage_record(customer=customer, product=product, amount=credits, reason="demo usage")
    return credential, secret
