"""The two Lambda packages, built once per test session the way CI and `make`
build them: the authorizer's zip (deploy/build_authorizer.py) and the Django
app's Zappa package (deploy/build_zappa.py, no AWS). Slow: about 20 s of
building; deselect with `-m "not packaging"`.

Each package is unzipped and run by a fresh interpreter (`python -I`) that sees
only the package and, after it, what the Lambda runtime itself provides
(boto3, botocore and their dependencies), as /var/task and /var/runtime.
"""

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import boto3
import pytest
from packaging.utils import canonicalize_name

from deploy import build_zappa
from deploy.build_authorizer import BYTECODE_FOR, REQUIREMENTS
from deploy.lambda_platform import (
    AUTHORIZER,
    AUTHORIZER_ARCHITECTURES,
    DJANGO,
    ELF_MACHINES,
    MAX_GLIBC,
    PYTHON_VERSION,
    Platform,
    elf_machine,
    find_python,
    glibc_needed,
    link_runtime_libraries,
)
from tests.locks import read_lock

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
DEPLOY_PYTHON = ROOT / os.getenv("DEPLOY_VENV", ".venv-deploy") / "bin" / "python"
MAX_AUTHORIZER_ZIP = 5 * 1024 * 1024
DJANGO_SIDE = {"django", "rest_framework", "rest_framework_simplejwt", "accounts", "ledger", "creditportal"}


# What each build printed, by package ("authorizer-x86_64", "zappa"): the pip commands it ran among it.
BUILD_LOGS: dict[str, str] = {}


def build(command: list[str], name: str) -> str:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    BUILD_LOGS[name] = result.stdout
    return result.stdout


def pip_commands(log: str) -> list[list[str]]:
    return [line.split()[2:] for line in log.splitlines() if line.startswith("pip install ")]


def runtime_python(version: str = PYTHON_VERSION) -> str:
    """An interpreter of the Lambda runtime's version, to load the package's compiled modules."""
    found = find_python(version)
    if found is None:
        pytest.skip(f"no python{version} here to load the Lambda package's compiled modules")
    return found


def top_level_names(archive: zipfile.ZipFile) -> set[str]:
    names = set()
    for name in archive.namelist():
        first = name.split("/")[0]
        names.add(first.split(".")[0] if first.endswith((".py", ".so")) else first)
    return names


def wheel_glibc(tag_line: str, machine: str = "x86_64") -> tuple[int, int] | None:
    """The glibc a wheel platform tag asks for (a manylinux tag for `machine`); None for pure Python."""
    platform = tag_line.rsplit("-", 1)[1]
    if platform == "any":
        return None
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    if match := re.fullmatch(rf"(manylinux1|manylinux2010|manylinux2014)_{machine}", platform):
        return legacy[match[1]]
    if match := re.fullmatch(rf"manylinux_(\d+)_(\d+)_{machine}", platform):
        return int(match[1]), int(match[2])
    raise AssertionError(f"not a Lambda platform for {machine}: {tag_line}")


def assert_wheels_fit_lambda(archive: zipfile.ZipFile, platform: Platform = DJANGO) -> list[str]:
    """Every installed wheel is pure Python or a manylinux build for the platform's machine and CPython
    that asks for no newer glibc than the runtime has; returns the distributions checked."""
    checked = []
    for name in archive.namelist():
        if not name.endswith(".dist-info/WHEEL"):
            continue
        tags = [
            line.split(":", 1)[1].strip()
            for line in archive.read(name).decode().splitlines()
            if line.startswith("Tag:")
        ]
        assert tags, name
        for tag in tags:
            _, abi, _ = tag.split("-")
            assert abi in ("none", "abi3", platform.cpython_tag), f"{name}: {tag} is not for {platform}"
        needs = [glibc for glibc in (wheel_glibc(tag, platform.machine) for tag in tags) if glibc is not None]
        if needs:
            assert min(needs) <= platform.max_glibc, f"{name}: {tags} need a newer glibc than {platform.max_glibc}"
        checked.append(name.split("/")[0])
    return checked


@pytest.fixture(scope="session")
def lambda_runtime(tmp_path_factory) -> Path:
    """A stand-in for /var/runtime: links to this venv's boto3, botocore and their dependencies, nothing else."""
    return link_runtime_libraries(tmp_path_factory.mktemp("var-runtime"))


