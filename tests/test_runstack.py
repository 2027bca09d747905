"""manage.py runstack, the supervisor behind `make run`, run as a newcomer runs it: a process
of its own (on free ports, against the test database), then used over HTTP and stopped with
Ctrl-C's signal. Nothing it started may outlive it."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from local.demo import CUSTOMER_REMAINING, DAILY_USAGE
from tests.conftest import _free_port

ROOT = Path(__file__).resolve().parent.parent


def _children_by_parent() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def descendants(pid: int) -> set[int]:
    tree, found, todo = _children_by_parent(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


class Stack:
    def __init__(self, env: dict, ports: dict[str, int]):
        self.ports = ports
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "runstack",
                "--sync-every",
                "1",
                "--port",
                str(ports["django"]),
                "--gateway-port",
                str(ports["gateway"]),
                "--moto-port",
                str(ports["moto"]),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 180) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output, re.MULTILINE)
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in runstack's output:\n{self.output}")

    def url(self, part: str) -> str:
        return f"http://127.0.0.1:{self.ports[part]}"


@pytest.fixture
def stack_env(transactional_db, tmp_path) -> dict:
    """runstack's environment: the test database (migrated already), development keys in a temp folder."""
    from django.db import connection

    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DJANGO_DEBUG": "1",
        "JWT_DEV_KEY_DIR": str(tmp_path / "dev-jwt"),
    }
    env.pop("PORTAL_BASE_URL", None)
    return env


@pytest.fixture
def stack(stack_env):
    stack = Stack(stack_env, {"django": _free_port(), "gateway": _free_port(), "moto": _free_port()})
    yield stack
    if stack.process.poll() is None:  # the test failed half-way: stop it all the same
        family = descendants(stack.process.pid)
        stack.process.send_signal(signal.SIGINT)
        try:
            stack.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stack.process.kill()
        for pid in family:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_it_runs_every_part_serves_a_call_through_the_gateway_syncs_it_and_stops_them_all(stack):
    client_id = stack.wait_for(r"^\s+client id\s+(cli_\w+)$")[1]
    secret = stack.wait_for(r"^\s+client secret\s+(\S+)$")[1]
    for where in (f"{stack.url('django')}/account/", f"{stack.url('gateway')}/local/hello"):
        assert where in stack.output  # the banner says where each part listens

    assert requests.get(f"{stack.url('django')}/api/health/", timeout=10).json() == {"status": "ok"}
    issued = requests.post(
        f"{stack.url('django')}/api/token/",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        timeout=30,
    )
    assert issued.status_code == 200, issued.text
    auth = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    called = requests.get(f"{stack.url('gateway')}/local/hello", headers=auth, timeout=30)
    assert called.status_code == 200, called.text
    assert called.json()["product"] == "demo-api"
    assert called.json()["remaining"] == str(CUSTOMER_REMAINING - 1)  # what the demo left, less this call
    # The failing route: charged, then 500; its access-log line reaches the refunds within seconds.
    failed = requests.get(f"{stack.url('gateway')}/local/fail", headers=auth, timeout=30)
    assert (failed.status_code, failed.json()) == (500, {"message": "Internal server error"})
    stack.wait_for(r"refunds \| 1 failed call\(s\) credited back \(1 credits\), 0 already$", timeout=15)
    again = requests.get(f"{stack.url('gateway')}/local/hello", headers=auth, timeout=30)
    assert again.json()["remaining"] == str(CUSTOMER_REMAINING - 2)  # the failed call's credit is spendable again

    deadline, balance = time.monotonic() + 30, {}
    while time.monotonic() < deadline and balance.get("used") != sum(DAILY_USAGE) + 3:  # sync_usage: every second
        [balance] = requests.get(f"{stack.url('django')}/api/balance/", headers=auth, timeout=30).json()["balances"]
        time.sleep(0.5)
    # The demo's two weeks and these three calls; the failed one credited back.
    assert (balance["used"], balance["credited_back_calls"], balance["remaining"]) == (
        sum(DAILY_USAGE) + 3,
        1,
        CUSTOMER_REMAINING - 2,
    )
    stack.wait_for(r"sync \| .*credit\(s\) of usage recorded")

    family = descendants(stack.process.pid)
    assert len(family) >= 4  # moto, the gateway, runserver and its autoreloaded child
    stack.process.send_signal(signal.SIGINT)  # what Ctrl-C sends it
    assert stack.process.wait(timeout=60) == 0
    stack.wait_for(r"stack \| all stopped")
    assert [pid for pid in family if running(pid)] == []


def test_it_refuses_to_start_on_a_port_in_use_and_says_which(stack_env):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "runstack",
                "--gateway-port",
                str(port),
                "--port",
                str(_free_port()),
                "--moto-port",
                str(_free_port()),
            ],
            cwd=ROOT,
            env=stack_env,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert f"port(s) in use on 127.0.0.1: gateway {port}" in result.stderr
    assert "moto server" not in result.stdout  # nothing was started


def test_the_stacks_environment_sends_every_aws_call_to_moto_with_dummy_credentials():
    from local.stack import stack_environ

    mine = {
        "PATH": "/usr/bin",
        "AWS_PROFILE": "production",
        "AWS_ACCESS_KEY_ID": "AKIAREALKEY",
        "AWS_SECRET_ACCESS_KEY": "real",
        "AWS_SESSION_TOKEN": "real",
        "AWS_SES_REGION_ENDPOINT": "email.eu-west-1.amazonaws.com",
        "AWS_ENDPOINT_URL_DYNAMODB": "https://dynamodb.eu-west-1.amazonaws.com",
        "MIRROR_ENABLED": "0",
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
    }

    env = stack_environ(mine, moto_url="http://127.0.0.1:5005", portal_url="http://127.0.0.1:8000")

    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5005"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("local", "local")
    assert not {"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SES_REGION_ENDPOINT", "AWS_ENDPOINT_URL_DYNAMODB"} & set(env)
    assert (env["MIRROR_ENABLED"], env["EMAIL_BACKEND"], env["DJANGO_DEBUG"]) == (
        "1",
        "creditportal.mail.SESBackend",
        "1",
    )
    assert env["PORTAL_BASE_URL"] == "http://127.0.0.1:8000"
    assert env["PATH"] == "/usr/bin"


def test_the_gateway_gets_the_authorizers_settings_and_no_django_secret(settings, jwt_keys):
    from local.stack import authorizer_settings, gateway_environ

    mine = {
        "PATH": "/usr/bin",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5005",
        "DATABASE_URL": "postgres://secret@db/creditportal",
        "DJANGO_SECRET_KEY": "s",
        "CREDENTIAL_HASH_KEY": "h",
        "ZAPIER_WEBHOOK_SECRET": "z",
        "JWT_PRIVATE_KEY": jwt_keys.private_pem,
    }

    env = gateway_environ(mine, authorizer_settings())

    assert set(env) == {
        "PATH", "AWS_ENDPOINT_URL",
        "MIRROR_TABLE", "JWT_PUBLIC_KEY", "JWT_ALGORITHM", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_LEEWAY",
    }  # fmt: skip
    assert env["JWT_PUBLIC_KEY"].strip() == jwt_keys.public_pem.strip()
    assert (env["JWT_ALGORITHM"], env["JWT_ISSUER"], env["JWT_AUDIENCE"]) == (
        jwt_keys.algorithm,
        jwt_keys.issuer,
        jwt_keys.audience,
    )
    assert env["MIRROR_TABLE"] == settings.MIRROR_TABLE
