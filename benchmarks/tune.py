"""Tunes our models' hyperparameters on the validation split, one axis at a time, and reports the test metrics.

    .venv/bin/python benchmarks/tune.py --ratings ../shared/data/ml-latest-small/ratings.csv --model mf

Coordinate search: starting from the library defaults, each axis in turn (learning rate, factors, layers,
negatives, L2, dropout, batch size) is swept with the others held, and the value with the best validation
HR@10 (NDCG@10 breaking ties) is kept before the next axis. Early stopping on validation chooses the epochs.
Test metrics are printed for every setting tried but never used to choose. Validation is each user's latest
training interaction, ranked against 99 sampled negatives (LOO-99, ../shared/reference/evaluation.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ncf.data import read_interactions  # noqa: E402
from ncf.dataset import prepare  # noqa: E402
from ncf.evaluation import draw_candidates, evaluate_candidates  # noqa: E402

AXES = {
    "learning_rate": [1e-3, 2e-3, 4e-3],
    "factors": [32, 64, 128],
    "mlp_layers": [[64, 32, 16], [128, 64, 32], [256, 128, 64]],
    "negatives": [4, 8],
    "l2": [0.0, 1e-7, 1e-6],
    "dropout": [0.0, 0.2],
    "batch_size": [4096, 16384],
}
#: Axes that do not apply to a model kind.
SKIP = {"mf": {"mlp_layers", "dropout"}, "gmf": {"mlp_layers", "dropout"}, "mlp": {"factors"}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratings", required=True)
    p.add_argument("--model", default="neumf")
    p.add_argument("--axes", default=",".join(AXES), help=f"comma-separated subset of {list(AXES)}")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from ncf.training import TrainConfig, fit, keras_scorer

    data = prepare(read_interactions(args.ratings), test_k=1, validation_k=1)
    test = draw_candidates(data.test, data.seen, 99, seed=0)
    best = TrainConfig(model=args.model)
    tried: dict[str, dict] = {}

    def run(config: TrainConfig) -> dict:
        key = json.dumps({k: v for k, v in config.to_dict().items() if k != "seed"}, sort_keys=True)
        if key not in tried:
            t0 = time.perf_counter()
            result = fit(data, config, on_epoch=lambda e: None)
            tried[key] = {"config": config.to_dict(), "validation": result.best_validation,
                          "test": evaluate_candidates(keras_scorer(result.model), test),
                          "best_epoch": result.best_epoch, "seconds": time.perf_counter() - t0}
            row = tried[key]
            print(f"  val {row['validation']['hr@10']:.4f}/{row['validation']['ndcg@10']:.4f} "
                  f"test {row['test']['hr@10']:.4f}/{row['test']['ndcg@10']:.4f} epoch {row['best_epoch']} "
                  f"{row['seconds']:.0f}s {key}", file=sys.stderr, flush=True)
        return tried[key]

    def score(row: dict) -> tuple[float, float]:
        return row["validation"]["hr@10"], row["validation"]["ndcg@10"]

    for axis in args.axes.split(","):
        if axis in SKIP.get(args.model, set()):
            continue
        rows = {json.dumps(v): run(replace(best, **{axis: v})) for v in AXES[axis]}
        chosen = max(rows, key=lambda v: score(rows[v]))
        best = replace(best, **{axis: json.loads(chosen)})
        print(f"{axis}: {chosen}", file=sys.stderr, flush=True)

    final = run(best)
    print(f"\n{args.model} on {Path(args.ratings).parent.name}, chosen on validation: {json.dumps(best.to_dict())}\n")
    print("| setting | val HR@10 | val NDCG@10 | test HR@10 | test NDCG@10 | best epoch | s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in sorted(tried.values(), key=score, reverse=True):
        diff = {k: v for k, v in row["config"].items() if TrainConfig(model=args.model).to_dict()[k] != v}
        label = ", ".join(f"{k}={v}" for k, v in diff.items() if k != "model") or "defaults"
        print(f"| {label} | {row['validation']['hr@10']:.4f} | {row['validation']['ndcg@10']:.4f} | "
              f"{row['test']['hr@10']:.4f} | {row['test']['ndcg@10']:.4f} | {row['best_epoch']} | {row['seconds']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"chosen": best.to_dict(), "final": final, "tried": list(tried.values())},
                                        indent=2))


if __name__ == "__main__":
    main()
