"""Named training configurations against the first one: test quality over seeds on two data sets, with a
paired bootstrap, and training speed, in one run.

    .venv/bin/python -m benchmarks.ab --config neumf:model=neumf --config mf:model=mf      # (~25 min, 2 cores)
    .venv/bin/python -m benchmarks.ab --config lazy:optimizer=lazy_adam --config dense:optimizer=adam
    .venv/bin/python -m benchmarks.ab --config neumf:model=neumf --config mf:model=mf --peer "EASE^R"

Each `--config NAME:KEY=VALUE,...` is the library's defaults (`TrainConfig`: early stopping, refit) with those
hyperparameters changed (values as `train --set` takes them); the first is the reference. Every (data set,
config, seed) trains and is ranked on the same LOO-99 test candidates; the per-user hits and NDCGs of all seeds
are pooled for a paired bootstrap (config minus reference, 95% interval). A default changes on a "win" or
"loss", or on a measured cost (speed) with "within noise" quality, never on a difference called noise.
`--peer` adds a classical peer of `peers.py` (tuned on validation, refit), and bootstraps each config's per-user
metrics, averaged over its seeds, against it.
"""

from __future__ import annotations

import argparse
import logging
import re
import os
import sys
import time
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.datasets import add_cache_argument, movielens  # noqa: E402
from benchmarks.paired import bootstrap, rank_metrics  # noqa: E402
from benchmarks.results import describe, stamp  # noqa: E402
from ncf.data import read_interactions  # noqa: E402
from ncf.errors import ConfigError  # noqa: E402
from ncf.dataset import prepare  # noqa: E402
from ncf.evaluation import draw_candidates, score_candidates  # noqa: E402

#: The MovieLens sets compared by default (`--movielens` picks others; see `benchmarks/datasets.py`).
DATA = ("ml-latest-small", "ml-100k")


