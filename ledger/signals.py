"""Keep the gate's mirror in step: every change the gate can see schedules a
mirror write for after the transaction commits. Handlers do only that; the
writes (ledger/mirror/) read Postgres afresh when they run, so a rolled-back
change writes nothing and the last commit's state is what lands.

A transaction's writes are merged: a first purchase saves a user, a customer, a
credential and a balance, and its balance item is read and written once, not
once per signal."""

import logging

from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from accounts.models import Credential, Customer
from ledger.mirror.pending import mirror_balances_write, mirror_routes_write
from ledger.models import Balance, Product, ProductApi

log = logging.getLogger(__name__)


def _after_commit(write, **keys) -> None:
    """Add these keys to the writes waiting for this transaction's commit.

    Every call registers the flush, so whichever registration survives a rolled
    back savepoint still flushes. Keys added inside a rolled-back savepoint may
    be written too: harmless, since a write puts what Postgres holds then. With
    no flush registered any more (the transaction rolled back), what waited is
    dropped.
    """
    connection = transaction.get_connection()
    if not any(func is _flush for _, func, _ in connection.run_on_commit):
        connection.mirror_waiting = {}
    waiting = connection.__dict__.setdefault("mirror_waiting", {})
    for name, values in keys.items():
        waiting.setdefault(write, {}).setdefault(name, set()).update(values)
    # robust: a failure after commit is logged, never raised into the request that committed.
    transaction.on_commit(_flush, robust=True)


def _flush() -> None:
    """Run the merged writes; the first flush after a commit does them all, the others find none."""
    waiting = transaction.get_connection().__dict__.pop("mirror_waiting", {})
    for write, keys in waiting.items():
        try:
            write(**{name: sorted(values) for name, values in keys.items()})
        except Exception:  # one failed write must not keep the others from running
            log.exception("mirror write %s(%s) failed after commit", write.__name__, keys)


@receiver(post_save, sender=Balance, dispatch_uid="mirror_balance_saved")
def balance_saved(sender, instance: Balance, **kwargs) -> None:
    _after_commit(mirror_balances_write, balance_ids=[instance.pk])


@receiver(post_save, sender=Customer, dispatch_uid="mirror_customer_saved")
def customer_saved(sender, instance: Customer, created: bool, **kwargs) -> None:
    if not created:  # a new customer has no balances yet
        _after_commit(mirror_balances_write, customer_ids=[instance.pk])


@receiver(post_save, sender=Credential, dispatch_uid="mirror_credential_saved")
def credential_saved(sender, instance: Credential, **kwargs) -> None:
    _after_commit(mirror_balances_write, customer_ids=[instance.customer_id])


@receiver(post_save, sender=Product, dispatch_uid="mirror_product_saved")
def product_saved(sender, instance: Product, created: bool, **kwargs) -> None:
    if not created:  # a new product has no balances yet
        _after_commit(mirror_balances_write, product_ids=[instance.pk])
    _after_commit(mirror_routes_write, product_ids=[instance.pk])


@receiver(pre_save, sender=ProductApi, dispatch_uid="mirror_product_api_renamed")
def product_api_saving(sender, instance: ProductApi, **kwargs) -> None:
    # An edited API id leaves its old route behind: remember it to delete it.
    if instance.pk is not None:
        instance._mirror_old_api_id = ProductApi.objects.filter(pk=instance.pk).values_list("api_id", flat=True).first()


@receiver(post_save, sender=ProductApi, dispatch_uid="mirror_product_api_saved")
def product_api_saved(sender, instance: ProductApi, **kwargs) -> None:
    old = getattr(instance, "_mirror_old_api_id", None)
    _after_commit(mirror_routes_write, api_ids=[instance.api_id] + ([old] if old and old != instance.api_id else []))


@receiver(post_delete, sender=ProductApi, dispatch_uid="mirror_product_api_deleted")
def product_api_deleted(sender, instance: ProductApi, **kwargs) -> None:
    _after_commit(mirror_routes_write, api_ids=[instance.api_id])
