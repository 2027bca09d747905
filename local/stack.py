"""Pieces of `manage.py runstack` (local/management/commands/runstack.py): the stack's
environment, its child processes, and waiting for them. Development only."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

DEFAULT_PORT = 8000  # Django
DEFAULT_GATEWAY_PORT = 8010  # the API Gateway stand-in
DEFAULT_MOTO_PORT = 5005  # moto: DynamoDB and SES
REGION = "us-east-1"
STACK_ENV_MARKER = "CREDITPORTAL_STACK"  # set once runstack runs in the stack's environment

# Variables that could send the stack's AWS calls elsewhere than its moto server,
# or with someone's real credentials: never passed on.
_AWS_DROPPED = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SES",
    "AWS_SES_REGION_NAME",
    "AWS_SES_REGION_ENDPOINT",
    "AWS_SES_REGION_ENDPOINT_URL",
    "MIRROR_ENDPOINT_URL",
)


def stack_environ(base: Mapping[str, str], *, moto_url: str, portal_url: str) -> dict[str, str]:
    """The environment of the stack (runstack itself and every part it starts).

    Every AWS call goes to the moto server with dummy credentials; Django writes the
    mirror and sends email through django-ses, both to moto; DEBUG stays on (development
    keys and secrets). PORTAL_BASE_URL (links in emails) follows the port unless set.
    """
    env = {name: value for name, value in base.items() if name not in _AWS_DROPPED}
    env.update(
        {
            STACK_ENV_MARKER: "1",
            "DJANGO_DEBUG": "1",
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_ACCESS_KEY_ID": "local",  # moto takes any; real credentials are never needed
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "MIRROR_ENABLED": "1",
            "EMAIL_BACKEND": "creditportal.mail.SESBackend",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.setdefault("PORTAL_BASE_URL", portal_url)
    return env


# What the authorizer's Lambda has in its environment besides its own settings; nothing of Django's.
_LAMBDA_LIKE = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "PYTHONUNBUFFERED", "VIRTUAL_ENV")


def gateway_environ(base: Mapping[str, str], authorizer_settings: Mapping[str, str]) -> dict[str, str]:
    """The stand-in's environment: like the authorizer's Lambda, its settings and AWS's, no Django secrets."""
    env = {
        name: value for name, value in base.items() if name in _LAMBDA_LIKE or name.startswith(("AWS_", "AUTHORIZER_"))
    }
    return env | dict(authorizer_settings)


def authorizer_settings() -> dict[str, str]:
    """The authorizer's Lambda settings for this Django, as deploy/template.yaml gives them:
    the mirror table, and Django's token public keys (never the private one), algorithm, issuer, audience."""
    from cryptography.hazmat.primitives import serialization
    from django.conf import settings

    from accounts import keys

    keyring = keys.keyring()
    public = "".join(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        for key in keyring.public_keys.values()
    )
    conf = settings.JWT
    return {
        "MIRROR_TABLE": settings.MIRROR_TABLE,
        "JWT_PUBLIC_KEY": public,
        "JWT_ALGORITHM": keyring.algorithm,
        "JWT_ISSUER": conf["ISSUER"],
        "JWT_AUDIENCE": conf["AUDIENCE"],
        "JWT_LEEWAY": str(conf["LEEWAY"]),
    }


def port_busy(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours (werkzeug colours its log even into a pipe)
# werkzeug's access log line (moto logs every request): shown only for server errors.
_ACCESS_LOG = re.compile(r'"[A-Z]+ \S* HTTP/[\d.]+" [1-4]\d\d ')
# botocore saying, once per process, that it found what the stack gave it.
_BOTOCORE_FOUND = re.compile(r"botocore\.(credentials|configprovider): Found ")


def moto_access_log(line: str) -> bool:
    return bool(_ACCESS_LOG.search(line))


def botocore_found(line: str) -> bool:
    return bool(_BOTOCORE_FOUND.search(line))


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies waiting for a reaper do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            return True
    return False


class Child:
    """A part of the stack in its own process group (so Ctrl-C reaches the supervisor only,
    which then stops each group, grandchildren included: runserver's autoreloader has one).
    Its output is printed line by line with its name in front."""

    def __init__(
        self,
        name: str,
        args: list[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        write: Callable[[str, str], None],
        hide: Callable[[str], bool] = lambda line: False,
    ) -> None:
        self.name = name
        self.process = subprocess.Popen(
            args,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, args=(write, hide), daemon=True)
        self._reader.start()

    def _read(self, write: Callable[[str, str], None], hide: Callable[[str], bool]) -> None:
        for line in self.process.stdout:
            line = _ANSI.sub("", line.rstrip("\n"))
            if line and not hide(line):
                write(self.name, line)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def exit_code(self) -> int | None:
        return self.process.poll()

    def stop(self, timeout: float = 5) -> None:
        """SIGTERM to the whole group; SIGKILL to what is left after `timeout` seconds."""
        pgid = self.process.pid  # a session leader: its pid is the group's id
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            if self._group_ended(pgid, timeout):
                break
        self.process.wait()
        self._reader.join(timeout=2)

    def _group_ended(self, pgid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None and not _group_alive(pgid):
                return True
            time.sleep(0.05)
        return False


def wait_until_answering(url: str, child: Child, *, timeout: float) -> None:
    """Wait until `url` gives any HTTP answer. RuntimeError if the child exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if child.exit_code is not None:
            raise RuntimeError(f"{child.name} exited with code {child.exit_code} (its output is above)")
        try:
            with urlopen(url, timeout=2):
                return
        except HTTPError:
            return  # it answers
        except (URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} did not answer at {url} within {timeout:.0f} s")
        time.sleep(0.2)


def wait_until_listening(host: str, port: int, child: Child, *, timeout: float) -> None:
    """Wait until something accepts connections on host:port. RuntimeError if the child exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if child.exit_code is not None:
            raise RuntimeError(f"{child.name} exited with code {child.exit_code} (its output is above)")
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} is not listening on {host}:{port} after {timeout:.0f} s")
        time.sleep(0.2)


def ses_sender_verify(*, endpoint_url: str, from_email: str) -> str:
    """Verify DEFAULT_FROM_EMAIL's address in the moto server's SES (SES refuses unverified senders)."""
    from email.utils import parseaddr

    import boto3

    address = parseaddr(from_email)[1]
    ses = boto3.client("ses", region_name=REGION, endpoint_url=endpoint_url)
    ses.verify_email_identity(EmailAddress=address)
    return address
