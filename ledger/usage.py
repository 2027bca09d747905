"""Usage flows back: what the gate spent (the mirror's `used`) is recorded in the ledger.

This is the one flow from DynamoDB into Postgres, so it lives beside the ledger
rather than in ledger/mirror/ (which only writes Postgres' state out to the mirror):
it reads balance items and records usage through `ledger.services.usage_record`,
which never writes the mirror back. `sync_usage` runs it every minute.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from authorizer import mirror as m
from ledger.mirror.client import ProgressFactory, mirror_client
from ledger.mirror.items import balance_ref, key_of, plain
from ledger.models import Balance
from ledger.services import usage_record


@dataclass
class UsageReport:
    items: int = 0
    balances: int = 0  # balances that got a usage entry
    credits: int = 0  # credits recorded


def _usage_catch_up(balance_id: int, mirror_used: int) -> int:
    """Record in the ledger what the gate spent beyond what Postgres has, under the balance's lock."""
    with transaction.atomic():
        # The balance's row only: FOR UPDATE of the product (and customer) rows as well would conflict
        # with the FOR KEY SHARE that the foreign-key check of every other transaction's ledger entry of
        # the product takes at its commit, after its rollups: a deadlock (docs/architecture.md).
        balance = (
            Balance.objects.select_for_update(of=("self",)).select_related("customer", "product").get(pk=balance_id)
        )
        new = mirror_used - balance.used
        if new <= 0:
            return 0
        usage_record(
            customer=balance.customer, product=balance.product, amount=new, reason=f"gate: {mirror_used} used in all"
        )
        return new


def mirror_usage_pull(progress_factory: ProgressFactory | None = None) -> UsageReport:
    """Bring what the gate spent into the ledger: only what is new since the last run, so a second run records nothing.

    Scans every balance item each run (a page of items, one Postgres query per page).
    """
    client = mirror_client()
    report = UsageReport()
    progress = progress_factory(None) if progress_factory else None
    pages = client.get_paginator("scan").paginate(
        TableName=settings.MIRROR_TABLE,
        FilterExpression="begins_with(#pk, :customer)",
        ProjectionExpression="#pk, #sk, #used",
        ExpressionAttributeNames={"#pk": m.PK, "#sk": m.SK, "#used": m.USED},
        ExpressionAttributeValues={":customer": {"S": m.CUSTOMER_PREFIX}},
    )
    for page in pages:
        used_by_ref = {}
        for item in page.get("Items", []):
            ref = balance_ref(key_of(item))
            if m.USED in item and ref is not None:
                used_by_ref[ref] = plain(item[m.USED])
        report.items += len(used_by_ref)
        rows = Balance.objects.filter(
            customer__public_id__in={c for c, _ in used_by_ref}, product__slug__in={p for _, p in used_by_ref}
        ).values_list("pk", "customer__public_id", "product__slug", "used")
        for balance_id, customer_id, slug, used in rows:
            mirror_used = used_by_ref.get((customer_id, slug))
            if mirror_used is not None and mirror_used > used:
                recorded = _usage_catch_up(balance_id, mirror_used)
                if recorded:
                    report.balances += 1
                    report.credits += recorded
        if progress is not None:
            progress.update(len(page.get("Items", [])))
    if progress is not None:
        progress.close()
    return report
