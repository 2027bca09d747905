"""Indexes for the admin's lists of customers and users at 100k rows (bench/admin_pages.py).

The admin searches with `icontains`, which Postgres runs as
UPPER(col) LIKE UPPER('%q%'): no B-tree helps a leading wildcard, so each
search read every row. A trigram GIN index on UPPER(col) answers it. Postgres
only (pg_trgm); on SQLite (`make run`) these are skipped and searches scan, as
before, which is fine for a demo's few rows.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models
from django.db.models.functions import Upper

TRIGRAM_INDEXES = [  # name, table, column
    ("customer_email_trgm", "accounts_customer", "email"),
    ("customer_name_trgm", "accounts_customer", "name"),
    ("user_email_trgm", "accounts_user", "email"),
    ("user_name_trgm", "accounts_user", "name"),
]


def trigram_indexes_create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, table, column in TRIGRAM_INDEXES:
        # UPPER(col::text), as Django's icontains writes it, or the planner cannot use the index.
        schema_editor.execute(f'CREATE INDEX "{name}" ON "{table}" USING gin (UPPER("{column}"::text) gin_trgm_ops)')


def trigram_indexes_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _, _ in TRIGRAM_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.AddIndex(
            model_name="customer",
            index=models.Index(fields=["-created", "-id"], name="customer_newest_first"),
        ),
        migrations.AddIndex(
            model_name="customer",
            index=models.Index(Upper("public_id"), name="customer_public_id_upper"),
        ),
        TrigramExtension(),  # does nothing outside Postgres
        migrations.RunPython(trigram_indexes_create, trigram_indexes_drop),
    ]
