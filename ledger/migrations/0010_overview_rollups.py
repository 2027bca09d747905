"""The overview's rollups, kept by Postgres in the transaction of every insert, whoever inserts.

* ledger_ledgerday: sum(amount) and count(*) of the ledger per UTC day, product and kind.
* ledger_spendweek: credits each customer spent per UTC week (from Monday): -sum(amount) of usage.
* ledger_customeractivity / ledger_activeday: each customer's latest day with a usage entry, and
  how many customers have theirs on each day (active since a day = the sum from that day on).
* ledger_purchaseday: order lines received per UTC day and currency ('' without a price), and
  what they sold for (units x unit price).

A statement-level trigger on the ledger's INSERT reads the statement's rows (a transition table),
so a bulk insert of a million rows updates each rollup row once. Purchases get a row-level trigger
(an UPDATE of `received`, `quantity`, `price` or `currency` moves them). Every rollup is first
built from the tables as they are. Partial indexes make the overview's "needs a hand" counts read only what they count.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

# The triggers (migration 0013 replaces them with ones applied at commit; its backward puts these back).
TRIGGERS = """
CREATE FUNCTION ledger_entry_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    call record;
    old_day date;
BEGIN
    INSERT INTO ledger_ledgerday (day, product_id, kind, credits, entries)
    SELECT (created AT TIME ZONE 'UTC')::date, product_id, kind, sum(amount), count(*)
    FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (day, product_id, kind) DO UPDATE
        SET credits = ledger_ledgerday.credits + EXCLUDED.credits,
            entries = ledger_ledgerday.entries + EXCLUDED.entries;

    INSERT INTO ledger_spendweek (week, customer_id, credits)
    SELECT date_trunc('week', created AT TIME ZONE 'UTC')::date, customer_id, -sum(amount)
    FROM new_rows WHERE kind = 'usage' GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (week, customer_id) DO UPDATE SET credits = ledger_spendweek.credits + EXCLUDED.credits;

    -- Each customer's latest call moves at most forward; the day it leaves counts one customer less.
    FOR call IN
        SELECT customer_id, max((created AT TIME ZONE 'UTC')::date) AS day
        FROM new_rows WHERE kind = 'usage' GROUP BY 1 ORDER BY 1
    LOOP
        INSERT INTO ledger_customeractivity (customer_id, last_call) VALUES (call.customer_id, call.day)
            ON CONFLICT (customer_id) DO NOTHING;
        IF NOT FOUND THEN
            SELECT last_call INTO old_day FROM ledger_customeractivity
                WHERE customer_id = call.customer_id FOR UPDATE;
            CONTINUE WHEN old_day >= call.day;
            UPDATE ledger_customeractivity SET last_call = call.day WHERE customer_id = call.customer_id;
            UPDATE ledger_activeday SET customers = customers - 1 WHERE day = old_day;
        END IF;
        INSERT INTO ledger_activeday (day, customers) VALUES (call.day, 1)
            ON CONFLICT (day) DO UPDATE SET customers = ledger_activeday.customers + 1;
    END LOOP;
    RETURN NULL;
END;
$$;
CREATE TRIGGER ledger_entry_rollup AFTER INSERT ON ledger_ledgerentry
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_entry_rollup();

-- A line's currency counts only with a price; what it sold for is units x unit price.
CREATE FUNCTION ledger_purchase_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE ledger_purchaseday
            SET lines = lines - 1, revenue = revenue - coalesce(OLD.quantity * OLD.price, 0)
            WHERE day = (OLD.received AT TIME ZONE 'UTC')::date
              AND currency = CASE WHEN OLD.price IS NULL THEN '' ELSE OLD.currency END;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO ledger_purchaseday (day, currency, lines, revenue)
            VALUES ((NEW.received AT TIME ZONE 'UTC')::date,
                    CASE WHEN NEW.price IS NULL THEN '' ELSE NEW.currency END,
                    1, coalesce(NEW.quantity * NEW.price, 0))
            ON CONFLICT (day, currency) DO UPDATE
                SET lines = ledger_purchaseday.lines + 1, revenue = ledger_purchaseday.revenue + EXCLUDED.revenue;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER ledger_purchase_rollup
    AFTER INSERT OR DELETE OR UPDATE OF received, quantity, price, currency ON ledger_purchase
    FOR EACH ROW EXECUTE FUNCTION ledger_purchase_rollup();

