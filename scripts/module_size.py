"""No module of the apps over 400 lines (migrations aside): `make lint` runs this.

    python scripts/module_size.py [--max 400] [folder ...]

Prints every module over the limit, longest first, and exits 1 if there is one.
A module that grows past it splits by job (see ledger/mirror/ for the shape).
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("accounts", "ledger", "authorizer", "creditportal")
MAX_LINES = 400


def modules(folders: list[str]) -> list[Path]:
    """Every Python module under the folders but migrations."""
    return sorted(
        path for folder in folders for path in (ROOT / folder).rglob("*.py") if "migrations" not in path.parts
    )


def too_long(folders: list[str], limit: int) -> list[tuple[int, Path]]:
    lengths = [(len(path.read_text().splitlines()), path) for path in modules(folders)]
    return sorted(((n, path) for n, path in lengths if n > limit), reverse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max", type=int, default=MAX_LINES, help="most lines a module may have")
    parser.add_argument("folders", nargs="*", default=list(FOLDERS))
    args = parser.parse_args(argv)
    over = too_long(args.folders, args.max)
    for lines, path in over:
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"{shown}: {lines} lines, over {args.max}: split it by job")
    checked = len(modules(args.folders))
    print(f"module size: {checked} modules in {', '.join(args.folders)}, {len(over)} over {args.max} lines")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
