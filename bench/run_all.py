"""`make bench`: run every benchmark, then write bench/RESULTS.md from what they measured.

Each benchmark leaves a JSON record in bench/out/ (see _report.py); RESULTS.md is
written from all the records there, so running one benchmark again
(`make bench BENCH=api_throughput`) replaces its section and keeps the others.

    .venv/bin/python bench/run_all.py [name ...]
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _report import Ratio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
RESULTS = HERE / "RESULTS.md"

# The order of the report: the gate first (it runs on every API call), then Django's doors and pages.
ORDER = [
    "authorizer_warm",
    "authorizer_warm_key",
    "authorizer_cold",
    "api_throughput",
    "store_webhooks",
    "admin_pages",
    "overview",
    "sync_mirror_scale",
    "failed_call_refunds",
    "chaos_load",
]

INTRO = """# Benchmark results

Written by `make bench` (`bench/run_all.py`) from the records in `bench/out/`. Every ratio
compares figures measured side by side in the same run, on the same shared 2-core machine;
the absolute times beside them are context only (another run, or a busier moment, moves them
all together). Each section says how to reproduce it.
"""


def report_order(name: str) -> tuple[int, str]:
    """Where a benchmark stands in the run and the report: ORDER first, any other after, by name."""
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def scripts(names: list[str]) -> list[Path]:
    found = {path.stem: path for path in HERE.glob("*.py") if not path.stem.startswith("_") and path.stem != "run_all"}
    unknown = set(names) - set(found)
    if unknown:
        sys.exit(f"no such benchmark: {', '.join(sorted(unknown))} (there are: {', '.join(sorted(found))})")
    chosen = names or sorted(found, key=report_order)
    return [found[name] for name in chosen]


def run(paths: list[Path]) -> list[str]:
    """Run each benchmark in turn, its output shown as it comes; the names of those that failed."""
    env = os.environ | {"BENCH_OUT": str(OUT), "PYTHONUNBUFFERED": "1"}
    failed = []
    for number, path in enumerate(paths, 1):
        print(f"\n== [{number}/{len(paths)}] bench/{path.name}", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env, check=False).returncode
        print(f"== bench/{path.name}: {'done' if code == 0 else f'FAILED (exit {code})'} "
              f"in {time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
        if code:
            failed.append(path.stem)
    return failed


def section(record: dict) -> list[str]:
    measured = record["measured"]
    lines = [f"## {record['title']}", ""]
    lines.append(
        f"Measured {measured['date']} at commit `{measured['commit']}`, Python {measured['python']}, "
        f"{measured['cpus']} CPUs, load average {measured['load']}."
    )
    lines += ["", "```", *record["lines"], "```", ""]
    lines += [f"Reproduce: `{record['reproduce']}`", ""]
    return lines


def ratio_row(record: dict, recorded: dict) -> str:
    ratio = Ratio(**recorded)  # the benchmark's own verdict on it
    verdict = ratio.verdict if ratio.verdict in ("", "OK") else f"**{ratio.verdict.lower()}**"
    goal_text = "" if ratio.goal is None else f"{'≥' if ratio.at_least else '≤'} {ratio.goal:g}"
    anchor = record["title"].lower()
    anchor = "".join(c for c in anchor if c.isalnum() or c in " -_").replace(" ", "-")  # as GitHub makes them
    return f"| [{record['name']}](#{anchor}) | {ratio.what} | {ratio.value:.3f} | {goal_text} | {verdict} |"


def write_results() -> None:
    records = [json.loads(path.read_text()) for path in OUT.glob("*.json")]
    records.sort(key=lambda record: report_order(record["name"]))
    lines = [INTRO, "## Summary", "", "| benchmark | ratio | value | goal | |", "| --- | --- | ---: | --- | --- |"]
    lines += [ratio_row(record, ratio) for record in records for ratio in record["ratios"]]
    lines.append("")
    for record in records:
        lines += section(record)
    RESULTS.write_text("\n".join(lines))
    print(f"\nwrote {RESULTS.relative_to(ROOT)} from {len(records)} record(s) in {OUT.relative_to(ROOT)}/")


def main() -> None:
    failed = run(scripts(sys.argv[1:]))
    write_results()
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
