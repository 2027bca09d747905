"""The regexes compiled ahead (authorizer/regexes.py): the same Patterns `re` compiles, taken from the file only
when it is this interpreter's, and a cold import of the handler then compiles none of them itself."""

import _sre
import json
import marshal
import os
import re
import subprocess
import sys
from re import _compiler

import pytest

from authorizer import regexes

# A fresh process: load the file given, import the handler, say what `re` compiled on the way.
COLD_IMPORT = r"""
import re, sys
from authorizer import regexes
loaded = regexes.load(sys.argv[1])
before = set(re._cache)
import authorizer.handler
compiled = [key[1] if isinstance(key[1], str) else key[1].decode("latin-1") for key in re._cache if key not in before]
import json
print(json.dumps({"loaded": loaded, "compiled_at_import": compiled, "configured": authorizer.handler._runtime is not None}))
"""


@pytest.fixture(scope="module")
def recorded() -> list[tuple[str | bytes, int]]:
    return regexes.record()


@pytest.fixture(scope="module")
def cache_file(recorded, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("regexes") / "regexes.marshal")
    regexes.write(path, regexes.compile_ahead(recorded))
    return path


@pytest.fixture
def re_cache():
    """This process's `re` cache, emptied (pytest's own fixtures may compile a pattern into it after this);
    what a test loads into it is gone after the test."""
    re.purge()
    yield re._cache
    re.purge()


def cold_import(path: str, **environ: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JWT_", "AUTHORIZER_", "MIRROR_"))}
    env |= regexes.RECORDING_ENVIRON | {regexes.OFF: ""} | environ
    out = subprocess.run(
        [sys.executable, "-c", COLD_IMPORT, path], env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def test_what_a_cold_import_compiles_is_recorded_urllib3s_url_grammar_among_it(recorded):
    from urllib3.util import url

    assert len(recorded) > 50
    assert len(set(recorded)) == len(recorded)
    assert {url._HOST_PORT_RE.pattern, url._IPV6_ADDRZ_RE.pattern} <= {pattern for pattern, _ in recorded}


def test_each_pattern_compiled_ahead_is_the_pattern_re_compiles(recorded):
    entries = regexes.compile_ahead(recorded)
    assert len(entries) == len(recorded)
    for pattern, flags, *compiled in entries:
        ahead, fresh = _sre.compile(pattern, *compiled), _compiler.compile(pattern, flags)
        assert ahead == fresh  # a Pattern compares its flags, its text and its compiled code
        assert (ahead.groups, ahead.groupindex, ahead.flags) == (fresh.groups, fresh.groupindex, fresh.flags)


def test_a_cold_import_of_the_handler_compiles_none_of_the_patterns_it_was_given(cache_file, recorded):
    with_file = cold_import(cache_file)
    assert with_file["configured"] is True
    assert with_file["loaded"] == len(recorded)
    assert with_file["compiled_at_import"] == []


def test_without_the_file_the_same_import_compiles_them_all(recorded, tmp_path):
    without = cold_import(str(tmp_path / "none.marshal"))
    assert without["loaded"] == 0
    assert len(without["compiled_at_import"]) == len(recorded)


def test_switched_off_the_file_is_left_unread(cache_file, recorded):
    off = cold_import(cache_file, AUTHORIZER_REGEX_CACHE="off")
    assert off["loaded"] == 0
    assert len(off["compiled_at_import"]) == len(recorded)


PATTERNS = [("creditportal-(?P<product>[a-z]+)-[0-9]{2,}", 0), (rb"cus_[A-Za-z0-9]+", 0), ("(?i)x+y", 0)]


def test_a_loaded_pattern_is_what_re_compile_returns_and_matches_as_compiled(re_cache, tmp_path):
    path = str(tmp_path / "r.marshal")
    regexes.write(path, regexes.compile_ahead(PATTERNS))

    assert regexes.load(path) == len(PATTERNS)

    loaded = re_cache[(str, PATTERNS[0][0], 0)]
    assert re.compile(PATTERNS[0][0]) is loaded
    assert loaded.fullmatch("creditportal-weather-42")["product"] == "weather"
    assert loaded.fullmatch("creditportal-weather-4") is None
    assert re.compile(rb"cus_[A-Za-z0-9]+").match(b"cus_AbC9-").group() == b"cus_AbC9"
    assert re.compile("(?i)x+y").flags == _compiler.compile("(?i)x+y", 0).flags


def test_a_pattern_already_compiled_is_kept(re_cache, tmp_path):
    path = str(tmp_path / "r.marshal")
    regexes.write(path, regexes.compile_ahead(PATTERNS))
    mine = re.compile(PATTERNS[0][0])

    assert regexes.load(path) == len(PATTERNS) - 1
    assert re.compile(PATTERNS[0][0]) is mine


@pytest.mark.parametrize(
    "signature",
    [
        ("creditportal-regexes-0", sys.version_info[:2], _sre.MAGIC, _sre.CODESIZE),
        (regexes.FORMAT, (3, 99), _sre.MAGIC, _sre.CODESIZE),
        (regexes.FORMAT, sys.version_info[:2], _sre.MAGIC - 1, _sre.CODESIZE),
    ],
    ids=["another format", "another python", "another engine"],
)
def test_a_file_of_another_interpreter_changes_nothing(re_cache, tmp_path, signature):
    path = tmp_path / "r.marshal"
    path.write_bytes(marshal.dumps((signature, regexes.compile_ahead(PATTERNS))))
    before = dict(re_cache)

    assert regexes.load(str(path)) == 0
    assert re_cache == before


@pytest.mark.parametrize("content", [b"", b"not marshal", marshal.dumps("a string"), marshal.dumps((1, 2, 3))])
def test_a_missing_or_unreadable_file_changes_nothing(re_cache, tmp_path, content):
    path = tmp_path / "r.marshal"
    assert regexes.load(str(path)) == 0
    path.write_bytes(content)
    before = dict(re_cache)

    assert regexes.load(str(path)) == 0
    assert re_cache == before


def test_code_the_engine_refuses_is_skipped_and_the_rest_loaded(re_cache, tmp_path):
    good, bad = regexes.compile_ahead(PATTERNS[:2])
    broken = (*bad[:3], [999_999, *bad[3]], *bad[4:])  # no such opcode: _sre validates the code it is given
    path = str(tmp_path / "r.marshal")
    regexes.write(path, [broken, good])
    before = set(re_cache)

    assert regexes.load(path) == 1
    assert set(re_cache) - before == {(str, PATTERNS[0][0], 0)}


def test_the_command_compiles_a_list_for_the_interpreter_running_it(tmp_path):
    listed, out = tmp_path / "patterns.marshal", tmp_path / "out" / "regexes.marshal"
    listed.write_bytes(marshal.dumps(PATTERNS))

    assert regexes.main(["compile", str(listed), str(out)]) == 0

    signature, entries = marshal.loads(out.read_bytes())
    assert signature == regexes.SIGNATURE
    assert [(pattern, flags) for pattern, flags, *_ in entries] == PATTERNS


def test_the_command_without_its_arguments_says_how_to_run_it(capsys):
    assert regexes.main(["compile"]) == 2
    assert "python -m authorizer.regexes compile PATTERNS [OUT]" in capsys.readouterr().err


def test_a_debug_pattern_is_not_compiled_ahead_as_re_never_caches_one(capsys):
    assert regexes.compile_ahead([("creditportal-debug+", re.DEBUG), *PATTERNS[:1]]) == regexes.compile_ahead(
        PATTERNS[:1]
    )
    assert capsys.readouterr().out == ""  # nor compiled here: re prints a DEBUG pattern's code
