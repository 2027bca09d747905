"""What `make lint` checks, checked against the tools themselves: mypy's strict modules get every flag
mypy's own --strict turns on, the baseline of errors still to fix names none of them, and the
module-size check fails a module over its limit."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from mypy.main import process_options
from mypy.options import PER_MODULE_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MYPY = PYPROJECT["tool"]["mypy"]
# The code issue 13 wants strict: the authorizer and the services.
MUST_BE_STRICT = ["authorizer/**/*.py", "accounts/services.py", "ledger/services*.py", "ledger/services/**/*.py"]
MUST_BE_STRICT += ["ledger/mirror/**/*.py", "ledger/usage.py"]


def strict_flags() -> dict[str, bool]:
    """The per-module flags `mypy --strict` sets, and to what (from mypy's own option parser)."""
    _, plain = process_options(["x.py"])
    _, strict = process_options(["--strict", "x.py"])
    return {
        name: getattr(strict, name)
        for name in PER_MODULE_OPTIONS
        if hasattr(strict, name) and getattr(strict, name) != getattr(plain, name)
    }


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def strict_override() -> dict:
    (override,) = [o for o in MYPY["overrides"] if o.get("disallow_untyped_defs")]
    return override


def matches(module: str, patterns: list[str]) -> bool:
    # mypy's patterns: "a.b" is that module, "a.*" the package a and everything under it.
    return any(module == p or (p.endswith(".*") and (module + ".").startswith(p[:-1])) for p in patterns)


def strict_files() -> list[Path]:
    found = {path for pattern in MUST_BE_STRICT for path in ROOT.glob(pattern)}
    return sorted(path for path in found if "migrations" not in path.parts)


def test_the_strict_modules_get_every_flag_of_mypys_strict_mode():
    flags = strict_flags()
    assert {"disallow_untyped_defs", "warn_return_any", "implicit_reexport"} <= flags.keys()
    override = strict_override()
    assert {name: override.get(name, MYPY.get(name)) for name in flags} == flags


def test_the_authorizer_and_every_service_module_are_strict():
    patterns = strict_override()["module"]
    files = strict_files()
    assert ROOT / "authorizer" / "tokens.py" in files and ROOT / "ledger" / "usage.py" in files
    assert [module_name(path) for path in files if not matches(module_name(path), patterns)] == []
    # ... and mypy checks them: they are under the folders it is given.
    checked = MYPY["files"]
    assert all(path.relative_to(ROOT).parts[0] in checked for path in files)


def test_the_baseline_holds_no_error_of_a_strict_module():
    baseline = (ROOT / "mypy-baseline.txt").read_text().splitlines()
    strict = {path.relative_to(ROOT).as_posix() for path in strict_files()}
    assert [line for line in baseline if line.split(":", 1)[0] in strict] == []
    # Its entries name files mypy checks (a stale path would hide nothing and mislead).
    assert all((ROOT / line.split(":", 1)[0]).is_file() for line in baseline if line.strip())


def run_module_size(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "scripts" / "module_size.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("lines", "fails"), [(400, False), (401, True)])
def test_the_module_size_check_fails_a_module_over_400_lines(tmp_path, lines, fails):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "big.py").write_text("x = 1\n" * lines)
    (tmp_path / "app" / "migrations").mkdir()
    (tmp_path / "app" / "migrations" / "0001_initial.py").write_text("x = 1\n" * 1000)  # migrations are exempt

    result = run_module_size(str(tmp_path / "app"))

    assert result.returncode == (1 if fails else 0), result.stdout
    assert ("big.py: 401 lines, over 400" in result.stdout) is fails
    assert "0001_initial" not in result.stdout


def test_make_lint_runs_every_check():
    result = subprocess.run(["make", "-n", "lint"], cwd=ROOT, capture_output=True, text=True, check=True)
    recipe = result.stdout + subprocess.run(["make", "-n", "mypy"], cwd=ROOT, capture_output=True, text=True).stdout
    for command in ["ruff check .", "ruff format --check .", "mypy >", "mypy-baseline filter", "module_size.py"]:
        assert command in recipe, command


APP_PACKAGES = ["accounts", "ledger", "authorizer", "creditportal", "local"]
# Django's private transaction state: what the outbox replaced (issue 13) must not creep back.
DJANGO_PRIVATE = ["run_on_commit", "savepoint_ids", "connection.__dict__", "run_commit_hooks_on_set_autocommit_on"]


def test_the_app_reads_none_of_djangos_private_transaction_state():
    found = [
        f"{path.relative_to(ROOT)}:{n}: {name}"
        for package in APP_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        for name in DJANGO_PRIVATE
        if name in line
    ]
    assert found == []
