"""creditportal/settings.py: one ordered file, strict about what it reads, as production loads it.

Settings are read once per process, so each environment is loaded by a fresh
interpreter (`settings_in`), the way Lambda starts Django.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from creditportal.settings import envbool

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "creditportal" / "settings.py"

# Production-like: DEBUG off, every secret set, nothing else from this machine's environment.
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "a-production-like-secret-key-that-is-long-and-random-0123456789",
    "CREDENTIAL_HASH_KEY": "a-production-like-credential-hash-key",
    "ZAPIER_WEBHOOK_SECRET": "a-production-like-zapier-secret",
    "DJANGO_ALLOWED_HOSTS": "portal.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
}

READ = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({name: getattr(settings, name) for name in %r}, default=str))
"""


def settings_in(env: dict[str, str], *names: str) -> subprocess.CompletedProcess:
    """Load the settings in a fresh interpreter with only `env` (and PATH); print the named ones as JSON."""
    environ = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "creditportal.settings", **env}
    command = [sys.executable, "-c", READ % (names,)]
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60, check=False)


def loaded(env: dict[str, str], *names: str) -> dict:
    result = settings_in(env, *names)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True), ("true", True), ("TRUE", True), ("Yes", True), (" on ", True),
        ("0", False), ("false", False), ("False", False), ("NO", False), ("off", False),
    ],
)  # fmt: skip
def test_a_boolean_is_one_of_the_documented_words_in_any_case(monkeypatch, value, expected):
    monkeypatch.setenv("CP_TEST_FLAG", value)
    assert envbool("CP_TEST_FLAG", "false") is expected
    assert envbool("CP_TEST_FLAG", "true") is expected


@pytest.mark.parametrize("value", [None, "", "   "])
def test_an_unset_or_empty_boolean_is_its_default(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CP_TEST_FLAG", raising=False)
    else:
        monkeypatch.setenv("CP_TEST_FLAG", value)
    assert envbool("CP_TEST_FLAG", "true") is True
    assert envbool("CP_TEST_FLAG", "false") is False


@pytest.mark.parametrize("value", ["treu", "enabled", "2", "y", "off!", "truee"])
def test_any_other_boolean_is_an_error_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("CP_TEST_FLAG", value)
    with pytest.raises(ImproperlyConfigured, match=r"CP_TEST_FLAG must be one of 1/true/yes/on or 0/false/no/off"):
        envbool("CP_TEST_FLAG", "false")


def test_a_typo_in_a_flag_stops_django_instead_of_meaning_off():
    result = settings_in({**PRODUCTION, "MIRROR_ENABLED": "ture"}, "MIRROR_ENABLED")
    assert result.returncode != 0
    assert "ImproperlyConfigured: MIRROR_ENABLED must be one of" in result.stderr
    assert loaded({**PRODUCTION, "MIRROR_ENABLED": "OFF"}, "MIRROR_ENABLED") == {"MIRROR_ENABLED": False}


def test_apps_and_middleware_are_each_one_list_in_their_order():
    """Read like healthchecks' settings: every list written once, where it is declared; nothing appended later."""
    tree = ast.parse(SETTINGS.read_text())
    for name in ("INSTALLED_APPS", "MIDDLEWARE", "AUTHENTICATION_BACKENDS", "TEMPLATES"):
        assigned = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign)
            and any(
                isinstance(t, ast.Name) and t.id == name
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
        ]
        assert len(assigned) == 1 and isinstance(assigned[0], ast.Assign), f"{name} is assigned more than once"
        changed = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == name
        ]
        assert changed == [], f"{name} is changed after it is declared (line {changed})"

    middleware = loaded(PRODUCTION, "MIDDLEWARE")["MIDDLEWARE"]
    assert middleware[:2] == [
        "django.middleware.security.SecurityMiddleware",
        "whitenoise.middleware.WhiteNoiseMiddleware",
    ]
    assert middleware[-1] == "axes.middleware.AxesMiddleware"


APP_PACKAGES = ("accounts", "ledger", "creditportal", "local")


def test_no_app_module_reads_a_setting_when_it_is_imported():
    """settings.X at a module's top level (or in a class body) is read at import: tests and
    override_settings cannot change it. Model fields naming AUTH_USER_MODEL are Django's own way."""
    found = []
    for package in APP_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == SETTINGS or "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text())
            in_functions = {
                id(inner)
                for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
                for inner in ast.walk(node)
            }
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "settings"
                    and node.attr.isupper()
                    and node.attr != "AUTH_USER_MODEL"
                    and id(node) not in in_functions
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} settings.{node.attr}")
    assert found == []


def test_the_development_tools_are_installed_with_debug_only():
    assert "local" not in loaded(PRODUCTION, "INSTALLED_APPS")["INSTALLED_APPS"]
    development = {"DJANGO_DEBUG": "1", "PATH": os.environ["PATH"]}  # what `make run` sets; no secrets needed
    assert "local" in loaded(development, "INSTALLED_APPS")["INSTALLED_APPS"]


@pytest.mark.parametrize(("value", "threshold"), [(None, 0), ("false", None), ("true", 0)])
def test_prepared_statements_are_psycopgs_threshold_for_postgres(value, threshold):
    env = PRODUCTION | ({"DATABASE_PREPARED_STATEMENTS": value} if value is not None else {})
    assert loaded(env, "DATABASES")["DATABASES"]["default"]["OPTIONS"]["prepare_threshold"] == threshold


def test_sqlite_gets_no_prepared_statement_option():
    env = PRODUCTION | {"DATABASE_URL": "sqlite:///unused.sqlite3"}
    assert "prepare_threshold" not in loaded(env, "DATABASES")["DATABASES"]["default"].get("OPTIONS", {})
