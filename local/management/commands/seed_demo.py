from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from local.demo import demo_seed


class Command(BaseCommand):
    help = (
        "For local demos only: a staff login, a demo product, and a demo customer with credits. Safe to run "
        "again; the demo customer's credential gets a new secret each time (the previous one stops working)."
    )

    def handle(self, **options) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo is for local demos only: it makes a superuser with a well-known password. "
                "Run it with DJANGO_DEBUG=1 (make run does)."
            )
        demo = demo_seed()
        product = demo.product
        api_ids = ", ".join(product.apis.values_list("api_id", flat=True))
        self.stdout.write(f"demo staff login: {demo.staff_email} / {demo.staff_password}")
        self.stdout.write(f"demo product: {product.slug} (API id {api_ids}, cost {product.cost_per_call} per call)")
        self.stdout.write(f"demo customer: {demo.customer_email} / {demo.customer_password} ({demo.customer_id})")
        self.stdout.write(f"demo customer's client id: {demo.client_id}")
        self.stdout.write(f"demo customer's client secret (new at every run): {demo.secret}")
