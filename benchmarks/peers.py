"""This project's models beside classical peers, on the same split and the same candidates, in one run.

    .venv/bin/pip install -r requirements/bench.lock     # `implicit` (item-kNN, iALS, BPR): benchmark-only
    .venv/bin/python -m benchmarks.peers --movielens ml-latest-small

LOO-99 (each user's latest interaction against 99 items they never interacted with). Each peer is tuned on the validation split (each user's latest
training interaction) over a small grid, then refit on training + validation and ranked on the test
candidates. Ours use the library defaults (only the kind changed) over several seeds: early-stopped on the
validation split, then refit on training + validation for the chosen epochs (the library's `refit`), like
the peers. A paired bootstrap over test users (same users, same candidates) compares each of ours with the
best peer and with iALS: a difference is called a win only when its 95% interval excludes zero. The result is
written, stamped, to `benchmarks/results/peers-DATA.json` (`--json` to change).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit asks for this; numpy's matmuls barely care

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from benchmarks import results  # noqa: E402
from benchmarks.datasets import add_arguments, label, ratings_path  # noqa: E402
from benchmarks.paired import bootstrap, rank_metrics  # noqa: E402

from ncf.data import read_interactions  # noqa: E402
from ncf.dataset import Dataset, Pairs, prepare  # noqa: E402
from ncf.evaluation import Candidates, draw_candidates, score_candidates  # noqa: E402


def matrix(data: Dataset, pairs: list[Pairs]) -> sp.csr_matrix:
    users = np.concatenate([p.user for p in pairs])
    items = np.concatenate([p.item for p in pairs])
    return sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(data.n_users, data.n_items))


def dense_scorer(scores: np.ndarray):
    return lambda users, items: scores[users, items]


# ---- peers: each `fit(X, **params) -> scores [users, items]`


def popularity(X: sp.csr_matrix) -> np.ndarray:
    return np.broadcast_to(np.asarray(X.sum(axis=0)).ravel(), X.shape)


def item_knn(X: sp.csr_matrix, neighbours: int) -> np.ndarray:
    """Cosine item-item similarity, each item's `neighbours` most similar items kept (itself dropped); score =
    sum over the user's items. `implicit`'s CosineRecommender finds them sparsely (top K per item in C++), where a
    dense items x items matrix grows with the square of the catalogue (59k items: 14 GB). Exactly K per item:
    ties at the cut are not all kept, as the dense version here used to keep them."""
    from implicit.nearest_neighbours import CosineRecommender

    model = CosineRecommender(K=neighbours + 1)  # each item is its own nearest neighbour
    model.fit(X, show_progress=False)
    S = model.similarity.tolil()
    S.setdiag(0.0)
    S = S.tocsr()
    S.eliminate_zeros()
    return np.asarray((X @ S.T).todense())  # score[u, i] = sum_j X[u, j] S[i, j], S[i] holding i's neighbours


def ease(X: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE^R (Steck 2019), closed form: B = I - P diagMat(1 / diag(P)), P = (X'X + l2 I)^-1."""
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices_from(G)] += l2
    P = np.linalg.inv(G)
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return np.asarray(X @ B)


def ials(X: sp.csr_matrix, factors: int, regularization: float, alpha: float) -> np.ndarray:
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha, iterations=15,
                                    random_state=0)
    model.fit(X, show_progress=False)
    return model.user_factors @ model.item_factors.T


def bpr(X: sp.csr_matrix, factors: int, learning_rate: float, regularization: float) -> np.ndarray:
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    model = BayesianPersonalizedRanking(factors=factors, learning_rate=learning_rate, regularization=regularization,
                                        iterations=100, random_state=0)
    model.fit(X, show_progress=False)
    return model.user_factors @ model.item_factors.T


GRIDS = {
    "popularity": (popularity, [{}]),
    "item-kNN (cosine)": (item_knn, [{"neighbours": n} for n in (20, 50, 100, 200)]),
    # Grids widened where the last run's choice sat on an edge (EASE^R l2=1000, iALS alpha=10).
    "EASE^R": (ease, [{"l2": l} for l in (100.0, 300.0, 1000.0, 3000.0)]),
    "iALS (implicit)": (ials, [{"factors": f, "regularization": r, "alpha": a}
                              for f in (64, 128) for r in (0.01, 0.1, 1.0) for a in (1.0, 10.0, 40.0)]),
    "BPR (implicit)": (bpr, [{"factors": f, "learning_rate": lr, "regularization": 0.01}
                             for f in (64, 128) for lr in (0.01, 0.05)]),
}


