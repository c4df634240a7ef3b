"""Leave-last-k splits by time, per user.

Evaluation protocols (../shared/reference/evaluation.md) hold out each user's latest interactions: k=1 for
LOO-99, k=10 for the AWS blog's split. Ties in time are broken by the larger raw item id, which is the larger
item index because vocabularies are sorted. Without timestamps, row order stands for time.
"""

from __future__ import annotations

import numpy as np


def chronological_order(users: np.ndarray, items: np.ndarray, times: np.ndarray | None) -> np.ndarray:
    """Permutation sorting rows by (user, time, item); row order stands for time when `times` is None."""
    if times is None:
        times = np.arange(len(users))
    return np.lexsort((items, times, users))


def leave_last_k(users: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """`[n]` bool mask of the rows held out: each user's `k` latest, for users with more than `k` rows.

    A user with `k` rows or fewer keeps them all for training (a user with one interaction has no test item
    under LOO), so every held-out user still has training data to be recommended from.

    Args:
        users: `[n]` user indices.
        order: permutation from `chronological_order`.
        k: rows to hold out per user (k >= 1).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, not {k}")
    sorted_users = users[order]
    n = len(order)
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]]) if n else np.array([], int)
    sizes = np.diff(np.r_[starts, n])
    ends = np.repeat(starts + sizes, sizes)
    from_end = ends - np.arange(n) - 1            # 0 for a user's latest row
    held_sorted = (from_end < k) & (np.repeat(sizes, sizes) > k)
    held = np.zeros(n, dtype=bool)
    held[order] = held_sorted
    return held
