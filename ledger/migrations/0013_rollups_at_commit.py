"""The overview's rollups are applied when a transaction commits, in one fixed order, not row by row.

Migration 0010 upserted each rollup row (today's (product, kind) row, the day's active customers)
as each entry was inserted and held its lock until commit. Two transactions writing entries of two
products in opposite orders (a two-product order through each store door at once) then waited for
each other: a deadlock, and one of them failed.

Now an insert only appends its rows to a staging table (no lock anyone else waits for), and a
deferred constraint trigger applies the transaction's staged rows once, at commit: the ledger's
day rows sorted by (day, product, kind), then the weeks by (week, customer), each customer's
latest call by customer, the active days by day, the purchases' days by (day, currency). Every
committing transaction takes these locks in the same order, after all its other work, so none can
wait for another in a cycle. A savepoint rolled back takes its staged rows with it.
"""

from django.db import migrations

FORWARD = """
DROP TRIGGER ledger_entry_rollup ON ledger_ledgerentry;
DROP FUNCTION ledger_entry_rollup();
DROP TRIGGER ledger_purchase_rollup ON ledger_purchase;
DROP FUNCTION ledger_purchase_rollup();

CREATE TABLE ledger_rollup_staged_entry (
    tx bigint NOT NULL, customer_id bigint NOT NULL, product_id bigint NOT NULL,
    kind varchar(16) NOT NULL, amount bigint NOT NULL, created timestamptz NOT NULL
);
CREATE INDEX ledger_rollup_staged_entry_tx ON ledger_rollup_staged_entry (tx);
CREATE TABLE ledger_rollup_staged_purchase (
    tx bigint NOT NULL, day date NOT NULL, currency varchar(3) NOT NULL, lines bigint NOT NULL,
    revenue numeric(24, 4) NOT NULL
);
CREATE INDEX ledger_rollup_staged_purchase_tx ON ledger_rollup_staged_purchase (tx);

-- Row by row, and named to sort before the apply trigger: triggers of one event fire in the order
-- of their names, so a row is staged before any apply that runs after it (at commit, or at the end
-- of its statement under SET CONSTRAINTS ... IMMEDIATE).
CREATE FUNCTION ledger_entry_stage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_rollup_staged_entry (tx, customer_id, product_id, kind, amount, created)
        VALUES (txid_current(), NEW.customer_id, NEW.product_id, NEW.kind, NEW.amount, NEW.created);
    RETURN NULL;
END;
$$;
CREATE TRIGGER ledger_entry_rollup_0stage AFTER INSERT ON ledger_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_stage();

CREATE FUNCTION ledger_entry_rollup_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t bigint := txid_current();
    call record;
    old_day date;
    left_days date[] := '{}';
    new_days date[] := '{}';
BEGIN
    -- Fired for each row inserted; the first firing of the transaction applies them all.
    PERFORM 1 FROM ledger_rollup_staged_entry WHERE tx = t LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO ledger_ledgerday (day, product_id, kind, credits, entries)
    SELECT (created AT TIME ZONE 'UTC')::date, product_id, kind, sum(amount), count(*)
    FROM ledger_rollup_staged_entry WHERE tx = t GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (day, product_id, kind) DO UPDATE
        SET credits = ledger_ledgerday.credits + EXCLUDED.credits,
            entries = ledger_ledgerday.entries + EXCLUDED.entries;

    INSERT INTO ledger_spendweek (week, customer_id, credits)
    SELECT date_trunc('week', created AT TIME ZONE 'UTC')::date, customer_id, -sum(amount)
    FROM ledger_rollup_staged_entry WHERE tx = t AND kind = 'usage' GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (week, customer_id) DO UPDATE SET credits = ledger_spendweek.credits + EXCLUDED.credits;

    -- Each customer's latest call moves at most forward; the day it leaves counts one customer less.
    FOR call IN
        SELECT customer_id, max((created AT TIME ZONE 'UTC')::date) AS day
        FROM ledger_rollup_staged_entry WHERE tx = t AND kind = 'usage' GROUP BY 1 ORDER BY 1
    LOOP
        INSERT INTO ledger_customeractivity (customer_id, last_call) VALUES (call.customer_id, call.day)
            ON CONFLICT (customer_id) DO NOTHING;
        IF NOT FOUND THEN
            SELECT last_call INTO old_day FROM ledger_customeractivity
                WHERE customer_id = call.customer_id FOR UPDATE;
            CONTINUE WHEN old_day >= call.day;
            UPDATE ledger_customeractivity SET last_call = call.day WHERE customer_id = call.customer_id;
            left_days := left_days || old_day;
        END IF;
        new_days := new_days || call.day;
    END LOOP;
    INSERT INTO ledger_activeday (day, customers)
    SELECT day, sum(delta) FROM (
        SELECT unnest(new_days) AS day, 1 AS delta UNION ALL SELECT unnest(left_days), -1
    ) moves GROUP BY 1 ORDER BY 1
    ON CONFLICT (day) DO UPDATE SET customers = ledger_activeday.customers + EXCLUDED.customers;

    DELETE FROM ledger_rollup_staged_entry WHERE tx = t;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_entry_rollup_apply AFTER INSERT ON ledger_ledgerentry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entry_rollup_apply();

-- A line's currency counts only with a price; what it sold for is units x unit price.
CREATE FUNCTION ledger_purchase_stage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO ledger_rollup_staged_purchase (tx, day, currency, lines, revenue)
        VALUES (txid_current(), (OLD.received AT TIME ZONE 'UTC')::date,
                CASE WHEN OLD.price IS NULL THEN '' ELSE OLD.currency END,
                -1, -coalesce(OLD.quantity * OLD.price, 0));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO ledger_rollup_staged_purchase (tx, day, currency, lines, revenue)
        VALUES (txid_current(), (NEW.received AT TIME ZONE 'UTC')::date,
                CASE WHEN NEW.price IS NULL THEN '' ELSE NEW.currency END,
                1, coalesce(NEW.quantity * NEW.price, 0));
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER ledger_purchase_rollup_0stage
    AFTER INSERT OR DELETE OR UPDATE OF received, quantity, price, currency ON ledger_purchase
    FOR EACH ROW EXECUTE FUNCTION ledger_purchase_stage();

CREATE FUNCTION ledger_purchase_rollup_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t bigint := txid_current();
BEGIN
    PERFORM 1 FROM ledger_rollup_staged_purchase WHERE tx = t LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO ledger_purchaseday (day, currency, lines, revenue)
    SELECT day, currency, sum(lines), sum(revenue)
    FROM ledger_rollup_staged_purchase WHERE tx = t GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (day, currency) DO UPDATE
        SET lines = ledger_purchaseday.lines + EXCLUDED.lines, revenue = ledger_purchaseday.revenue + EXCLUDED.revenue;
    DELETE FROM ledger_rollup_staged_purchase WHERE tx = t;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_purchase_rollup_apply
    AFTER INSERT OR DELETE OR UPDATE OF received, quantity, price, currency ON ledger_purchase
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_purchase_rollup_apply();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS ledger_purchase_rollup_apply ON ledger_purchase;
DROP FUNCTION IF EXISTS ledger_purchase_rollup_apply();
DROP TRIGGER IF EXISTS ledger_purchase_rollup_0stage ON ledger_purchase;
DROP FUNCTION IF EXISTS ledger_purchase_stage();
DROP TRIGGER IF EXISTS ledger_entry_rollup_apply ON ledger_ledgerentry;
DROP FUNCTION IF EXISTS ledger_entry_rollup_apply();
DROP TRIGGER IF EXISTS ledger_entry_rollup_0stage ON ledger_ledgerentry;
DROP FUNCTION IF EXISTS ledger_entry_stage();
DROP TABLE IF EXISTS ledger_rollup_staged_purchase;
DROP TABLE IF EXISTS ledger_rollup_staged_entry;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)
        # 0010's immediate triggers, as they were: migrate back further or forward again.
        from importlib import import_module

        schema_editor.execute(import_module("ledger.migrations.0010_overview_rollups").TRIGGERS, params=None)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0012_spend_week_top_in_order")]

    operations = [migrations.RunPython(forward, backward)]
