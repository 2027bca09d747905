#!/usr/bin/env python
"""The chaos test's operation mix as a load run of the local stack, then the same end-of-run checks.

Starts CreditPortal under gunicorn on Postgres (a database of its own, emptied) and a moto server
for DynamoDB behind a door that serves one request at a time (as DynamoDB applies one item's
writes) and goes down for a moment now and then (tests/chaos_stack.py `Door`), all on loopback.
Then THREADS client threads run, for DURATION seconds, a weighted mix of what the chaos test does:
Zapier purchases (new customers, repeat ones, redeliveries), Shopify orders of packs (several
lines), refunds and cancellations, tokens and balance reads over HTTP, calls of several costs
through the real authorizer handler (in this process), credential rotations and revocations and
staff adjustments through the services (in this process), failed-call batches with duplicates.
A scheduler runs `sync_usage` every 10 seconds and takes DynamoDB away for 2 seconds every 45.

At the end (DynamoDB back, `sync_usage` run): for every (customer, product) the ledger's granted −
used equals the mirror's remaining and the ledger's used the mirror's; the mirror's used is exactly
the cost of the calls the clients saw allowed; every purchase line was granted once; no refund
claimed more of a line than it granted; every failed call was credited once; no call of a rotated
or revoked credential was allowed after its change committed (and reached the mirror);
`sync_mirror --check` finds no drift. It prints operations per second by kind and each check.

    DURATION=600 THREADS=4 .venv/bin/python bench/chaos_load.py      (make bench BENCH=chaos_load)

Needs Postgres at DATABASE_URL (its database name gets a "_chaos" suffix) and the dev requirements.
"""

import base64
import hashlib
import hmac
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _gate import free_port
from _postgres import database_create
from _report import Ratio, command, report
from api_throughput import write_keys

DURATION = float(os.environ.get("DURATION", "600"))
THREADS = int(os.environ.get("THREADS", "4"))
DATABASE_URL = os.getenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/creditportal")
ZAPIER_SECRET, SHOPIFY_SECRET = "chaos-zapier-secret", "chaos-shopify-secret"
KINDS = ["rest_token", "rest_request", "http_api_v2"]
# What each kind of operation weighs in the mix (the chaos test's rules, at rates a store might see).
MIX = {
    "call": 50, "token": 8, "balance API": 5, "purchase (new customer)": 3, "purchase (repeat)": 6,
    "redelivery": 3, "shopify order": 4, "shopify refund": 2, "shopify cancel": 1, "staff adjustment": 3,
    "credential rotated": 1, "credential revoked": 1, "failed-call batch": 3,
}  # fmt: skip


def database_url() -> str:
    url = urlparse(DATABASE_URL)
    return urlunparse(url._replace(path=url.path.rstrip("/") + "_chaos"))