# --- The authorizer's zip ---------------------------------------------------


@pytest.fixture(scope="session")
def authorizer_zips(tmp_path_factory) -> dict[str, Path]:
    """The authorizer's zip for each architecture the template offers, for the default runtime."""
    zips = {}
    for architecture in AUTHORIZER_ARCHITECTURES:
        out = tmp_path_factory.mktemp(f"authorizer-zip-{architecture}")
        zips[architecture] = out / "creditportal-authorizer.zip"
        command = [sys.executable, "-m", "deploy.build_authorizer", "--architecture", architecture]
        build(
            [*command, "--output", str(zips[architecture]), "--work", str(out / "work")], f"authorizer-{architecture}"
        )
    return zips


@pytest.fixture(scope="session")
def authorizer_zip(authorizer_zips) -> Path:
    """The one `make authorizer-zip` builds: the template's default runtime and architecture (run here, below)."""
    return authorizer_zips[AUTHORIZER.architecture]


@pytest.fixture(scope="session")
def authorizer_unzipped(authorizer_zip, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("authorizer-task")
    with zipfile.ZipFile(authorizer_zip) as archive:
        archive.extractall(target)
    return target


@pytest.mark.parametrize("architecture", AUTHORIZER_ARCHITECTURES)
def test_the_authorizer_zip_is_at_most_5_mib_for_either_architecture(authorizer_zips, architecture):
    assert 1024 * 1024 < authorizer_zips[architecture].stat().st_size <= MAX_AUTHORIZER_ZIP


@pytest.mark.parametrize("architecture", AUTHORIZER_ARCHITECTURES)
def test_each_zips_compiled_code_is_built_for_its_architecture_and_runtime(authorizer_zips, architecture, tmp_path):
    platform = Platform(AUTHORIZER.python_version, architecture)
    with zipfile.ZipFile(authorizer_zips[architecture]) as archive:
        assert {d.split("-")[0] for d in assert_wheels_fit_lambda(archive, platform)} >= {"cryptography", "cffi"}
        archive.extractall(tmp_path)
    libraries = list(tmp_path.rglob("*.so*"))
    assert {elf_machine(path) for path in libraries} == {ELF_MACHINES[architecture]}
    assert any(path.name.startswith(f"_cffi_backend.cpython-{platform.cpython_tag[2:]}-") for path in libraries)
    assert (2, 0) < glibc_needed(libraries) <= platform.max_glibc


def test_it_holds_every_authorizer_module_but_the_tests(authorizer_zip):
    expected = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "authorizer").rglob("*.py")
        if "tests" not in path.relative_to(ROOT).parts and "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(authorizer_zip) as archive:
        names = archive.namelist()
    assert "authorizer/mirror.py" in expected
    # ... with its bytecode for the runtime's Python (Lambda cannot write it) ...
    tag = AUTHORIZER.cpython_tag.replace("cp", "cpython-")
    bytecode = {
        f"{module.rsplit('/', 1)[0]}/__pycache__/{module.rsplit('/', 1)[1][:-3]}.{tag}.pyc" for module in expected
    }
    # ... and the trimmed DynamoDB model and endpoint data its botocore client loads (authorizer/dynamodb.py),
    # and the regexes its import compiles, compiled ahead by the runtime's Python (authorizer/regexes.py).
    expected |= bytecode | {
        "authorizer/botocore_data/dynamodb/2012-08-10/service-2.json",
        "authorizer/botocore_data/endpoints.json",
        f"authorizer/__pycache__/regexes.{tag}.marshal",
    }
    assert {name for name in names if name.startswith("authorizer/")} == expected
    assert [name for name in names if "tests" in name.split("/")] == []
    # Bytecode only for the runtime's Python, and only of the packages the handler imports.
    compiled = {name.split("/")[0] for name in names if name.endswith(".pyc")}
    assert compiled == set(BYTECODE_FOR)
    assert all(name.endswith(f".{tag}.pyc") for name in names if name.endswith(".pyc"))


