"""Paired comparisons of two rankers on the same test users and candidates: per-row metrics and a bootstrap.

Shared by the benchmarks that call a difference a win, a loss or noise (`peers.py`, `ab.py`).
"""

from __future__ import annotations

import numpy as np

from ncf.metrics import positive_ranks


def rank_metrics(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row hit@10 and NDCG@10 for a `[rows, 100]` candidate score matrix."""
    ranks = positive_ranks(scores)
    return (ranks < 10).astype(float), np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0)


def bootstrap(ours: tuple, peer: tuple, ours_name: str, peer_name: str, resamples: int = 2000) -> dict:
    rng = np.random.default_rng(0)
    n = len(ours[0])
    picks = rng.integers(0, n, (resamples, n))
    result = {"ours": ours_name, "peer": peer_name}
    for key, a, b in (("hr", ours[0], peer[0]), ("ndcg", ours[1], peer[1])):
        diffs = (a - b)[picks].mean(axis=1)
        result[key] = (float((a - b).mean()), float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5)))
    wins = [result[k][1] > 0 for k in ("hr", "ndcg")]
    losses = [result[k][2] < 0 for k in ("hr", "ndcg")]
    result["verdict"] = "win" if all(wins) else "loss" if any(losses) else "within noise"
    return result
