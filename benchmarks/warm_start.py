"""Warm start against a fresh job on the same data: test quality and wall time, over seeds.

    .venv/bin/python -m benchmarks.warm_start --movielens ml-latest-small,ml-100k --seeds 0,1,2

A time split: the first 80% of each data set's interactions (by timestamp) train model 0, with the default
hyperparameters; then all of them train twice: from model 0's weights (`ncf.warmstart`, as a job with a
`model` channel does) and afresh. Both end as a default job does (early stopping, refit=auto) and are
ranked on the same test candidates (LOO-99 on all the data); a paired bootstrap over test users x seeds
compares them. The target: the warm start reaches the fresh job's quality (within noise) in <= 50% of its time.
The result is written, stamped, to `benchmarks/results/warm-start.json` (`--json` to change).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.datasets import add_cache_argument, movielens  # noqa: E402
from benchmarks.paired import bootstrap, rank_metrics  # noqa: E402
from benchmarks import results  # noqa: E402
from ncf.data import read_interactions  # noqa: E402
from ncf.dataset import prepare  # noqa: E402
from ncf.evaluation import draw_candidates, score_candidates  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--movielens", default="ml-latest-small,ml-100k", help="comma-separated MovieLens sets")
    add_cache_argument(p)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--model", default="neumf")
    p.add_argument("--warm-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a TrainConfig field for the warm job alone, e.g. learning_rate=0.0005")
    results.add_argument(p, "warm-start")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from ncf.training import TrainConfig, fit, keras_logits, to_artifact
    from ncf.warmstart import initialiser

    warm = {key: type(getattr(TrainConfig(), key))(value) for key, value in (pair.split("=", 1) for pair in args.warm_set)}
    rows, verdicts = [], []
    for name in args.movielens.split(","):
        raw = read_interactions(movielens(name, args))
        cut = np.quantile(raw.timestamps, 0.8)
        early = prepare(raw.select(raw.timestamps <= cut), test_k=1, validation_k=1)
        per = {"warm": ([], []), "fresh": ([], [])}
        for seed in (int(s) for s in args.seeds.split(",")):
            config = TrainConfig(model=args.model, seed=seed)
            t0 = time.perf_counter()
            first = to_artifact(fit(early, config, on_epoch=lambda e: None), early)
            first_s = time.perf_counter() - t0
            everything = prepare(raw, test_k=1, validation_k=1, known_users=first.users, known_items=first.items)
            candidates = draw_candidates(everything.test, everything.seen, 99, seed=0)
            for how in ("fresh", "warm"):
                t0 = time.perf_counter()
                initial = initialiser(first, everything.users, everything.items) if how == "warm" else None
                result = fit(everything, replace(config, **warm) if how == "warm" else config,
                             on_epoch=lambda e: None, initial=initial)
                seconds = time.perf_counter() - t0
                hits, gains = rank_metrics(score_candidates(keras_logits(result.model), candidates))
                per[how][0].append(hits)
                per[how][1].append(gains)
                epochs = len([h for h in result.history if h.stage != "refit"])
                rows.append((name, seed, how, hits.mean(), gains.mean(), epochs, result.best_epoch, seconds,
                             first_s))
                print("  " + " ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
        pooled = {how: (np.concatenate(h), np.concatenate(g)) for how, (h, g) in per.items()}
        verdicts.append((name, bootstrap(pooled["warm"], pooled["fresh"], "warm", "fresh")))

    keys = ("data", "seed", "job", "hr@10", "ndcg@10", "epochs", "best_epoch", "job_s", "model_0_s")
    result = results.write(args.json, "warm_start", sys.argv[1:] if argv is None else argv, {
        "model": args.model, "warm_settings": warm, "rows": [dict(zip(keys, row)) for row in rows],
        "bootstrap": [{"data": name, "hr@10": c["hr"], "ndcg@10": c["ndcg"], "verdict": c["verdict"]}
                      for name, c in verdicts]})
    print(markdown(result))


def markdown(result: dict) -> str:
    """docs/benchmarks.md's table of a results file: per data set the two jobs' means over the seeds, the warm
    job's time as a share of the fresh one's, and the paired bootstrap of warm minus fresh. Per-seed rows stay in
    the file."""
    rows = []
    for b in result["bootstrap"]:
        mean = {how: {k: np.mean([r[k] for r in result["rows"] if r["data"] == b["data"] and r["job"] == how])
                      for k in ("hr@10", "ndcg@10", "job_s")} for how in ("fresh", "warm")}
        rows.append([b["data"], *(f"{mean[h]['hr@10']:.4f} / {mean[h]['ndcg@10']:.4f}" for h in ("fresh", "warm")),
                     f"{mean['warm']['job_s'] / mean['fresh']['job_s']:.2f}", results.interval(b["hr@10"]),
                     results.interval(b["ndcg@10"]), b["verdict"]])
    warm = result["warm_settings"]
    return "\n\n".join([
        f"{results.provenance(result)} {result['model']}, default hyperparameters"
        f"{'; the warm job with ' + str(warm) if warm else ''}; means of {len({r['seed'] for r in result['rows']})} "
        "seeds.",
        results.table(["data", "fresh HR@10 / NDCG@10", "warm HR@10 / NDCG@10", "warm / fresh time",
                       "HR@10 warm - fresh [95% CI]", "NDCG@10 warm - fresh [95% CI]", "verdict"], rows, "lrrr")])


if __name__ == "__main__":
    main()
