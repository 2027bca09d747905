"""The transactional outbox (MirrorOutbox) replaces MirrorPending.

A MirrorPending row named a failed item by its key; it becomes an outbox row for
the same item (a balance by its id, a route by its API id). A key with nothing
behind it in Postgres any more had nothing to write: it is dropped, as the old
retry would have cleared it."""

import django.utils.timezone
from django.db import migrations, models


def pending_to_outbox(apps, schema_editor):
    MirrorPending = apps.get_model("ledger", "MirrorPending")
    MirrorOutbox = apps.get_model("ledger", "MirrorOutbox")
    Balance = apps.get_model("ledger", "Balance")
    rows = []
    for pending in MirrorPending.objects.order_by("created", "pk"):
        pk, sk = pending.item_pk, pending.item_sk
        row = MirrorOutbox(created=pending.created, attempts=1, error=pending.error)
        if pk.startswith("CUSTOMER#") and sk.startswith("PRODUCT#"):
            balance = Balance.objects.filter(
                customer__public_id=pk.removeprefix("CUSTOMER#"), product__slug=sk.removeprefix("PRODUCT#")
            ).first()
            if balance is None:
                continue
            row.scope, row.ref = "balance", str(balance.pk)
        elif pk.startswith("API#") and sk == "ROUTE":
            row.scope, row.ref = "route", pk.removeprefix("API#")
        else:
            continue
        rows.append(row)
    MirrorOutbox.objects.bulk_create(rows)


def outbox_to_pending(apps, schema_editor):
    MirrorPending = apps.get_model("ledger", "MirrorPending")
    MirrorOutbox = apps.get_model("ledger", "MirrorOutbox")
    Balance = apps.get_model("ledger", "Balance")
    ProductApi = apps.get_model("ledger", "ProductApi")
    keys = {}
    for row in MirrorOutbox.objects.order_by("pk"):
        balances = Balance.objects.none()
        if row.scope == "balance":
            balances = Balance.objects.filter(pk=row.ref)
        elif row.scope == "customer":
            balances = Balance.objects.filter(customer_id=row.ref)
        elif row.scope == "product":
            balances = Balance.objects.filter(product_id=row.ref)
            for api_id in ProductApi.objects.filter(product_id=row.ref).values_list("api_id", flat=True):
                keys[(f"API#{api_id}", "ROUTE")] = row.error
        else:
            keys[(f"API#{row.ref}", "ROUTE")] = row.error
        for public_id, slug in balances.values_list("customer__public_id", "product__slug"):
            keys[(f"CUSTOMER#{public_id}", f"PRODUCT#{slug}")] = row.error
    MirrorPending.objects.bulk_create(
        [MirrorPending(item_pk=pk, item_sk=sk, error=error) for (pk, sk), error in keys.items()]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0006_admin_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="MirrorOutbox",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "scope",
                    models.CharField(
                        choices=[
                            ("balance", "Balance item"),
                            ("customer", "Customer's balance items"),
                            ("product", "Product's balance items and routes"),
                            ("route", "Route item"),
                        ],
                        max_length=16,
                    ),
                ),
                ("ref", models.CharField(max_length=64)),
                ("created", models.DateTimeField(default=django.utils.timezone.now)),
                ("attempts", models.PositiveIntegerField(default=0, help_text="Writes tried and failed.")),
                ("error", models.TextField(blank=True, help_text="Why the last write failed.")),
            ],
            options={
                "verbose_name": "pending mirror write",
                "ordering": ["id"],
            },
        ),
        migrations.RunPython(pending_to_outbox, outbox_to_pending),
        migrations.DeleteModel(name="MirrorPending"),
    ]
