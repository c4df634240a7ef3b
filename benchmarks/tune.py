"""Tunes our models' hyperparameters on the validation split, one axis at a time, and reports the test metrics.

    .venv/bin/python -m benchmarks.tune --movielens ml-latest-small --model mf
    .venv/bin/python -m benchmarks.tune --movielens ml-latest-small --model neumf --axes finetune_rate,factors

Coordinate search: starting from the library defaults, each axis in turn (learning rate, factors, layers,
negatives, L2, dropout, batch size) is swept with the others held, and the value with the best validation
HR@10 (NDCG@10 breaking ties), averaged over `--seeds` seeds, is kept before the next axis. A larger batch
takes a proportionally larger learning rate. Early stopping on validation chooses the epochs; test metrics
(of the refit model, the library's default) are printed for every setting but never used to choose.
Validation is each user's latest training interaction, ranked against 99 sampled negatives (LOO-99). The
result is written, stamped, to `benchmarks/results/tune-MODEL.json` (`--json` to change).
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

from benchmarks import results  # noqa: E402
from benchmarks.datasets import add_arguments, label, ratings_path  # noqa: E402
from ncf.data import read_interactions  # noqa: E402
from ncf.dataset import prepare  # noqa: E402
from ncf.defaults import resolved  # noqa: E402
from ncf.evaluation import draw_candidates, evaluate_candidates  # noqa: E402

AXES = {
    "learning_rate": [1e-3, 2e-3, 4e-3],
    "factors": [32, 64, 128],
    "mlp_layers": [[64, 32, 16], [128, 64, 32], [256, 128, 64]],
    "negatives": [4, 8],
    "l2": [0.0, 1e-7, 1e-6, 3e-6],
    "dropout": [0.0, 0.2],
    "batch_size": [4096, 16384],  # the learning rate scales with it
    "finetune_rate": [0.05, 0.1, 0.3],  # NeuMF pretrained from MF only
}
#: Axes that do not apply to a model kind.
SKIP = {"mf": {"mlp_layers", "dropout"}, "gmf": {"mlp_layers", "dropout"}, "mlp": {"factors"}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--model", default="mf")
    p.add_argument("--seeds", type=int, default=1, help="seeds per setting; validation and test are their means")
    p.add_argument("--axes", default=",".join(AXES), help=f"comma-separated subset of {list(AXES)}")
    p.add_argument("--set", default="", metavar="KEY=VALUE,...",
                   help="the search's starting point: the defaults with these hyperparameters changed, spelled as "
                        "`train --set` takes them (e.g. pretrain=mf)")
    p.add_argument("--json", type=Path, help="where the stamped result goes (default: benchmarks/results/"
                                             "tune-MODEL.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from ncf.training import TrainConfig, fit, keras_scorer

    data = prepare(read_interactions(ratings_path(args)), test_k=1, validation_k=1)
    test = draw_candidates(data.test, data.seen, 99, seed=0)
    from benchmarks.ab import parse_config

    best = replace(TrainConfig(model=args.model), **parse_config(f"start:{args.set}")[1])
    best = resolved(best, len(data.train))[0]  # batch_size=auto as the job resolves it: the axis scales from it
    tried: dict[str, dict] = {}

    def run(config: TrainConfig) -> dict:
        key = json.dumps({k: v for k, v in config.to_dict().items() if k != "seed"}, sort_keys=True)
        if key not in tried:
            t0, runs = time.perf_counter(), []
            for seed in range(args.seeds):
                result = fit(data, replace(config, seed=seed), on_epoch=lambda e: None)
                runs.append((result.best_validation, evaluate_candidates(keras_scorer(result.model), test),
                             result.best_epoch))
            tried[key] = {"config": config.to_dict(), "validation": mean([r[0] for r in runs]),
                          "test": mean([r[1] for r in runs]), "best_epoch": [r[2] for r in runs],
                          "seconds": (time.perf_counter() - t0) / args.seeds}
            row = tried[key]
            print(f"  val {row['validation']['hr@10']:.4f}/{row['validation']['ndcg@10']:.4f} "
                  f"test {row['test']['hr@10']:.4f}/{row['test']['ndcg@10']:.4f} epochs {row['best_epoch']} "
                  f"{row['seconds']:.0f}s {key}", file=sys.stderr, flush=True)
        return tried[key]

    def score(row: dict) -> tuple[float, float]:
        return row["validation"]["hr@10"], row["validation"]["ndcg@10"]

    for axis in args.axes.split(","):
        if axis in SKIP.get(args.model, set()) or (axis == "finetune_rate" and (
                best.model != "neumf" or best.pretrain not in ("auto", "mf"))):  # auto: mf on MovieLens' small sets
            continue
        rows = {json.dumps(v): run(setting(best, axis, v)) for v in AXES[axis]}
        chosen = max(rows, key=lambda v: score(rows[v]))
        best = setting(best, axis, json.loads(chosen))
        print(f"{axis}: {chosen}", file=sys.stderr, flush=True)

    final = run(best)
    defaults = TrainConfig(model=args.model).to_dict()
    for row in tried.values():
        changed = {k: v for k, v in row["config"].items() if defaults[k] != v and k != "model"}
        row["setting"] = ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults"
    result = results.write(args.json or results.RESULTS / f"tune-{args.model}.json", "tune",
                           sys.argv[1:] if argv is None else argv, {
                               "data": label(args), "model": args.model, "seeds": args.seeds, "chosen": best.to_dict(),
                               "final": final, "tried": sorted(tried.values(), key=score, reverse=True)})
    print(markdown(result))


def markdown(result: dict) -> str:
    """A results file's settings, best validation HR@10 first, with the test metrics they were not chosen on."""
    rows = [[r["setting"], *(f"{r[part][metric]:.4f}" for part in ("validation", "test") for metric in ("hr@10",
                                                                                                      "ndcg@10")),
             ", ".join(map(str, r["best_epoch"])), f"{r['seconds']:.0f}"] for r in result["tried"]]
    return "\n\n".join([
        f"{results.provenance(result)} {result['model']} on {result['data']}, mean of {result['seeds']} seed(s) a row.",
        results.table(["setting", "val HR@10", "val NDCG@10", "test HR@10", "test NDCG@10", "best epoch", "s"], rows,
                      "lrrrrrr")])


def setting(config: TrainConfig, axis: str, value) -> TrainConfig:
    """`config` with one axis changed; a batch size change scales the learning rate with it."""
    if axis == "batch_size":
        return replace(config, batch_size=value, learning_rate=config.learning_rate * value / config.batch_size)
    return replace(config, **{axis: value})


def mean(metrics: list[dict]) -> dict:
    return {k: float(sum(m[k] for m in metrics) / len(metrics)) for k in metrics[0]}


if __name__ == "__main__":
    main()
