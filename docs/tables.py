"""Writes the tables of docs/ that the code defines, so they cannot drift from it.

    .venv/bin/python docs/tables.py           # rewrite every generated block in docs/*.md
    .venv/bin/python docs/tables.py --check   # exit 1 naming each block that differs (tests/test_docs.py)

A block is the lines between `<!-- generated: NAME (python docs/tables.py) -->` and `<!-- end generated -->`:
the hyperparameters (`container/hyperparameters.py`'s schema and `TrainConfig`'s defaults), the
MetricDefinitions (`container/metric_definitions.py`), serve's environment (`container/serve_config.py`), and
benchmark tables from their stamped results files (`benchmarks/results/NAME.json`, the block named NAME; each
rendered by its benchmark's `markdown`), so a page's figure and its file cannot disagree.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z0-9-]+) \(python docs/tables\.py\) -->\n)(?P<body>.*?)"
                   r"(<!-- end generated -->)", re.S)


def results_table(name: str, render_result: Callable[[dict], str]) -> Callable[[], str]:
    """A benchmark's table, from its stamped results file (`benchmarks/results/NAME.json`)."""
    def make() -> str:
        path = ROOT / "benchmarks" / "results" / f"{name}.json"
        if not path.is_file():
            return f"No results yet: `{path.relative_to(ROOT)}` is written by the command above."
        return render_result(json.loads(path.read_text()))
    return make


def benchmark_tables() -> dict[str, Callable[[dict], str]]:
    """Each results file of `benchmarks/results/` (by name) and what renders it: its benchmark's `markdown`."""
    from benchmarks import ab, aws_reference, catalogue, diversity, filters, foldin, images, multi_host, multimodel, \
        quality, scale, scale_serving, shapes, step_speed, warm_start

    return {"shapes": shapes.markdown, "shapes-large": shapes.markdown, "quality-ml-latest-small": quality.markdown,
            "quality-ml-100k": quality.markdown, "ab-default-vs-peers": ab.markdown, "ab-sparse": ab.markdown,
            "ab-sparse-items": ab.markdown, "aws-reference": aws_reference.markdown,
            "step-speed-ml-latest-small": step_speed.markdown, "scale-cost-curve": scale.cost_curve_markdown,
            "scale-default-job-25m": scale.default_job_markdown, "scale-read-25m": scale.read_markdown,
            "scale-serve": scale_serving.serve_markdown, "scale-batch": scale_serving.batch_markdown,
            "multi-host": multi_host.markdown, "serving": serving_markdown, "foldin": foldin.markdown,
            "foldin-latency-idle": foldin.markdown, "warm-start": warm_start.markdown,
            "diversity": diversity.markdown, "filters": filters.markdown,
            "multimodel": multimodel.markdown, "catalogue": catalogue.markdown, "catalogue-1m": catalogue.markdown,
            "images": images.markdown}


def generators() -> dict[str, Callable[[], str]]:
    from apiref import markdown as api_reference  # docs/apiref.py, beside this file
    from layoutref import markdown as layout
    from container import hyperparameters, metric_definitions, serve_config

    return {"hyperparameters": hyperparameters.markdown_table, "api-reference": api_reference, "layout": layout,
            "metric-definitions": metric_definitions.markdown_table,
            "serve-environment": serve_config.markdown_table,
            **{name: results_table(name, render) for name, render in benchmark_tables().items()}}


#: The ratios of `serving.json` the page shows (the file holds every one the run printed).
SERVING_RATIOS = ("one pair / no-op (c=4)", "top-10 / no-op (c=4)", "top-10, gevent / sync workers (c=4)",
                  "top-10 / naive (c=4)", "top-10 / numpy roofline, model's shapes (2 cores, c=4)",
                  "top-10 / numpy roofline, cheapest exact (2 cores, c=4)")


def serving_markdown(result: dict) -> str:
    """The serving-speed tables of `benchmarks/results/serving.json`: each server and request at 1 and 4
    connections, then the run's ratios. (Its place is `benchmarks/serve_bench.py`, beside the code that writes
    the file, as every other benchmark's is.)"""
    from benchmarks import results

    pairs: dict[tuple[str, str], dict[int, dict]] = {}
    for r in result["rows"]:
        pairs.setdefault((r["server"], r["request"]), {})[r["connections"]] = r
    rows = [[server, request, *(" / ".join(fmt.format(by[c][key]) for c in sorted(by))
                                for key, fmt in (("rps", "{:,.0f}"), ("p50_ms", "{:.2f}"), ("p99_ms", "{:.2f}")))]
            for (server, request), by in pairs.items()]
    ratios = [[name, f"{value:.3f}" if value < 1 else f"{value:.2f}"] for name, value in result["ratios"].items()
              if name in SERVING_RATIOS]
    failed = sum(r["non_2xx"] for r in result["rows"])
    return "\n\n".join([
        f"{results.provenance(result)} {result['model']}, {result['seconds']} s a row; {failed} non-2xx answers.",
        results.table(["server", "request", "requests/s (1 / 4 connections)", "p50 ms (1 / 4)", "p99 ms (1 / 4)"],
                      rows, "llrrr"),
        results.table(["ratio (same run)", "value"], ratios, "lr")])


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
