"""Fold-in against training: users the model never saw, folded in from their items, ranked like trained users.

    .venv/bin/python benchmarks/foldin.py --movielens ml-latest-small,ml-100k --models neumf,mf

For each data set and model kind (default hyperparameters): model A is trained on every user (each user's
latest interaction held out for test, LOO-99 candidates as everywhere here); model B on the same data less
10% of the users, drawn with `--seed` (`--folds` disjoint draws, each its own model B). Each held-out user is
folded into B (`ncf.foldin`) from all their interactions but the latest, or from their latest 1, 3, 10 and 30
of them, and their latest interaction is ranked against the same 99 candidates A ranked it against. Printed:
HR@10 and NDCG@10 of the folded-in users next to the same users trained in (A), and popularity (B's counts);
the target is folded-in >= 90% of trained-in. Then the latency of a fold-in request of 30 items (top 10)
through the real server (gunicorn, one worker, one connection, keep-alive) on B's model: p50 / p99, with the
server's own settings (`FoldInConfig`'s defaults). Several `--config`s compare fold-in settings on the same trained models.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.datasets import add_cache_argument, movielens  # noqa: E402
from benchmarks.paired import rank_metrics  # noqa: E402
from benchmarks.scale import stamp  # noqa: E402
from ncf.data import Interactions, read_interactions  # noqa: E402
from ncf.dataset import prepare  # noqa: E402
from ncf.evaluation import Candidates, draw_candidates  # noqa: E402
from ncf.foldin import FoldInConfig  # noqa: E402

GIVEN = (1, 3, 10, 30, None)  # None: all but the latest


def histories(raw: Interactions, users: np.ndarray, held_out: dict) -> dict:
    """Raw user id -> their distinct raw items oldest first (by timestamp, then file order), the held-out
    (test) item removed."""
    rows = np.flatnonzero(np.isin(raw.users, users))
    order = rows[np.lexsort((rows, raw.timestamps[rows], raw.users[rows]))] if raw.timestamps is not None else rows
    out: dict = {}
    for user, item in zip(raw.users[order].tolist(), raw.items[order].tolist()):
        if item == held_out[user]:
            continue
        items = out.setdefault(user, [])
        if item in items:
            items.remove(item)  # a repeated interaction counts at its latest time
        items.append(item)
    return out


def fold_in_scores(recommender, raw_candidates: np.ndarray, given: list) -> np.ndarray:
    """`[100]` logits of one folded-in user for their raw candidate items (-inf where B does not know one)."""
    index = recommender.items.lookup(list(given))
    side = recommender.fold_in.solve(index[index >= 0])
    items = recommender.items.lookup(list(raw_candidates))
    out = np.full(len(items), -np.inf)
    known = items >= 0
    out[known] = recommender.scorer.pairs_of(side, items[known])
    return out


def latency(model_dir: Path, given: list[list], requests: int = 300) -> tuple[float, float]:
    """p50 / p99 ms of `{"items": [30 items], "k": 10}` through gunicorn, one worker, one connection."""
    from benchmarks.serve_bench import Server

    base = model_dir.parent
    server = Server(base, None, workers=1)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        times = []
        for n in range(requests + 20):
            body = json.dumps({"items": given[n % len(given)], "k": 10})
            t0 = time.perf_counter()
            connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"fold-in answered {response.status}")
            if n >= 20:  # warm-up excluded
                times.append((time.perf_counter() - t0) * 1000)
        connection.close()
    finally:
        server.stop()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99) - 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--movielens", default="ml-latest-small,ml-100k", help="comma-separated MovieLens sets")
    add_cache_argument(p)
    p.add_argument("--models", default="neumf,mf")
    p.add_argument("--folds", type=int, default=1, help="disjoint 10%% draws of held-out users")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="fold-in settings to compare on the same models (FoldInConfig fields; default: its defaults)")
    p.add_argument("--skip-latency", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from ncf import artifacts
    from ncf.recommender import Recommender
    from ncf.training import TrainConfig, fit, keras_logits, to_artifact

    configs = {}
    for text in args.config or ["default:"]:
        label, _, settings = text.partition(":")
        pairs = [pair.split("=", 1) for pair in settings.split(",") if pair]
        configs[label] = replace(FoldInConfig(), **{k: type(getattr(FoldInConfig(), k))(v) for k, v in pairs})
    rows, latencies = [], {}
    for name in args.movielens.split(","):
        raw = read_interactions(movielens(name, args))
        full = prepare(raw, test_k=1, validation_k=1)
        candidates = draw_candidates(full.test, full.seen, 99, seed=0)
        draws = np.random.default_rng(args.seed).permutation(full.n_users)
        for kind in args.models.split(","):
            config = TrainConfig(model=kind, seed=args.seed)
            model_a = fit(full, config, on_epoch=lambda e: None).model
            logits_a = keras_logits(model_a)
            results = {(label, n): ([], []) for label in configs for n in GIVEN}
            trained_in, popular = ([], []), ([], [])
            for fold in range(args.folds):
                held = draws[fold * full.n_users // 10:(fold + 1) * full.n_users // 10]
                rows_h = np.flatnonzero(np.isin(candidates.users, held))
                cands = Candidates(candidates.users[rows_h], candidates.items[rows_h])
                scores_a = logits_a(np.repeat(cands.users, 100), cands.items.ravel()).reshape(-1, 100)
                for part, values in zip(trained_in, rank_metrics(scores_a)):
                    part.append(values)
                raw_users = full.users.decode(cands.users)
                raw_cands = np.asarray(full.items.decode(cands.items.ravel())).reshape(-1, 100)
                rest = prepare(raw.select(~np.isin(raw.users, raw_users)), test_k=1, validation_k=1)
                recommender_b = Recommender(to_artifact(fit(rest, config, on_epoch=lambda e: None), rest))
                pop = recommender_b.artifact.popularity.astype(float)
                index = recommender_b.items.lookup(list(raw_cands.ravel())).reshape(-1, 100)
                for part, values in zip(popular, rank_metrics(np.where(index >= 0, pop[np.maximum(index, 0)],
                                                                       -np.inf))):
                    part.append(values)
                history = histories(raw, np.asarray(raw_users), dict(zip(raw_users, raw_cands[:, 0].tolist())))
                for label, fold_config in configs.items():
                    recommender_b.fold_in.config = fold_config
                    for n in GIVEN:
                        scores = np.stack([fold_in_scores(recommender_b, raw_cands[r],
                                                          history[u] if n is None else history[u][-n:])
                                           for r, u in enumerate(raw_users)])
                        for part, values in zip(results[(label, n)], rank_metrics(scores)):
                            part.append(values)
                recommender_b.fold_in.config = next(iter(configs.values()))
                if fold == 0 and not args.skip_latency:
                    with tempfile.TemporaryDirectory() as tmp:
                        folder = Path(tmp) / "model"
                        artifacts.save(folder, recommender_b.artifact)
                        latencies[(name, kind)] = latency(folder, [h[-30:] for h in history.values()])
            hr_a, ndcg_a = (np.concatenate(part).mean() for part in trained_in)
            hr_p, ndcg_p = (np.concatenate(part).mean() for part in popular)
            users = sum(len(part) for part in trained_in[0])
            for label in configs:
                for n in GIVEN:
                    hr, ndcg = (np.concatenate(part).mean() for part in results[(label, n)])
                    rows.append((name, kind, label, users, "all but the latest" if n is None else f"latest {n}",
                                 hr, ndcg, hr_a, ndcg_a, hr_p, ndcg_p))
            print(f"  {name} {kind}: trained-in {hr_a:.4f}, all-but-latest folded in "
                  f"{rows[-1][5]:.4f}", file=sys.stderr, flush=True)

    print(f"\n#### Fold-in against training ({stamp()})\n")
    for label, fold_config in configs.items():
        print(f"- `{label}`: {fold_config}")
    print("\n| data | model | fold-in | held-out users | items folded in | HR@10 folded in | NDCG@10 folded in "
          "| HR@10 trained in | NDCG@10 trained in | folded / trained (HR) | popularity HR@10 |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for name, kind, label, users, given, hr, ndcg, hr_a, ndcg_a, hr_p, _ in rows:
        print(f"| {name} | {kind} | {label} | {users} | {given} | {hr:.4f} | {ndcg:.4f} | {hr_a:.4f} | "
              f"{ndcg_a:.4f} | {hr / hr_a:.2f} | {hr_p:.4f} |")
    if latencies:
        print("\nA fold-in request of 30 items, top 10, through gunicorn (1 worker, 1 connection), ms:\n")
        print("| data | model | p50 | p99 |\n|---|---|---:|---:|")
        for (name, kind), (p50, p99) in latencies.items():
            print(f"| {name} | {kind} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
