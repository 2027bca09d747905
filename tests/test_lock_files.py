"""The hash-pinned lock files of the two Lambda packages agree with the inputs they are compiled from
(`make locks`, docs/deploy.md): the lock pins every input's version, holds nothing that neither an
input nor another locked package asks for, and gives every distribution its hashes. Which lock and
inputs each builder uses is read from the builders; tests/test_packaging.py builds with them."""

import shlex
import subprocess
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from deploy import build_authorizer, build_zappa
from tests.locks import input_pins, read_lock

ROOT = Path(__file__).resolve().parent.parent
LOCKS = {
    "authorizer": (build_authorizer.REQUIREMENTS, (build_authorizer.REQUIREMENTS_IN,)),
    "zappa": (build_zappa.LOCK, build_zappa.LOCK_INPUTS),
}


@pytest.mark.parametrize("package", LOCKS)
def test_the_lock_pins_every_input_at_its_version(package):
    lock, inputs = LOCKS[package]
    _, entries = read_lock(lock)
    for path in inputs:
        pins = input_pins(path)
        assert pins, path
        wrong = {name: (version, entries[name].version if name in entries else None) for name, version in pins.items()}
        assert {name: pair for name, pair in wrong.items() if pair[0] != pair[1]} == {}, (
            f"{lock.name} is not compiled from {path.name} as it is: run `make locks`"
        )


@pytest.mark.parametrize("package", LOCKS)
def test_the_lock_holds_nothing_its_inputs_do_not_need(package):
    lock, inputs = LOCKS[package]
    _, entries = read_lock(lock)
    pinned = {name for path in inputs for name in input_pins(path)}
    sources = {f"-r {path.relative_to(ROOT)}" for path in inputs}
    for name, entry in entries.items():
        assert entry.via, f"{lock.name}: nothing asks for {name}"
        for reason in entry.via:
            if reason.startswith("-r "):
                assert reason in sources and name in pinned, f"{lock.name}: {name} comes from {reason}, not an input"
            else:
                assert canonicalize_name(reason) in entries, f"{lock.name}: {name} is asked for by unlocked {reason}"
    # ... and what an input pins came from it (not only as someone's dependency).
    for name in pinned:
        assert any(reason in sources for reason in entries[name].via), f"{lock.name}: {name} is not from an input"


@pytest.mark.parametrize("package", LOCKS)
def test_the_lock_is_compiled_from_its_inputs_with_every_hash(package):
    lock, inputs = LOCKS[package]
    command, entries = read_lock(lock)
    words = shlex.split(command)
    assert "--generate-hashes" in words and "--strip-extras" in words
    assert f"--output-file={lock.relative_to(ROOT)}" in words
    assert sorted(w for w in words[1:] if not w.startswith("-")) == sorted(str(p.relative_to(ROOT)) for p in inputs)
    assert entries
    for name, entry in entries.items():
        assert entry.hashes and all(h.startswith("sha256:") for h in entry.hashes), name


def test_the_makefile_compiles_each_lock_with_the_command_in_its_header():
    """`make locks` writes the locks the way their headers say they were written (so the header is how to redo it)."""
    recipe = subprocess.run(["make", "-n", "locks"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for lock, _ in LOCKS.values():
        command, _ = read_lock(lock)
        flags = sorted(w for w in shlex.split(command) if w.startswith("-"))
        line = next(line for line in recipe.splitlines() if f"--output-file={lock.relative_to(ROOT)}" in line)
        assert sorted(w for w in shlex.split(line) if w.startswith("-") and w != "--quiet") == flags, line
