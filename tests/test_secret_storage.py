"""Client secrets are never stored, anywhere: after a secret is made (a rotation or a new
credential in the portal, a first purchase), a dump of the whole database holds neither the
old secret nor the new one. Only its keyed hash is kept (docs/architecture.md, invariant 7).

The dump is `pg_dump` of the test database (every table, ours and Django's), plus the
sessions decoded (Django stores them signed, compressed and base64-encoded, where a plain
search would not see a secret). Rather than searching for a secret it was told, the test
tries every secret-shaped string in the dump against every credential's hash: a secret is
found wherever it is stored, even one the test never saw.
"""

import os
import re
import subprocess

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import Credential

pytestmark = pytest.mark.django_db(transaction=True)  # pg_dump sees only what is committed

SECRET_LENGTH = 43  # secrets.token_urlsafe(32)
SECRET_SHAPED = re.compile(rf"[A-Za-z0-9_-]{{{SECRET_LENGTH},}}")


def database_dump() -> str:
    conf = connection.settings_dict
    command = ["pg_dump", "--data-only", "--no-owner", "-h", conf["HOST"] or "127.0.0.1", "-U", conf["USER"]]
    command += ["-p", str(conf["PORT"] or 5432), conf["NAME"]]
    env = {**os.environ, "PGPASSWORD": conf["PASSWORD"] or ""}
    dump = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    sessions = [repr(SessionStore().decode(data)) for data in Session.objects.values_list("session_data", flat=True)]
    return "\n".join([dump, *sessions])


def stored_secrets(dump: str) -> list[str]:
    """Every string in `dump` that is the secret of some credential (old or current)."""
    credentials = list(Credential.objects.all())
    found = []
    for run in SECRET_SHAPED.findall(dump):
        for start in range(len(run) - SECRET_LENGTH + 1):
            candidate = run[start : start + SECRET_LENGTH]
            if any(c.check_secret(candidate) for c in credentials):
                found.append(candidate)
    return found


def portal_client(customer) -> Client:
    client = Client()
    client.force_login(customer.user)
    return client


def test_the_search_finds_a_secret_wherever_it_is_stored(alice):
    """The test below can fail: a secret put in a session, or in any column, is found."""
    client = portal_client(alice)
    session = client.session
    session["kept_by_mistake"] = {"secret": alice.secret}
    session.save()

    dump = database_dump()

    assert alice.credential.secret_hash in dump and alice.credential.client_id in dump  # it is the whole database
    assert stored_secrets(dump) == [alice.secret]


def test_rotating_stores_neither_the_old_nor_the_new_secret(alice):
    client = portal_client(alice)
    old = alice.secret

    response = client.post(reverse("account_credential_rotate", args=[alice.credential.client_id]))

    dump = database_dump()
    assert old not in dump
    assert stored_secrets(dump) == []
    assert response.status_code == 200  # the new secret is in this answer, its one copy
    new = re.search(r'data-testid="new-secret">([^<]+)<', response.content.decode()).group(1)
    alice.credential.refresh_from_db()
    assert alice.credential.check_secret(new)
    assert new not in dump


def test_adding_a_credential_stores_no_secret(alice):
    client = portal_client(alice)

    response = client.post(reverse("account_credential_add"))

    dump = database_dump()
    assert alice.secret not in dump
    assert stored_secrets(dump) == []
    assert Credential.objects.filter(customer=alice).count() == 2
    assert response.status_code == 200
    assert re.search(r'data-testid="new-secret">([^<]+)<', response.content.decode()).group(1) not in dump


def test_a_first_purchase_stores_no_secret(mirror_table, zapier, products, mailoutbox):
    response = zapier({"order_id": "3001", "email": "nina@example.com", "product": "weather", "quantity": "5"})

    assert response.status_code == 201
    secret = re.search(r"Client secret: (\S+)", mailoutbox[0].body).group(1)  # the email is the one copy
    assert Credential.objects.get().check_secret(secret)
    dump = database_dump()
    assert secret not in dump
    assert stored_secrets(dump) == []
