"""The real parts the chaos test (tests/test_chaos.py) drives, and the faults it injects into them.

* `Door`: a door to the session's moto state on a port of its own, serving one request at a
  time (DynamoDB applies the writes to one item one at a time; moto's threaded server checks a
  condition and applies the update in separate steps, see `atomic_moto_server`), which can go
  down (connection refused, kept-alive connections cut) and come back on the same port with
  the same data: a DynamoDB endpoint out for a while. Django and the authorizer both use it.
  `lose_next_spend()` makes it lose the answer to the gate's next spend after moto applied it
  (the connection closed without a byte of answer): DynamoDB's answer lost on the way back.
* `Killer`: a process of its own running one real service on the test database, its mirror
  endpoint hanging, SIGKILLed once its commit is visible and its DynamoDB write has reached the
  endpoint: a process killed between its commit and its mirror write. The next process starts
  warming up (Django's setup) as soon as one is killed, so a kill costs the test little.
* `drop_connection_in_webhook`: a webhook delivery over real HTTP (live_server) made to wait
  on a balance row lock held here, and its database backend terminated while it waits,
  mid-transaction.
"""

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests
from django.db import connection, transaction
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from ledger.models import Balance
from tests.test_faults import Endpoint, blocked_backend
from tests.test_mirror_outbox import Hanging

ROOT = Path(__file__).resolve().parent.parent


class Door(Endpoint):
    """A moto door that serves one request at a time and can go down and come back on its port
    (tests/test_faults.py's `Endpoint`, one request at a time)."""

    poll_interval = 0.02

    def __init__(self) -> None:
        super().__init__()
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.lock = threading.Lock()
        self.lose_spend = False
        self.answers_lost = 0

    @property
    def is_up(self) -> bool:
        return self.server is not None

    def app(self):
        return self._one_at_a_time

    def lose_next_spend(self) -> None:
        """Lose the answer to the gate's next spend (an UpdateItem adding to `used`), once applied."""
        self.lose_spend = True

    def _one_at_a_time(self, environ, start_response):
        with self.lock:
            lose = False
            if self.lose_spend and environ.get("HTTP_X_AMZ_TARGET", "").endswith(".UpdateItem"):
                body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = io.BytesIO(body)
                lose = b"#used = #used +" in body  # the gate's spend: Django never adds to used
            answer = list(self.moto(environ, start_response))
            if lose:  # applied; the client gets no answer at all
                self.lose_spend = False
                self.answers_lost += 1
                with contextlib.suppress(OSError):
                    environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
                return []
            return answer

    def up(self) -> None:
        self.start()

    def down(self) -> None:
        self.stop()


CHILD = """
import json
import sys

import django

django.setup()

from accounts.models import Credential, Customer, User
from accounts.services import credential_revoke, customer_suspend
from ledger.models import Product, Purchase
from ledger.services import credits_adjust
from ledger.store.orders import purchase_record

print("ready", flush=True)
command = json.loads(sys.stdin.readline())
what = command.pop("what")
if what == "suspend":
    customer_suspend(customer=Customer.objects.get(public_id=command["customer"]))
elif what == "revoke":
    credential_revoke(credential=Credential.objects.get(client_id=command["client_id"]))
elif what == "adjust":
    credits_adjust(
        customer=Customer.objects.get(public_id=command["customer"]),
        product=Product.objects.get(slug=command["product"]),
        amount=command["amount"],
        reason="chaos: killed before its mirror write",
        by=User.objects.get(email=command["staff"]),
    )
elif what == "purchase":
    purchase_record(source=Purchase.Source.ZAPIER, **command)
print("the mirror write returned", flush=True)
"""


class Killer:
    """Runs one service in a process of its own and kills it between its commit and its mirror write."""

    def __init__(self) -> None:
        db = connection.settings_dict
        self.hanging = Hanging()
        self.env = os.environ | {
            "DJANGO_SETTINGS_MODULE": "creditportal.settings",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "MIRROR_ENDPOINT_URL": self.hanging.url,
            "MIRROR_TIMEOUT_SECONDS": "600",
            "MIRROR_WRITE_ATTEMPTS": "1",
        }
        self.child: subprocess.Popen | None = self._spawn()
        self.kills = 0

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", CHILD],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def kill_mid_write(self, command: dict, committed: Callable[[], bool]) -> None:
        """Send `command` to the waiting process, wait until `committed()` and its write hangs, SIGKILL it."""
        child, self.child = self.child, None
        assert child is not None
        before = len(self.hanging.held)
        try:
            child.stdin.write((json.dumps(command) + "\n").encode())
            child.stdin.flush()
            self.hanging.wait_for(before + 1)
            deadline = time.monotonic() + 60
            while not committed():
                assert time.monotonic() < deadline, f"{command}: the change never became visible"
                time.sleep(0.02)
        finally:
            child.send_signal(signal.SIGKILL)
            out, err = child.communicate(timeout=60)
            self.child = self._spawn()  # the next one warms up while the test goes on
        assert child.returncode == -signal.SIGKILL, err.decode()[-3000:]
        assert b"returned" not in out, "killed after the write, not inside it"
        self.kills += 1

    def close(self) -> None:
        if self.child is not None:
            self.child.kill()
            self.child.communicate(timeout=60)
        self.hanging.close()


def drop_connection_in_webhook(
    url: str, body: dict, headers: dict, *, customer_id: int, product_id: int
) -> requests.Response:
    """POST `body` to the webhook at `url` while this connection holds the (customer, product) balance
    row: the delivery records its purchase, waits to grant, and its backend is terminated there."""
    answer: dict[str, requests.Response] = {}

    def deliver() -> None:
        answer["response"] = requests.post(url, json=body, headers=headers, timeout=60)

    with transaction.atomic():
        Balance.objects.select_for_update().get(customer_id=customer_id, product_id=product_id)
        delivery = threading.Thread(target=deliver)
        delivery.start()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [blocked_backend()])
    delivery.join(60)
    return answer["response"]
