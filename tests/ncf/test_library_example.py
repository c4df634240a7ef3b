"""docs/library.md's examples run as written: the page is the library's quickstart, so a rename or a changed
signature that breaks it fails here, not in a reader's hands."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_library_page_runs_as_written_and_ends_with_an_evaluation(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "library.md").read_text(), re.S)
    assert len(blocks) == 2, "the page's quickstart and its warm-start example"
    script = tmp_path / "example.py"
    script.write_text("\n".join(blocks))
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                                           "TF_CPP_MIN_LOG_LEVEL": "3", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    lines = dict(line.split(":", 1) for line in run.stdout.splitlines() if ":" in line)
    assert len(eval(lines["recommend"])) == 5  # noqa: S307 - a list of ids this test's own script printed
    assert "fallback=True" in lines["cold start"]
    for name in ("hr@10", "ndcg@10", "full_recall@10"):
        model, popularity = map(float, re.findall(r"(\d+\.\d+)", lines[name])[::2])
        assert 0.0 <= popularity <= 1.0 and 0.0 <= model <= 1.0
    model_hr, popularity_hr = map(float, re.findall(r"(\d+\.\d+)", lines["hr@10"])[::2])
    assert model_hr > popularity_hr, run.stdout  # planted tastes: a model that learned anything beats popularity
