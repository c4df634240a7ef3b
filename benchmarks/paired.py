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
    result["verdict"] = verdict(result["hr"], result["ndcg"])
    return result


def verdict(hr: tuple[float, float, float], ndcg: tuple[float, float, float]) -> str:
    """`win` or `loss` when both metrics' 95% intervals exclude zero on the same side, `within noise` when
    neither does, and otherwise what each metric says ("NDCG@10 better, HR@10 within noise"): a single word
    would call a one-metric difference noise, or a loss, which it is not."""
    said = {name: "better" if lo > 0 else "worse" if hi < 0 else "within noise"
            for name, (_, lo, hi) in (("HR@10", hr), ("NDCG@10", ndcg))}
    if set(said.values()) == {"better"}:
        return "win"
    if set(said.values()) == {"worse"}:
        return "loss"
    if set(said.values()) == {"within noise"}:
        return "within noise"
    significant = sorted(said, key=lambda name: said[name] == "within noise")
    return ", ".join(f"{name} {said[name]}" for name in significant)
