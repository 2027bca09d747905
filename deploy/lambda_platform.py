"""The Lambda platform both packages are built for, and the steps they share.

Runtime python3.11 on x86_64, which runs on Amazon Linux 2 (glibc 2.26).
Compiled dependencies come from manylinux2014 wheels (glibc 2.17 or newer
suffices), chosen by pip's --platform option whatever machine builds them:
a plain `pip install` on this machine (glibc 2.36) picks cryptography's
manylinux_2_34 wheel, which would not load on Lambda.

One place to change when moving to another runtime: PYTHON_VERSION (and
MAX_GLIBC: 2.34 for python3.12+ on Amazon Linux 2023). Tests check that
zappa_settings.json and deploy/template.yaml name the same runtime.
"""

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PYTHON_VERSION = "3.11"
RUNTIME = f"python{PYTHON_VERSION}"
ARCHITECTURE = "x86_64"
PLATFORM = "manylinux2014_x86_64"
MAX_GLIBC = (2, 26)  # Amazon Linux 2, under Lambda's python3.11

# Fixed timestamp for every zip entry: the same inputs give the same zip.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class Steps:
    """Numbered progress lines ("[2/5] installing ...") with how long each took."""

    def __init__(self, total: int, name: str) -> None:
        self.total, self.name, self.done = total, name, 0
        self.started = self.step_started = time.monotonic()

    def __call__(self, what: str) -> None:
        self._finish_step()
        self.done += 1
        print(f"{self.name} [{self.done}/{self.total}] {what}", flush=True)
        self.step_started = time.monotonic()

    def _finish_step(self) -> None:
        if self.done:
            print(f"{self.name}       ... {time.monotonic() - self.step_started:.1f}s", flush=True)

    def finish(self) -> float:
        self._finish_step()
        return time.monotonic() - self.started


def pip_install_for_lambda(target: Path, *args: str) -> None:
    """pip install ARGS into TARGET as Lambda-platform wheels (never sdists, never this machine's)."""
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--target", str(target),
        "--platform", PLATFORM, "--implementation", "cp", "--python-version", PYTHON_VERSION,
        "--only-binary=:all:",
        *args,
    ]  # fmt: skip
    subprocess.run(command, check=True)


def prune(site_packages: Path) -> None:
    """Remove what never runs on Lambda: bytecode for this machine's Python, console scripts, test suites."""
    for path in sorted(site_packages.rglob("*"), reverse=True):
        if path.is_dir() and path.name in ("__pycache__", "tests"):
            shutil.rmtree(path)
        elif path.is_file() and path.suffix == ".pyc":
            path.unlink()
    shutil.rmtree(site_packages / "bin", ignore_errors=True)


def strip_shared_libraries(root: Path) -> int | None:
    """Drop the symbol tables of the wheels' own extension modules; returns bytes saved.

    `strip --strip-unneeded` keeps the dynamic symbols that loading needs. Only the
    packages' own `.so` files: libraries that auditwheel grafted into `*.libs/` have
    been patchelf'ed and are left alone. None when `strip` is not installed.
    """
    strip = shutil.which("strip")
    if strip is None:
        return None
    saved = 0
    for library in sorted(root.rglob("*.so")):
        if any(part.endswith(".libs") for part in library.relative_to(root).parts):
            continue
        before = library.stat().st_size
        subprocess.run([strip, "--strip-unneeded", str(library)], check=True)
        saved += before - library.stat().st_size
    return saved


_GLIBC = re.compile(rb"GLIBC_(\d+)\.(\d+)")


def glibc_needed(paths) -> tuple[int, int]:
    """The newest glibc symbol version any of these ELF files asks for ((0, 0) for none)."""
    newest = (0, 0)
    for path in paths:
        for major, minor in _GLIBC.findall(Path(path).read_bytes()):
            newest = max(newest, (int(major), int(minor)))
    return newest


def write_zip(source: Path, output: Path) -> int:
    """Zip SOURCE's contents (paths relative to it) reproducibly; returns the zip's size."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            entry = zipfile.ZipInfo(path.relative_to(source).as_posix(), date_time=ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            archive.writestr(entry, path.read_bytes(), compresslevel=9)
    partial.replace(output)
    return output.stat().st_size


def mib(size: int) -> str:
    return f"{size / 1024 / 1024:.2f} MiB ({size:,} bytes)"
