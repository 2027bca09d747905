"""Demo data for a local stack: a staff login, a demo product, and a demo customer
with credits and API credentials. For local demos only."""

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from accounts.models import User
from accounts.services import credential_create, credential_rotate, customer_get_or_create
from ledger.models import Product
from ledger.services import credits_grant, product_upsert

STAFF_EMAIL = "staff@example.com"
CUSTOMER_EMAIL = "demo.customer@example.com"
PRODUCT_SLUG = "demo-api"
PRODUCT_API_ID = "demoapi01"  # the API id the local API Gateway stand-in puts in methodArn
PRODUCT_SKU = "DEMO-100"
CUSTOMER_CREDITS = 100  # granted once, when the demo customer is created


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

    The demo customer gets CUSTOMER_CREDITS demo-api credits once, when first created.
    Its credential gets a new secret at every run (a secret is stored only as a hash,
    so a new one is the only one that can be shown); the previous secret stops working.
    """
    staff_password, customer_password = settings.DEMO_STAFF_PASSWORD, settings.DEMO_CUSTOMER_PASSWORD
    _login(STAFF_EMAIL, staff_password, staff=True, name="Demo Staff")
    product, _ = product_upsert(
        slug=PRODUCT_SLUG, name="Demo API", api_ids=[PRODUCT_API_ID], skus=[PRODUCT_SKU], cost_per_call=1
    )

    customer, credential, secret = customer_get_or_create(email=CUSTOMER_EMAIL, name="Demo Customer")
    if credential is not None:  # created just now
        credits_grant(customer=customer, product=product, amount=CUSTOMER_CREDITS)
    else:
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
