"""Ranking metrics, vectorised over users.

Candidate-based metrics take a score matrix `[rows, 1 + n_neg]` whose column 0 is the held-out positive.
Its rank is the number of negatives scoring strictly higher plus half of those scoring exactly the same,
so a model that scores everything alike gets the expected rank of a random order, not a perfect one. A
non-finite score (NaN, +inf) counts as the worst, as in serving's top-k (`arrays.top_k_rows`): every
comparison with NaN is False, so a NaN positive would otherwise rank first.

Each mean comes with its standard error (`<name>_se`, the sample standard deviation over users / sqrt(n)),
so a figure on a sample of users says how far it may be from the figure on all of them; under two users
there is none (the key is left out: JSON has no NaN).
"""

from __future__ import annotations

import numpy as np


def positive_ranks(scores: np.ndarray) -> np.ndarray:
    """`[rows]` float ranks (0 = best) of column 0 among its row."""
    bad = ~(scores < np.inf)
    if bad.any():
        scores = np.where(bad, -np.inf, scores)
    positive = scores[:, :1]
    negatives = scores[:, 1:]
    return (negatives > positive).sum(axis=1) + 0.5 * (negatives == positive).sum(axis=1)


def hit_rate(ranks: np.ndarray, k: int = 10) -> float:
    return float(np.mean(ranks < k)) if len(ranks) else float("nan")


def ndcg(ranks: np.ndarray, k: int = 10) -> float:
    if not len(ranks):
        return float("nan")
    return float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)))


def standard_error(values: np.ndarray) -> float:
    """Of the mean of `values` (one per user): their sample standard deviation / sqrt(n); NaN under 2."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def rank_metrics(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    """HR@k and NDCG@k of `[rows]` ranks, each with its standard error (`hr@k_se`, `ndcg@k_se`)."""
    hits = (ranks < k).astype(np.float64)
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return _with_errors({f"hr@{k}": hits, f"ndcg@{k}": gains}) if len(ranks) else {}


def top_k_metrics(top: np.ndarray, relevant: np.ndarray, n_relevant: np.ndarray) -> dict[str, float]:
    """Precision, recall, NDCG and MAP at k for full-ranking recommendations, each with its standard error.

    Args:
        top: `[users, k]` recommended item indices, best first.
        relevant: `[users, k]` bool, whether each recommended item is held out for that user.
        n_relevant: `[users]` held-out items per user (> 0).
    """
    k = top.shape[1]
    hits = relevant.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = (relevant * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    precision_at_i = np.cumsum(relevant, axis=1) / np.arange(1, k + 1)
    average_precision = (precision_at_i * relevant).sum(axis=1) / np.minimum(n_relevant, k)
    return _with_errors({f"precision@{k}": hits / k, f"recall@{k}": hits / n_relevant, f"ndcg@{k}": dcg / ideal,
                         f"map@{k}": average_precision})


def _with_errors(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """Each name's mean, and its standard error as `<name>_se` where there are two values or more."""
    out = {}
    for name, values in per_user.items():
        out[name] = float(np.mean(values))
        if len(values) > 1:
            out[f"{name}_se"] = standard_error(values)
    return out
