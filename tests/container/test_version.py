"""`ncf-version` says what an environment contains: the lock it came from, Python, every package."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from container.version import report

ROOT = Path(__file__).resolve().parents[2]


def test_the_report_names_the_lock_by_its_sha256_and_lists_the_installed_packages(tmp_path):
    lock = tmp_path / "image-cpu.lock"
    lock.write_text("numpy==2.3.0 \\\n    --hash=sha256:00\n")
    out = report({"NCF_LOCK_FILE": str(lock), "NCF_REVISION": "abc123"})
    assert out["lock"] == {"file": str(lock), "sha256": hashlib.sha256(lock.read_bytes()).hexdigest()}
    assert out["revision"] == "abc123" and out["python"].startswith("3.")
    import numpy

    assert out["packages"]["numpy"] == numpy.__version__


def test_outside_the_image_revision_and_lock_are_null_not_invented():
    out = report({})
    assert out["revision"] is None and out["lock"] is None


def test_the_command_prints_json():
    printed = subprocess.run([sys.executable, "-c", "from container.version import main; main()"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    assert "flask" in json.loads(printed)["packages"]
