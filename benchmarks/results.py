"""Benchmark results as data: each benchmark writes what it measured as one stamped JSON file under
`benchmarks/results/`, and docs/benchmarks.md's tables are generated from those files (`docs/tables.py`), so
a figure has one source and a test fails when the page and its file disagree.

A results file is one run: `{"stamp": ..., "command": ..., <the figures>}`.

- `stamp`: where and when it ran, `{"commit", "uncommitted", "date", "machine": {"cpu", "cores",
  "memory_gib", "python"}}` (`stamp()`), with an optional `note` saying what else shared the machine.
  Figures transcribed from the page's earlier prose keep the stamp the page gave them; where it gave none,
  `"stamp": "not recorded"`, `entered_in` names the commit that put the figures on the page and `machine`
  what the page said of the machine. A stamp is never invented.
- `command`: the command that reproduces it, `python -m benchmarks.NAME ARGS`, the arguments exactly as
  given (runs from before `benchmarks/` was a package gave the same arguments to `python benchmarks/NAME.py`).
- `note` (optional): what a reader must know to read the figures (an older default, a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NOT_RECORDED = "not recorded"


def stamp() -> dict:
    """The commit (and whether tracked files differ from it), the UTC time, and the machine."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        memory = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")) / 2**20
    except (OSError, StopIteration):  # not Linux
        cpu, memory = platform.processor(), float("nan")
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted": bool(git("status", "--porcelain", "--untracked-files=no")),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory),
                        "python": platform.python_version()}}


def describe(stamp: dict | str) -> str:
    """One line: `commit abc1234 (+ uncommitted changes), 2026-12-07 20:35 UTC, 2 cores (CPU), 24 GiB, Python
    3.11.7`, then the stamp's note."""
    if not isinstance(stamp, dict):
        return str(stamp)
    m = stamp["machine"]
    machine = f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}" \
        if isinstance(m, dict) else str(m)
    dirty = " (+ uncommitted changes)" if stamp.get("uncommitted") else ""
    line = f"commit {stamp['commit']}{dirty}, {stamp['date']}, {machine}"
    return f"{line}; {stamp['note']}" if stamp.get("note") else line


def provenance(result: dict) -> str:
    """The line above a generated table: its command, stamp and note (a part of a file from another run has a
    stamp of its own and no command)."""
    ran = f"Run: `{result['command']}`" if "command" in result else ""
    if result["stamp"] == NOT_RECORDED:
        where = f"stamp not recorded: entered in commit {result['entered_in']}; {result['machine']}"
        where = f", {where}" if ran else where
    else:
        where = f" at {describe(result['stamp'])}" if ran else describe(result["stamp"])
    note = f" {result['note'].rstrip('.')}." if result.get("note") else ""  # a sentence: text may follow
    return f"{ran}{where}.{note}"


def command(name: str, argv: list[str]) -> str:
    """How to run `benchmarks/NAME.py` again with `argv`."""
    return " ".join(["python -m", f"benchmarks.{name}", shlex.join(argv)]).strip()


def add_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """`--json PATH`, by default `benchmarks/results/NAME.json`."""
    default = RESULTS / f"{name}.json"
    parser.add_argument("--json", type=Path, default=default,
                        help=f"where the stamped result goes (default: {default.relative_to(ROOT)})")


def write(path: Path, name: str, argv: list[str], figures: dict, note: str | None = None) -> dict:
    """`figures`, stamped and with the command that made them (and `note`, what else shared the machine, when
    given), written to `path`; returns what was written."""
    figures = {**figures, "note": note} if note else figures
    return save(path, {"stamp": stamp(), "command": command(name, argv), **figures})


def save(path: Path, result: dict) -> dict:
    """`result` written to `path` as every results file is; returns it as read back."""
    text = json.dumps(result, indent=1, default=_plain)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return json.loads(text)


def load(name: str) -> dict:
    """`benchmarks/results/NAME.json`."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def _plain(value):
    """numpy scalars and arrays as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def table(headers: list[str], rows: list[list], right: str = "") -> str:
    """A Markdown table; `right` holds one letter per column, `r` for a right-aligned (numeric) one."""
    align = ["---:" if right[n:n + 1] == "r" else "---" for n in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def interval(d: list[float]) -> str:
    """A paired difference and its 95% interval, `[mean, low, high]`, as `+0.0027 [-0.0093, +0.0153]`."""
    return f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]"