class Load:
    """What the clients did and saw: the figures the end-of-run checks compare with the stack."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.lock = threading.RLock()
        self.customers: list[dict] = []  # {"email", "public_id", "creds": {client_id: secret}}
        self.tokens: list[tuple[str, str, str, int]] = []  # (token, public_id, client_id, ver)
        self.orders: list[dict] = []  # Shopify orders sent
        self.zapier: list[dict] = []  # Zapier bodies sent
        self.allowed: list[tuple[str, str, str, int]] = []  # (request id, public_id, product, cost)
        self.spent: Counter = Counter()  # (public_id, product) -> credits the clients saw allowed
        self.dead: dict[tuple[str, int | None], float] = {}  # (client id, version or None: all) -> when it died
        self.violations: list[str] = []
        self.done: Counter = Counter()
        self.seconds: Counter = Counter()
        self.errors: Counter = Counter()
        self.serial = 0

    def next(self) -> int:
        with self.lock:
            self.serial += 1
            return self.serial


def zapier(load: Load, body: dict) -> requests.Response:
    return requests.post(f"{load.base}/api/purchases/zapier/", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {ZAPIER_SECRET}", "X-Forwarded-Proto": "https"})  # fmt: skip


def shopify(load: Load, topic: str, payload: dict) -> requests.Response:
    body = json.dumps(payload).encode()
    signature = base64.b64encode(hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    headers = {"X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": str(uuid.uuid4()), "X-Shopify-Hmac-Sha256": signature,
               "Content-Type": "application/json", "X-Forwarded-Proto": "https"}  # fmt: skip
    return requests.post(f"{load.base}/api/purchases/shopify/", data=body, headers=headers, timeout=30)


def operate(load: Load, kind: str, rng: random.Random) -> None:
    from accounts.models import Credential, Customer, User
    from accounts.services import credential_create, credential_revoke, credential_rotate
    from authorizer import handler
    from ledger.access_logs import failed_calls_event_record, subscription_event_encode
    from ledger.models import MirrorOutbox, Product
    from ledger.services import credits_adjust
    from tests.authorizer.support import load_event

    with load.lock:
        customers = list(load.customers)
    if kind == "purchase (new customer)" or not customers:
        n = load.next()
        body = {"order_id": f"z{n}", "email": f"load{n}@chaos.test", "product": rng.choice(["weather", "maps"]),
                "quantity": rng.randint(5, 40), "name": f"Load {n}"}  # fmt: skip
        assert zapier(load, body).status_code == 201
        customer = Customer.objects.get(email=body["email"])
        credential, secret = credential_create(customer=customer)  # the welcome email's is not read here
        with load.lock:
            load.customers.append({"email": body["email"], "public_id": customer.public_id,
                                   "creds": {credential.client_id: secret}})  # fmt: skip
            load.zapier.append(body)
        return
    c = rng.choice(customers)
    if not c["creds"] and kind in ("token", "credential rotated", "credential revoked"):
        return  # all its credentials revoked: nothing to ask with
    if kind == "purchase (repeat)":
        body = {"order_id": f"z{load.next()}", "email": c["email"], "product": rng.choice(["weather", "maps"]),
                "quantity": rng.randint(1, 20)}  # fmt: skip
        assert zapier(load, body).status_code == 201
        with load.lock:
            load.zapier.append(body)
    elif kind == "redelivery" and load.zapier:
        assert zapier(load, rng.choice(load.zapier)).status_code == 200
    elif kind == "shopify order":
        order_id = 500000 + load.next()
        lines = [{"id": order_id * 10 + i, "quantity": rng.randint(1, 2), "price": "9.00", "name": "pack",
                  **rng.choice([{"sku": "WEATHER-10"}, {"sku": None, "variant_id": 7001}, {"sku": "MAPS-4"},
                                {"sku": "TSHIRT-M", "variant_id": 457924702}])} for i in range(rng.randint(1, 3))]  # fmt: skip
        payload = {"id": order_id, "email": c["email"], "currency": "USD", "line_items": lines,
                   "customer": {"email": c["email"], "first_name": "Load", "last_name": "Chaos"}}  # fmt: skip
        assert shopify(load, "orders/paid", payload).status_code == 200
        with load.lock:
            load.orders.append(payload)
    elif kind == "shopify refund" and load.orders:
        order = rng.choice(load.orders)
        refund = {"id": 700000 + load.next(), "order_id": order["id"], "note": "load",
                  "refund_line_items": [{"line_item_id": line["id"], "quantity": 1} for line in order["line_items"]]}  # fmt: skip
        status = shopify(load, "refunds/create", refund).status_code
        assert status in (200, 503), status  # 503: the gate could not be read (an outage)
    elif kind == "shopify cancel" and load.orders:
        status = shopify(load, "orders/cancelled", {**rng.choice(load.orders), "cancel_reason": "customer"}).status_code
        assert status in (200, 503), status
    elif kind == "token":
        client_id, secret = rng.choice(list(c["creds"].items()))
        r = requests.post(f"{load.base}/api/token/", timeout=30, headers={"X-Forwarded-Proto": "https"},
                          data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})  # fmt: skip
        if r.status_code == 200:
            claims = json.loads(base64.urlsafe_b64decode(r.json()["access_token"].split(".")[1] + "=="))
            with load.lock:
                load.tokens.append((r.json()["access_token"], c["public_id"], client_id, claims["ver"]))
        else:
            assert r.status_code == 401, r.content  # a credential revoked meanwhile
    elif kind == "balance API" and load.tokens:
        token = rng.choice(load.tokens)[0]
        r = requests.get(f"{load.base}/api/balance/", headers={"Authorization": f"Bearer {token}",
                                                                "X-Forwarded-Proto": "https"}, timeout=30)  # fmt: skip
        assert r.status_code in (200, 401), r.status_code
    elif kind == "call" and load.tokens:
        token, public_id, client_id, ver = rng.choice(load.tokens)
        product = rng.choice(["weather", "maps"])
        started = time.monotonic()
        event = load_event(
            rng.choice(KINDS), token=token, api_id={"weather": "wthr000001", "maps": "maps000001"}[product]
        )
        answer = handler.lambda_handler(event, None)
        allowed = answer.get("isAuthorized") if "isAuthorized" in answer else (
            answer["policyDocument"]["Statement"][0]["Effect"] == "Allow")  # fmt: skip
        if allowed:
            cost = answer["context"]["cost"]
            with load.lock:
                load.spent[public_id, product] += cost
                load.allowed.append((f"req-{load.next()}", public_id, product, cost))
                for key in ((client_id, ver), (client_id, None)):
                    if key in load.dead and started > load.dead[key]:
                        load.violations.append(f"{client_id} v{ver} allowed after its change committed")
    elif kind == "staff adjustment":
        amount = rng.choice([-3, -1, 2, 5])
        try:
            credits_adjust(customer=Customer.objects.get(public_id=c["public_id"]),
                           product=Product.objects.get(slug=rng.choice(["weather", "maps"])), amount=amount,
                           reason="load", by=User.objects.get(email="staff@chaos.test"))  # fmt: skip
        except Exception as e:  # noqa: BLE001 - refused: below what is used, or no such balance
            load.errors[f"adjustment refused: {type(e).__name__}"] += 1
    elif kind in ("credential rotated", "credential revoked"):
        client_id = rng.choice(list(c["creds"]))
        row = Credential.objects.get(client_id=client_id)
        if row.revoked_at is not None:
            return
        if kind == "credential rotated":
            old = row.secret_version
            secret = credential_rotate(credential=row)
            key = (client_id, old)
        else:
            credential_revoke(credential=row)
            key, secret = (client_id, None), None
        delivered = not MirrorOutbox.objects.filter(scope="customer", ref=str(row.customer_id)).exists()
        with load.lock:
            if delivered:  # its write reached the mirror: from now on, every call of it is denied
                load.dead[key] = time.monotonic()
            if secret:
                c["creds"][client_id] = secret
            else:
                c["creds"].pop(client_id)
        if not c["creds"]:
            credential, secret = credential_create(customer=row.customer)
            with load.lock:
                c["creds"][credential.client_id] = secret
    elif kind == "failed-call batch" and load.allowed:
        with load.lock:
            calls = rng.sample(load.allowed, min(5, len(load.allowed)))
        lines = [json.dumps({"requestId": rid, "status": "502", "customerId": pid, "product": product,
                             "cost": str(cost), "credentialId": "", "route": "GET /forecast"})
                 for rid, pid, product, cost in calls]  # fmt: skip
        failed_calls_event_record(subscription_event_encode(lines + lines[:2], log_group="load"))


def client(load: Load, deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    while time.monotonic() < deadline:
        kind = rng.choices(kinds, weights)[0]
        started = time.perf_counter()
        try:
            operate(load, kind, rng)
        except Exception as e:  # noqa: BLE001 - counted and shown: the checks decide
            load.errors[f"{kind}: {type(e).__name__}: {str(e)[:80]}"] += 1
            continue
        load.done[kind] += 1
        load.seconds[kind] += time.perf_counter() - started


def scheduler(load: Load, door, deadline: float) -> None:
    from django.core.management import call_command

    last_outage = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(10)
        if time.monotonic() - last_outage > 45 and time.monotonic() < deadline - 5:
            door.down()
            load.done["fault: DynamoDB down 2 s"] += 1
            time.sleep(2)
            door.up()
            last_outage = time.monotonic()
        try:
            call_command("sync_usage", stdout=io.StringIO(), stderr=io.StringIO())
            load.done["sync_usage"] += 1
        except Exception as e:  # noqa: BLE001
            load.errors[f"sync_usage: {type(e).__name__}"] += 1


def checks(load: Load) -> list[tuple[str, bool, str]]:
    from django.core.management import call_command
    from django.db.models import Count, Q, Sum

    from ledger.mirror.client import mirror_client
    from ledger.mirror.items import plain
    from ledger.models import Balance, LedgerEntry, Purchase

    call_command("sync_usage", stdout=io.StringIO(), stderr=io.StringIO())
    results = []
    items = {}
    # The whole table through the one-at-a-time door after 10 minutes of load: longer than a
    # request's MIRROR_TIMEOUT_SECONDS (the first 600 s run timed out here, its checks unread).
    scan = mirror_client(timeout=120).get_paginator("scan")
    for page in scan.paginate(TableName=os.environ["MIRROR_TABLE"]):
        for item in page["Items"]:
            if item["pk"]["S"].startswith("CUSTOMER#"):
                items[item["pk"]["S"][9:], item["sk"]["S"][8:]] = {k: plain(v) for k, v in item.items()}
    bad = []
    for b in Balance.objects.select_related("customer", "product"):
        entries = LedgerEntry.objects.filter(customer=b.customer, product=b.product)
        granted = entries.exclude(kind="usage").aggregate(s=Sum("amount"))["s"] or 0
        used = -(entries.filter(kind="usage").aggregate(s=Sum("amount"))["s"] or 0)
        item = items.get((b.customer.public_id, b.product.slug), {"granted": 0, "used": 0})
        if (granted - used, used) != (item["granted"] - item["used"], item["used"]):
            bad.append(f"{b}: ledger {granted}-{used}, mirror {item['granted']}-{item['used']}")
        if item["used"] != load.spent[b.customer.public_id, b.product.slug]:
            bad.append(
                f"{b}: mirror used {item['used']}, clients saw {load.spent[b.customer.public_id, b.product.slug]}"
            )
    results.append(
        ("ledger granted - used = mirror remaining; used = what the clients saw allowed", not bad, "; ".join(bad[:3]))
    )
    lines = Purchase.objects.filter(status="applied").annotate(
        n=Count("entries", filter=Q(entries__kind="purchase")),
        s=Sum("entries__amount", filter=Q(entries__kind="purchase")),
        back=Sum("entries__amount", filter=Q(entries__kind="refund"), default=0),
    )
    twice = [p for p in lines if p.n != 1 or p.s != p.credits]
    results.append(("every purchase line granted exactly once", not twice, f"{len(twice)} of {len(lines)}"))
    over = [p for p in lines if p.credits_refunded > p.credits or -p.back > p.credits]
    results.append(("no refund took back more of a line than it granted", not over, f"{len(over)} lines"))
    failed = LedgerEntry.objects.filter(kind="failed_call")
    paid = {rid: cost for rid, _, _, cost in load.allowed if cost}
    credited = dict(failed.values_list("request_id", "amount"))
    once = failed.count() == len(credited) and all(paid.get(rid) == amount for rid, amount in credited.items())
    results.append(("every failed call credited back once, with its cost", once, f"{len(credited)} credited"))
    results.append(("no call of a rotated or revoked credential allowed after its change committed",
                     not load.violations, "; ".join(load.violations[:3])))  # fmt: skip
    drift = io.StringIO()
    try:
        call_command("sync_mirror", "--check", stdout=drift, stderr=io.StringIO())
        results.append(("sync_mirror --check: no drift", True, ""))
    except Exception:  # noqa: BLE001
        results.append(("sync_mirror --check: no drift", False, drift.getvalue()[:300]))
    return results


def main() -> None:
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: where each thread is
    db = database_url()
    database_create(db)
    keydir = Path(tempfile.mkdtemp(prefix="creditportal-chaos-"))
    write_keys(keydir)
    env = {
        "DATABASE_URL": db, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "chaos-secret-key",
        "CREDENTIAL_HASH_KEY": "chaos-hash-key", "ZAPIER_WEBHOOK_SECRET": ZAPIER_SECRET,
        "SHOPIFY_WEBHOOK_SECRET": SHOPIFY_SECRET, "JWT_PRIVATE_KEY_FILE": str(keydir / "private.pem"),
        "JWT_PUBLIC_KEY_FILE": str(keydir / "public.pem"), "DJANGO_LOG_LEVEL": "ERROR",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend", "AWS_ACCESS_KEY_ID": "chaos",
        "AWS_SECRET_ACCESS_KEY": "chaos", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
        "MIRROR_ENABLED": "1", "MIRROR_TABLE": "creditportal-chaos", "MIRROR_WRITE_ATTEMPTS": "1",
        "MIRROR_TIMEOUT_SECONDS": "2", "AUTHORIZER_DYNAMODB_TIMEOUT": "5", "AUTHORIZER_LOG_LEVEL": "ERROR",
        "DJANGO_SETTINGS_MODULE": "creditportal.settings",
    }  # fmt: skip
    os.environ.update(env)
    import django

    django.setup()
    import logging

    logging.disable(logging.WARNING)
    from tests.chaos_stack import Door

    door = Door()
    door.up()
    os.environ["AWS_ENDPOINT_URL"] = door.url
    os.environ["JWT_PUBLIC_KEY"] = (keydir / "public.pem").read_text()
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, check=True)
    from django.core.management import call_command
    from django.db import connection

    from accounts.models import User
    from authorizer import handler
    from ledger.services import product_upsert

    with connection.cursor() as cursor:
        tables = [t for t in connection.introspection.table_names(cursor) if t.startswith(("accounts_", "ledger_"))]
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    call_command("create_mirror_table", stdout=io.StringIO())
    product_upsert(slug="weather", name="Weather", api_ids=["wthr000001"], cost_per_call=1,
                   routes={"GET /forecast": 3, "GET /request": 0}, skus={"WEATHER-10": 10}, variants={"7001": 5})  # fmt: skip
    product_upsert(slug="maps", name="Maps", api_ids=["maps000001"], cost_per_call=2, skus={"MAPS-4": 4})
    User.objects.create_user("staff@chaos.test", None, name="Staff", is_staff=True)
    handler.reset()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "creditportal.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--log-level", "warning"], cwd=ROOT, env=os.environ.copy(),
    )  # fmt: skip
    load = Load(f"http://127.0.0.1:{port}")
    try:
        for _ in range(200):
            try:
                if requests.get(f"{load.base}/api/health/", headers={"X-Forwarded-Proto": "https"}, timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            sys.exit("gunicorn did not start")
        started = time.monotonic()
        deadline = started + DURATION
        workers = [threading.Thread(target=client, args=(load, deadline, seed)) for seed in range(THREADS)]
        workers.append(threading.Thread(target=scheduler, args=(load, door, deadline)))
        for worker in workers:
            worker.start()
        while any(w.is_alive() for w in workers[:-1]):
            time.sleep(min(15, max(1, deadline - time.monotonic())))
            print(f"  {time.monotonic() - started:5.0f}s: {sum(load.done.values())} operations", flush=True)
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - started
        if not door.is_up:
            door.up()
        results = checks(load)
    finally:
        server.terminate()
        server.wait(timeout=30)
    total = sum(n for kind, n in load.done.items() if kind in MIX)
    lines = [f"{DURATION:.0f} s, {THREADS} client threads, gunicorn 2 workers, moto behind a one-at-a-time door, "
             f"{os.cpu_count()} CPUs; {total} operations, {total / elapsed:.1f}/s"]  # fmt: skip
    lines += [f"  {kind:28s} {n:7d}  {n / elapsed:7.2f}/s  {1000 * load.seconds[kind] / max(n, 1):7.1f} ms each"
              for kind, n in sorted(load.done.items())]  # fmt: skip
    lines += [f"  error: {what} x{n}" for what, n in load.errors.most_common(8)]
    lines += [
        f"  check {'OK  ' if ok else 'FAIL'} {what}" + (f" ({detail})" if detail else "")
        for what, ok, detail in results
    ]
    calls = load.done["call"] / elapsed
    ratios = [
        Ratio(f"{kind} / call (throughput)", (load.done[kind] / elapsed) / calls)
        for kind in MIX
        if kind != "call" and calls
    ]
    report("chaos_load", title="The chaos mix under load: operations per second by kind, and the end-of-run checks",
           lines=lines, ratios=ratios,
           reproduce=command(f"DURATION={DURATION:.0f}", f"THREADS={THREADS}", ".venv/bin/python", "bench/chaos_load.py"))  # fmt: skip
    if not all(ok for _, ok, _ in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
