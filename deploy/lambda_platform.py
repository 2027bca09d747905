"""The Lambda platforms the two packages are built for, and the steps they share.

Django (Zappa): python3.11 on x86_64, which runs on Amazon Linux 2 (glibc 2.26):
PYTHON_VERSION, RUNTIME, ARCHITECTURE, PLATFORM, MAX_GLIBC below.

The authorizer: python3.12 or 3.13 (what SnapStart needs), on x86_64 or arm64,
on Amazon Linux 2023 (glibc 2.34): `Platform`, AUTHORIZER (the default, which
deploy/template.yaml's parameters default to) and AUTHORIZER_* (the choices
its parameters allow). A zip holds compiled code for one architecture and one
Python (cffi's extension is per version): build it for the runtime and
architecture the stack is deployed with.

Compiled dependencies come from manylinux2014 wheels (glibc 2.17 or newer
suffices), chosen by pip's --platform option whatever machine builds them:
a plain `pip install` on this machine (glibc 2.36) picks cryptography's
manylinux_2_34 wheel, which would not load on Lambda. Tests check that
zappa_settings.json and deploy/template.yaml name these runtimes.
"""

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lambda's architecture names, and what the ELF files and wheel tags call them.
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
ELF_MACHINES = {"x86_64": 0x3E, "arm64": 0xB7}  # e_machine: EM_X86_64, EM_AARCH64


@dataclass(frozen=True)
class Platform:
    python_version: str  # "3.12"
    architecture: str = "x86_64"  # as Lambda names it: x86_64 or arm64

    @property
    def runtime(self) -> str:
        return f"python{self.python_version}"

    @property
    def machine(self) -> str:
        return MACHINES[self.architecture]

    @property
    def wheel_platform(self) -> str:
        return f"manylinux2014_{self.machine}"

    @property
    def max_glibc(self) -> tuple[int, int]:
        # python3.11 and older run on Amazon Linux 2, python3.12 and newer on Amazon Linux 2023.
        return (2, 26) if tuple(map(int, self.python_version.split("."))) < (3, 12) else (2, 34)

    @property
    def cpython_tag(self) -> str:
        return "cp" + self.python_version.replace(".", "")

    def __str__(self) -> str:
        return f"{self.runtime} on {self.architecture}"


DJANGO = Platform("3.11", "x86_64")  # zappa_settings.json
PYTHON_VERSION = DJANGO.python_version
RUNTIME = DJANGO.runtime
ARCHITECTURE = DJANGO.architecture
PLATFORM = DJANGO.wheel_platform
MAX_GLIBC = DJANGO.max_glibc  # Amazon Linux 2, under Lambda's python3.11

AUTHORIZER_PYTHON_VERSIONS = ("3.12", "3.13")  # SnapStart runs Python 3.12 and newer
AUTHORIZER_ARCHITECTURES = ("x86_64", "arm64")
AUTHORIZER = Platform("3.12", "x86_64")  # the template's defaults: the zip the tests load and run here

# What the Lambda Python runtime provides itself (it lives in /var/runtime there).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")

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


def pip_install_for_lambda(target: Path, *args: str, platform: Platform = DJANGO) -> None:
    """pip install ARGS into TARGET as Lambda-platform wheels (never sdists, never this machine's).

    Always in pip's hash-checking mode: every distribution installed, dependencies
    too, must be pinned with its hashes in a lock file (ARGS name it, with `-r` or
    `-c`), and pip refuses a wheel whose hash the lock does not list (docs/deploy.md).
    """
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--require-hashes",
        "--target", str(target),
        "--platform", platform.wheel_platform, "--implementation", "cp", "--python-version", platform.python_version,
        "--only-binary=:all:",
        *args,
    ]  # fmt: skip
    print("pip install " + " ".join(command[command.index("install") + 1 :]), flush=True)
    subprocess.run(command, check=True)


