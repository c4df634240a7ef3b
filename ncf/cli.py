"""`python -m ncf train`: the library's own job, outside SageMaker.

Reads ratings (a file, a folder, or MovieLens by name), trains, evaluates under LOO-99 (or leave-last-k)
beside the popularity baseline, and writes a model folder that `Recommender.load` serves.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields

from .errors import NCFError

log = logging.getLogger("ncf")


def _parser() -> argparse.ArgumentParser:
    from .training import TrainConfig

    p = argparse.ArgumentParser(prog="python -m ncf", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train, evaluate and save a model folder")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--ratings", help="interactions file or folder (CSV, TSV, '::', Parquet; gzip'd or not)")
    src.add_argument("--movielens", help="download a MovieLens set: ml-latest-small, ml-100k, ml-1m, ml-25m")
    t.add_argument("--movielens-url", default=None, help="mirror of GroupLens' movielens folder")
    t.add_argument("--cache-dir", default=None, help="where MovieLens downloads are kept")
    t.add_argument("--model-dir", required=True, help="folder to write the trained model to")
    t.add_argument("--test-k", type=int, default=1, help="latest interactions per user held out for test")
    t.add_argument("--validation-k", type=int, default=1, help="held out for validation (0 = none)")
    t.add_argument("--min-rating", type=float, default=None, help="keep only ratings >= this as positives")
    t.add_argument("--no-saved-model", action="store_true", help="skip the TensorFlow SavedModel export")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            t.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, tuple):
            t.add_argument(flag, type=lambda s: tuple(int(x) for x in s.split(",")), default=value,
                           help=f"comma-separated (default {','.join(map(str, value))})")
        else:
            t.add_argument(flag, type=type(value), default=value, help=f"default {value}")
    return p


def train(args: argparse.Namespace) -> dict:
    from . import artifacts, movielens
    from .data import read_interactions
    from .dataset import prepare
    from .evaluation import draw_candidates, evaluate_candidates, popularity_scorer
    from .training import TrainConfig, fit, keras_scorer, to_artifact

    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    if args.movielens:
        kw = {"base_url": args.movielens_url} if args.movielens_url else {}
        interactions = movielens.load(args.movielens, args.cache_dir, **kw)
    else:
        interactions = read_interactions(args.ratings)
    dataset = prepare(interactions, test_k=args.test_k, validation_k=args.validation_k, min_rating=args.min_rating)
    log.info("data: %s", json.dumps(dataset.statistics()))
    result = fit(dataset, config)
    candidates = draw_candidates(dataset.test, dataset.seen, 99, seed=0)
    metrics = {
        "test": evaluate_candidates(keras_scorer(result.model), candidates),
        "popularity": evaluate_candidates(popularity_scorer(dataset.popularity), candidates, probabilities=False),
        "train_samples_per_s": result.throughput(),
    }
    for name, values in metrics.items():
        if isinstance(values, dict):
            log.info("%s: %s", name, " ".join(f"{k}={v:.4f}" for k, v in values.items()))
    artifact = to_artifact(result, dataset, metrics)
    artifacts.save(args.model_dir, artifact, keras_model=None if args.no_saved_model else result.model)
    log.info("model written to %s", args.model_dir)
    return metrics


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    args = _parser().parse_args(argv)
    try:
        train(args)
    except NCFError as e:
        log.error("%s", e)
        return 2
    return 0
