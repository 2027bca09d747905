#!/usr/bin/env python
"""How much does issuing a token cost, next to the cheapest request the server answers?

Starts gunicorn with CreditPortal on Postgres (its own database, migrated and
seeded with one customer, credential and product), then drives POST /api/token/
(client credentials in a form body), GET /api/health/ (no database: the
baseline) and GET /api/balance/ (a small API request that reads the database)
with a few client threads, alternating them in rounds so that a busy machine
slows all alike. Prints requests per second for each and the ratios.

Client: this script's own threads, each request on a new connection with
Python's http.client (gunicorn's sync workers close the connection anyway).
The client shares the machine with the server, so the absolute figures are
lower bounds; the ratio is the figure that matters.

    .venv/bin/python bench/token_throughput.py [--requests 3000] [--threads 4] [--workers 2]

Needs Postgres at DATABASE_URL (its database name gets a "_bench" suffix) and
the dev requirements (gunicorn).
"""

import argparse
import http.client
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlparse, urlunparse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


DATABASE_URL = os.getenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/creditportal")


def bench_database_url() -> str:
    url = urlparse(DATABASE_URL)
    if not url.scheme.startswith("postgres"):
        sys.exit("DATABASE_URL must be Postgres: the benchmark measures what production runs")
    return urlunparse(url._replace(path=url.path.rstrip("/") + "_bench"))


def create_database(url: str) -> None:
    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


SEED = """
from accounts.models import Customer, User
from accounts.services import credential_create
from ledger.models import Balance
from ledger.services import credits_grant, product_upsert

product, _ = product_upsert(slug="bench", name="Bench API", api_ids=["bench00001"])
user = User.objects.filter(email="bench@example.com").first() or User.objects.create_user("bench@example.com", None)
customer = Customer.objects.filter(user=user).first() or Customer.objects.create(user=user, email=user.email)
if not Balance.objects.filter(customer=customer, product=product).exists():
    credits_grant(customer=customer, product=product, amount=1_000_000)
credential, secret = credential_create(customer=customer)
print(credential.client_id, secret)
"""


