"""The gate's credentials as Lambda gives them with SnapStart: from the container credentials endpoint.

With SnapStart, Lambda sets AWS_CONTAINER_CREDENTIALS_FULL_URI and
AWS_CONTAINER_AUTHORIZATION_TOKEN instead of the AWS_ACCESS_KEY_ID variables
(docs/deploy.md). The gate's trimmed botocore client (authorizer/dynamodb.py, the
deferred modules of authorizer/deferred.py) must still take botocore's credential
chain all the way there: a fresh interpreter, no key in its environment, one cold
decision against moto through a door that records how each request was signed.
"""

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.authorizer.lossy_door import LossyDoor
from tests.authorizer.support import gate_environ, load_event, mint

ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY = "ASIACONTAINERKEY0001"
AUTH_TOKEN = "container-token-1"


class Recorder:
    """A loopback HTTP server whose GET handler is `answer(handler)`; it keeps the requests' headers."""

    def __init__(self, answer):
        self.headers: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                recorder.headers.append(dict(self.headers))
                answer(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def container_credentials():
    """Lambda's container credentials endpoint: role credentials for the bearer of AUTH_TOKEN, an hour long."""

    def answer(handler):
        if handler.headers.get("Authorization") != AUTH_TOKEN:
            _send(handler, 401, b'{"message": "wrong token"}', "application/json")
            return
        expiration = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"AccessKeyId": ACCESS_KEY, "SecretAccessKey": "secret", "Token": "session", "Expiration": expiration}
        _send(handler, 200, json.dumps(body).encode(), "application/json")

    recorder = Recorder(answer)
    yield recorder
    recorder.close()


@pytest.fixture
def signed_door(aws):
    """A door in front of the moto server that forwards every request and keeps its headers."""
    door = LossyDoor(aws)
    yield door
    door.close()


def test_a_cold_decision_signs_with_the_container_endpoints_credentials(
    alice_weather, container_credentials, signed_door
):
    event = load_event(
        "rest_request", token=mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="weather"), api_id="wthr000001"
    )
    code = f"""
import json
from authorizer.handler import lambda_handler
answer = lambda_handler({event!r}, None)
print(json.dumps(answer["policyDocument"]["Statement"][0]["Effect"]))
"""
    environment = gate_environ() | {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",  # no ~/.aws to fall back on
        "AWS_REGION": "us-east-1",
        "MIRROR_TABLE": alice_weather.table,
        "AWS_ENDPOINT_URL": signed_door.url,
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{container_credentials.url}/2018-06-01/credentials",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": AUTH_TOKEN,
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, check=False
    )

    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == "Allow"
    assert [h.get("Authorization") for h in container_credentials.headers] == [AUTH_TOKEN]
    signatures = [h.get("Authorization", "") for h in signed_door.headers]
    assert signatures, "the decision sent nothing to DynamoDB"
    assert all(s.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/") for s in signatures), signatures
    assert {h.get("X-Amz-Security-Token") for h in signed_door.headers} == {"session"}
    assert alice_weather.used("cus_alice", "weather") == 1


def test_without_any_credentials_the_call_is_denied_and_nothing_spent(alice_weather, signed_door):
    """No key, no container endpoint, no profile: the gate cannot sign, so it denies, and DynamoDB sees nothing."""
    event = load_event(
        "rest_request", token=mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="weather"), api_id="wthr000001"
    )
    code = f"""
import json
from authorizer.handler import lambda_handler
answer = lambda_handler({event!r}, None)
print(json.dumps([answer["policyDocument"]["Statement"][0]["Effect"], answer.get("context", {{}}).get("reason")]))
"""
    environment = gate_environ() | {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "AWS_REGION": "us-east-1",
        "MIRROR_TABLE": alice_weather.table,
        "AWS_ENDPOINT_URL": signed_door.url,
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance metadata service to wait for
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, check=False
    )

    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == ["Deny", "internal_error"]
    assert "NoCredentialsError" in out.stderr  # the log says why
    assert signed_door.headers == []
    assert alice_weather.used("cus_alice", "weather") == 0
