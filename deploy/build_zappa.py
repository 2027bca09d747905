"""Build the Django app's Zappa package for one stage, without AWS.

    python -m deploy.build_zappa --stage dev [--output dist/creditportal-dev.zip]
        [--app-python .venv/bin/python] [--work build/zappa-dev]

Run it with the packaging venv's Python (.venv-deploy, requirements-deploy.txt):
`make zappa-package` does. Zappa packages "the active virtualenv" and the
current directory; this script gives it both, built for Lambda:

* a staged copy of the project holding only what runs (the root's Python
  packages but tests/deploy/bench/local, templates/, manage.py, collected static
  files), so nothing else in the work tree (keys, .env, databases) can ship;
* a virtualenv-shaped folder with requirements.txt installed as Lambda-platform
  wheels (deploy/lambda_platform.py) plus Zappa's handler runtime, every one of
  them pinned and hash-checked by requirements-lambda.txt, the lock compiled from
  requirements.txt and requirements-deploy.txt (`make locks`, docs/deploy.md).

`use_precompiled_packages` is off in zappa_settings.json: Zappa's own wheel
swap asks pypi.python.org (unreachable here) and would pick cryptography's
manylinux_2_34 wheel, which Amazon Linux 2 cannot load.
"""

import argparse
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from deploy.lambda_platform import (
    MAX_GLIBC,
    PLATFORM,
    ROOT,
    RUNTIME,
    Steps,
    glibc_needed,
    mib,
    pip_install_for_lambda,
    prune,
)

# local/ is development only (runstack, seed_demo's well-known logins, the gateway stand-in):
# settings install it with DEBUG alone, and the package never holds it.
NOT_SHIPPED = {"tests", "deploy", "bench", "local"}
# The lock of the package (every distribution, with its hashes), compiled from these inputs.
LOCK = ROOT / "requirements-lambda.txt"
LOCK_INPUTS = (ROOT / "requirements.txt", ROOT / "requirements-deploy.txt")
# Lambda's own limits: 250 MB unzipped (code and layers); 50 MB for a zip uploaded directly.
MAX_UNZIPPED = 250 * 1000 * 1000
MAX_DIRECT_UPLOAD = 50 * 1024 * 1024
# Any AWS call during packaging fails at once instead of reaching AWS.
NO_AWS = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "packaging",
    "AWS_SECRET_ACCESS_KEY": "packaging",
}


def shipped_paths() -> list[Path]:
    """The project's parts that run on Lambda: root Python packages (but tests/deploy/bench/local), templates/, manage.py."""
    packages = [p for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name not in NOT_SHIPPED]
    return [*sorted(packages), ROOT / "templates", ROOT / "manage.py"]


def stage_project(project: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "tests")
    for path in shipped_paths():
        if path.is_dir():
            shutil.copytree(path, project / path.name, ignore=ignore)
        else:
            shutil.copy2(path, project / path.name)


def collect_static(project: Path, app_python: str) -> None:
    # Production's settings (DEBUG off: its apps, not the development tools, which are not
    # staged), with placeholder secrets: listing static files reads none of them.
    placeholders = dict.fromkeys(
        ("DJANGO_SECRET_KEY", "CREDENTIAL_HASH_KEY", "ZAPIER_WEBHOOK_SECRET"), "collectstatic-only"
    )
    env = {**os.environ, **placeholders, "DJANGO_DEBUG": "0", "DJANGO_SETTINGS_MODULE": "creditportal.settings"}
    command = [app_python, "manage.py", "collectstatic", "--no-input", "--verbosity", "0"]
    subprocess.run(command, cwd=project, env=env, check=True)


def build(stage: str, output: Path, work: Path, app_python: str) -> int:
    steps = Steps(6, "zappa-package")
    project = work / "project"
    # Zappa reads the venv's lib/pythonX.Y/site-packages, named after the Python running it.
    venv = work / "venv"
    site_packages = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"

    steps(f"staging {', '.join(p.name for p in shipped_paths())} in {project}")
    shutil.rmtree(work, ignore_errors=True)
    project.mkdir(parents=True)
    site_packages.mkdir(parents=True)
    stage_project(project)

    steps("collecting static files (WhiteNoise serves them from the package)")
    collect_static(project, app_python)

    steps(f"installing requirements.txt for {RUNTIME} ({PLATFORM})")
    pip_install_for_lambda(site_packages, "-c", str(LOCK), "-r", str(ROOT / "requirements.txt"))
    prune(site_packages)

    steps("installing Zappa's handler runtime (requirements-deploy.txt, without its deploy-time dependencies)")
    pip_install_for_lambda(site_packages, "--no-deps", "-c", str(LOCK), "-r", str(ROOT / "requirements-deploy.txt"))
    prune(site_packages)
    glibc = glibc_needed(site_packages.rglob("*.so*"))
    print(
        f"zappa-package        shared libraries need glibc {glibc[0]}.{glibc[1]} (runtime has {MAX_GLIBC[0]}.{MAX_GLIBC[1]})"
    )
    if glibc > MAX_GLIBC:
        raise SystemExit(f"zappa-package: a library needs glibc {glibc}, newer than {RUNTIME}'s {MAX_GLIBC}")

    steps(f"zappa package {stage} (no AWS calls: endpoint {NO_AWS['AWS_ENDPOINT_URL']})")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)
    env = {**os.environ, **NO_AWS, "VIRTUAL_ENV": str(venv)}
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    zappa = Path(sys.executable).with_name("zappa")
    settings = ROOT / "zappa_settings.json"
    subprocess.run(
        [str(zappa), "package", stage, "-s", str(settings), "-o", str(output)], cwd=project, env=env, check=True
    )

    steps("checking the package")
    size = output.stat().st_size
    with zipfile.ZipFile(output) as archive:
        unzipped = sum(entry.file_size for entry in archive.infolist())
    elapsed = steps.finish()
    print(f"zappa-package: {output} is {mib(size)}, {mib(unzipped)} unzipped; built in {elapsed:.1f}s")
    if unzipped > MAX_UNZIPPED:
        raise SystemExit(f"zappa-package: over Lambda's {MAX_UNZIPPED:,} bytes unzipped: turn on slim_handler")
    if size > MAX_DIRECT_UPLOAD:
        print(
            f"zappa-package: over {mib(MAX_DIRECT_UPLOAD)}: deploy it from S3 (`--zip s3://...`), not from the local file"
        )
    return size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--work", type=Path)
    parser.add_argument(
        "--app-python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="a Python with requirements.txt installed, for collectstatic",
    )
    args = parser.parse_args(argv)
    output = (args.output or ROOT / "dist" / f"creditportal-{args.stage}.zip").resolve()
    work = (args.work or ROOT / "build" / f"zappa-{args.stage}").resolve()
    # Absolute, but not resolved: a venv's python is a symlink out of the venv.
    build(args.stage, output, work, os.path.abspath(args.app_python))


if __name__ == "__main__":
    main(sys.argv[1:])
