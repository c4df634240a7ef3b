"""Writes the tables of docs/ that the code defines, so they cannot drift from it.

    .venv/bin/python docs/tables.py           # rewrite every generated block in docs/*.md
    .venv/bin/python docs/tables.py --check   # exit 1 naming each block that differs (tests/test_docs.py)

A block is the lines between `<!-- generated: NAME (python docs/tables.py) -->` and `<!-- end generated -->`:
the hyperparameters (`container/hyperparameters.py`'s schema and `TrainConfig`'s defaults), the
MetricDefinitions (`container/metric_definitions.py`), serve's environment (`container/serve_config.py`), and
benchmark tables from their stamped results files (`benchmarks/results/*.json`).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z-]+) \(python docs/tables\.py\) -->\n)(?P<body>.*?)"
                   r"(<!-- end generated -->)", re.S)


def results_table(name: str, render_result: Callable[[dict], str]) -> Callable[[], str]:
    """A benchmark's table, from its stamped results file (`benchmarks/results/NAME.json`)."""
    def make() -> str:
        path = ROOT / "benchmarks" / "results" / f"{name}.json"
        if not path.is_file():
            return f"No results yet: `{path.relative_to(ROOT)}` is written by the command above."
        return render_result(json.loads(path.read_text()))
    return make


def generators() -> dict[str, Callable[[], str]]:
    from benchmarks import shapes
    from container import hyperparameters, metric_definitions, serve_config

    return {"hyperparameters": hyperparameters.markdown_table,
            "metric-definitions": metric_definitions.markdown_table,
            "serve-environment": serve_config.markdown_table,
            "shapes": results_table("shapes", shapes.markdown)}


def render(text: str, tables: dict[str, str]) -> str:
    """`text` with each generated block's body replaced by its table (unknown names are an error)."""
    def body(match: re.Match) -> str:
        name = match["name"]
        if name not in tables:
            raise SystemExit(f"docs/tables.py: no generator for block {name!r}; known: {sorted(tables)}")
        return f"{match.group(1)}\n{tables[name]}\n\n{match.group(4)}"

    return BLOCK.sub(body, text)


def blocks(text: str) -> list[str]:
    return [m["name"] for m in BLOCK.finditer(text)]


def stale(docs: Path = ROOT / "docs") -> list[str]:
    """`page: block` for every block whose text differs from what the code generates."""
    tables = {name: make() for name, make in generators().items()}
    out = []
    for page in sorted(docs.glob("*.md")):
        text = page.read_text()
        for name in blocks(text):
            one = BLOCK.search(text, text.index(f"<!-- generated: {name} "))
            if render(one.group(0), tables) != one.group(0):
                out.append(f"{page.name}: {name}")
    return out


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        differing = stale()
        for line in differing:
            print(f"stale: {line} (run: .venv/bin/python docs/tables.py)", file=sys.stderr)
        return 1 if differing else 0
    tables = {name: make() for name, make in generators().items()}
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text()
        new = render(text, tables)
        if new != text:
            page.write_text(new)
            print(f"rewrote {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
