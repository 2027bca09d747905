"""Shared fixtures: the personas (alice, bob, staff), two products, and a
real moto server over HTTP for DynamoDB and SES."""

import os
import socket

import pytest
import requests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_configure(config):
    # Chosen before any boto3 client exists, so every client (ours, django-ses,
    # the authorizer's) goes to the moto server; it starts on first use.
    if "AWS_ENDPOINT_URL" not in os.environ:
        os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{_free_port()}"


@pytest.fixture(scope="session")
def moto_server():
    """A moto server process-thread at AWS_ENDPOINT_URL, for the whole session."""
    from moto.server import ThreadedMotoServer

    url = os.environ["AWS_ENDPOINT_URL"]
    port = int(url.rsplit(":", 1)[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield url
    server.stop()


@pytest.fixture
def aws(moto_server):
    """A moto server emptied for this test: its URL."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    return moto_server


@pytest.fixture
def debug_settings(settings):
    """The settings `make run` has (DJANGO_DEBUG=1): DEBUG on, the development tools (`local`) installed.
    The suite itself runs as production does, without them (tests/test_settings.py)."""
    settings.DEBUG = True
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "local"]  # Django reloads its apps and commands
    return settings


@pytest.fixture
def products(db):
    from ledger.services import product_upsert

    weather, _ = product_upsert(slug="weather", name="Weather API", api_ids=["wthr000001"], skus=["WTHR-100"])
    maps, _ = product_upsert(slug="maps", name="Maps API", api_ids=["maps000001"], skus=["MAPS-500"], cost_per_call=2)
    return {"weather": weather, "maps": maps}


def _customer(email: str, name: str):
    from accounts.models import Customer, User
    from accounts.services import credential_create

    user = User.objects.create_user(email, "correct horse battery staple", name=name)
    customer = Customer.objects.create(user=user, email=email, name=name)
    customer.credential, customer.secret = credential_create(customer=customer)
    return customer


@pytest.fixture
def alice(db):
    """A customer with one credential; `alice.secret` is its plain secret."""
    return _customer("alice@example.com", "Alice")


@pytest.fixture
def bob(db):
    """Another customer, for proving alice's things stay alice's."""
    return _customer("bob@example.com", "Bob")


@pytest.fixture
def staff(db):
    from accounts.models import User

    return User.objects.create_user(
        "staff@creditportal.test", "staff password 123", name="Sam Staff", is_staff=True, is_superuser=True
    )


def admin_form_data(client, url: str) -> dict[str, str]:
    """What a browser would post back from the admin form at `url`, left as it is: every input,
    checked box, select and textarea of the page's form (inline management forms included)."""
    from html.parser import HTMLParser

    data: dict[str, str] = {}

    class Form(HTMLParser):
        select = textarea = None
        first_option = None

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            name = a.get("name")
            if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
                if a.get("type") not in ("checkbox", "radio") or "checked" in a:
                    data[name] = a.get("value") or ("on" if a.get("type") == "checkbox" else "")
            elif tag == "select" and name:
                self.select, self.first_option = name, None
            elif tag == "option" and self.select:
                if self.first_option is None:
                    self.first_option = a.get("value", "")
                if "selected" in a:
                    data[self.select] = a.get("value", "")
            elif tag == "textarea" and name:
                self.textarea = name
                data[name] = ""

        def handle_endtag(self, tag):
            if tag == "select" and self.select:
                data.setdefault(self.select, self.first_option or "")
                self.select = None
            elif tag == "textarea":
                self.textarea = None

        def handle_data(self, text):
            if self.textarea:
                data[self.textarea] += text

    response = client.get(url)
    assert response.status_code == 200, response.status_code
    Form().feed(response.content.decode())
    data.pop("csrfmiddlewaretoken", None)
    return data


ZAPIER_URL = "/api/purchases/zapier/"


@pytest.fixture
def zapier(client, django_capture_on_commit_callbacks):
    """Post one order line to the Zapier webhook as a Zap does, running the
    after-commit work (emails) as a real commit would.

    `zapier({...})` sends JSON; `form=True` sends form data; `body=` sends raw
    bytes (with `content_type`); `authorization=` replaces the header (None: none).
    """
    from urllib.parse import urlencode

    from django.conf import settings as django_settings

    def post(data=None, *, form=False, body=None, content_type="application/json", authorization="default"):
        if authorization == "default":
            authorization = f"Bearer {django_settings.ZAPIER_WEBHOOK_SECRET}"
        headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
        if body is None and form:
            body, content_type = urlencode(data or {}), "application/x-www-form-urlencoded"
        elif body is None:
            body = data
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(ZAPIER_URL, body, content_type=content_type, **headers)

    return post


# --- Customer portal -------------------------------------------------------


@pytest.fixture
def purchase(db):
    """`purchase(customer, product, quantity, order_id=…)`: a store purchase granted through credits_grant."""
    from ledger.models import Purchase
    from ledger.services import credits_grant

    def make(customer, product, quantity: int, order_id: str | None = None, days_ago: int = 0):
        import datetime

        from django.utils import timezone

        row = Purchase.objects.create(
            source=Purchase.Source.ZAPIER,
            order_id=order_id or f"#{Purchase.objects.count() + 1001}",
            email=customer.email,
            name=customer.name,
            product_ref=product.skus.first().sku,
            quantity=quantity,
            product=product,
            customer=customer,
            status=Purchase.Status.APPLIED,
            received=timezone.now() - datetime.timedelta(days=days_ago),
            applied=timezone.now(),
        )
        credits_grant(customer=customer, product=product, amount=quantity, purchase=row)
        return row

    return make


@pytest.fixture
def past_usage(db):
    """`past_usage(customer, product, {days_ago: credits})`: usage on earlier days, as sync_usage would
    have recorded it then. usage_record stamps entries with the current time, so this writes the same
    two rows it would (an appended ledger entry, the balance's `used`) with an earlier `created`."""
    import datetime

    from django.db.models import F
    from django.utils import timezone

    from ledger.models import Balance, LedgerEntry

    def make(customer, product, by_day: dict[int, int]) -> None:
        for days_ago, credits in by_day.items():
            when = timezone.now() - datetime.timedelta(days=days_ago)
            LedgerEntry.objects.create(
                customer=customer, product=product, kind=LedgerEntry.Kind.USAGE, amount=-credits, created=when
            )
            Balance.objects.filter(customer=customer, product=product).update(used=F("used") + credits)

    return make


@pytest.fixture(scope="session", autouse=True)
def jwt_keys(request):
    """A token signing key pair for the whole session, put where JWT_PRIVATE_KEY and
    JWT_PUBLIC_KEY would (settings.JWT). Issue tokens with accounts.tokens.token_issue,
    or sign your own with `private_pem`; verifiers get `public_pem`.
    Attributes: algorithm, private_pem, public_pem, kid, issuer, audience, leeway.
    None when Django is not loaded (`pytest tests/authorizer -p no:django`)."""
    from types import SimpleNamespace

    if not request.config.pluginmanager.has_plugin("django"):
        yield None
        return

    from django.conf import settings
    from django.test import override_settings

    from accounts import keys

    algorithm = "ES256"
    private_pem = keys.private_key_generate(algorithm)
    public_pem = keys.public_pem(private_pem)
    keyed = {"ALGORITHM": algorithm, "SIGNING_KEY": private_pem, "VERIFYING_KEY": public_pem}
    override = override_settings(JWT={**settings.JWT, **keyed})
    override.enable()
    conf = settings.JWT
    yield SimpleNamespace(
        algorithm=algorithm,
        private_pem=private_pem,
        public_pem=public_pem,
        kid=keys.keyring().kid,
        issuer=conf["ISSUER"],
        audience=conf["AUDIENCE"],
        leeway=conf["LEEWAY"],
    )
    override.disable()


# --- The gate ------------------------------------------------------------------


@pytest.fixture
def mirror_table(aws):
    """The gate's DynamoDB table (MIRROR_TABLE), made by `create_mirror_table` on an emptied moto server."""
    from io import StringIO

    from django.core.management import call_command

    call_command("create_mirror_table", stdout=StringIO())
    return os.environ["MIRROR_TABLE"]


@pytest.fixture
def authorizer(monkeypatch):
    """authorizer.handler configured as in Lambda (test key pair, MIRROR_TABLE, moto endpoint), caches empty."""
    from authorizer import handler
    from tests.authorizer.support import gate_environ

    for name, value in gate_environ().items():
        monkeypatch.setenv(name, value)
    handler.reset()
    yield handler
    monkeypatch.undo()
    handler.reset()


@pytest.fixture
def mirror(mirror_table, settings):
    """Read the gate's mirror as plain values: `mirror.balance(customer, product)`, `mirror.route(api_id)`."""
    from authorizer import mirror as items
    from ledger.mirror.client import mirror_client
    from ledger.mirror.items import plain

    class Mirror:
        table = mirror_table

        def _get(self, key: dict) -> dict | None:
            item = mirror_client().get_item(TableName=settings.MIRROR_TABLE, Key=key, ConsistentRead=True).get("Item")
            return None if item is None else {k: plain(v) for k, v in item.items() if k not in ("pk", "sk")}

        def balance(self, customer, product) -> dict | None:
            return self._get(items.balance_key(customer.public_id, product.slug))

        def route(self, api_id: str) -> dict | None:
            return self._get(items.route_key(api_id))

        def spend(self, customer, product, used: int) -> None:
            """Set `used` as the gate would have after spending (the authorizer is the only writer of it)."""
            mirror_client().update_item(
                TableName=settings.MIRROR_TABLE,
                Key=items.balance_key(customer.public_id, product.slug),
                UpdateExpression="SET #used = :used",
                ExpressionAttributeNames={"#used": items.USED},
                ExpressionAttributeValues={":used": {"N": str(used)}},
            )

    return Mirror()


@pytest.fixture(scope="session")
def atomic_moto_server(moto_server):
    """A second door to the same moto state that handles one request at a time: its URL.

    DynamoDB applies the writes to one item one at a time. moto's threaded
    server checks an UpdateItem's condition and applies it in separate steps,
    so under many concurrent calls it lets a few too many through even for raw
    boto3 calls (28 of 25 seen). Tests that count allows under concurrency
    send the authorizer's requests through this door.
    """
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    server = make_server("127.0.0.1", _free_port(), one_at_a_time, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run the block's after-commit callbacks (the mirror writes) as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def gate(mirror, authorizer, products, committed):
    """Products routed in the mirror (as `product_upsert` leaves them), and the authorizer configured."""
    from ledger.mirror.outbox import mirror_outbox_write

    mirror_outbox_write()  # what product_upsert recorded, written as its commit would have
    return authorizer


# --- Attacks, faults, load (issue 8) --------------------------------------------


@pytest.fixture
def app_rows(db):
    """`app_rows()`: every row of every accounts_* and ledger_* table, {table: [row as JSON text, ...]}.
    Compare two snapshots to prove a request wrote nothing anywhere."""
    from django.db import connection

    def snapshot() -> dict[str, list[str]]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                " AND table_type = 'BASE TABLE' AND (table_name LIKE 'accounts\\_%%' OR table_name LIKE 'ledger\\_%%')"
                " ORDER BY table_name"
            )
            tables = [name for (name,) in cursor.fetchall()]
            rows = {}
            for table in tables:
                cursor.execute(f'SELECT row_to_json(t)::text FROM "{table}" t ORDER BY 1')
                rows[table] = [row for (row,) in cursor.fetchall()]
        return rows

    return snapshot


@pytest.fixture
def fast_password_hashing(settings):
    """Passwords hashed with a cheap hasher (Django's PBKDF2 takes a third of a second here per user).
    Still a real hash and a real check: for tests that make many users and test no password storage."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- IAM, as deploy/template.yaml grants it (issue 12) ---------------------------


@pytest.fixture(scope="session")
def iam_moto(tmp_path_factory):
    """A second moto server, in its own process, that enforces IAM (tests/iam.py)."""
    from tests.iam import IamMoto

    server = IamMoto(tmp_path_factory.mktemp("iam-moto"))
    yield server
    server.stop()


@pytest.fixture
def iam_stack(iam_moto):
    """deploy/template.yaml's dev stack on that server: its resources, and a user per role (tests/iam.py)."""
    from tests.iam import Stack, stage_parameters

    return Stack(iam_moto, stage_parameters("dev"))