"""

FORWARD = (
    TRIGGERS
    + """
INSERT INTO ledger_ledgerday (day, product_id, kind, credits, entries)
    SELECT (created AT TIME ZONE 'UTC')::date, product_id, kind, sum(amount), count(*)
    FROM ledger_ledgerentry GROUP BY 1, 2, 3;
INSERT INTO ledger_spendweek (week, customer_id, credits)
    SELECT date_trunc('week', created AT TIME ZONE 'UTC')::date, customer_id, -sum(amount)
    FROM ledger_ledgerentry WHERE kind = 'usage' GROUP BY 1, 2;
INSERT INTO ledger_customeractivity (customer_id, last_call)
    SELECT customer_id, max((created AT TIME ZONE 'UTC')::date)
    FROM ledger_ledgerentry WHERE kind = 'usage' GROUP BY 1;
INSERT INTO ledger_activeday (day, customers)
    SELECT last_call, count(*) FROM ledger_customeractivity GROUP BY 1;
INSERT INTO ledger_purchaseday (day, currency, lines, revenue)
    SELECT (received AT TIME ZONE 'UTC')::date, CASE WHEN price IS NULL THEN '' ELSE currency END,
           count(*), coalesce(sum(quantity * price), 0)
    FROM ledger_purchase GROUP BY 1, 2;

-- "Needs a hand": failed emails, and balances with 10% or less of what was granted left.
CREATE INDEX purchase_email_failed ON ledger_purchase (received) WHERE email_status = 'failed';
CREATE INDEX balance_running_low ON ledger_balance (customer_id)
    WHERE granted > 0 AND remaining * 10 <= granted;
"""
)

BACKWARD = """
DROP INDEX IF EXISTS balance_running_low;
DROP INDEX IF EXISTS purchase_email_failed;
DROP TRIGGER IF EXISTS ledger_purchase_rollup ON ledger_purchase;
DROP FUNCTION IF EXISTS ledger_purchase_rollup();
DROP TRIGGER IF EXISTS ledger_entry_rollup ON ledger_ledgerentry;
DROP FUNCTION IF EXISTS ledger_entry_rollup();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_throttle"),
        ("ledger", "0009_mirror_outbox_key_scope"),
    ]

    operations = [
        migrations.CreateModel(
            name="ActiveDay",
            fields=[
                ("day", models.DateField(primary_key=True, serialize=False)),
                ("customers", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name="CustomerActivity",
            fields=[
                (
                    "customer",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="accounts.customer",
                    ),
                ),
                ("last_call", models.DateField()),
            ],
        ),
        migrations.CreateModel(
            name="DriftCheck",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("ran", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                (
                    "result",
                    models.CharField(
                        choices=[("ok", "No drift"), ("drift", "Drift found"), ("failed", "Could not read the mirror")],
                        max_length=16,
                    ),
                ),
                ("differences", models.PositiveIntegerField(default=0)),
                ("detail", models.TextField(blank=True, help_text="The first differences found, or the error.")),
            ],
            options={
                "verbose_name": "mirror drift check",
                "ordering": ["-ran", "-id"],
                "get_latest_by": ["ran", "id"],
            },
        ),
        migrations.CreateModel(
            name="PurchaseDay",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField()),
                ("currency", models.CharField(blank=True, max_length=3)),
                ("lines", models.BigIntegerField(default=0)),
                ("revenue", models.DecimalField(decimal_places=4, default=0, max_digits=24)),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("day", "currency"), name="purchase_day_once")],
            },
        ),
        migrations.CreateModel(
            name="LedgerDay",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField()),
                ("kind", models.CharField(max_length=16)),
                ("credits", models.BigIntegerField(default=0)),
                ("entries", models.BigIntegerField(default=0)),
                (
                    "product",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="ledger.product"
                    ),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("day", "product", "kind"), name="ledger_day_once")],
            },
        ),
        migrations.CreateModel(
            name="SpendWeek",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("week", models.DateField(help_text="The week's Monday.")),
                ("credits", models.BigIntegerField(default=0)),
                (
                    "customer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="accounts.customer"
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["week", "-credits"], name="spend_week_top")],
                "constraints": [models.UniqueConstraint(fields=("week", "customer"), name="spend_week_once")],
            },
        ),
        migrations.RunPython(forward, backward),
    ]