def test_it_holds_no_django_and_nothing_the_runtime_provides(authorizer_zip):
    with zipfile.ZipFile(authorizer_zip) as archive:
        names = top_level_names(archive)
    assert "cryptography" in names and "authorizer" in names
    assert names & DJANGO_SIDE == set()
    assert names & {"boto3", "botocore", "s3transfer"} == set()


def installed(distributions: list[str]) -> dict[str, str]:
    """{name: version} of `name-version.dist-info` folders."""
    return dict(canonical(d.removesuffix(".dist-info").rsplit("-", 1)) for d in distributions)


def canonical(pair: list[str]) -> tuple[str, str]:
    return canonicalize_name(pair[0]), pair[1]


@pytest.mark.parametrize("architecture", AUTHORIZER_ARCHITECTURES)
def test_it_holds_exactly_what_its_lock_pins_built_for_the_lambda_platform(authorizer_zips, architecture):
    _, locked = read_lock(REQUIREMENTS)
    with zipfile.ZipFile(authorizer_zips[architecture]) as archive:
        distributions = assert_wheels_fit_lambda(archive, Platform(AUTHORIZER.python_version, architecture))
    assert installed(distributions) == {name: entry.version for name, entry in locked.items()}
    assert {"cryptography", "cffi", "pycparser"} <= locked.keys()


def test_both_packages_install_their_locks_in_pips_hash_checking_mode(authorizer_zips, zappa_zip):
    """pip then refuses any wheel whose hash the lock does not list, and any distribution it does not pin."""
    lock = str(REQUIREMENTS)
    for architecture in AUTHORIZER_ARCHITECTURES:
        (command,) = pip_commands(BUILD_LOGS[f"authorizer-{architecture}"])
        assert "--require-hashes" in command and command[command.index("-r") + 1] == lock, command
    app, handler = pip_commands(BUILD_LOGS["zappa"])
    for command in (app, handler):
        assert "--require-hashes" in command and command[command.index("-c") + 1] == str(build_zappa.LOCK), command
    assert app[app.index("-r") + 1] == str(ROOT / "requirements.txt")
    assert handler[handler.index("-r") + 1] == str(ROOT / "requirements-deploy.txt") and "--no-deps" in handler


def test_the_zappa_package_holds_only_versions_its_lock_pins(zappa_zip):
    _, locked = read_lock(build_zappa.LOCK)
    with zipfile.ZipFile(zappa_zip) as archive:
        versions = installed(assert_wheels_fit_lambda(archive))
    assert {"django", "psycopg-binary", "zappa", "werkzeug"} <= versions.keys()
    assert {name: version for name, version in versions.items() if locked[name].version != version} == {}


def documented_authorizer_zip() -> tuple[set[str], set[str]]:
    """What docs/architecture.md's table says the authorizer's zip holds and does not hold (backticked names)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    header = "| the zip holds | it does not hold |"
    assert header in text, f"docs/architecture.md has no table {header!r} saying what the authorizer's zip holds"
    table = text.split(header, 1)[1].split("\n\n", 1)[0]
    holds, lacks = set(), set()
    for row in table.strip().splitlines()[1:]:
        _, left, right, _ = row.split("|")
        holds |= set(re.findall(r"`([^`]+)`", left))
        lacks |= set(re.findall(r"`([^`]+)`", right))
    return holds - {".dist-info"}, lacks


def test_the_architecture_page_says_what_the_authorizer_zip_holds(authorizer_zip):
    holds, lacks = documented_authorizer_zip()
    with zipfile.ZipFile(authorizer_zip) as archive:
        names = archive.namelist()
        top = {
            name.split(".dist-info")[0].rsplit("-", 1)[0] if ".dist-info" in name else name
            for name in top_level_names(archive)
        }

    assert top == {name.rstrip("/") for name in holds}  # every top-level thing in the zip, and nothing else
    for name in lacks:
        assert name not in names and name not in top, f"the page says the zip does not hold {name}"
    assert lacks >= {"authorizer/requirements.txt", "botocore"}


def test_its_shared_libraries_ask_for_no_newer_glibc_than_the_runtime_has(authorizer_unzipped):
    libraries = list(authorizer_unzipped.rglob("*.so*"))
    assert libraries, "cryptography ships compiled code"
    assert (2, 0) < glibc_needed(libraries) <= AUTHORIZER.max_glibc


AUTHORIZER_SMOKE = r"""
import base64, importlib, json, pkgutil, sys, time
package, runtime = sys.argv[1], sys.argv[2]
sys.path[:0] = [package]
sys.path.append(runtime)

