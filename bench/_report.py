"""What every benchmark leaves behind: the figures it prints, and the same as JSON for bench/RESULTS.md.

A benchmark ends with one `report(...)` call. It prints the lines, the ratios
(each against its goal, when it has one) and the command that reproduces the
run. When `BENCH_OUT` names a directory (`bench/run_all.py` sets it), the same
goes to `<BENCH_OUT>/<name>.json`, from which run_all writes RESULTS.md.
"""

import datetime
import json
import os
import platform
import shlex
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Ratio:
    what: str
    value: float
    goal: float | None = None  # at most this (at least, with at_least); None: measured, no goal
    at_least: bool = False

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return ""
        if self.at_least:
            return "OK" if self.value >= self.goal else "UNDER"
        return "OK" if self.value <= self.goal else "OVER"

    def line(self) -> str:
        sign = ">=" if self.at_least else "<="
        goal = f"   goal {sign} {self.goal:g}  {self.verdict}" if self.goal is not None else ""
        return f"  {self.what:58s} {self.value:8.3f}{goal}"


def command(*parts: str | float) -> str:
    """The shell command that reproduces a run, quoted."""
    return " ".join(shlex.quote(str(part)) for part in parts)


def measured_on() -> dict:
    """When, at which commit and on what the figures were measured."""
    root = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(root)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=False
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit + ("+changes" if dirty.stdout.strip() else ""),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load": round(os.getloadavg()[0], 2),
    }


def report(name: str, *, title: str, lines: list[str], ratios: list[Ratio], reproduce: str) -> None:
    print()
    print(title)
    for line in lines:
        print(f"  {line}" if line else "")
    if ratios:
        print("ratios, measured side by side in this run:")
        for ratio in ratios:
            print(ratio.line())
    print(f"reproduce: {reproduce}")
    out = os.getenv("BENCH_OUT")
    if out:
        record = {"name": name, "title": title, "lines": lines, "ratios": [asdict(r) for r in ratios]}
        record |= {"reproduce": reproduce, "measured": measured_on()}
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
