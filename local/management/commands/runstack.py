import importlib.util
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from io import StringIO
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from local.demo import PRODUCT_API_ID, Demo, demo_seed
from local.stack import (
    DEFAULT_GATEWAY_PORT,
    DEFAULT_MOTO_PORT,
    DEFAULT_PORT,
    STACK_ENV_MARKER,
    Child,
    authorizer_settings,
    botocore_found,
    gateway_environ,
    moto_access_log,
    port_busy,
    ses_sender_verify,
    stack_environ,
    wait_until_answering,
    wait_until_listening,
)
from local.subscription import AccessLogSubscription

STAGE = "local"
STEPS = 7
NOTHING_RECORDED = re.compile(r"\b0 credit\(s\) of usage recorded")


class Stop(Exception):
    """Ctrl-C (SIGINT), SIGTERM or SIGHUP: stop the stack."""


def _stop(signum, frame) -> None:
    raise Stop(signal.Signals(signum).name)


class Command(BaseCommand):
    help = (
        "The whole stack locally, for development (`make run`): a moto server for DynamoDB and SES, "
        "migrations, the mirror table, demo data, Django (runserver), a stand-in for API Gateway that sends "
        "each call through the real authorizer and logs it, failed calls credited back within a second, and "
        "sync_usage every few seconds. Ctrl-C stops it all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="where every part listens (default %(default)s)")
        parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="Django (default %(default)s)")
        parser.add_argument(
            "--gateway-port", type=int, default=DEFAULT_GATEWAY_PORT, help="the API Gateway stand-in (%(default)s)"
        )
        parser.add_argument("--moto-port", type=int, default=DEFAULT_MOTO_PORT, help="moto (default %(default)s)")
        parser.add_argument(
            "--sync-every",
            type=float,
            default=10,
            help="seconds between sync_usage runs (default %(default)s; 0: never)",
        )
        parser.add_argument("--noreload", action="store_true", help="runserver without its autoreloader")

    def handle(self, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("runstack is a development tool: run it with DJANGO_DEBUG=1 (`make run` does)")
        if importlib.util.find_spec("moto") is None:
            raise CommandError("moto[server] is not installed: `make run` installs it (requirements-local.txt)")
        host = options["host"]
        ports = {"Django": options["port"], "gateway": options["gateway_port"], "moto": options["moto_port"]}
        busy = [f"{name} {port}" for name, port in ports.items() if port_busy(host, port)]
        if busy:
            raise CommandError(
                f"port(s) in use on {host}: {', '.join(busy)}. Another `make run`? "
                "Stop it, or choose others: make run PORT=... GATEWAY_PORT=... MOTO_PORT=..."
            )
        self.host, self.ports, self.options = host, ports, options
        self.moto_url = f"http://{host}:{ports['moto']}"
        self.django_url = f"http://{host}:{ports['Django']}"
        self.gateway_url = f"http://{host}:{ports['gateway']}"
        if os.environ.get(STACK_ENV_MARKER) != "1":
            self._restart_in_stack_environment()
        self._lock = threading.Lock()
        self._step = 0
        self._run()

    def _restart_in_stack_environment(self) -> None:
        """Settings are read from the environment when the process starts: start again in the
        stack's, so this process (migrations, demo data, sync_usage) sees what its children see."""
        if sys.argv[1:2] != ["runstack"]:
            raise CommandError("run it from the command line: python manage.py runstack")
        env = stack_environ(os.environ, moto_url=self.moto_url, portal_url=self.django_url)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)

    # --- output ---

    def _write(self, name: str, line: str) -> None:
        with self._lock:
            self.stdout.write(f"{name:>7} | {line}")
            self.stdout.flush()

    def _begin(self, what: str) -> None:
        self._step += 1
        self._step_started = time.monotonic()
        self._write("stack", f"[{self._step}/{STEPS}] {what}")

    def _done(self, note: str = "") -> None:
        self._write("stack", f"      {note + ' ' if note else ''}({time.monotonic() - self._step_started:.1f} s)")

    # --- the stack ---

    def _run(self) -> None:
        self.children: list[Child] = []
        # Ctrl-C too, explicitly: a shell starting this in the background would have it ignored.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _stop)
        logging.getLogger("botocore").setLevel(logging.WARNING)  # "found credentials": the stack gave them
        failure = None
        try:
            self._start()
            self._watch()
        except Stop:
            self._write("stack", "stopping...")
        except RuntimeError as e:  # a part did not start, or stopped
            failure = str(e)
            self._write("stack", f"error: {e}; stopping")
        finally:
            self._shutdown()  # whatever happened: no part outlives the stack
        if failure:
            raise CommandError(failure)

    def _shutdown(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not leave children behind
        for child in reversed(self.children):
            child.stop()
            self._write("stack", f"{child.name} stopped")
        self._write("stack", "all stopped")

    def _child(self, name: str, args: list[str], env=None, hide=lambda line: False) -> Child:
        child = Child(name, args, env=env or os.environ, cwd=settings.BASE_DIR, write=self._write, hide=hide)
        self.children.append(child)
        return child

    def _start(self) -> None:
        host, ports = self.host, self.ports
        python = sys.executable

        self._begin(f"moto server (DynamoDB and SES) on {self.moto_url}")
        moto = self._child(
            "moto", [python, "-m", "moto.server", "-H", host, "-p", str(ports["moto"])], hide=moto_access_log
        )
        wait_until_answering(f"{self.moto_url}/moto-api/data.json", moto, timeout=60)
        self._done()

        self._begin("SES: verify the sender (SES refuses mail from unverified addresses)")
        address = ses_sender_verify(endpoint_url=self.moto_url, from_email=settings.DEFAULT_FROM_EMAIL)
        self._done(address)

        self._begin(f"database migrations ({connection.vendor}: {connection.settings_dict['NAME']})")
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            call_command("migrate", interactive=False, verbosity=1, stdout=sys.stdout)
        self._done(f"{len(pending)} applied" if pending else "up to date")

        self._begin(f"DynamoDB mirror table {settings.MIRROR_TABLE}")
        call_command("create_mirror_table", stdout=StringIO())
        self._done()

        self._begin("demo data: staff login, demo product, demo customer (a new secret at every start)")
        demo = demo_seed()
        self._done()

        self._begin("mirror: every item rewritten from the database (moto starts empty at every run)")
        call_command("sync_mirror", stdout=sys.stdout)
        self._done()

        # The stage's access log; its failed calls go to the refunds as CloudWatch Logs would send them.
        self.access_log = Path(tempfile.mkdtemp(prefix="creditportal-")) / "api-access.log"
        self.subscription = AccessLogSubscription(self.access_log, log_group=f"/creditportal/{STAGE}/api-access")
        self._begin(f"Django on {self.django_url}, API Gateway stand-in on {self.gateway_url}")
        runserver = [python, "manage.py", "runserver", f"{host}:{ports['Django']}"]
        django = self._child(
            "django", runserver + (["--noreload"] if self.options["noreload"] else []), hide=botocore_found
        )
        gateway = self._child(
            "gateway",
            [
                python,
                "-m",
                "local.gateway",
                "--host",
                host,
                "--port",
                str(ports["gateway"]),
                "--api-id",
                PRODUCT_API_ID,
                "--stage",
                STAGE,
                "--access-log",
                str(self.access_log),
            ],
            env=gateway_environ(os.environ, authorizer_settings()),
        )
        wait_until_answering(f"{self.django_url}/api/health/", django, timeout=90)
        wait_until_listening(host, ports["gateway"], gateway, timeout=60)
        self._done()
        self._banner(demo)

    def _banner(self, demo: Demo) -> None:
        every = self.options["sync_every"]
        webhook_secret = settings.ZAPIER_WEBHOOK_SECRET
        if webhook_secret != "dev-only-zapier-secret":
            webhook_secret = "(your ZAPIER_WEBHOOK_SECRET)"
        rule = "=" * 100
        lines = [
            rule,
            "CreditPortal is running locally. Ctrl-C stops everything. Walkthrough: docs/walkthrough.md.",
            "",
            f"  portal    {self.django_url}/account/   demo customer {demo.customer_email} / {demo.customer_password}",
            f"  admin     {self.django_url}/admin/     demo staff {demo.staff_email} / {demo.staff_password}",
            f"  API       {self.django_url}/api/token/  /api/balance/  /api/purchases/zapier/ (Bearer {webhook_secret})",
            f"  gateway   {self.gateway_url}/{STAGE}/hello   API Gateway stand-in -> authorizer -> {demo.product.slug}",
            f"            {self.gateway_url}/{STAGE}/fail    charged, then 500: credited back within a second",
            f"  log       {self.access_log}   the stage's access log (JSON lines)",
            f"  moto      {self.moto_url}   DynamoDB table {settings.MIRROR_TABLE}, SES (read the mail: make mailbox)",
            f"  usage     sync_usage every {every:g} s (production: every minute)"
            if every
            else "  usage     not synced",
            "",
            f"  demo customer {demo.customer_id}, {demo.product.slug} credentials (the secret is new at every start):",
            f"    client id      {demo.client_id}",
            f"    client secret  {demo.secret}",
            rule,
        ]
        with self._lock:
            for line in lines:
                self.stdout.write(line)
            self.stdout.flush()

    def _watch(self) -> None:
        """Run sync_usage every --sync-every seconds, the failed calls' refunds every second; stop when a part exits."""
        every = self.options["sync_every"]
        next_sync = time.monotonic() + every
        next_refunds = time.monotonic()
        while True:
            for child in self.children:
                if child.exit_code is not None:
                    raise RuntimeError(f"{child.name} exited with code {child.exit_code} (its output is above)")
            if every and time.monotonic() >= next_sync:
                self._sync()
                next_sync = time.monotonic() + every
            if time.monotonic() >= next_refunds:
                self._refunds()
                next_refunds = time.monotonic() + 1
            time.sleep(0.2)

    def _refunds(self) -> None:
        """The access log's new failed calls, to the Lambda's entry point (local/subscription.py)."""
        try:
            results = self.subscription.poll()
        except Exception as e:  # noqa: BLE001 - reported; the lines are not read again (CloudWatch would retry)
            self._write("refunds", f"failed: {e}")
            return
        for r in results:
            skipped = f", skipped {r['skipped']} {r['skip_reasons']}" if r["skipped"] else ""
            self._write(
                "refunds",
                f"{r['refunded']} failed call(s) credited back ({r['credits']} credits), "
                f"{r['already_refunded']} already{skipped}",
            )

    def _sync(self) -> None:
        out = StringIO()
        try:
            call_command("sync_usage", verbosity=0, stdout=out, stderr=out)
        except Exception as e:  # noqa: BLE001 - a failed run is reported; the next one tries again
            out.write(f"sync_usage failed: {e}\n")
        for line in out.getvalue().splitlines():
            if line.strip() and not NOTHING_RECORDED.search(line):
                self._write("sync", line)
