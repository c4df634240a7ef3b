"""Ranking metrics, vectorised over users.

Candidate-based metrics take a score matrix `[rows, 1 + n_neg]` whose column 0 is the held-out positive.
Its rank is the number of negatives scoring strictly higher plus half of those scoring exactly the same,
so a model that scores everything alike gets the expected rank of a random order, not a perfect one.
"""

from __future__ import annotations

import numpy as np


def positive_ranks(scores: np.ndarray) -> np.ndarray:
    """`[rows]` float ranks (0 = best) of column 0 among its row."""
    positive = scores[:, :1]
    negatives = scores[:, 1:]
    return (negatives > positive).sum(axis=1) + 0.5 * (negatives == positive).sum(axis=1)


def hit_rate(ranks: np.ndarray, k: int = 10) -> float:
    return float(np.mean(ranks < k)) if len(ranks) else float("nan")


def ndcg(ranks: np.ndarray, k: int = 10) -> float:
    if not len(ranks):
        return float("nan")
    return float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)))


def top_k_metrics(top: np.ndarray, relevant: np.ndarray, n_relevant: np.ndarray) -> dict[str, float]:
    """Precision, recall, NDCG and MAP at k for full-ranking recommendations.

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
    return {
        f"precision@{k}": float(np.mean(hits / k)),
        f"recall@{k}": float(np.mean(hits / n_relevant)),
        f"ndcg@{k}": float(np.mean(dcg / ideal)),
        f"map@{k}": float(np.mean(average_precision)),
    }
