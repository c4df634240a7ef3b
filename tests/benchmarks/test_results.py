"""A results file is one run, stamped with where and when it ran and the command that reproduces it; a stamp the
page never recorded says so instead of being made up."""

import json
import re
from pathlib import Path

import numpy as np

from benchmarks import results

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def test_a_written_result_carries_its_stamp_its_command_and_its_figures(tmp_path):
    path = tmp_path / "sub" / "ab.json"
    written = results.write(path, "ab", ["--config", "neumf:model=neumf", "--peer", "EASE^R"],
                            {"rows": [{"hr@10": np.float32(0.5), "users": np.int64(610)}], "curve": np.arange(3)})
    assert json.loads(path.read_text()) == written
    assert written["command"] == "python -m benchmarks.ab --config neumf:model=neumf --peer 'EASE^R'"
    assert written["rows"] == [{"hr@10": 0.5, "users": 610}] and written["curve"] == [0, 1, 2]
    stamp = written["stamp"]
    assert re.fullmatch(r"[0-9a-f]{7,}", stamp["commit"]) and isinstance(stamp["uncommitted"], bool)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", stamp["date"])
    assert stamp["machine"]["cores"] >= 1 and re.fullmatch(r"3\.\d+\.\d+", stamp["machine"]["python"])


def test_a_note_of_what_shared_the_machine_is_written_beside_the_figures_and_only_when_given(tmp_path):
    assert results.write(tmp_path / "a.json", "images", [], {"runs": 5}, "CI shared the cores")["note"] == \
        "CI shared the cores"
    assert "note" not in results.write(tmp_path / "b.json", "images", [], {"runs": 5})


def test_the_line_above_a_table_names_the_command_the_commit_the_machine_and_the_note():
    result = {"stamp": {"commit": "abc1234", "uncommitted": True, "date": "2026-12-07 20:35 UTC",
                        "machine": {"cpu": "AMD EPYC", "cores": 2, "memory_gib": 24, "python": "3.11.7"},
                        "note": "tests shared the cores"},
              "command": "python -m benchmarks.shapes --quick", "note": "Before the MF start."}
    assert results.provenance(result) == (
        "Run: `python -m benchmarks.shapes --quick` at commit abc1234 (+ uncommitted changes), 2026-12-07 20:35 UTC, "
        "2 cores (AMD EPYC), 24 GiB, Python 3.11.7; tests shared the cores. Before the MF start.")


def test_a_stamp_the_page_never_recorded_says_so_and_names_the_commit_that_entered_the_figures():
    result = {"stamp": "not recorded", "entered_in": "376e934 (2026-11-28 10:50 UTC)",
              "machine": "2 cores (Intel Xeon)", "command": "python -m benchmarks.multi_host"}
    assert results.provenance(result) == ("Run: `python -m benchmarks.multi_host`, stamp not recorded: entered in "
                                          "commit 376e934 (2026-11-28 10:50 UTC); 2 cores (Intel Xeon).")


def test_every_results_file_is_stamped_or_says_its_stamp_was_not_recorded():
    files = sorted(RESULTS.glob("*.json"))
    assert files
    for path in files:
        result = json.loads(path.read_text())
        assert result["command"].startswith("python -m benchmarks."), path.name
        stamp = result["stamp"]
        if stamp == results.NOT_RECORDED:
            assert re.match(r"[0-9a-f]{7} \(\d{4}-\d\d-\d\d", result["entered_in"]) and result["machine"], path.name
        else:
            assert re.fullmatch(r"[0-9a-f]{7,}", stamp["commit"]) and re.match(r"\d{4}-\d\d-\d\d", stamp["date"])
            assert {"cpu", "cores", "memory_gib", "python"} <= set(stamp["machine"]), path.name


def test_a_markdown_table_right_aligns_the_numeric_columns_it_is_told_of():
    assert results.table(["model", "HR@10"], [["mf", "0.7590"]], "lr") == (
        "| model | HR@10 |\n|---|---:|\n| mf | 0.7590 |")
    assert results.interval([0.0027, -0.0093, 0.0153]) == "+0.0027 [-0.0093, +0.0153]"
