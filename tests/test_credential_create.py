"""accounts.services.credential_create: a new credential and its secret, and at most
MAX_ACTIVE_CREDENTIALS active ones per customer, however many requests arrive at once."""

from functools import partial

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from accounts.models import Credential
from accounts.services import MAX_ACTIVE_CREDENTIALS, credential_create, credential_revoke
from tests.concurrency import at_once

ADD = reverse("account_credential_add")


def active(customer) -> int:
    return Credential.objects.filter(customer=customer, revoked_at__isnull=True).count()


def test_it_makes_a_credential_whose_secret_checks(alice):
    credential, secret = credential_create(customer=alice)

    credential.refresh_from_db()
    assert credential.customer == alice
    assert credential.check_secret(secret)
    assert active(alice) == 2


def test_it_refuses_one_more_than_the_limit_and_writes_nothing(alice):
    for _ in range(MAX_ACTIVE_CREDENTIALS - 1):
        credential_create(customer=alice)
    version = type(alice).objects.get(pk=alice.pk).version

    with pytest.raises(ValidationError, match="revoke one before adding another") as refused:
        credential_create(customer=alice)

    assert refused.value.code == "too_many_credentials"
    assert active(alice) == MAX_ACTIVE_CREDENTIALS
    assert Credential.objects.filter(customer=alice).count() == MAX_ACTIVE_CREDENTIALS
    assert type(alice).objects.get(pk=alice.pk).version == version  # nothing for the mirror either


def test_a_revoked_credential_frees_its_place(alice):
    for _ in range(MAX_ACTIVE_CREDENTIALS - 1):
        credential_create(customer=alice)
    credential_revoke(credential=alice.credential)

    credential, _ = credential_create(customer=alice)

    assert credential.revoked_at is None
    assert active(alice) == MAX_ACTIVE_CREDENTIALS
    assert Credential.objects.filter(customer=alice).count() == MAX_ACTIVE_CREDENTIALS + 1


def test_the_limit_is_per_customer(alice, bob):
    for _ in range(MAX_ACTIVE_CREDENTIALS - 1):
        credential_create(customer=alice)

    credential_create(customer=bob)

    assert (active(alice), active(bob)) == (MAX_ACTIVE_CREDENTIALS, 2)


@pytest.mark.django_db(transaction=True)
def test_concurrent_new_credential_posts_never_pass_the_limit(alice):
    """Twelve "Add a credential" posts at once, each on its own connection to Postgres.
    Counting and inserting in separate steps let all twelve through (13 active)."""
    posts = 12
    clients = []
    for _ in range(posts):
        client = Client()
        client.force_login(alice.user)
        clients.append(client)
    statuses = [response.status_code for response in at_once([partial(c.post, ADD) for c in clients])]

    assert len(statuses) == posts and all(status < 500 for status in statuses)
    assert active(alice) == MAX_ACTIVE_CREDENTIALS
    assert Credential.objects.filter(customer=alice).count() == MAX_ACTIVE_CREDENTIALS
