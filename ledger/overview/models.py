"""Rollups of the ledger and the purchases, kept by Postgres itself when each transaction that
writes them commits (triggers of migrations 0010 and 0013), so the overview reads a few hundred
rows, not a million.

Every row here is derived: the tests compare each with sums over `LedgerEntry` and `Purchase`,
and migration 0010 builds them from those tables. Nothing in Python writes them.
"""

from django.db import models
from django.utils import timezone

from accounts.models import Customer


class LedgerDay(models.Model):
    """The ledger's sum per UTC day, product and kind: `credits` = sum(amount), `entries` = count(*)."""

    day = models.DateField()
    product = models.ForeignKey("ledger.Product", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16)
    credits = models.BigIntegerField(default=0)
    entries = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "product", "kind"], name="ledger_day_once")]

    def __str__(self) -> str:
        return f"{self.day} {self.product_id} {self.kind}: {self.credits:+d}"


class CustomerActivity(models.Model):
    """The UTC day of each customer's latest usage entry (a call at the gate)."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, primary_key=True, related_name="+")
    last_call = models.DateField()

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.last_call}"


class ActiveDay(models.Model):
    """How many customers made their latest call on `day`: the customers active since a day are
    the sum from that day on, 30 rows for 30 days whatever the number of customers."""

    day = models.DateField(primary_key=True)
    customers = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.day}: {self.customers}"


class SpendWeek(models.Model):
    """Credits each customer spent in a week (UTC, from Monday): usage, less what was credited back."""

    week = models.DateField(help_text="The week's Monday.")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    credits = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["week", "customer"], name="spend_week_once")]
        # The top of a week in the overview's order (credits, then customer): an index scan of 10 rows,
        # not a sort of every customer who spent the same (100k customers: 0.1 s).
        indexes = [models.Index(fields=["week", "-credits", "customer"], name="spend_week_top_customers")]

    def __str__(self) -> str:
        return f"{self.week} {self.customer_id}: {self.credits}"


class PurchaseDay(models.Model):
    """Order lines received per UTC day and currency, and what they were sold for (units × unit price)."""

    day = models.DateField()
    currency = models.CharField(max_length=3, blank=True)  # "": the store sent no price
    lines = models.BigIntegerField(default=0)
    revenue = models.DecimalField(max_digits=24, decimal_places=4, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "currency"], name="purchase_day_once")]

    def __str__(self) -> str:
        return f"{self.day} {self.currency or '-'}: {self.lines}"


class DriftCheck(models.Model):
    """One run of `sync_mirror --check`: what it found, for the overview (and the record)."""

    class Result(models.TextChoices):
        OK = "ok", "No drift"
        DRIFT = "drift", "Drift found"
        FAILED = "failed", "Could not read the mirror"

    ran = models.DateTimeField(default=timezone.now, db_index=True)
    result = models.CharField(max_length=16, choices=Result.choices)
    differences = models.PositiveIntegerField(default=0)
    detail = models.TextField(blank=True, help_text="The first differences found, or the error.")

    class Meta:
        ordering = ["-ran", "-id"]
        get_latest_by = ["ran", "id"]
        verbose_name = "mirror drift check"

    def __str__(self) -> str:
        return f"{self.ran:%Y-%m-%d %H:%M}: {self.get_result_display()}"
