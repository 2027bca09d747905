"""The store's own records: each webhook delivery, and each refund or cancellation with what it took back.

Ledger models (app `ledger`), imported by ledger/models.py. A purchase is one order line
(`ledger.models.Purchase`); a refund names some of an order's lines and takes back, per
line, what is still unspent of what it granted (invariant 8, docs/architecture.md).
"""

from django.db import models
from django.utils import timezone


class StoreWebhook(models.Model):
    """One Shopify webhook delivery, by its `X-Shopify-Webhook-Id`: a redelivery changes nothing."""

    webhook_id = models.CharField(max_length=128, unique=True)
    topic = models.CharField(max_length=64)
    shop = models.CharField(max_length=255, blank=True)
    received = models.DateTimeField(default=timezone.now)
    outcome = models.TextField(blank=True, help_text="What the delivery did, for staff.")
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "store webhook delivery"
        verbose_name_plural = "store webhook deliveries"
        ordering = ["-received", "-id"]

    def __str__(self) -> str:
        return f"{self.topic} {self.webhook_id}"


class StoreRefund(models.Model):
    """A store refund (by its id) or an order's cancellation: recorded once, its lines' credits taken back once."""

    class Kind(models.TextChoices):
        REFUND = "refund", "Refund"
        CANCELLATION = "cancellation", "Cancellation"

    class EmailStatus(models.TextChoices):
        NONE = "none", "Nothing to tell"  # nothing was taken back
        PENDING = "pending", "Not sent yet"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    source = models.CharField(max_length=16, default="shopify")
    # The store's refund id; a cancellation's is "cancelled:<order id>", so an order is cancelled once.
    refund_id = models.CharField(max_length=128)
    order_id = models.CharField(max_length=128)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reason = models.TextField(blank=True, help_text="The store's note or cancel reason.")
    received = models.DateTimeField(default=timezone.now)
    payload = models.JSONField(default=dict, blank=True)
    email_status = models.CharField(max_length=16, choices=EmailStatus.choices, default=EmailStatus.NONE)
    email_error = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "refund_id"], name="store_refund_once")]
        indexes = [models.Index(fields=["order_id"])]
        ordering = ["-received", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.refund_id} of order {self.order_id}"


class RefundLine(models.Model):
    """What one refund did to one order line.

    `credits_claimed`: the line's credits this refund asked back (units × credits per unit,
    cut to what earlier refunds left of the line). `credits_taken`: taken back from the
    customer's unspent balance (the ledger entry, kind `refund`). `credits_spent`: the rest,
    already spent at the gate: not recoverable, recorded for staff. claimed = taken + spent.
    """

    refund = models.ForeignKey(StoreRefund, on_delete=models.PROTECT, related_name="lines")
    purchase = models.ForeignKey("ledger.Purchase", on_delete=models.PROTECT, related_name="refund_lines")
    quantity = models.PositiveIntegerField("units", default=0, help_text="Units refunded (a cancellation: all).")
    credits_claimed = models.BigIntegerField(default=0)
    credits_taken = models.BigIntegerField(default=0)
    credits_spent = models.BigIntegerField(default=0, help_text="Already spent: could not be taken back.")
    entry = models.OneToOneField(
        "ledger.LedgerEntry", on_delete=models.PROTECT, null=True, blank=True, related_name="refund_line"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["refund", "purchase"], name="refund_line_once"),
            models.CheckConstraint(
                condition=models.Q(credits_taken__gte=0, credits_spent__gte=0)
                & models.Q(credits_claimed=models.F("credits_taken") + models.F("credits_spent")),
                name="refund_line_taken_plus_spent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.refund}: {self.credits_taken} of {self.credits_claimed} credits taken back"
