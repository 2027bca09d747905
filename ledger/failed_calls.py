"""Failed calls cost nothing: every call the gateway answered 5xx after an Allow is credited back, once.

The gateway's access log (deploy/template.yaml, local/gateway.py) writes one JSON line per call:
`requestId`, `status`, `customerId`, `product`, `cost`, `credentialId`, `route`. The lines of failed
calls reach `failed_calls_refund` (through ledger/access_logs.py: the Lambda entry point and
`manage.py record_failed_calls`), which credits each one back with one `failed_call` ledger entry
carrying the request id.

* Exactly once per request id: the entry's `request_id` is unique in Postgres
  (`ledger_failed_call_once_per_request`), so a batch delivered again, an overlapping batch or one
  running at the same moment credits nothing twice.
* Never more than the call's cost: the entry is the `cost` the gate spent for that call (the
  authorizer's context, which only API Gateway writes into the log), once.
* Same transaction as the balance: per (customer, product), under the balance's row lock, the
  entries are inserted and what is granted moves by their sum; the mirror item is rewritten after
  commit through the outbox (`mirror_outbox_add`), so the credits are spendable at the next call.
  A refund adds to `granted` (Django's side of the item); `used` stays the gate's.
* A refund does not re-arm the low-balance email (a failing API would mail at every failure);
  the email's check counts what is left, refunds included.
* A line that cannot be credited (malformed, unknown request, customer or product, not charged,
  not a failure the product credits back, no balance) is skipped, counted by reason and logged;
  it never stops the rest of the batch.
"""

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Customer
from ledger.mirror.outbox import mirror_outbox_add
from ledger.models import Balance, LedgerEntry, Product, refund_statuses_parse

logger = logging.getLogger(__name__)

FAILED = range(500, 600)  # what the gateway answers when the integration failed or timed out
REQUEST_ID_MAX = LedgerEntry._meta.get_field("request_id").max_length or 128
BULK = 1000  # entries per INSERT


