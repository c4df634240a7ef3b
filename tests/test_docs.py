"""The docs cannot drift from the code: generated tables match it, links land on real headings, and the
README stays a five-minute read with no path into anyone's checkout. Benchmark tables are generated from their
stamped results files (`benchmarks/results/`), so a figure on the page and its file cannot disagree."""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\((?!https?://|mailto:)([^)\s]+)\)")


def test_every_generated_table_is_what_the_code_generates_today():
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "tables.py"), "--check"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_each_generated_table_appears_exactly_once():
    sys.path.insert(0, str(ROOT / "docs"))
    from tables import blocks, generators

    found = [name for page in PAGES for name in blocks(page.read_text())]
    assert sorted(found) == sorted(generators())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_every_relative_link_lands_on_a_file_and_a_heading_that_exist():
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in LINK.findall(text):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def tables_module():
    sys.path.insert(0, str(ROOT / "docs"))
    import tables

    return tables


def test_every_results_file_has_its_table_and_every_benchmark_table_its_file():
    files = {path.stem for path in (ROOT / "benchmarks" / "results").glob("*.json")}
    assert set(tables_module().benchmark_tables()) == files


def test_a_figure_that_changes_in_its_results_file_no_longer_matches_the_page():
    tables = tables_module()
    on_page = {m["name"]: m["body"].strip("\n") for m in tables.BLOCK.finditer(
        (ROOT / "docs" / "benchmarks.md").read_text())}["warm-start"]
    render = tables.benchmark_tables()["warm-start"]
    result = json.loads((ROOT / "benchmarks" / "results" / "warm-start.json").read_text())
    assert render(result) == on_page
    result["rows"][0]["hr@10"] += 0.03  # one fresh job's seed: the mean the page shows moves
    assert render(result) != on_page


def test_each_benchmark_table_shows_where_its_figures_come_from():
    tables = tables_module()
    for name, render in tables.benchmark_tables().items():
        result = json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())
        shown = render(result)
        assert result["command"] in shown, name
        assert (result["stamp"]["commit"] if isinstance(result["stamp"], dict) else result["entered_in"]) in shown, name


def test_the_benchmarks_page_is_a_short_reference():
    assert len((ROOT / "docs" / "benchmarks.md").read_bytes()) <= 25 * 1024


def test_the_readme_is_short_and_no_page_points_into_a_local_checkout():
    assert len((ROOT / "README.md").read_bytes()) <= 10 * 1024  # "under 10 KB" (#33)
    for page in PAGES:
        assert "../shared" not in page.read_text(), page.name
