"""What the handler's cold start leaves unloaded, and that it still loads, as itself, when used.

Each check runs in a fresh interpreter: this test process has botocore and
cryptography loaded already (the fixtures, moto, PyJWT).
"""

import json
import subprocess
import sys
from pathlib import Path

from tests.authorizer.support import gate_environ

ROOT = Path(__file__).resolve().parents[2]
NEVER_AT_COLD_START = [
    "botocore.docs.service",  # botocore.docs' own __init__
    "botocore.docs.bcdoc.restdoc",  # what botocore.docs.docstring imports
    "botocore.docs.method",
    "cryptography.hazmat.primitives.serialization.ssh",
    "boto3",
    "django",
]


def run(code: str, **env) -> dict:
    """`code` in a fresh interpreter with the authorizer's environment; it prints a JSON report last."""
    environment = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    environment |= {"AWS_REGION": "us-east-1", "MIRROR_TABLE": "t", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    environment |= gate_environ() | env
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


LOADED = "sorted(m for m in sys.modules if any(m == n or m.startswith(n + '.') for n in NAMES))"


def test_the_handlers_import_leaves_the_docs_machinery_and_ssh_keys_unloaded():
    code = f"""
import json, sys
NAMES = {NEVER_AT_COLD_START!r}
import authorizer.handler as handler
assert handler.runtime().gate.client is not None
print(json.dumps({{"loaded": {LOADED}}}))
"""
    assert run(code)["loaded"] == []


def test_a_client_methods_docstring_still_renders_through_botocore_when_read():
    code = """
import json, sys
import authorizer.handler as handler
client = handler.runtime().gate.client
before = "botocore.docs.method" in sys.modules
text = client.update_item.__doc__.expandtabs()  # what help() reads
print(json.dumps({"before": before, "after": "botocore.docs.method" in sys.modules, "text": text, "str": str(client.get_item.__doc__)}))
"""
    report = run(code)
    assert (report["before"], report["after"]) == (False, True)
    assert "response = client.update_item(" in report["text"]
    assert "ReturnValuesOnConditionCheckFailure='ALL_OLD'|'NONE'" in report["text"]
    assert "response = client.get_item(" in report["str"]


def test_cryptographys_serialization_package_loads_whole_when_asked_for():
    code = """
import json, sys
import authorizer.handler
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_ssh_public_key, Encoding
print(json.dumps({"ssh": "cryptography.hazmat.primitives.serialization.ssh" in sys.modules,
                  "same": serialization.load_pem_public_key is sys.modules["cryptography.hazmat.primitives.serialization.base"].load_pem_public_key,
                  "ssh_loader": load_ssh_public_key.__module__, "encoding": Encoding.PEM is not None}))
"""
    assert run(code) == {
        "ssh": True,
        "same": True,
        "ssh_loader": "cryptography.hazmat.primitives.serialization.ssh",
        "encoding": True,
    }


def test_botocore_docs_package_runs_its_own_init_when_one_of_its_names_is_used():
    code = """
import json, sys
import authorizer.handler
import botocore.docs
print(json.dumps({"documenter": botocore.docs.ServiceDocumenter.__module__, "loaded": "botocore.docs.service" in sys.modules}))
"""
    assert run(code) == {"documenter": "botocore.docs.service", "loaded": True}


def test_nothing_is_deferred_once_botocore_is_loaded_or_when_a_module_is_missing():
    code = """
import json, sys
import botocore.session
from authorizer import deferred
deferred.defer_heavy_imports()
print(json.dumps({"docs": deferred.is_deferred("botocore.docs"), "missing": deferred.defer_module("botocore.no_such_module")}))
"""
    assert run(code) == {"docs": False, "missing": None}
