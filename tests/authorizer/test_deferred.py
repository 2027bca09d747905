"""What the handler's cold start leaves unloaded, and that it still loads, as itself, when used.

Each check runs in a fresh interpreter: this test process has botocore and
cryptography loaded already (the fixtures, moto, PyJWT).
"""

import json
import subprocess
import sys
from pathlib import Path

from authorizer import deferred
from tests.authorizer.support import gate_environ, load_event, mint

ROOT = Path(__file__).resolve().parents[2]
NEVER_AT_COLD_START = [
    "botocore.docs.service",  # botocore.docs' own __init__
    "botocore.docs.bcdoc.restdoc",  # what botocore.docs.docstring imports
    "botocore.docs.method",
    "cryptography.hazmat.primitives.serialization.ssh",
    "boto3",
    "django",
]


def run(code: str, stdin: str = "", **env) -> dict:
    """`code` in a fresh interpreter with the authorizer's environment; it prints a JSON report last.

    In a session of its own: no controlling terminal, so a prompt reads `stdin`.
    """
    environment = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    environment |= {"AWS_REGION": "us-east-1", "MIRROR_TABLE": "t", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    environment |= gate_environ() | env
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        start_new_session=True,
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
import botocore.session, importlib.metadata, dateutil.parser
from authorizer import deferred
deferred.defer_heavy_imports()
print(json.dumps({"deferred": [deferred.is_deferred(n) for n in ("botocore.docs", "importlib.metadata", "dateutil.parser")],
                  "missing": deferred.defer_module("botocore.no_such_module")}))
"""
    assert run(code) == {"deferred": [False, False, False], "missing": None}


DEFERRED_AT_COLD_START = (
    *deferred.OTHER_PATHS,
    "importlib.metadata",
    "dateutil.parser",
    "subprocess",
    "getpass",
    *deferred.MADE_THROUGH,
)


def test_a_cold_decision_leaves_the_deferred_modules_unrun(alice_weather, aws):
    """The whole cold path against moto: import, one Allow (one credit spent), and neither module ran."""
    event = load_event(
        "rest_request", token=mint(sub="cus_alice", client_id="cli_alice", ver=1, scope="weather"), api_id="wthr000001"
    )
    code = f"""
import json, sys
from authorizer import deferred
from authorizer.handler import lambda_handler
answer = lambda_handler({event!r}, None)
print(json.dumps({{"effect": answer["policyDocument"]["Statement"][0]["Effect"],
                  "deferred": [deferred.is_deferred(n) for n in {DEFERRED_AT_COLD_START!r}],
                  "loaded": sorted(m for m in ("csv", "dateutil.parser._parser", "dateutil.tz.tz", "six") if m in sys.modules)}}))
"""
    assert run(code, AWS_ENDPOINT_URL=aws, MIRROR_TABLE=alice_weather.table) == {
        "effect": "Allow",
        "deferred": [True] * len(DEFERRED_AT_COLD_START),
        "loaded": [],
    }
    assert alice_weather.used("cus_alice", "weather") == 1


def test_an_https_endpoints_ca_bundle_is_certifis_and_leaves_zipfile_unrun():
    """On Lambda the endpoint is HTTPS: botocore asks certifi's where() for the CA bundle when it first sends."""
    code = """
import json, sys
import authorizer.handler
from authorizer import deferred
import botocore.httpsession
path = botocore.httpsession.get_cert_path(True)
print(json.dumps({"path": path, "zipfile": deferred.is_deferred("zipfile"),
                  "loaded": sorted(m for m in ("bz2", "lzma") if m in sys.modules)}))
"""
    import certifi

    assert run(code) == {"path": certifi.where(), "zipfile": True, "loaded": []}


def test_the_functions_taken_from_deferred_modules_run_the_modules_own():
    code = """
import json, sys, datetime
import authorizer.handler
import botocore, urllib3.http2, botocore.credentials, botocore.utils
from importlib.metadata import version
import dateutil.parser
print(json.dumps({
    "urllib3": urllib3.http2.version("botocore"), "importlib": version("botocore"), "botocore": botocore.__version__,
    "real": sys.modules["importlib.metadata"].version.__module__, "parse": botocore.credentials.parse("2030-01-02T03:04:05Z").isoformat(),
    "timestamp": botocore.utils.parse_timestamp("Wed, 02 Jan 2030 03:04:05 GMT").isoformat(),
    "parser": dateutil.parser.parse.__module__,
    "locale": __import__("locale").normalize("en_US"), "calendar": __import__("calendar").month_name[1],
}))
"""
    report = run(code)
    assert report["urllib3"] == report["importlib"] == report["botocore"]
    assert report["real"] == "importlib.metadata"
    assert report["parse"] == "2030-01-02T03:04:05+00:00"
    assert report["timestamp"] == "2030-01-02T03:04:05+00:00"
    assert report["parser"] == "dateutil.parser._parser"
    assert (report["locale"], report["calendar"]) == ("en_US.ISO8859-1", "January")


def test_the_classes_taken_from_deferred_modules_are_the_modules_own_when_used():
    """dateutil.tz's tzutc and tzlocal as botocore took them: instances, isinstance, a subclass, a star import."""
    code = """
import json, sys, datetime
import authorizer.handler
from authorizer import deferred
import botocore.credentials, botocore.utils, botocore.compat
before = deferred.is_deferred("dateutil.tz")
utc = botocore.utils.tzutc()  # runs dateutil.tz
real = sys.modules["dateutil.tz"]
class Local(botocore.credentials.tzlocal):
    pass
namespace = {}
exec("from dateutil.tz import *", namespace)
print(json.dumps({
    "before": before, "after": deferred.is_deferred("dateutil.tz"),
    "utc": type(utc).__module__ + "." + type(utc).__qualname__, "singleton": utc is real.tzutc() is real.UTC,
    "isinstance": [isinstance(utc, botocore.utils.tzutc), isinstance(utc, botocore.credentials.tzlocal)],
    "issubclass": issubclass(Local, botocore.compat.tzlocal), "base": Local.__mro__[1] is real.tzlocal,
    "now": botocore.credentials._local_now().tzinfo.__class__ is real.tzlocal,
    "names": [botocore.utils.tzutc.__name__, botocore.compat.get_tzinfo_options()[0].__name__],
    "star": sorted(set(real.__all__) - set(namespace)), "star tzutc": namespace["tzutc"] is real.tzutc,
}))
"""
    assert run(code) == {
        "before": True,
        "after": False,
        "utc": "dateutil.tz.tz.tzutc",
        "singleton": True,
        "isinstance": [True, False],
        "issubclass": True,
        "base": True,
        "now": True,
        "names": ["tzutc", "tzlocal"],
        "star": [],
        "star tzutc": True,
    }


def test_a_star_import_from_a_deferred_module_runs_it_and_copies_what_it_exports():
    code = """
import json
from authorizer import deferred
deferred.defer_module("textwrap")
namespace = {}
exec("from textwrap import *", namespace)
import textwrap
print(json.dumps({"copied": sorted(n for n in textwrap.__all__ if n in namespace), "all": sorted(textwrap.__all__),
                  "deferred": deferred.is_deferred("textwrap")}))
"""
    report = run(code)
    assert report["copied"] == report["all"] and "dedent" in report["all"]
    assert report["deferred"] is False


def test_botocores_callers_of_the_modules_deferred_later_run_them_as_themselves():
    """jmespath, shlex, shutil, subprocess and getpass: each used through botocore runs the real module."""
    code = """
import json, sys, warnings
import authorizer.handler
from authorizer import deferred
import botocore.compat, botocore.credentials, botocore.regions, tempfile
before = [deferred.is_deferred(n) for n in ("jmespath", "shlex", "shutil", "subprocess", "getpass")]
search = botocore.regions.jmespath.search("keys(RequestItems)", {"RequestItems": {"t": 1}})
split = botocore.compat.compat_shell_split("a 'b c'")
folder = tempfile.TemporaryDirectory()
folder.cleanup()  # shutil.rmtree
command = "/bin/echo '{\\"Version\\": 1, \\"AccessKeyId\\": \\"AK\\", \\"SecretAccessKey\\": \\"SK\\"}'"
process = botocore.credentials.ProcessProvider("default", lambda: {"profiles": {"default": {"credential_process": command}}})
ran = process.load().access_key  # split by shlex, run by subprocess.Popen
prompter = botocore.credentials.AssumeRoleProvider.__init__.__defaults__[0]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # getpass warns that it cannot hide the input
    answer = prompter("code: ")
print(json.dumps({"before": before, "search": search, "split": split, "ran": ran, "answer": answer,
                  "after": [deferred.is_deferred(n) for n in ("jmespath", "shlex", "shutil", "subprocess", "getpass")],
                  "popen": sys.modules["subprocess"].Popen.__module__, "getpass": sys.modules["getpass"].getpass.__module__}))
"""
    assert run(code, stdin="123456\n") == {
        "before": [True] * 5,
        "search": ["t"],
        "split": ["a", "b c"],
        "ran": "AK",
        "answer": "123456",
        "after": [False] * 5,
        "popen": "subprocess",
        "getpass": "getpass",
    }


def test_botocore_reads_an_aws_config_file_through_the_deferred_configparser(tmp_path):
    config = tmp_path / "config"
    config.write_text("[default]\nmax_attempts = 7\n")
    code = """
import json, sys
from authorizer import deferred
deferred.defer_heavy_imports()  # as the handler does first
before = deferred.is_deferred("configparser")
import botocore.session
print(json.dumps({"before": before, "attempts": botocore.session.Session().get_config_variable("max_attempts")}))
"""
    assert run(code, AWS_CONFIG_FILE=str(config)) == {"before": True, "attempts": 7}


def test_a_module_with_a_getattr_of_its_own_runs_once_and_one_its_parent_imports_is_not_deferred():
    """urllib.parse defines a module `__getattr__`; urllib3's package imports urllib3.util.timeout itself."""
    code = """
import json, sys
from authorizer import deferred
registered = deferred.defer_module("urllib.parse") is not None
before = deferred.is_deferred("urllib.parse")
from urllib.parse import urlsplit
split = urlsplit
sys.modules["urllib.parse"]._run_deferred()  # again: nothing runs twice
print(json.dumps({"registered": registered, "before": before, "after": deferred.is_deferred("urllib.parse"),
                  "same": sys.modules["urllib.parse"].urlsplit is split, "host": split("http://h:1/x").hostname,
                  "timeout": deferred.defer_module("urllib3.util.timeout"),
                  "real": sys.modules["urllib3.util.timeout"].Timeout.__name__}))
"""
    assert run(code) == {
        "registered": True,
        "before": True,
        "after": False,
        "same": True,
        "host": "h",
        "timeout": None,
        "real": "Timeout",
    }


# A name each module of deferred.OTHER_PATHS defines, as the path that uses the module asks for it.
ASKED_FOR = {
    "locale": "normalize",
    "configparser": "RawConfigParser",
    "jmespath": "search",
    "shlex": "split",
    "shutil": "rmtree",
    "traceback": "format_exc",
    "linecache": "getline",
    "tokenize": "generate_tokens",
    "textwrap": "indent",
    "calendar": "timegm",
    "selectors": "DefaultSelector",
    "stringprep": "in_table_a1",
    "ntpath": "join",
    "importlib.machinery": "SourceFileLoader",
    "mimetypes": "guess_type",
    "zipfile": "ZipFile",
    "email.header": "Header",
    "xml.etree.ElementPath": "iterfind",
    "botocore.waiter": "Waiter",
    "botocore.retries.adaptive": "register_retry_handler",
    "botocore.retries.bucket": "TokenBucket",
    "botocore.retries.throttling": "CubicCalculator",
    "botocore.translate": "build_retry_config",
    "botocore.monitoring": "Monitor",
    "cryptography.hazmat.primitives.asymmetric.padding": "PKCS1v15",
    "cryptography.hazmat.primitives._serialization": "Encoding",
}


def test_the_modules_left_to_other_paths_run_as_themselves_when_those_paths_ask():
    assert set(ASKED_FOR) == set(deferred.OTHER_PATHS)
    code = f"""
import authorizer.handler
from authorizer import deferred
import importlib, io, json, logging
before = [deferred.is_deferred(n) for n in {list(ASKED_FOR)!r}]
found = [callable(getattr(importlib.import_module(n), a)) for n, a in {ASKED_FOR!r}.items()]
log = io.StringIO()
logger = logging.getLogger("a test")
logger.addHandler(logging.StreamHandler(log))
try:
    raise ValueError("a broken call")
except ValueError:
    logger.exception("denied")  # formats the traceback, reading this source's lines
import xml.etree.ElementTree as ET
print(json.dumps({{"before": before, "found": found, "after": [deferred.is_deferred(n) for n in {list(ASKED_FOR)!r}],
                  "log": log.getvalue(), "xml": ET.fromstring("<a><b>x</b></a>").find("b").text,
                  "idna": "bücher.example".encode("idna").decode()}}))
"""
    report = run(code)
    assert report["before"] == [True] * len(ASKED_FOR)
    assert report["found"] == [True] * len(ASKED_FOR)
    assert report["after"] == [False] * len(ASKED_FOR)
    assert "Traceback (most recent call last)" in report["log"] and "ValueError: a broken call" in report["log"]
    assert (report["xml"], report["idna"]) == ("x", "xn--bcher-kva.example")
