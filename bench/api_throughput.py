#!/usr/bin/env python
"""What the token endpoint and the Zapier webhook cost, next to the cheapest request the server answers.

Starts gunicorn with CreditPortal on Postgres (its own database, migrated and
seeded with one customer, credential and product) and, unless --no-aws, a moto
server for what a purchase writes to AWS (the DynamoDB mirror, the email through
SES), as in production. Then drives, with a few client threads, alternating in
rounds so that a busy machine slows all alike:

  GET  /api/health/           JSON, no database: the baseline
  POST /api/token/            client credentials in a form body
  GET  /api/balance/          a small API request that reads the database
  POST /api/purchases/zapier/ a first purchase (new customer, credential, welcome email),
                              a repeat purchase (existing customer), and a replayed delivery

and prints requests per second for each and their ratios to the baseline.

Client: this script's own threads, each request on a new connection with
Python's http.client (gunicorn's sync workers close the connection anyway).
The client and moto share the machine with the server, so the absolute figures
are lower bounds; the ratios are the figures that matter.

    .venv/bin/python bench/api_throughput.py [--requests 1500] [--threads 4] [--workers 2] [--no-aws]

Needs Postgres at DATABASE_URL (its database name gets a "_bench" suffix) and
the dev requirements (gunicorn, moto).
"""

import argparse
import http.client
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlparse, urlunparse

from _gate import free_port, start_moto
from _postgres import database_create
from _report import Ratio, command, report
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


DATABASE_URL = os.getenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/creditportal")
WEBHOOK_SECRET = "bench-zapier-secret"


def bench_database_url() -> str:
    url = urlparse(DATABASE_URL)
    if not url.scheme.startswith("postgres"):
        sys.exit("DATABASE_URL must be Postgres: the benchmark measures what production runs")
    return urlunparse(url._replace(path=url.path.rstrip("/") + "_bench"))


TOKEN_GOAL = 0.5  # token / health throughput, at least

SEED = """
import io
import os
from django.conf import settings
from django.core.management import call_command

if settings.MIRROR_ENABLED:  # AWS is the moto server: the mirror's table, and the sender SES wants verified
    from local.stack import ses_sender_verify

    call_command("create_mirror_table", stdout=io.StringIO())
    ses_sender_verify(endpoint_url=os.environ["AWS_ENDPOINT_URL"], from_email=settings.DEFAULT_FROM_EMAIL)

from accounts.models import Customer, User
from accounts.services import credential_create, credential_revoke
from ledger.models import Balance
from ledger.services import credits_grant, product_upsert

product, _ = product_upsert(slug="bench", name="Bench API", api_ids=["bench00001"])
user = User.objects.filter(email="bench@example.com").first() or User.objects.create_user("bench@example.com", None)
customer = Customer.objects.filter(user=user).first() or Customer.objects.create(user=user, email=user.email)
if not Balance.objects.filter(customer=customer, product=product).exists():
    credits_grant(customer=customer, product=product, amount=1_000_000)
for old in customer.credentials.filter(revoked_at__isnull=True):  # the database is reused; 5 may be active
    credential_revoke(credential=old)
credential, secret = credential_create(customer=customer)
print(credential.client_id, secret)
"""


# Where a token's time goes, in-process: the secret check, the one query, and the signature.
MICRO = """
import timeit
from accounts.tokens import credential_authenticate, token_issue

credential = credential_authenticate(client_id=CLIENT_ID, client_secret=SECRET)
n = 2000
check = timeit.timeit(lambda: credential.check_secret(SECRET), number=n) / n
sign = timeit.timeit(lambda: token_issue(credential=credential), number=n) / n
m = n // 4
lookup = timeit.timeit(lambda: credential_authenticate(client_id=CLIENT_ID, client_secret=SECRET), number=m) / m
print(f"{check * 1e6:.1f} {sign * 1e6:.1f} {lookup * 1e6:.1f}")
"""


