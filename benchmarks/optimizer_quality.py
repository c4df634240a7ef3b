"""Lazy Adam against Keras' dense Adam: test quality, 3 seeds, two data sets, paired bootstrap.

    .venv/bin/python benchmarks/optimizer_quality.py                      # mf on both sets (~15 min, 2 cores)
    .venv/bin/python benchmarks/optimizer_quality.py --models mf,neumf --seeds 0,1,2

`optimizer=lazy_adam` (the default) updates only the embedding rows a batch touches; `optimizer=adam` updates
every row every step (`ncf/optimizers.py` says what differs). Each (data set, model, seed) trains both with
the library's defaults otherwise (early stopping, refit), and both are ranked on the same LOO-99 test
candidates; the per-user hits and NDCGs of all seeds are pooled for a paired bootstrap (lazy minus dense,
95% interval). "within noise" is the verdict the switch needs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.paired import bootstrap, rank_metrics  # noqa: E402
from ncf.data import read_interactions  # noqa: E402
from ncf.dataset import prepare  # noqa: E402
from ncf.evaluation import draw_candidates, score_candidates  # noqa: E402

DATA = {"ml-latest-small": ROOT.parent / "shared" / "data" / "ml-latest-small" / "ratings.csv",
        "ml-100k": ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="mf")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--data", default=",".join(DATA))
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from ncf.training import TrainConfig, fit, keras_scorer

    seeds = [int(s) for s in args.seeds.split(",")]
    rows, verdicts = [], []
    for name in args.data.split(","):
        data = prepare(read_interactions(DATA[name]), test_k=1, validation_k=1)
        candidates = draw_candidates(data.test, data.seen, 99, seed=0)
        for model in args.models.split(","):
            per_user = {"lazy_adam": ([], []), "adam": ([], [])}
            for seed in seeds:
                for optimizer in per_user:
                    config = replace(TrainConfig(), model=model, seed=seed, optimizer=optimizer)
                    t0 = time.perf_counter()
                    result = fit(data, config, on_epoch=lambda e: None)
                    hits, gains = rank_metrics(score_candidates(keras_scorer(result.model), candidates))
                    per_user[optimizer][0].append(hits)
                    per_user[optimizer][1].append(gains)
                    rows.append((name, model, seed, optimizer, hits.mean(), gains.mean(), result.best_epoch,
                                 result.throughput(), time.perf_counter() - t0))
                    print("  " + " ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
            pooled = {k: (np.concatenate(h), np.concatenate(g)) for k, (h, g) in per_user.items()}
            verdicts.append((name, model, bootstrap(pooled["lazy_adam"], pooled["adam"], "lazy_adam", "adam")))

    print(f"\n| data | model | seed | optimizer | HR@10 | NDCG@10 | best epoch | samples/s | job s |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for name, model, seed, optimizer, hr, ndcg, best, speed, seconds in rows:
        print(f"| {name} | {model} | {seed} | {optimizer} | {hr:.4f} | {ndcg:.4f} | {best} | {speed:,.0f} | "
              f"{seconds:.0f} |")
    print(f"\nPaired bootstrap over test users x {len(seeds)} seeds (2,000 resamples), lazy_adam minus adam:\n")
    print("| data | model | HR@10 diff [95% CI] | NDCG@10 diff [95% CI] | verdict |")
    print("|---|---|---|---|---|")
    for name, model, b in verdicts:
        cells = [f"{b[k][0]:+.4f} [{b[k][1]:+.4f}, {b[k][2]:+.4f}]" for k in ("hr", "ndcg")]
        print(f"| {name} | {model} | {cells[0]} | {cells[1]} | {b['verdict']} |")


if __name__ == "__main__":
    main()
