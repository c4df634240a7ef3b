import json
import subprocess
import sys
from pathlib import Path

from ncf.recommender import Recommender

ROOT = Path(__file__).parents[2]


def run(*args):
    return subprocess.run([sys.executable, "-m", "ncf", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_train_writes_a_model_folder_that_serves(ratings_csv, tmp_path):
    out = run("train", "--ratings", str(ratings_csv), "--model-dir", str(tmp_path / "m"), "--epochs", "2",
              "--factors", "4", "--mlp-layers", "8,4", "--no-saved-model")
    assert out.returncode == 0, out.stderr
    assert "stage=neumf epoch=2/2" in out.stderr and "popularity: hr@10=" in out.stderr
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert meta["hyperparameters"]["mlp_layers"] == [8, 4] and "test" in meta["metrics"]
    assert len(Recommender.load(tmp_path / "m").recommend(7, k=3).items) == 3


def test_bad_input_exits_non_zero_with_the_reason(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId\n1,\n")
    out = run("train", "--ratings", str(bad), "--model-dir", str(tmp_path / "m"))
    assert out.returncode == 2 and "line 2: item id is empty" in out.stderr
    assert "Traceback" not in out.stderr
