"""Build the authorizer's Lambda zip: `authorizer/` and its few dependencies, nothing else.

    python -m deploy.build_authorizer [--architecture x86_64|arm64] [--python-version 3.12|3.13]
                                      [--output dist/creditportal-authorizer.zip] [--work build/authorizer]

Dependencies are installed from authorizer/requirements.txt, the lock compiled
from authorizer/requirements.in with every hash (`make locks`), as
Lambda-platform wheels for that architecture and Python (see
deploy/lambda_platform.py: the defaults are deploy/template.yaml's
AuthorizerArchitecture and AuthorizerRuntime); botocore comes with the
runtime. Deploy the zip with the same two parameters. The modules go in with
their bytecode, compiled by an interpreter of the runtime's version when one is
here (Lambda cannot write bytecode: without it every cold start compiles them), and with them
the regular expressions the handler's import compiles, compiled ahead by that interpreter
(authorizer/regexes.py). Fails (exit 1) when the zip is over 5 MiB or asks for a newer
glibc than the runtime has, and before building when the trimmed DynamoDB
model in authorizer/botocore_data/ is not what the botocore installed here
gives (`python -m deploy.dynamodb_model` writes it again).
"""

import argparse
import marshal
import shutil
import subprocess
import sys
from pathlib import Path

from authorizer import regexes
from deploy import dynamodb_model
from deploy.lambda_platform import (
    AUTHORIZER,
    AUTHORIZER_ARCHITECTURES,
    AUTHORIZER_PYTHON_VERSIONS,
    ELF_MACHINES,
    ROOT,
    Platform,
    Steps,
    compile_bytecode,
    elf_machine,
    find_python,
    glibc_needed,
    link_runtime_libraries,
    mib,
    pip_install_for_lambda,
    prune,
    strip_shared_libraries,
    write_zip,
)

SOURCE = ROOT / "authorizer"
# The packages of the zip whose modules the handler imports (cffi's is its extension alone, pycparser
# is cffi's build-time parser): their bytecode goes in. tests/test_packaging.py checks the list.
BYTECODE_FOR = ("authorizer", "cryptography")
# The lock the zip installs (pip checks every hash) and the input it is compiled from (docs/deploy.md).
REQUIREMENTS = SOURCE / "requirements.txt"
REQUIREMENTS_IN = SOURCE / "requirements.in"
MAX_SIZE = 5 * 1024 * 1024


def authorizer_sources() -> list[Path]:
    """Every file of the authorizer package that runs: no tests, no bytecode, no requirements files."""
    return sorted(
        path
        for path in SOURCE.rglob("*")
        if path.is_file()
        and path not in (REQUIREMENTS, REQUIREMENTS_IN)
        and path.suffix != ".pyc"
        and not {"__pycache__", "tests"} & set(path.relative_to(SOURCE).parts)
    )


def compile_regexes(package: Path, work: Path, python: str, platform: Platform) -> str:
    """Compile ahead, with the runtime's `python`, the regexes the handler's import compiles (authorizer/regexes.py),
    beside the package's bytecode; returns what was done.

    The patterns are recorded by that `python` importing the package's handler with this machine's botocore
    (as the runtime's would be, from a stand-in /var/runtime). A package for another architecture cannot load
    here: then this interpreter records them from the repository (the libraries' patterns are the same; where the
    runtime's standard library compiles others, it compiles those as always).
    """
    if elf_machine(Path(sys.executable).resolve()) == ELF_MACHINES[platform.architecture]:
        runtime = link_runtime_libraries(work / "var-runtime")
        patterns, recorded_by = regexes.record(python, [str(package), str(runtime)]), python
    else:
        patterns, recorded_by = regexes.record(), f"{sys.executable} (the zip is for {platform.architecture})"
    listed = work / "regex-patterns.marshal"
    listed.write_bytes(marshal.dumps(patterns))
    # -E -s -B: nothing of this machine's environment or user site, no bytecode written; the package's
    # authorizer/ is found from the working directory (which -I would leave off sys.path), and the file
    # goes where its regexes.PATH is: package/authorizer/__pycache__/regexes.<the runtime's cache tag>.marshal.
    command = [python, "-E", "-s", "-B", "-m", "authorizer.regexes", "compile", str(listed)]
    compiled = subprocess.run(command, cwd=package, capture_output=True, text=True, check=True).stdout.strip()
    return f"{len(patterns)} patterns recorded by {recorded_by}; {compiled}"


