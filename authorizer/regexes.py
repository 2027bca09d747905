"""Regular expressions compiled ahead, as bytecode is: the patterns a cold start compiles, loaded compiled.

Python compiles a regular expression in Python (`re._parser` parses it,
`re._compiler` turns it into a list of integers that the C engine `_sre` runs).
Importing the gate compiles about 80 patterns that way, at module level:
urllib3's URL grammar alone (`urllib3.util.url`, its IPv6 address pattern
above all) is the largest single cost of the gate's imports under `python -X
importtime`, and all of them are about 8% of a cold start's instructions
(bench/authorizer_cold.py).

A compiled pattern is that list of integers and a few numbers, which depend
only on the pattern, its flags and the Python that compiled it. So it can be
compiled once, when the zip is built, and kept beside the bytecode, in
`authorizer/__pycache__/regexes.<cache tag>.marshal`:

* `record` (build time, the runtime's Python with the zip's packages and
  botocore): a fresh process imports the handler with a stand-in
  configuration, and lists the patterns `re` compiled for it (the keys of
  `re`'s own cache).
* `compile_ahead` (build time, run by the runtime's Python, which needs only
  its standard library): compiles each pattern exactly as `re._compiler.compile`
  does, checks the result equals what `re` compiles (a Pattern compares its
  flags, its text and its compiled code), and writes them with the signature of
  the interpreter that compiled them.
* `load` (the handler's first step): when the file's signature is this
  interpreter's, builds each Pattern with `_sre.compile` from its compiled form
  and puts it in `re`'s cache, under the key `re.compile` looks up first. A
  module that compiles the pattern then gets it from the cache, as it would
  have on its second `re.compile`. Nothing is replaced and no function is
  patched: a pattern not in the file (another version of a library, a pattern
  compiled only while deciding) is compiled as always; a file of another
  interpreter, or none, changes nothing.

The signature is the Python version (major and minor), `_sre.MAGIC` (the
engine's code format) and `_sre.CODESIZE`; `_sre.compile` validates the code it
is given. A runtime's patch release is not in it: Lambda updates its runtime's
patch release under a deployed zip, and the compiled form of a pattern does not
change within a minor release unless a bug in `re`'s compiler is fixed.

    python -m authorizer.regexes record PATTERNS       (this interpreter, its libraries)
    python -m authorizer.regexes compile PATTERNS [OUT] (the runtime's Python; OUT: beside its bytecode)
    python -m authorizer.regexes build [OUT]            (both, for this interpreter)

`AUTHORIZER_REGEX_CACHE=off` leaves the file unread (the recording runs that way).
"""

import _sre  # type: ignore[import-not-found]  # the C engine re compiles for; no stubs
import marshal
import os
import re
import sys
from re import _compiler, _parser  # type: ignore[attr-defined]  # re's compiler (re imports both); no stubs

FORMAT = "creditportal-regexes-1"
SIGNATURE = (FORMAT, sys.version_info[:2], _sre.MAGIC, _sre.CODESIZE)
PATH = os.path.join(os.path.dirname(__file__), "__pycache__", f"regexes.{sys.implementation.cache_tag}.marshal")
OFF = "AUTHORIZER_REGEX_CACHE"

# A configuration the handler can be imported with at build time: the handler's init
# makes its client (no request is sent) and loads this key (a P-256 public key, nobody's).
RECORDING_ENVIRON = {
    OFF: "off",
    "MIRROR_TABLE": "regex-recording",
    "AWS_REGION": "us-east-1",
    "JWT_ALGORITHM": "ES256",
    "JWT_PUBLIC_KEY": (
        "-----BEGIN PUBLIC KEY-----\n"
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAED83ZBs6RmK/yEG7AErBn0jOm6cQQ\n"
        "zw6rDApfxbAQxQHidUzdAyyy1MkS6naUGs0JuYXhqHE6RvBzmpLz9ttsRw==\n"
        "-----END PUBLIC KEY-----\n"
    ),
}
_RECORD = """
import marshal, re, sys
sys.path[:0] = sys.argv[1:]
before = set(re._cache)
import authorizer.handler
patterns = [(pattern, flags) for kind, pattern, flags in re._cache if (kind, pattern, flags) not in before]
sys.stdout.buffer.write(marshal.dumps(patterns))
"""

