"""Writes to customers and credentials. Each saves the customer, which bumps
`Customer.version`: the counter the gate's mirror uses to tell a newer state
from a late, older one."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Credential, Customer


@transaction.atomic
def customer_suspend(*, customer: Customer) -> Customer:
    """Deny every call of this customer from the next one on."""
    customer.status = Customer.Status.SUSPENDED
    customer.save(update_fields=["status"])
    return customer


@transaction.atomic
def customer_reactivate(*, customer: Customer) -> Customer:
    customer.status = Customer.Status.ACTIVE
    customer.save(update_fields=["status"])
    return customer


@transaction.atomic
def credential_create(*, customer: Customer) -> tuple[Credential, str]:
    """A new credential for `customer`, and its secret: the only time the secret is seen."""
    credential = Credential(customer=customer)
    secret = credential.set_secret()
    credential.save()
    customer.touch()
    return credential, secret


@transaction.atomic
def credential_rotate(*, credential: Credential) -> str:
    """A new secret for the same client id. The old secret gets no new tokens,
    and tokens it got before are refused by the gate at their next call."""
    credential = Credential.objects.select_for_update().get(pk=credential.pk)
    if credential.is_revoked:
        raise ValidationError("A revoked credential cannot be rotated.", code="revoked")
    secret = credential.set_secret()
    credential.rotated_at = timezone.now()
    credential.save(update_fields=["secret_hash", "secret_last4", "secret_version", "rotated_at"])
    credential.customer.touch()
    return secret


@transaction.atomic
def credential_revoke(*, credential: Credential) -> Credential:
    """No more tokens for this client id; its tokens are refused at their next call."""
    credential = Credential.objects.select_for_update().get(pk=credential.pk)
    if not credential.is_revoked:
        credential.revoked_at = timezone.now()
        credential.save(update_fields=["revoked_at"])
        credential.customer.touch()
    return credential