def build(output: Path, work: Path, platform: Platform = AUTHORIZER) -> int:
    steps = Steps(8, "authorizer-zip")
    package = work / "package"

    steps("checking the trimmed DynamoDB model against the installed botocore")
    if dynamodb_model.main(["--check"]):
        raise SystemExit("authorizer-zip: the trimmed DynamoDB model is out of date (see above)")

    steps(f"cleaning {work}")
    shutil.rmtree(work, ignore_errors=True)
    package.mkdir(parents=True)

    steps(f"installing {REQUIREMENTS.relative_to(ROOT)} for {platform} ({platform.wheel_platform})")
    pip_install_for_lambda(package, "-r", str(REQUIREMENTS), platform=platform)

    steps("copying authorizer/ (without tests and bytecode)")
    for path in authorizer_sources():
        destination = package / "authorizer" / path.relative_to(SOURCE)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)

    steps("pruning bytecode, scripts and tests; stripping symbol tables of shared libraries")
    prune(package)
    saved = strip_shared_libraries(package)
    print(
        "authorizer-zip       "
        + ("strip not found: libraries left as shipped" if saved is None else f"strip saved {mib(saved)}")
    )
    libraries = list(package.rglob("*.so*"))
    glibc, runtime_glibc = glibc_needed(libraries), platform.max_glibc
    print(
        f"authorizer-zip       shared libraries need glibc {glibc[0]}.{glibc[1]} (runtime has {runtime_glibc[0]}.{runtime_glibc[1]})"
    )
    if glibc > runtime_glibc:
        raise SystemExit(
            f"authorizer-zip: a library needs glibc {glibc}, newer than {platform.runtime}'s {runtime_glibc}"
        )
    foreign = [path.name for path in libraries if elf_machine(path) != ELF_MACHINES[platform.architecture]]
    if foreign:
        raise SystemExit(f"authorizer-zip: not built for {platform.architecture}: {', '.join(foreign)}")

    python = find_python(platform.python_version)
    if python is None:
        steps(f"no python{platform.python_version} here: the zip holds no bytecode (each cold start compiles)")
        steps("no regexes compiled ahead either: they too need the runtime's interpreter")
    else:
        steps(f"compiling bytecode with {python} (Lambda cannot write it: /var/task is read-only)")
        compiled = compile_bytecode([package / name for name in BYTECODE_FOR], python)
        print(f"authorizer-zip       {compiled} modules of {', '.join(BYTECODE_FOR)} compiled")
        steps(f"compiling ahead with {python} the regexes the handler's import compiles (authorizer/regexes.py)")
        print("authorizer-zip       " + compile_regexes(package, work, python, platform))

    steps(f"zipping into {output}")
    size = write_zip(package, output)
    elapsed = steps.finish()
    print(f"authorizer-zip: {output} ({platform}) is {mib(size)}, limit {mib(MAX_SIZE)}; built in {elapsed:.1f}s")
    if size > MAX_SIZE:
        raise SystemExit(f"authorizer-zip: {output} is over the {mib(MAX_SIZE)} limit")
    return size


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist" / "creditportal-authorizer.zip")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "authorizer")
    parser.add_argument("--architecture", choices=AUTHORIZER_ARCHITECTURES, default=AUTHORIZER.architecture)
    parser.add_argument("--python-version", choices=AUTHORIZER_PYTHON_VERSIONS, default=AUTHORIZER.python_version)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = argument_parser().parse_args(argv)
    build(args.output.resolve(), args.work.resolve(), Platform(args.python_version, args.architecture))


if __name__ == "__main__":
    main(sys.argv[1:])