import authorizer, cryptography
from authorizer.tokens import Verifier, load_public_keys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

modules = [m.name for m in pkgutil.walk_packages(authorizer.__path__, "authorizer.")]
for name in modules:
    importlib.import_module(name)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(algorithm, key, kid):
    # Signed here with cryptography alone: the zip holds no JWT library, the authorizer verifies JWS itself.
    now = int(time.time())
    header = {"alg": algorithm, "typ": "at+jwt", "kid": kid}
    claims = {"iss": "http://portal.test", "aud": "creditportal-gateway", "sub": "cus_x", "client_id": "cli_x",
              "ver": 1, "scope": "demo", "iat": now, "exp": now + 300, "jti": "smoke"}
    signing_input = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())).encode()
    if algorithm == "ES256":
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return signing_input.decode() + "." + b64(signature)


verified = []
for algorithm, key in [("ES256", ec.generate_private_key(ec.SECP256R1())), ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))]:
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    keys = load_public_keys(pem, algorithm)
    verifier = Verifier(keys=keys, algorithm=algorithm, issuer="http://portal.test", audience="creditportal-gateway", leeway=5)
    verified.append(verifier.verify(mint(algorithm, key, next(iter(keys)))).client_id)

import importlib.util, os
import authorizer.handler
client = authorizer.handler.runtime().gate.client
ours = [m for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").startswith(package) and m.__file__.endswith(".py")]
print(json.dumps({
    "uncompiled": sorted(m.__name__ for m in ours if not os.path.exists(importlib.util.cache_from_source(m.__file__))),
    "compiled": len(ours),
    "files": [m.__file__ for m in (authorizer, cryptography)],
    "modules": modules,
    "operations": client.meta.service_model.operation_names,
    "model": authorizer.dynamodb.DynamoDBLoader(extra_search_paths=[str(authorizer.dynamodb.DATA_PATH)]).load_data_with_path("dynamodb/2012-08-10/service-2")[1],
    "verified": verified,
    "django": sorted(m for m in sys.modules if m.split(".")[0] in ("django", "rest_framework", "accounts", "ledger", "creditportal")),
}))
"""


def public_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def bare_lambda_environ() -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        # Nothing here may reach AWS: a closed local port.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        # The function's environment in deploy/template.yaml, so that modules reading it at import load.
        "MIRROR_TABLE": "creditportal-test",
        "JWT_PUBLIC_KEY": public_key_pem(),
        "JWT_ALGORITHM": "ES256",
        "JWT_ISSUER": "http://portal.test",
        "JWT_AUDIENCE": "creditportal-gateway",
        "AUTHORIZER_ROUTE_TTL": "60",
    }


def run_bare(code: str, authorizer_unzipped: Path, lambda_runtime: Path) -> subprocess.CompletedProcess:
    """`code` in the runtime's Python, isolated, with the package and the stand-in /var/runtime on sys.path."""
    python = runtime_python(AUTHORIZER.python_version)
    # -B: Lambda's /var/task is read-only, no bytecode is written there; the zip's own is used.
    command = [python, "-I", "-B", "-c", code, str(authorizer_unzipped), str(lambda_runtime)]
    return subprocess.run(
        command, cwd=authorizer_unzipped, env=bare_lambda_environ(), capture_output=True, text=True, check=False
    )


def test_it_imports_and_verifies_tokens_in_a_bare_lambda_like_interpreter(authorizer_unzipped, lambda_runtime):
    result = run_bare(AUTHORIZER_SMOKE, authorizer_unzipped, lambda_runtime)
    assert result.returncode == 0, result.stderr

    report = json.loads(result.stdout)
    assert all(path.startswith(str(authorizer_unzipped)) for path in report["files"]), report["files"]
    assert "authorizer.mirror" in report["modules"]
    assert report["operations"] == ["GetItem", "UpdateItem"]
    assert report["model"] == str(authorizer_unzipped / "authorizer/botocore_data/dynamodb/2012-08-10/service-2")
    assert report["verified"] == ["cli_x", "cli_x"]
    assert report["django"] == []
    # Every module the handler imports from the zip came with its bytecode (BYTECODE_FOR is complete).
    assert report["compiled"] > 20 and report["uncompiled"] == []


COLD_IMPORT = r"""
import json, marshal, re, sys
package, runtime = sys.argv[1], sys.argv[2]
sys.path[:0] = [package]
sys.path.append(runtime)

from authorizer import regexes
with open(regexes.PATH, "rb") as f:
    signature, entries = marshal.loads(f.read())
given = {(type(pattern), pattern, flags) for pattern, flags, *_ in entries}
before = set(re._cache)
import authorizer.handler
from re import _compiler
print(json.dumps({
    "signature": signature == regexes.SIGNATURE,
    "given": len(given),
    "used": sum(1 for key in given if key in re._cache),
    "compiled_at_import": [repr(key[1]) for key in re._cache if key not in before and key not in given],
    "unequal": [repr(key[1]) for key in given if key in re._cache and re._cache[key] != _compiler.compile(key[1], key[2])],
}))
"""


def test_its_import_compiles_no_regex_but_takes_them_compiled_ahead_for_the_runtime(
    authorizer_unzipped, lambda_runtime
):
    """A cold import in the runtime's Python finds every pattern it compiles in the zip's file for that Python,
    and each is the Pattern `re` would have compiled (authorizer/regexes.py)."""
    result = run_bare(COLD_IMPORT, authorizer_unzipped, lambda_runtime)
    assert result.returncode == 0, result.stderr

    report = json.loads(result.stdout)
    assert report["signature"] is True
    assert report["given"] > 50 and report["used"] == report["given"]
    assert report["compiled_at_import"] == []
    assert report["unequal"] == []


# --- The Django app's Zappa package -----------------------------------------


def zappa_stage(stage: str) -> dict:
    settings = json.loads((ROOT / "zappa_settings.json").read_text())
    config = settings[stage]
    if "extends" in config:
        config = {**zappa_stage(config["extends"]), **{k: v for k, v in config.items() if k != "extends"}}
    return config


@pytest.fixture(scope="session")
def zappa_zip(tmp_path_factory) -> Path:
    if not DEPLOY_PYTHON.exists():
        pytest.fail(f"{DEPLOY_PYTHON} is missing: `make install-deploy` (or `make test`) installs the packaging tools")
    out = tmp_path_factory.mktemp("zappa-package")
    zip_path = out / "creditportal-dev.zip"
    command = [str(DEPLOY_PYTHON), "-m", "deploy.build_zappa", "--stage", "dev", "--output", str(zip_path)]
    output = build([*command, "--work", str(out / "work"), "--app-python", sys.executable], "zappa")
    assert "Package created" in output
    return zip_path


@pytest.fixture(scope="session")
def zappa_unzipped(zappa_zip, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("zappa-task")
    with zipfile.ZipFile(zappa_zip) as archive:
        archive.extractall(target)
    return target


def test_the_zappa_package_holds_the_django_app_and_zappas_handler(zappa_zip):
    from django.conf import settings

    with zipfile.ZipFile(zappa_zip) as archive:
        names = set(archive.namelist())
    # Every module of our own apps (tests aside) and every template.
    ours = {
        path.relative_to(ROOT).as_posix()
        for top in ["creditportal", "accounts", "ledger", "authorizer", "templates"]
        for path in (ROOT / top).rglob("*")
        if path.is_file() and path.suffix in (".py", ".html", ".txt") and not {"tests", "__pycache__"} & set(path.parts)
    }
    assert ours - names == set()
    local_apps = {
        app.split(".")[0] for app in settings.INSTALLED_APPS if not app.startswith(("django.", "rest_framework"))
    }
    assert {f"{app}/__init__.py" for app in local_apps} <= names
    assert {"manage.py", "handler.py", "django_zappa_app.py", "zappa_settings.py", "zappa/handler.py"} <= names
    assert {
        "django/__init__.py",
        "rest_framework/__init__.py",
        "psycopg/__init__.py",
        "whitenoise/__init__.py",
    } <= names
    assert "staticfiles/admin/css/base.css" in names


def test_it_leaves_out_what_lambda_provides_tests_and_local_files(zappa_zip):
    with zipfile.ZipFile(zappa_zip) as archive:
        names = archive.namelist()
        tops = top_level_names(archive)
    assert tops & {"boto3", "botocore", "s3transfer"} == set()
    assert [n for n in names if n.startswith(("boto3-", "botocore-", "s3transfer-"))] == []
    # Zappa's deploy-time dependencies stay on the deploying machine.
    assert tops & {"troposphere", "placebo", "cfn_flip", "argcomplete", "pip", "setuptools"} == set()
    assert [n for n in names if "tests" in n.split("/") or "__pycache__" in n or n.endswith(".pyc")] == []
    assert (
        tops & {"tests", "deploy", "bench", "dist", "build", ".venv", ".venv-deploy", ".git", ".env", ".dev-keys"}
        == set()
    )
    # The development tools (seed_demo's well-known logins, the gateway stand-in) never ship.
    assert [n for n in names if n.startswith("local/")] == []
    assert [n for n in names if n.endswith((".pem", ".sqlite3", ".zip"))] == []


def test_its_compiled_wheels_load_on_the_lambda_runtime(zappa_zip, zappa_unzipped):
    with zipfile.ZipFile(zappa_zip) as archive:
        distributions = assert_wheels_fit_lambda(archive)
    assert any(d.startswith("psycopg_binary-") for d in distributions)
    assert (2, 0) < glibc_needed(zappa_unzipped.rglob("*.so*")) <= MAX_GLIBC


def test_its_runtime_matches_the_one_the_wheels_were_built_for():
    for stage in ("dev", "production"):
        config = zappa_stage(stage)
        assert (config["runtime"], config["architecture"]) == (f"python{PYTHON_VERSION}", "x86_64"), stage
        # Zappa's own wheel swap would fetch manylinux_2_34 builds from PyPI: it stays off.
        assert config["use_precompiled_packages"] is False
        assert config["debug"] is False, "Zappa's debug puts tracebacks in 500 responses"


ZAPPA_INVOKE = r"""
import base64, json, os, sys
package, runtime, paths = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path[:0] = [package]
sys.path.append(runtime)
os.chdir(package)

import handler

class Context:
    function_name = "creditportal-dev"
    function_version = "$LATEST"
    aws_request_id = "a1b2c3"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:creditportal-dev"
    def get_remaining_time_in_millis(self):
        return 30000

answers = []
for path in paths:
    if isinstance(path, dict):  # an event as it is (a CloudWatch Logs subscription's)
        answers.append({"result": handler.lambda_handler(path, Context())})
        continue
    event = {
        "resource": "/{proxy+}", "path": path, "httpMethod": "GET",
        "headers": {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"},
        "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {"stage": "dev", "path": "/dev" + path, "httpMethod": "GET", "requestId": "r1", "identity": {"sourceIp": "203.0.113.9"}},
    }
    answer = handler.lambda_handler(event, Context())
    body = answer.get("body") or ""
    if answer.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
    answers.append({"status": answer["statusCode"], "headers": headers, "body": body[:4000]})

import django
print("REPORT " + json.dumps({"answers": answers, "django": django.__file__, "secret_key_set": bool(os.environ.get("DJANGO_SECRET_KEY"))}))
"""


def invoke_zappa(package: Path, runtime: Path, paths: list, **aws: str) -> subprocess.CompletedProcess:
    # Lambda's environment: credentials from the role, the region; secrets only through remote_env.
    env = {
        "PATH": os.environ["PATH"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        **aws,
    }
    command = [runtime_python(), "-I", "-c", ZAPPA_INVOKE, str(package), str(runtime), json.dumps(paths)]
    return subprocess.run(command, cwd=package, env=env, capture_output=True, text=True, timeout=120, check=False)


def remote_env_values() -> dict[str, str]:
    """The test settings of pyproject.toml (the secrets included) as a remote_env file would hold them."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = [entry.split("=", 1)[0].removeprefix("D:") for entry in pyproject["tool"]["pytest"]["ini_options"]["env"]]
    values = {}
    for name in names:
        # Not the suite's HTTP-only switch: the package redirects plain HTTP as production does,
        # and API Gateway's requests (X-Forwarded-Proto: https) must be served, not redirected.
        if name.startswith("AWS_") or name == "DJANGO_SECURE_SSL_REDIRECT" or name not in os.environ:
            continue
        value = os.environ[name]
        if name.endswith("_FILE") and not os.path.isabs(value):
            value = str(ROOT / value)
        values[name] = value
    return values


def test_the_package_serves_django_with_secrets_from_its_remote_env(zappa_unzipped, lambda_runtime, aws):
    bucket, key = zappa_stage("dev")["remote_env"].removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(remote_env_values()).encode())

    result = invoke_zappa(zappa_unzipped, lambda_runtime, ["/admin/login/", "/admin/", "/static/admin/css/base.css"])
    assert result.returncode == 0, result.stderr
    # Zappa's handler logs to stdout too; the report is its own line.
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))[7:])
    login, admin, css = report["answers"]

    assert report["django"].startswith(str(zappa_unzipped))
    assert report["secret_key_set"]
    assert login["status"] == 200, login
    assert 'name="username"' in login["body"] and "csrfmiddlewaretoken" in login["body"]
    # Behind API Gateway's stage path: Django builds URLs under /dev.
    assert (admin["status"], admin["headers"]["location"]) == (302, "/dev/admin/login/?next=/dev/admin/")
    assert css["status"] == 200, css
    assert css["headers"]["content-type"].startswith("text/css")
    assert "color" in css["body"]


def test_the_package_refuses_to_start_without_its_secrets(zappa_unzipped, lambda_runtime, aws):
    bucket = zappa_stage("dev")["remote_env"].removeprefix("s3://").split("/", 1)[0]
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)  # but no secrets file in it

    result = invoke_zappa(zappa_unzipped, lambda_runtime, ["/admin/login/"])

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "must be set when DJANGO_DEBUG is off" in result.stderr


def test_zappas_handler_gives_a_cloudwatch_logs_event_to_the_failed_calls_entry_and_http_to_django(
    zappa_unzipped, lambda_runtime, aws
):
    """zappa_settings.json's app_function: Zappa hands a subscription event (Powertools' sample, two lines
    that are not access-log lines) to creditportal.lambda_entry, and still serves HTTP through Django."""
    bucket, key = zappa_stage("dev")["remote_env"].removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(remote_env_values()).encode())
    event = json.loads((ROOT / "tests" / "events" / "cloudwatch_logs_powertools.json").read_text())

    result = invoke_zappa(zappa_unzipped, lambda_runtime, [event, "/admin/login/"])

    assert result.returncode == 0, result.stderr
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))[7:])
    logs, login = report["answers"]
    assert logs == {
        "result": {"refunded": 0, "credits": 0, "skipped": 2, "already_refunded": 0, "skip_reasons": {"malformed": 2}}
    }
    assert login["status"] == 200, login


def test_the_package_reads_its_remote_env_with_djangos_role(zappa_unzipped, lambda_runtime, iam_stack):
    """Zappa's own handler, with deploy/template.yaml's Django role: its remote_env read is allowed, and is
    all the S3 the role grants (tests/test_deploy_iam.py proves the rest of the role)."""
    from tests.iam import grants, service, used_statements

    stack = iam_stack
    bucket, key = zappa_stage("dev")["remote_env"].removeprefix("s3://").split("/", 1)
    assert bucket == stack.refs["SecretsBucket"]
    s3 = stack.moto.client("s3", stack.admin)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(remote_env_values()).encode())
    s3.put_object(Bucket=bucket, Key="other.json", Body=b"{}")

    role = stack.keys["DjangoRole"]
    result = invoke_zappa(
        zappa_unzipped, lambda_runtime, ["/admin/login/"], AWS_ENDPOINT_URL=stack.moto.url, **role.environ()
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))[7:])
    assert report["secret_key_set"] and report["answers"][0]["status"] == 200, report

    decisions = stack.moto.decisions(role.id)
    assert [(d["action"], d["resource"], d["allowed"]) for d in decisions] == [
        ("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}", True)
    ]
    with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
        stack.moto.client("s3", role).get_object(Bucket=bucket, Key="other.json")
    s3_statements = [s for s in stack.policies["DjangoRole"] if service(s) == "s3"]
    assert used_statements(s3_statements, decisions) == grants(s3_statements)