def request(
    port: int, method: str, path: str, body: str | None, *, token: str | None = None, json_body: bool = False
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    # Production is HTTPS-only behind API Gateway, which tells Django so: the same header here,
    # or every request would be a redirect to https://.
    headers = {"Connection": "close", "X-Forwarded-Proto": "https"}
    if body is not None:
        headers["Content-Type"] = "application/json" if json_body else "application/x-www-form-urlencoded"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


class Target:
    """One kind of request: how to make it, and the status that says it worked."""

    def __init__(self, name, method, path, *, body=None, bearer=None, json_body=False, status=200, what=""):
        self.name, self.method, self.path, self.status, self.what = name, method, path, status, what
        self.body = body if callable(body) else (lambda: body)  # a fresh body per request, or the same
        self.bearer = bearer  # a callable giving the token, or None
        self.json_body = json_body

    def drive(self, port: int, count: int, threads: int) -> float:
        """Send `count` requests from `threads` threads; the seconds it took. A wrong status stops the benchmark."""
        remaining = iter(range(count))
        lock = threading.Lock()
        failures = []
        token = self.bearer() if self.bearer else None

        def worker():
            while True:
                with lock:
                    if next(remaining, None) is None:
                        return
                    body = self.body()
                status, data = request(port, self.method, self.path, body, token=token, json_body=self.json_body)
                if status != self.status:
                    failures.append((status, data[:300]))
                    return

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        started = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - started
        if failures:
            sys.exit(f"{self.method} {self.path} ({self.name}) failed: {failures[0]}")
        return elapsed


def purchase(order_id: str, email: str) -> str:
    return json.dumps({"order_id": order_id, "email": email, "product": "bench", "quantity": 100, "name": "Bench"})


def server_environ(args, database_url: str, keydir: Path, moto_url: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DATABASE_CONN_MAX_AGE": str(args.conn_max_age),
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-secret-key",
        "CREDENTIAL_HASH_KEY": "bench-credential-hash-key",
        "ZAPIER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "JWT_PRIVATE_KEY_FILE": str(keydir / "private.pem"),
        "JWT_PUBLIC_KEY_FILE": str(keydir / "public.pem"),
        "DJANGO_LOG_LEVEL": "WARNING",
        "DEFAULT_FROM_EMAIL": "CreditPortal <credits@example.com>",
    }
    for name in ["JWT_PRIVATE_KEY", "JWT_PUBLIC_KEY", "AWS_ENDPOINT_URL", "AWS_PROFILE", "MIRROR_ENDPOINT_URL"]:
        env.pop(name, None)
    if moto_url is None:
        env |= {"MIRROR_ENABLED": "0", "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend"}
    else:
        env |= {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "MIRROR_ENABLED": "1",
            "MIRROR_TABLE": "creditportal-bench",
            "EMAIL_BACKEND": "creditportal.mail.SESBackend",
        }
    return env


def write_keys(keydir: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (keydir / "private.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (keydir / "public.pem").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1500, help="requests per kind (default 1500)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--rounds", type=int, default=10, help="alternations of the kinds (default 10)")
    parser.add_argument(
        "--conn-max-age", type=int, default=60, help="DATABASE_CONN_MAX_AGE of the server (default 60: persistent)"
    )
    parser.add_argument("--no-aws", action="store_true", help="no moto: the mirror off, emails to the dummy backend")
    args = parser.parse_args()

    database_url = bench_database_url()
    database_create(database_url)
    keydir = Path(tempfile.mkdtemp(prefix="creditportal-bench-"))
    write_keys(keydir)
    moto, moto_url = (None, None) if args.no_aws else start_moto()
    server = None
    try:  # whatever fails, the servers started here are stopped
        env = server_environ(args, database_url, keydir, moto_url)
        manage = [PYTHON, "manage.py"]

        print(f"database {database_url}: migrating and seeding")
        subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run(
            [*manage, "shell", "-c", SEED], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )
        client_id, secret = seeded.stdout.split()[-2:]
        token_body = urlencode({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})

        micro = MICRO.replace("CLIENT_ID", repr(client_id)).replace("SECRET", repr(secret))
        check_us, sign_us, lookup_us = subprocess.run(
            [*manage, "shell", "-c", micro], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        ).stdout.split()[-3:]

        port = free_port()
        gunicorn = [
            PYTHON, "-m", "gunicorn", "creditportal.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers), "--worker-class", "sync",
            "--log-level", "warning",
        ]  # fmt: skip
        server = subprocess.Popen(gunicorn, cwd=ROOT, env=env)
        run = f"{time.time_ns():x}"  # order ids and emails unique to this run: the database is reused
        numbers = itertools.count()
        for _ in range(100):
            try:
                if request(port, "GET", "/api/health/", None)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("gunicorn did not start")

        def new_token() -> str:
            return json.loads(request(port, "POST", "/api/token/", token_body)[1])["access_token"]

        webhook = {"path": "/api/purchases/zapier/", "bearer": lambda: WEBHOOK_SECRET, "json_body": True}
        replayed = purchase(f"replay-{run}", "bench@example.com")
        assert request(port, "POST", webhook["path"], replayed, token=WEBHOOK_SECRET, json_body=True)[0] == 201
        targets = [
            Target("health", "GET", "/api/health/", what="JSON, no database: the baseline"),
            Target("token", "POST", "/api/token/", body=token_body, what="keyed hash, 1 SELECT, ES256 signature"),
            Target("balance", "GET", "/api/balance/", bearer=new_token, what="verify the token, read the balance"),
            Target(
                "first purchase", "POST", **webhook, status=201,
                body=lambda: purchase(f"first-{run}-{next(numbers)}", f"buyer-{run}-{next(numbers)}@example.com"),
                what="new customer, credential, grant, mirror write, welcome email",
            ),
            Target(
                "repeat purchase", "POST", **webhook, status=201,
                body=lambda: purchase(f"repeat-{run}-{next(numbers)}", "bench@example.com"),
                what="existing customer: grant, mirror write, receipt email",
            ),
            Target("replayed delivery", "POST", **webhook, body=replayed, what="the stored answer, nothing written"),
        ]  # fmt: skip
        for target in targets:  # warm up: imports, connections, key parsing
            target.drive(port, 50, args.threads)

        per_round = max(1, args.requests // args.rounds)
        totals = dict.fromkeys([t.name for t in targets], 0.0)
        with tqdm(total=len(targets) * per_round * args.rounds, unit="req", desc="api_throughput") as progress:
            for _ in range(args.rounds):
                for target in targets:
                    totals[target.name] += target.drive(port, per_round, args.threads)
                    progress.update(per_round)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if moto is not None:
            moto.terminate()
            moto.wait()
        shutil.rmtree(keydir)

    count = per_round * args.rounds
    rate = {name: count / seconds for name, seconds in totals.items()}
    aws = "no AWS: mirror off, dummy email backend" if args.no_aws else "mirror and SES on a moto server"
    lines = [
        f"gunicorn {args.workers} sync workers on Postgres (DATABASE_CONN_MAX_AGE={args.conn_max_age}), {aws};",
        (
            f"{args.threads} client threads (new connection each), {count} requests per kind in {args.rounds} "
            f"alternating rounds, {os.cpu_count()} CPUs"
        ),
    ]
    lines += [f"{t.method:4s} {t.path:24s} {t.name:17s} {rate[t.name]:7.1f} requests/s  ({t.what})" for t in targets]
    lines += [
        "in one process, per token:",
        f"  secret check (HMAC-SHA256 + compare_digest)   {check_us:>8} us",
        f"  credential lookup + secret check              {lookup_us:>8} us",
        f"  token_issue (claims + ES256 signature, PyJWT) {sign_us:>8} us",
    ]
    # Issue 13: a token request costs one query and a signature, at least half the trivial view's rate.
    goals = {"token": TOKEN_GOAL}
    ratios = [
        Ratio(f"{name} / health (throughput)", rate[name] / rate["health"], goals.get(name), at_least=name in goals)
        for name in totals
        if name != "health"
    ]
    ratios.append(Ratio("token / balance (throughput)", rate["token"] / rate["balance"]))
    reproduce = [f"DATABASE_URL={DATABASE_URL}", ".venv/bin/python", "bench/api_throughput.py"]
    reproduce += ["--requests", args.requests, "--threads", args.threads, "--workers", args.workers]
    reproduce += ["--rounds", args.rounds, "--conn-max-age", args.conn_max_age] + (["--no-aws"] if args.no_aws else [])
    report(
        "api_throughput" + ("_no_aws" if args.no_aws else ""),
        title="Token endpoint and Zapier webhook throughput, against a trivial JSON view on the same server",
        lines=lines,
        ratios=ratios,
        reproduce=command(*reproduce),
    )


if __name__ == "__main__":
    main()
