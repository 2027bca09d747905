import os

from django.core.management.base import BaseCommand

from accounts.models import User
from ledger.services import product_upsert

DEMO_EMAIL = "staff@example.com"


class Command(BaseCommand):
    help = "For local demos only: a staff login and a demo product. Safe to run again."

    def handle(self, **options) -> None:
        password = os.getenv("DEMO_STAFF_PASSWORD", "creditportal-demo")
        user = User.objects.filter(email=DEMO_EMAIL).first()
        if user is None:
            User.objects.create_superuser(DEMO_EMAIL, password, name="Demo Staff")
        else:
            user.set_password(password)
            user.is_staff = user.is_superuser = user.is_active = True
            user.save()
        product_upsert(slug="demo-api", name="Demo API", api_ids=["demoapi01"], skus=["DEMO-100"], cost_per_call=1)
        self.stdout.write(f"demo staff login: {DEMO_EMAIL} / {password}")
        self.stdout.write("demo product: demo-api (API id demoapi01, SKU DEMO-100)")