def parse_config(text: str) -> tuple[str, dict]:
    """`NAME:KEY=VALUE,...` -> (NAME, typed overrides of `TrainConfig`), through the container's own schema so
    a value is spelled as `train --set` takes it (`mlp_layers=[64,32,16]`)."""
    from container.hyperparameters import Hyperparameters

    name, _, settings = text.partition(":")
    pairs = re.split(r",(?![^\[]*\])", settings) if settings else []  # commas outside [...]
    raw = dict(pair.split("=", 1) for pair in pairs)
    parsed = Hyperparameters.parse(raw)
    training = parsed.train.to_dict()
    if set(raw) - set(training):
        raise ConfigError(f"--config {name}: {sorted(set(raw) - set(training))} are not training hyperparameters")
    return name, {key: getattr(parsed.train, key) for key in raw}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True, metavar="NAME:KEY=VALUE,...",
                   help="a configuration; the first is the reference (at least two)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--peer", action="append", default=[], metavar="NAME",
                   help="a peer of benchmarks/peers.py to compare every config with, e.g. 'EASE^R'")
    p.add_argument("--movielens", default=",".join(DATA), help="comma-separated MovieLens sets")
    add_cache_argument(p)
    args = p.parse_args()
    if len(args.config) < 2:
        p.error("give at least two --config")
    logging.basicConfig(level=logging.WARNING)
    from benchmarks.peers import GRIDS, tuned_peer

    if set(args.peer) - set(GRIDS):
        p.error(f"--peer must be among {list(GRIDS)}")

    from ncf.training import TrainConfig, fit, keras_scorer

    try:
        configs = dict(parse_config(text) for text in args.config)
    except ConfigError as e:
        p.error(str(e))
    if len(configs) < len(args.config):
        p.error("each --config needs its own name")
    reference = next(iter(configs))
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, verdicts, peer_rows = [], [], []
    for data_name in args.movielens.split(","):
        data = prepare(read_interactions(movielens(data_name, args)), test_k=1, validation_k=1)
        candidates = draw_candidates(data.test, data.seen, 99, seed=0)
        per_user = {name: ([], []) for name in configs}
        for seed in seeds:
            for name, overrides in configs.items():
                config = replace(TrainConfig(), seed=seed, **overrides)
                t0 = time.perf_counter()
                result = fit(data, config, on_epoch=lambda e: None)
                hits, gains = rank_metrics(score_candidates(keras_scorer(result.model), candidates))
                per_user[name][0].append(hits)
                per_user[name][1].append(gains)
                chose = result.best_validation  # what early stopping chose on: where a setting is tuned
                rows.append((data_name, name, seed, hits.mean(), gains.mean(), result.best_epoch,
                             result.throughput(), time.perf_counter() - t0, chose.get("hr@10", float("nan")),
                             chose.get("ndcg@10", float("nan"))))
                print("  " + " ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
        pooled = {name: (np.concatenate(h), np.concatenate(g)) for name, (h, g) in per_user.items()}
        verdicts += [(data_name, bootstrap(pooled[name], pooled[reference], name, reference))
                     for name in configs if name != reference]
        for peer in args.peer:
            hits, gains, setting, _ = tuned_peer(peer, data, candidates)
            peer_rows.append((data_name, peer, setting, hits.mean(), gains.mean()))
            means = {name: (np.mean(h, axis=0), np.mean(g, axis=0)) for name, (h, g) in per_user.items()}
            verdicts += [(data_name, bootstrap(means[name], (hits, gains), name, peer)) for name in configs]

    print(f"\n#### A/B against `{reference}` ({describe(stamp())})\n")
    for name, overrides in configs.items():
        print(f"- `{name}`: defaults with {overrides or 'nothing changed'}")
    print("\n| data | config | seed | HR@10 | NDCG@10 | val HR@10 | val NDCG@10 | best epoch | samples/s | job s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for data_name, name, seed, hr, ndcg, best, speed, seconds, val_hr, val_ndcg in rows:
        print(f"| {data_name} | {name} | {seed} | {hr:.4f} | {ndcg:.4f} | {val_hr:.4f} | {val_ndcg:.4f} | {best} | "
              f"{speed:,.0f} | {seconds:.0f} |")
    print("\nMeans over the seeds; validation (each user's latest training interaction, the split early stopping "
          "chose on) is where a setting may be chosen, test only reports:\n")
    print("| data | config | mean HR@10 | mean NDCG@10 | mean val HR@10 | mean val NDCG@10 | mean samples/s | "
          "mean job s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for data_name, peer, setting, hr, ndcg in peer_rows:
        print(f"| {data_name} | {peer} ({', '.join(f'{k}={v:g}' for k, v in setting.items())}) | {hr:.4f} | "
              f"{ndcg:.4f} | – | – | – | – |")
    for data_name in args.movielens.split(","):
        for name in configs:
            mine = np.array([r[3:] for r in rows if r[0] == data_name and r[1] == name], dtype=float).mean(axis=0)
            hr, ndcg, _, speed, seconds, val_hr, val_ndcg = mine
            print(f"| {data_name} | {name} | {hr:.4f} | {ndcg:.4f} | {val_hr:.4f} | {val_ndcg:.4f} | {speed:,.0f} | "
                  f"{seconds:.0f} |")
    print(f"\nPaired bootstrap (2,000 resamples), config minus the other: against `{reference}` over test users x "
          f"{len(seeds)} seeds, against a peer over test users (each user's metrics averaged over the seeds):\n")
    print("| data | config | minus | HR@10 diff [95% CI] | NDCG@10 diff [95% CI] | verdict |")
    print("|---|---|---|---|---|---|")
    for data_name, b in verdicts:
        cells = [f"{b[k][0]:+.4f} [{b[k][1]:+.4f}, {b[k][2]:+.4f}]" for k in ("hr", "ndcg")]
        print(f"| {data_name} | {b['ours']} | {b['peer']} | {cells[0]} | {cells[1]} | {b['verdict']} |")


if __name__ == "__main__":
    main()