class Skip(Exception):
    """A line that is not credited back: `reason` is a short code, the message says why."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class FailedCall:
    """One access-log line of a call the gate charged."""

    request_id: str
    status: int
    customer_id: str  # the customer's public id (the token's `sub`)
    product: str  # the product's slug
    cost: int
    credential_id: str = ""
    route: str = ""


@dataclass
class RefundCounts:
    refunded: int = 0
    skipped: int = 0
    already_refunded: int = 0
    credits: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)

    def add(self, other: "RefundCounts") -> None:
        self.refunded += other.refunded
        self.skipped += other.skipped
        self.already_refunded += other.already_refunded
        self.credits += other.credits
        self.skip_reasons.update(other.skip_reasons)

    def skip(self, reason: str, message: str) -> None:
        self.skipped += 1
        self.skip_reasons[reason] += 1
        logger.warning("Failed call skipped (%s): %s", reason, message)

    def __str__(self) -> str:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skip_reasons.items()))
        return (
            f"refunded {self.refunded} ({self.credits} credits), skipped {self.skipped}"
            f"{f' ({reasons})' if reasons else ''}, already refunded {self.already_refunded}"
        )


def _text(line: dict, key: str) -> str:
    """A context value as API Gateway writes it: a string, `-` (or nothing) when the call had none."""
    value = line.get(key)
    if value is None or value == "-" or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Skip("malformed", f"{key} is {value!r}, not a string")
    return str(value)


def _number(line: dict, key: str) -> int | None:
    text = _text(line, key)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise Skip("malformed", f"{key} is {text!r}, not a whole number") from None


def failed_call_parse(message: str) -> FailedCall:
    """One access-log line (JSON) as a failed call the gate charged; raises Skip otherwise."""
    try:
        line = json.loads(message)
    except ValueError:
        raise Skip("malformed", f"not JSON: {message[:200]!r}") from None
    if not isinstance(line, dict):
        raise Skip("malformed", f"not a JSON object: {message[:200]!r}")
    request_id = _text(line, "requestId")
    if not request_id or len(request_id) > REQUEST_ID_MAX:
        raise Skip("unknown_request", f"no usable requestId: {message[:200]!r}")
    status = _number(line, "status")
    if status is None or status not in FAILED:
        raise Skip("not_failed", f"request {request_id}: status {status}, not 500-599")
    customer_id, product = _text(line, "customerId"), _text(line, "product")
    cost = _number(line, "cost")
    if not customer_id or not product or not cost or cost < 0:
        # No Allow (the authorizer itself failed, or refused), or an Allow that spent nothing.
        raise Skip("not_charged", f"request {request_id}: no customer, product or cost: the call spent nothing")
    return FailedCall(
        request_id=request_id,
        status=status,
        customer_id=customer_id,
        product=product,
        cost=cost,
        credential_id=_text(line, "credentialId"),
        route=_text(line, "route"),
    )


def failed_calls_refund(*, messages: Iterable[str]) -> RefundCounts:
    """Credit back the failed calls these access-log lines name, each once; skip and count the rest."""
    counts = RefundCounts()
    calls: dict[str, FailedCall] = {}
    for message in messages:
        try:
            call = failed_call_parse(message)
        except Skip as skip:
            counts.skip(skip.reason, str(skip))
            continue
        if call.request_id in calls:  # the same line twice in one batch
            counts.already_refunded += 1
            continue
        calls[call.request_id] = call
    counts.add(failed_calls_record(calls=list(calls.values())))
    return counts


def failed_calls_record(*, calls: list[FailedCall]) -> RefundCounts:
    """Record parsed failed calls (distinct request ids): one transaction per (customer, product),
    taken in a fixed order so concurrent batches never deadlock on their balances."""
    counts = RefundCounts()
    customers = {c.public_id: c for c in Customer.objects.filter(public_id__in={call.customer_id for call in calls})}
    products = {p.slug: p for p in Product.objects.filter(slug__in={call.product for call in calls})}
    statuses = {slug: refund_statuses_parse(p.refund_statuses) for slug, p in products.items()}
    groups: dict[tuple[int, int], list[FailedCall]] = defaultdict(list)
    for call in calls:
        customer, product = customers.get(call.customer_id), products.get(call.product)
        if customer is None:
            counts.skip("unknown_customer", f"request {call.request_id}: no customer {call.customer_id}")
        elif product is None:
            counts.skip("unknown_product", f"request {call.request_id}: no product {call.product}")
        elif not product.refund_failed_calls:
            counts.skip("refunds_off", f"request {call.request_id}: {product} does not credit back failed calls")
        elif call.status not in statuses[call.product]:
            counts.skip(
                "status_not_refunded",
                f"request {call.request_id}: {product} credits back {product.refund_statuses}, not {call.status}",
            )
        else:
            groups[(customer.pk, product.pk)].append(call)
    for customer_pk, product_pk in sorted(groups):
        counts.add(_group_refund(customer_pk=customer_pk, product_pk=product_pk, calls=groups[customer_pk, product_pk]))
    return counts


@transaction.atomic
def _group_refund(*, customer_pk: int, product_pk: int, calls: list[FailedCall]) -> RefundCounts:
    """One customer's failed calls of one product: entries and balance in one transaction, under its lock."""
    counts = RefundCounts()
    balance = Balance.objects.select_for_update().filter(customer_id=customer_pk, product_id=product_pk).first()
    if balance is None:  # the gate spends only from an item Postgres made for a balance
        for call in calls:
            counts.skip("not_charged", f"request {call.request_id}: {call.customer_id} holds no {call.product} credits")
        return counts
    # Every writer of this balance waits for its lock: what is recorded now stays recorded.
    ids = [call.request_id for call in calls]
    before = set(LedgerEntry.objects.filter(request_id__in=ids).values_list("request_id", flat=True))
    new = [call for call in calls if call.request_id not in before]
    counts.already_refunded += len(calls) - len(new)
    # ON CONFLICT DO NOTHING: a request id recorded meanwhile under another balance (only a
    # line naming another customer's request could) is left out, never counted twice.
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(
                customer_id=customer_pk,
                product_id=product_pk,
                kind=LedgerEntry.Kind.FAILED_CALL,
                amount=call.cost,
                reason=f"{call.status} {call.route}".strip(),
                request_id=call.request_id,
            )
            for call in new
        ],
        batch_size=BULK,
        ignore_conflicts=True,
    )
    inserted = LedgerEntry.objects.filter(
        request_id__in=[call.request_id for call in new], customer_id=customer_pk, product_id=product_pk
    ).values_list("amount", flat=True)
    amounts = list(inserted)
    if len(amounts) < len(new):
        logger.warning(
            "Failed calls: %s request id(s) of %s's %s calls were credited to another balance meanwhile",
            len(new) - len(amounts),
            calls[0].customer_id,
            calls[0].product,
        )
    counts.already_refunded += len(new) - len(amounts)
    if not amounts:
        return counts
    credits = sum(amounts)
    # What is granted moves (the mirror's ceiling with it); low_balance_notified is left as it is.
    Balance.objects.filter(pk=balance.pk).update(
        granted=F("granted") + credits, version=F("version") + 1, updated=timezone.now()
    )
    mirror_outbox_add(balances=[balance])
    counts.refunded += len(amounts)
    counts.credits += credits
    logger.info(
        "Failed calls: %s credited back %s %s credits for %s",
        len(amounts),
        credits,
        calls[0].product,
        calls[0].customer_id,
    )
    return counts
