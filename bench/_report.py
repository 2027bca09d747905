"""What every benchmark leaves behind: the figures it prints, and the same as JSON for bench/RESULTS.md.

A benchmark ends with one `report(...)` call. It prints the lines, the ratios
(each against its goal, when it has one) and the command that reproduces the
run. When `BENCH_OUT` names a directory (`bench/run_all.py` sets it), the same
goes to `<BENCH_OUT>/<name>.json`, from which run_all writes RESULTS.md.
"""

import json
import os
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Ratio:
    what: str
    value: float
    goal: float | None = None  # at most this; None: measured, no goal

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return ""
        return "OK" if self.value <= self.goal else "OVER"

    def line(self) -> str:
        goal = f"   goal <= {self.goal:g}  {self.verdict}" if self.goal is not None else ""
        return f"  {self.what:58s} {self.value:8.3f}{goal}"


def command(*parts: str | float) -> str:
    """The shell command that reproduces a run, quoted."""
    return " ".join(shlex.quote(str(part)) for part in parts)


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
        record["reproduce"] = reproduce
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