# Where a token's time goes, in-process: the secret check and the signature.
MICRO = """
import timeit
from accounts.keys import token_backend
from accounts.models import Credential
from accounts.tokens import credential_authenticate

credential = Credential.objects.select_related("customer").get(client_id=CLIENT_ID)
n = 2000
check = timeit.timeit(lambda: credential.check_secret(SECRET), number=n) / n
sign = timeit.timeit(lambda: token_backend().encode({"sub": "cus_x", "scope": "bench"}), number=n) / n
m = n // 4
lookup = timeit.timeit(lambda: credential_authenticate(client_id=CLIENT_ID, client_secret=SECRET), number=m) / m
print(f"{check * 1e6:.1f} {sign * 1e6:.1f} {lookup * 1e6:.1f}")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: str | None, token: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Connection": "close"}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def drive(
    port: int, method: str, path: str, body: str | None, count: int, threads: int, token: str | None = None
) -> float:
    """Send `count` requests from `threads` threads; the seconds it took. Any non-200 stops the benchmark."""
    remaining = iter(range(count))
    lock = threading.Lock()
    failures = []

    def worker():
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            status, data = request(port, method, path, body, token)
            if status != 200:
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
        sys.exit(f"{method} {path} failed: {failures[0]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per endpoint (default 3000)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--rounds", type=int, default=10, help="alternations of the endpoints (default 10)")
    parser.add_argument(
        "--conn-max-age", type=int, default=60, help="DATABASE_CONN_MAX_AGE of the server (default 60: persistent)"
    )
    args = parser.parse_args()

    database_url = bench_database_url()
    create_database(database_url)
    keydir = Path(tempfile.mkdtemp(prefix="creditportal-bench-"))
    key = ec.generate_private_key(ec.SECP256R1())
    (keydir / "private.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (keydir / "public.pem").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DATABASE_CONN_MAX_AGE": str(args.conn_max_age),
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-secret-key",
        "CREDENTIAL_HASH_KEY": "bench-credential-hash-key",
        "ZAPIER_WEBHOOK_SECRET": "bench-zapier-secret",
        "JWT_PRIVATE_KEY_FILE": str(keydir / "private.pem"),
        "JWT_PUBLIC_KEY_FILE": str(keydir / "public.pem"),
        "DJANGO_LOG_LEVEL": "WARNING",
    }
    for name in ["JWT_PRIVATE_KEY", "JWT_PUBLIC_KEY", "AWS_ENDPOINT_URL"]:
        env.pop(name, None)

    print(f"database {database_url}: migrating and seeding")
    subprocess.run([PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)
    seeded = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", SEED], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    client_id, secret = seeded.stdout.split()[-2:]
    token_body = urlencode({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})

    micro = MICRO.replace("CLIENT_ID", repr(client_id)).replace("SECRET", repr(secret))
    check_us, sign_us, lookup_us = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", micro], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout.split()[-3:]

    port = free_port()
    gunicorn = [
        PYTHON, "-m", "gunicorn", "creditportal.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers), "--worker-class", "sync",
        "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(gunicorn, cwd=ROOT, env=env)
    try:
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

        # (name, method, path, body, bearer); the balance API gets a fresh token each round.
        targets = [
            ("health", "GET", "/api/health/", None, False),
            ("token", "POST", "/api/token/", token_body, False),
            ("balance", "GET", "/api/balance/", None, True),
        ]
        for _, method, path, body, bearer in targets:  # warm up: imports, connections, key parsing
            drive(port, method, path, body, 100, args.threads, new_token() if bearer else None)

        per_round = max(1, args.requests // args.rounds)
        totals = dict.fromkeys([name for name, *_ in targets], 0.0)
        with tqdm(total=len(targets) * per_round * args.rounds, unit="req", desc="benchmark") as progress:
            for _ in range(args.rounds):
                token = new_token()
                for name, method, path, body, bearer in targets:
                    totals[name] += drive(port, method, path, body, per_round, args.threads, token if bearer else None)
                    progress.update(per_round)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(keydir)

    count = per_round * args.rounds
    rate = {name: count / seconds for name, seconds in totals.items()}
    print()
    print(f"gunicorn {args.workers} sync workers, {args.threads} client threads (http.client, new connection each),")
    print(f"{count} requests per endpoint in {args.rounds} alternating rounds, on {os.cpu_count()} CPUs,")
    print(f"DATABASE_CONN_MAX_AGE={args.conn_max_age}")
    print(f"  GET  /api/health/   {rate['health']:8.1f} requests/s  (JSON, no database: the baseline)")
    print(f"  POST /api/token/    {rate['token']:8.1f} requests/s  (one keyed hash, 2 SELECTs, ES256 signature)")
    print(
        f"  GET  /api/balance/  {rate['balance']:8.1f} requests/s  (a small API request: verify the token, 2 SELECTs)"
    )
    print(f"  token / health      {rate['token'] / rate['health']:8.2f}")
    print(f"  token / balance     {rate['token'] / rate['balance']:8.2f}")
    print("in one process, per token:")
    print(f"  secret check (HMAC-SHA256 + compare_digest)        {check_us:>8} us")
    print(f"  credential lookup + secret check (1 SELECT)        {lookup_us:>8} us")
    print(f"  ES256 signature (simplejwt + PyJWT)                {sign_us:>8} us")
    print()
    command = [f"DATABASE_URL={DATABASE_URL}", ".venv/bin/python", "bench/token_throughput.py"]
    command += ["--requests", str(args.requests), "--threads", str(args.threads), "--workers", str(args.workers)]
    command += ["--rounds", str(args.rounds), "--conn-max-age", str(args.conn_max_age)]
    print("reproduce: " + " ".join(shlex.quote(part) for part in command))


if __name__ == "__main__":
    main()
