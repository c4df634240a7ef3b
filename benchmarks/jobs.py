"""The real `train` on a ratings file, timed as a user would see it (`run_job`), and synthetic data with
ml-25m's shape scaled to any size (`shape`, `synthetic`): what `scale` and `shapes` measure jobs with."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ML25M = {"interactions": 23_000_000, "users": 161_916, "items": 59_000}
SIZES = {"100k": 100_000, "1m": 1_000_000, "5m": 5_000_000, "25m": ML25M["interactions"]}
# One epoch of the model itself: no refit, and no pretraining stage (`pretrain=auto` adds an MF stage to NeuMF
# jobs whose validation holds out every user, as the 100k and 1M rows' do), so every row measures the same unit.
ONE_STAGE = {"refit": "false", "patience": "0", "pretrain": "none"}
ONE_EPOCH = {"epochs": "1", **ONE_STAGE}


def shape(interactions: int) -> tuple[int, int]:
    """ml-25m's users and items scaled to `interactions`: users in proportion (~142 interactions each), items
    with its square root (in proportion, 100k interactions would have 256 items, denser than any real set)."""
    scale = interactions / ML25M["interactions"]
    return max(100, round(ML25M["users"] * scale)), max(50, round(ML25M["items"] * scale ** 0.5))


def synthetic(work: Path, interactions: int, users: int, items: int) -> Path:
    """A CSV of planted interactions (`ncf.synthetic`, seed 0) in `work`, written once and reused."""
    from ncf.synthetic import SyntheticSpec, generate

    path = work / f"synthetic-{interactions}-{users}x{items}.csv"
    if not path.exists():
        generate(SyntheticSpec(interactions=interactions, users=users, items=items, seed=0,
                               min_per_user=min(5, interactions // users))).write(path)
    return path


def run_job(ratings: Path, out: Path, settings: dict[str, str]) -> dict:
    """The real `train` on `ratings`; its timings, epoch lines, metrics, wall time and peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    command = [str(ROOT / ".venv" / "bin" / "train"), "--ratings", str(ratings), "--model-dir", str(out / "model"),
               "--output-dir", str(out / "output")] + [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    log_path = out / "train.log"
    out.mkdir(parents=True)
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    text = log_path.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"train failed on {ratings}:\n{text[-3000:]}")
    metrics = json.loads((out / "output" / "metrics.json").read_text())
    rounds = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in text.splitlines() if " epoch=" in line
              and "progress" not in line]
    epoch_s: dict[tuple[str, str], float] = {}  # per epoch of each stage: a long epoch logs a line per round
    for r in rounds:
        key = (r.get("stage", ""), r["epoch"].split("/")[0])
        epoch_s[key] = epoch_s.get(key, 0.0) + float(r["seconds"])
    size = sum(f.stat().st_size for f in (out / "model").rglob("*") if f.is_file())
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "seconds": metrics["seconds"],
            "samples_per_s": metrics["train_samples_per_s"], "epoch_s": list(epoch_s.values()),
            "rounds": len(rounds), "refit_epochs": sum(1 for stage, _ in epoch_s if stage.startswith("refit")),
            "stages": {stage: sum(1 for s, _ in epoch_s if s == stage) for stage, _ in epoch_s},
            "best_epoch": metrics["best_epoch"], "log": text,
            "test_hr": metrics["test"].get("hr@10", float("nan")),
            "popularity_hr": metrics["popularity"].get("hr@10", float("nan")),
            "model_mb": size / 1e6, "data": metrics["data"], "model_dir": str(out / "model")}