def tuned_peer(name: str, data: Dataset, test: Candidates) -> tuple[np.ndarray, np.ndarray, dict, float]:
    """Peer `name` of `GRIDS` tuned on validation HR@10 (its own seeded candidates), refit on training +
    validation and ranked on `test`: (per-row hits, per-row NDCGs, the chosen setting, its validation HR@10)."""
    peer, grid = GRIDS[name]
    validation = draw_candidates(data.validation, data.seen, 99, seed=1)
    X_train, X_full = matrix(data, [data.train]), matrix(data, [data.train, data.validation])
    tuned = []
    for params in grid:
        hits, _ = rank_metrics(score_candidates(dense_scorer(peer(X_train, **params)), validation))
        tuned.append((hits.mean(), params))
    best_hr, best = max(tuned, key=lambda t: t[0])
    hits, gains = rank_metrics(score_candidates(dense_scorer(peer(X_full, **best)), test))
    return hits, gains, best, best_hr


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--seeds", type=int, default=3, help="seeds of our models")
    p.add_argument("--ours", default="neumf,mf", help="our model kinds, default hyperparameters")
    p.add_argument("--json", type=Path, help="where the stamped result goes (default: benchmarks/results/"
                                             "peers-DATA.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from ncf.training import TrainConfig, fit, keras_scorer

    data = prepare(read_interactions(ratings_path(args)), test_k=1, validation_k=1)
    test = draw_candidates(data.test, data.seen, 99, seed=0)
    rows, per_user = [], {}

    for name in GRIDS:
        t0 = time.perf_counter()
        hits, gains, best, best_hr = tuned_peer(name, data, test)
        per_user[name] = (hits, gains)
        rows.append({"model": name, "params": best, "validation_hr@10": best_hr, "hr@10": hits.mean(),
                     "ndcg@10": gains.mean(), "seconds": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), file=sys.stderr)

    for kind in args.ours.split(","):
        runs = []
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            result = fit(data, TrainConfig(model=kind, seed=seed), on_epoch=lambda e: None)
            runs.append(rank_metrics(score_candidates(keras_scorer(result.model), test)))
        hits = np.mean([r[0] for r in runs], axis=0)
        gains = np.mean([r[1] for r in runs], axis=0)
        per_user[f"ours: {kind}"] = (hits, gains)
        rows.append({"model": f"ours: {kind} (defaults, mean of {args.seeds} seeds)", "params": {},
                     "hr@10": hits.mean(), "ndcg@10": gains.mean(),
                     "hr@10 per seed": [float(r[0].mean()) for r in runs], "seconds": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), file=sys.stderr)

    peers = [r for r in rows if not r["model"].startswith("ours")]
    best_peer = max(peers, key=lambda r: r["hr@10"])["model"]
    # The benchmark issue's bars: the default model against the best peer, NeuMF against iALS.
    versus = dict.fromkeys([best_peer, "iALS (implicit)"])
    comparisons = [bootstrap(per_user[f"ours: {kind}"], per_user[peer], f"ours: {kind}", peer)
                   for kind in args.ours.split(",") for peer in versus]

    path = args.json or results.RESULTS / f"peers-{label(args).replace('/', '-').removesuffix('.csv')}.json"
    result = results.write(path, "peers", sys.argv[1:] if argv is None else argv, {
        "data": label(args), "statistics": data.statistics(), "seeds": args.seeds, "rows": rows,
        "comparisons": comparisons})
    print(markdown(result))


def markdown(result: dict) -> str:
    """docs/benchmarks.md's tables of a results file: every model with its tuned setting, then the paired
    bootstrap of ours against the best peer and iALS."""
    models = [[r["model"], ", ".join(f"{k}={v:g}" for k, v in r["params"].items()) or "–", f"{r['hr@10']:.4f}",
               f"{r['ndcg@10']:.4f}", f"{r['seconds']:.0f}"] for r in result["rows"]]
    versus = [[f"{c['ours']} vs {c['peer']}", results.interval(c["hr"]), results.interval(c["ndcg"]), c["verdict"]]
              for c in result["comparisons"]]
    return "\n\n".join([
        results.provenance(result),
        results.table(["model", "tuned setting", "HR@10", "NDCG@10", "seconds"], models, "llrrr"),
        "Paired bootstrap over test users (2,000 resamples), ours minus the peer, 95% interval:",
        results.table(["comparison", "HR@10 difference", "NDCG@10 difference", "verdict"], versus)])


if __name__ == "__main__":
    main()
