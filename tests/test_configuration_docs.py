"""docs/configuration.md describes every environment variable the code reads."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("accounts", "authorizer", "creditportal", "ledger", "local")
# A variable read by name: os.getenv("X"), environ.get("X"), environ["X"], and the
# settings' and the authorizer's own readers (envbool("X", ...), _number(environ, "X", ...)).
READ = re.compile(
    r"""(?:getenv\(|environ\.get\(|environ\[|env(?:bool|int|float|list|secret|pem)\(|_(?:number|secret)\(environ,)\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def variables_read() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in READ.findall(path.read_text()):
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def test_the_reader_finds_the_variables_we_know_are_read():
    found = variables_read()
    # A guard on the pattern itself: if it stops matching, the test below proves nothing.
    assert {"DJANGO_DEBUG", "JWT_PRIVATE_KEY", "MIRROR_TABLE", "AUTHORIZER_ROUTE_TTL", "JWT_PUBLIC_KEY"} <= set(found)


def test_every_variable_the_code_reads_is_documented():
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs" / "configuration.md").read_text()))
    missing = {name: where for name, where in variables_read().items() if name not in documented}
    assert missing == {}, f"read by the code, not in docs/configuration.md: {missing}"