def prune(site_packages: Path) -> None:
    """Remove what never runs on Lambda: bytecode for this machine's Python, console scripts, test suites."""
    for path in sorted(site_packages.rglob("*"), reverse=True):
        if path.is_dir() and path.name in ("__pycache__", "tests"):
            shutil.rmtree(path)
        elif path.is_file() and path.suffix == ".pyc":
            path.unlink()
    shutil.rmtree(site_packages / "bin", ignore_errors=True)


def link_runtime_libraries(folder: Path) -> Path:
    """A stand-in for Lambda's /var/runtime in FOLDER: links to this interpreter's copies of what the runtime
    provides (RUNTIME_PROVIDED), nothing else; returns FOLDER."""
    import botocore

    folder.mkdir(parents=True, exist_ok=True)
    site_packages = Path(botocore.__file__).resolve().parent.parent
    for name in RUNTIME_PROVIDED:
        source = site_packages / name if (site_packages / name).is_dir() else site_packages / f"{name}.py"
        (folder / source.name).symlink_to(source)
    return folder


def find_python(version: str) -> str | None:
    """An interpreter of exactly `version` ("3.12") here: this one, one on PATH, or one pyenv has
    installed (its shims run only with PYENV_VERSION set). None when there is none."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    candidates = [shutil.which(f"python{version}")]
    if shutil.which("pyenv"):
        installed = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False)
        for name in installed.stdout.split():
            if name == version or name.startswith(version + "."):
                prefix = subprocess.run(["pyenv", "prefix", name], capture_output=True, text=True, check=False)
                candidates.append(str(Path(prefix.stdout.strip()) / "bin" / f"python{version}"))
    for candidate in filter(None, candidates):
        probe = [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
        answer = subprocess.run(probe, capture_output=True, text=True, check=False)
        if answer.returncode == 0 and answer.stdout.strip() == version:
            return candidate
    return None


def compile_bytecode(folders: list[Path], python: str) -> int:
    """Compile every module in FOLDERS with PYTHON, as `__pycache__/*.cpython-3XX.pyc`; returns how many.

    Lambda's /var/task is read-only: without bytecode in the zip, every cold start
    compiles each module it imports, and keeps nothing. `unchecked-hash` bytecode is
    used without comparing the source's timestamp (the zip's entries all carry 1980).
    """
    command = [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    subprocess.run([*command, *map(str, folders)], check=True, stdout=subprocess.DEVNULL)
    return sum(1 for folder in folders for _ in folder.rglob("*.pyc"))


STRIP_TOOLS = ("strip", "llvm-strip")  # GNU strip knows this machine's architecture; llvm-strip knows them all


def strip_shared_libraries(root: Path) -> int | None:
    """Drop the symbol tables of the wheels' own extension modules; returns bytes saved.

    `strip --strip-unneeded` keeps the dynamic symbols that loading needs. Only the
    packages' own `.so` files: libraries that auditwheel grafted into `*.libs/` have
    been patchelf'ed and are left alone. Each library goes to the first tool that
    can read it (GNU strip cannot read another architecture's ELF files, llvm-strip
    can). None when no tool could strip any of them.
    """
    tools = [tool for tool in map(shutil.which, STRIP_TOOLS) if tool]
    saved, stripped = 0, False
    for library in sorted(root.rglob("*.so")):
        if any(part.endswith(".libs") for part in library.relative_to(root).parts):
            continue
        before = library.stat().st_size
        for tool in tools:
            if (
                subprocess.run([tool, "--strip-unneeded", str(library)], capture_output=True, check=False).returncode
                == 0
            ):
                stripped = True
                break
        saved += before - library.stat().st_size
    return saved if stripped else None


def elf_machine(path: Path) -> int:
    """An ELF file's e_machine (0x3E x86-64, 0xB7 AArch64)."""
    header = Path(path).read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        raise ValueError(f"{path} is not an ELF file")
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


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
