"""The SnapStart hooks, registered with AWS's own snapshot_restore_py and run the way Lambda's runtime runs them."""

import random
import subprocess
import sys
from pathlib import Path

import pytest
import snapshot_restore_py

from authorizer import snapstart
from tests.authorizer.support import load_event, mint

ROOT = Path(__file__).resolve().parents[2]


def snapshot_then_restore() -> None:
    """What Lambda does around a snapshot: before-snapshot hooks in reverse order of registration, after-restore in order."""
    for func, args, kwargs in reversed(snapshot_restore_py.get_before_snapshot()):
        func(*args, **kwargs)
    for func, args, kwargs in snapshot_restore_py.get_after_restore():
        func(*args, **kwargs)


def test_the_handler_registers_its_hooks_with_the_runtimes_library():
    import authorizer.handler  # registration happens at import

    assert (snapstart.prime, (authorizer.handler.runtime,), {}) in snapshot_restore_py.get_before_snapshot()
    assert (snapstart.restored, (), {}) in snapshot_restore_py.get_after_restore()


def test_priming_sends_one_read_and_a_restored_gate_decides_as_before(authorizer, alice_weather, requests_sent):
    snapshot_then_restore()
    assert requests_sent == ["GetItem"]  # the priming read, of a route no API has

    answer = authorizer.lambda_handler(
        load_event(
            "rest_request",
            token=mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="weather"),
            api_id="wthr000001",
        ),
        None,
    )

    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert answer["context"]["remaining"] == 9
    # The route was not cached by the priming read: the decision read it, then spent once.
    assert requests_sent == ["GetItem", "GetItem", "UpdateItem"]
    assert alice_weather.used("cus_alice", "weather") == 1


def test_priming_a_gate_whose_dynamodb_is_unreachable_still_lets_the_snapshot_be_taken(authorizer, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    authorizer.reset()
    snapstart.prime(authorizer.runtime)  # logs a warning, raises nothing


def test_after_a_restore_random_draws_differ_from_the_snapshots():
    random.seed(1234)
    in_the_snapshot = random.getstate()
    snapstart.restored()
    assert random.getstate() != in_the_snapshot


def test_without_the_runtimes_library_the_handler_loads_and_registers_nothing():
    code = "import sys; sys.modules['snapshot_restore_py'] = None; from authorizer import snapstart; print(snapstart.register(lambda: None))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("api_id", [snapstart.PRIME_API_ID])
def test_the_priming_route_is_no_api_gateway_id(api_id):
    # API Gateway ids are ten lower-case letters and digits: no real route item can have this key.
    assert not (len(api_id) == 10 and api_id.isalnum())
