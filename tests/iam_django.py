"""The Django function's AWS calls, through its public doors, in a process of their own.

    python -m tests.iam_django STEP [STEP ...]

Run by tests/test_deploy_iam.py with the Zappa stage's environment, the Django
role's access key and an IAM-enforcing moto server (tests/iam.py): a fresh
interpreter, as a Lambda instance is, so every client (the mirror's, django-ses')
is built from that environment. Each step prints one `RESULT <json>` line.
"""

import io
import json
import sys

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.models import Credential, Customer  # noqa: E402
from accounts.services import credential_rotate, customer_reactivate, customer_suspend  # noqa: E402
from ledger.models import MirrorOutbox, Purchase  # noqa: E402

OLD_API_ID, API_ID, SKU = "wthr000001", "wthr000002", "WTHR-100"
HOST = "abc123.execute-api.us-east-1.amazonaws.com"


def command(name: str, *args: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err)
        status = 0
    except SystemExit as e:
        status = e.code
    except Exception as e:
        status, err = 1, io.StringIO(f"{type(e).__name__}: {e}\n{err.getvalue()}")
    return {"status": status, "out": out.getvalue(), "err": err.getvalue()}


def routes() -> dict:
    """A product declared with an API id, then moved to another (its old route deleted)."""
    first = command(
        "upsert_product", "--slug", "weather", "--name", "Weather API", "--api-id", OLD_API_ID, "--sku", SKU
    )
    second = command("upsert_product", "--slug", "weather", "--name", "Weather API", "--api-id", API_ID)
    return {"commands": [first, second]}


def purchase() -> dict:
    """A store purchase through the Zapier webhook: customer, credential, credits, welcome email."""
    from django.conf import settings

    body = {"order_id": "1001", "email": "nina@example.com", "product": SKU, "quantity": 5, "name": "Nina"}
    response = Client().post(
        "/api/purchases/zapier/",
        body,
        content_type="application/json",
        secure=True,
        HTTP_HOST=HOST,
        HTTP_AUTHORIZATION=f"Bearer {settings.ZAPIER_WEBHOOK_SECRET}",
    )
    row = Purchase.objects.get()
    return {"status": response.status_code, "body": response.json(), "email_status": row.email_status}


def rotate() -> dict:
    credential = Credential.objects.get()
    credential_rotate(credential=credential)
    credential.refresh_from_db()
    return {"client_id": credential.client_id, "ver": credential.secret_version}


def suspend() -> dict:
    customer = Customer.objects.get()
    customer_suspend(customer=customer)
    customer_reactivate(customer=customer)
    return {"customer": customer.public_id}


def api_key() -> dict:
    """An API key for the customer (its item and the customer's balance items, after the commit)."""
    from accounts.services import api_key_create

    api_key, key = api_key_create(customer=Customer.objects.get(), name="iam")
    return {"key_id": api_key.public_id, "key": key}


def cancel() -> dict:
    """The order cancelled through Shopify's signed webhook: the gate's item frozen, the rest taken back."""
    import base64
    import hashlib
    import hmac

    from django.conf import settings

    body = json.dumps({"id": 1001, "email": "nina@example.com", "line_items": [], "cancel_reason": "customer"}).encode()
    secret = settings.SHOPIFY_WEBHOOK_SECRET.split()[0].encode()
    signature = base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()
    response = Client().post(
        "/api/purchases/shopify/", body, content_type="application/json", secure=True, HTTP_HOST=HOST,
        HTTP_X_SHOPIFY_TOPIC="orders/cancelled", HTTP_X_SHOPIFY_HMAC_SHA256=signature,
    )  # fmt: skip
    return {"status": response.status_code, "body": response.json()}


def failed_call() -> dict:
    """A failed call's access-log line, through the Lambda entry point Zappa hands subscription events to."""
    import base64
    import gzip

    from creditportal.lambda_entry import application

    customer = Customer.objects.get()
    line = {
        "requestId": "0f1e2d3c-iam-failed-call",
        "status": "504",
        "route": "GET /hello",
        "customerId": customer.public_id,
        "product": "weather",
        "cost": "1",
        "credentialId": Credential.objects.get().client_id,
    }
    batch = {
        "messageType": "DATA_MESSAGE",
        "logGroup": "/creditportal/dev/api-access",
        "logEvents": [{"id": "1", "timestamp": 0, "message": json.dumps(line)}],
    }
    event = {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(batch).encode())).decode()}}
    return {"counts": application(event, None)}


STEPS = {
    "failed_call": failed_call,
    "routes": routes,
    "purchase": purchase,
    "rotate": rotate,
    "suspend": suspend,
    "api_key": api_key,
    "cancel": cancel,
    "sync_mirror": lambda: command("sync_mirror", "--verbosity", "0"),
    "check": lambda: command("sync_mirror", "--check"),
    "sync_usage": lambda: command("sync_usage", "--verbosity", "0"),
}

if __name__ == "__main__":
    for step in sys.argv[1:]:
        result = STEPS[step]()
        result["pending"] = list(MirrorOutbox.objects.values_list("scope", "ref", "error"))
        print("RESULT " + json.dumps({"step": step, **result}), flush=True)