Pattern = str | bytes
Compiled = tuple[Pattern, int, int, list[int], int, dict[str, int], tuple[str | None, ...]]


def load(path: str = PATH) -> int:
    """Put the patterns compiled ahead for this interpreter into `re`'s cache; how many it put there.

    0 when there is no file, it is another interpreter's (or unreadable), or AUTHORIZER_REGEX_CACHE is off.
    """
    if os.environ.get(OFF) == "off":
        return 0
    try:
        with open(path, "rb") as f:
            signature, entries = marshal.loads(f.read())  # marshal.load(f) reads the file piece by piece
    except (OSError, EOFError, ValueError, TypeError):
        return 0
    if signature != SIGNATURE:
        return 0
    cache: dict[object, object] = re._cache  # type: ignore[attr-defined]  # where re.compile looks first (3.11 to 3.13)
    loaded = 0
    for pattern, flags, *compiled in entries:
        key = (type(pattern), pattern, flags)
        if key in cache:
            continue
        try:
            cache[key] = _sre.compile(pattern, *compiled)
        except (RuntimeError, TypeError, ValueError):  # the engine refused the code: compiled as always
            continue
        loaded += 1
    return loaded


def compiled_form(pattern: Pattern, flags: int) -> Compiled:
    """What `re._compiler.compile(pattern, flags)` hands `_sre.compile`, after `pattern` and `flags`."""
    parsed = _parser.parse(pattern, flags)
    code = _compiler._code(parsed, flags)
    groupindex = dict(parsed.state.groupdict)
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    sre_flags = int(flags | parsed.state.flags)
    return pattern, flags, sre_flags, [int(c) for c in code], parsed.state.groups - 1, groupindex, tuple(indexgroup)


def compile_ahead(patterns: list[tuple[Pattern, int]]) -> list[Compiled]:
    """Each pattern's compiled form, checked against what `re` compiles here; a pattern that differs is left out."""
    entries = []
    for pattern, flags in dict.fromkeys(patterns):
        if flags & re.DEBUG:  # re never caches these
            continue
        entry = compiled_form(pattern, flags)
        if _sre.compile(pattern, *entry[2:]) == _compiler.compile(pattern, flags):
            entries.append(entry)
    return entries


def write(path: str, entries: list[Compiled]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        marshal.dump((SIGNATURE, entries), f)


def record(python: str = sys.executable, path: list[str] | None = None) -> list[tuple[Pattern, int]]:
    """The patterns a fresh, isolated `python` compiles importing the handler from `path` (the folder
    holding this `authorizer/` by default), with RECORDING_ENVIRON; in the order compiled, each once."""
    import subprocess  # build time only: the gate's cold start defers subprocess (authorizer/deferred.py)

    path = path or [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    # Only the recording configuration: nothing of this machine's AWS or authorizer settings.
    out = subprocess.run(
        [python, "-I", "-B", "-c", _RECORD, *path], env=RECORDING_ENVIRON, capture_output=True, check=True
    )
    patterns: list[tuple[Pattern, int]] = marshal.loads(out.stdout)
    return patterns


def main(argv: list[str]) -> int:
    match argv:
        case ["record", patterns]:
            with open(patterns, "wb") as f:
                marshal.dump(record(), f)
        case ["compile", patterns, *out] if len(out) <= 1:
            with open(patterns, "rb") as f:
                entries = compile_ahead(marshal.loads(f.read()))
            out = out or [PATH]
            write(out[0], entries)
            print(f"regexes: {len(entries)} patterns compiled ahead for {sys.implementation.cache_tag} into {out[0]}")
        case ["build", *out] if len(out) <= 1:
            entries = compile_ahead(record())
            write(out[0] if out else PATH, entries)
            print(f"regexes: {len(entries)} patterns compiled ahead into {out[0] if out else PATH}")
        case _:
            print(__doc__.split("\n\n")[-2], file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
