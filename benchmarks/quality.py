"""Quality and training speed of each model kind on one ratings file, in one run, as a Markdown table.

    .venv/bin/python -m benchmarks.quality --movielens ml-latest-small

Every model uses the library's default hyperparameters (the container's defaults) with only the kind changed,
early-stops on the validation split (each user's latest training interaction) and is ranked on the same
seeded test candidates as the popularity baseline. acc@0.5 and ECE read the calibrated probability that
`serve` answers (`ncf/calibration.py`); "plain" columns the uncalibrated sigmoid, for comparison.
Protocols: `ncf/evaluation.py` (LOO-99, the blog's 10 latest, full ranking) and docs/benchmarks.md. The
result is written, stamped, to `benchmarks/results/quality-DATA.json` (`quality-DATA-seed.json` for the seed
protocol; `--json` to change).
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
from ncf.calibration import Calibration  # noqa: E402
from ncf.evaluation import (balanced_metrics, candidate_metrics, draw_candidates, evaluate_candidates,  # noqa: E402
                            evaluate_full_ranking, popularity_scorer, popularity_top_k, score_candidates,
                            scorer_top_k)
from ncf.inference import NumpyScorer  # noqa: E402

RUNS = {
    "mf": {"model": "mf"},
    "neumf": {"model": "neumf"},
    "neumf+pretrain": {"model": "neumf", "pretrain": True},
    "gmf": {"model": "gmf"},
    "mlp": {"model": "mlp"},
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--protocol", choices=["loo", "seed"], default="loo",
                   help="loo: LOO-99 (test_k=1); seed: the AWS blog's split (test_k=10)")
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {list(RUNS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a default hyperparameter for every run, e.g. --set epochs=5")
    p.add_argument("--json", type=Path, help="where the stamped result goes (default: benchmarks/results/"
                                             "quality-DATA.json, -seed before .json for the seed protocol)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from ncf.models import export_weights
    from ncf.training import TrainConfig, fit, keras_logits

    started = time.perf_counter()
    data = prepare(read_interactions(ratings_path(args)), test_k=1 if args.protocol == "loo" else 10, validation_k=1)
    prep_seconds = time.perf_counter() - started
    candidates = draw_candidates(data.test, data.seen, 99, seed=0)
    known = data.seen_before_test()  # what full ranking excludes: the items trained on or selected on
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    base = TrainConfig(seed=args.seed, **overrides)

    rows = []
    pop = evaluate_candidates(popularity_scorer(data.popularity), candidates, probabilities=False)
    pop.update(evaluate_full_ranking(popularity_top_k(data.popularity, known), data.test, data.n_items,
                                     prefix="full_"))
    rows.append({"model": "popularity", **pop})
    for name in args.runs.split(","):
        config = replace(base, **RUNS[name])
        t0 = time.perf_counter()
        result = fit(data, config, on_epoch=lambda e: print("  " + e.line(), file=sys.stderr))
        seconds = time.perf_counter() - t0
        logits = score_candidates(keras_logits(result.model), candidates)  # ranked on logits, never ties
        metrics = candidate_metrics(logits, probabilities=False)
        metrics.update(balanced_metrics(result.calibration.probability(logits)))
        plain = balanced_metrics(Calibration().probability(logits))  # the uncalibrated sigmoid
        metrics.update({"plain_accuracy@0.5": plain["accuracy@0.5"], "plain_ece": plain["ece"]})
        scorer = NumpyScorer(config.model, export_weights(result.model))
        metrics.update(evaluate_full_ranking(scorer_top_k(scorer.all_items, known), data.test,
                                             data.n_items, prefix="full_"))
        epochs = sum(e.stage == config.model for e in result.history)  # not pretraining, not the refit
        rows.append({"model": name, **metrics, "epochs": epochs, "best_epoch": result.best_epoch,
                     "train_seconds": seconds, "samples_per_s": result.throughput()})
        print(f"{name}: {json.dumps(rows[-1])}", file=sys.stderr)

    name = label(args).replace("/", "-").removesuffix(".csv")
    path = args.json or results.RESULTS / f"quality-{name}{'-seed' if args.protocol == 'seed' else ''}.json"
    result = results.write(path, "quality", sys.argv[1:] if argv is None else argv, {
        "data": label(args), "protocol": args.protocol, "statistics": data.statistics(),
        "read_and_split_s": prep_seconds, "config": base.to_dict(), "rows": rows})
    print(markdown(result))


def markdown(result: dict) -> str:
    """docs/benchmarks.md's table of a results file: a row per model kind, popularity first; acc@0.5 and ECE of
    the calibrated probability with the plain sigmoid's in brackets. Speeds stay in the file."""
    def cell(row: dict, key: str, fmt: str) -> str:
        return "–" if row.get(key) is None else fmt.format(row[key])

    rows = [[r["model"], f"{cell(r, 'hr@10', '{:.4f}')} / {cell(r, 'ndcg@10', '{:.4f}')}",
             *(f"{cell(r, key, '{:.3f}')} ({cell(r, 'plain_' + key, '{:.3f}')})" if key in r else "–"
               for key in ("accuracy@0.5", "ece")),
             cell(r, "full_recall@10", "{:.4f}"), f"{r['epochs']} ({r['best_epoch']})" if "epochs" in r else "–"]
            for r in result["rows"]]
    return "\n\n".join([results.provenance(result), results.table(
        ["model", "HR@10 / NDCG@10", "acc@0.5 (plain)", "ECE (plain)", "full R@10", "epochs (best)"], rows,
        "lrrrrr")])


if __name__ == "__main__":
    main()
