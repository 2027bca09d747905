"""Indexes for the admin's lists at 1M ledger entries (bench/admin_pages.py): each list's
order is walked through an index instead of sorting every row."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_customer_admin_indexes"),
        ("ledger", "0005_mirror_pending"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="purchase",
            index=models.Index(fields=["-received", "-id"], name="purchase_newest_first"),
        ),
        migrations.AddIndex(
            model_name="balance",
            index=models.Index(fields=["product", "remaining", "customer"], name="balance_product_remaining"),
        ),
    ]
