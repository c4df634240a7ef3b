"""Named training configurations against the first one: test quality over seeds on two data sets, with a
paired bootstrap, and training speed, in one run.

    .venv/bin/python -m benchmarks.ab --config neumf:model=neumf --config mf:model=mf      # (~25 min, 2 cores)
    .venv/bin/python -m benchmarks.ab --config lazy:optimizer=lazy_adam --config dense:optimizer=adam
    .venv/bin/python -m benchmarks.ab --config neumf:model=neumf --config mf:model=mf --peer "EASE^R"
    .venv/bin/python -m benchmarks.ab --config default: --config start:pretrain=mf --shape sparse-1m --movielens ""

Each `--config NAME:KEY=VALUE,...` is the library's defaults (`TrainConfig`: early stopping, refit) with those
hyperparameters changed (values as `train --set` takes them); the first is the reference. Every (data set,
config, seed) trains and is ranked on the same LOO-99 test candidates; the per-user hits and NDCGs of all seeds
are pooled for a paired bootstrap (config minus reference, 95% interval). A default changes on a "win" or
"loss", or on a measured cost (speed) with "within noise" quality, never on a difference called noise.
`--shape NAME,...` adds synthetic rows of the data-shape matrix (`benchmarks/shapes.py`), generated as that
benchmark generates them and split as the job splits them, so a rule for one kind of data is judged on it.
`--peer` adds a classical peer of `peers.py` (tuned on validation, refit), and bootstraps each config's per-user
metrics, averaged over its seeds, against it. The result is written, stamped, to `--json PATH` (default
`benchmarks/results/ab.json`; each table of docs/benchmarks.md names its own file).
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
from benchmarks import results  # noqa: E402
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


def data_sets(args) -> dict:
    """Each data set's name -> a function that reads its interactions: MovieLens sets, then synthetic shapes."""
    from benchmarks.shapes import SHAPES, synthetic

    sets = {name: (lambda name=name: read_interactions(movielens(name, args)))
            for name in filter(None, args.movielens.split(","))}
    shapes = {shape.name: shape for shape in SHAPES if shape.spec is not None}
    for name in filter(None, args.shape.split(",")):
        if name not in shapes:
            raise ConfigError(f"--shape {name!r} is not a synthetic shape of benchmarks/shapes.py: {sorted(shapes)}")
        sets[name] = lambda shape=shapes[name]: synthetic(shape)
    if not sets:
        raise ConfigError("no data: give --movielens or --shape")
    return sets


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", required=True, metavar="NAME:KEY=VALUE,...",
                   help="a configuration; the first is the reference (at least two)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--peer", action="append", default=[], metavar="NAME",
                   help="a peer of benchmarks/peers.py to compare every config with, e.g. 'EASE^R'")
    p.add_argument("--movielens", default=",".join(DATA), help="comma-separated MovieLens sets ('' for none)")
    p.add_argument("--shape", default="", help="comma-separated synthetic shapes of benchmarks/shapes.py")
    add_cache_argument(p)
    results.add_argument(p, "ab")
    args = p.parse_args(argv)
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
    try:
        sets = data_sets(args)
    except ConfigError as e:
        p.error(str(e))
    rows, verdicts, peer_rows = [], [], []
    for data_name, read in sets.items():
        data = prepare(read(), test_k=1, validation_k=1)
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

    keys = ("data", "config", "seed", "hr@10", "ndcg@10", "best_epoch", "samples_per_s", "job_s", "val_hr@10",
            "val_ndcg@10")
    rows = [dict(zip(keys, row)) for row in rows]
    means = []
    for data_name in sets:
        for name in configs:
            mine = [r for r in rows if r["data"] == data_name and r["config"] == name]
            means.append({"data": data_name, "config": name, **{k: float(np.mean([r[k] for r in mine]))
                                                                 for k in keys[3:] if k != "best_epoch"}})
    result = results.write(args.json, "ab", sys.argv[1:] if argv is None else argv, {
        "reference": reference, "configs": configs, "seeds": seeds, "rows": rows, "means": means,
        "peers": [{"data": d, "peer": peer, "setting": setting, "hr@10": hr, "ndcg@10": ndcg}
                  for d, peer, setting, hr, ndcg in peer_rows],
        "bootstrap": [{"data": d, "config": b["ours"], "minus": b["peer"], "hr@10": b["hr"], "ndcg@10": b["ndcg"],
                       "verdict": b["verdict"]} for d, b in verdicts]})
    print(markdown(result))


def markdown(result: dict) -> str:
    """docs/benchmarks.md's tables of a results file: the means over the seeds (peers first; test HR@10 /
    NDCG@10, and on validation, where a setting may be chosen), then the paired bootstrap of each config against
    the reference and against each peer. Speeds and per-seed rows stay in the file."""
    means = [[p["data"], f"{p['peer']} ({', '.join(f'{k}={v:g}' for k, v in p['setting'].items())})",
              f"{p['hr@10']:.4f} / {p['ndcg@10']:.4f}", "–"] for p in result["peers"]]
    means += [[m["data"], m["config"], f"{m['hr@10']:.4f} / {m['ndcg@10']:.4f}",
               f"{m['val_hr@10']:.4f} / {m['val_ndcg@10']:.4f}"] for m in result["means"]]
    versus = [[b["data"], b["config"], b["minus"], results.interval(b["hr@10"]), results.interval(b["ndcg@10"]),
               b["verdict"]] for b in result["bootstrap"]]
    return "\n\n".join([
        results.provenance(result),
        results.table(["data", "config", "test HR@10 / NDCG@10", "validation"], means, "llrr"),
        f"Config minus the other, over test users x {len(result['seeds'])} seeds (a peer: over test users):",
        results.table(["data", "config", "minus", "HR@10 diff [95% CI]", "NDCG@10 diff [95% CI]", "verdict"],
                      versus)])


if __name__ == "__main__":
    main()
