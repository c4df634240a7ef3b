"""Array helpers the per-interaction and per-user paths share.

`np.unique` without `return_*` arguments takes numpy 2.4's hash-based path, which on millions of int64 keys is
orders of magnitude slower than `np.sort` plus a comparison of neighbours (the timings are in commit c8927ca's
message). Vocabularies, seen-item matrices and splits call this instead.
"""

from __future__ import annotations

import numpy as np


def unique(values: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """The sorted distinct values of a 1-D array (numbers or text), as `np.unique(values)` returns them.

    `overwrite=True` sorts `values` in place instead of a copy: one array of the input's size less at the peak,
    for callers that built `values` themselves."""
    ordered = np.asarray(values)
    if overwrite:
        ordered.sort()
    else:
        ordered = np.sort(ordered)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]


#: Scores held at once when ranking every item for a block of users (serving's `recommend_many`, evaluation's
#: full ranking): `[block_users, n_items]`, 16 MiB of float32 whatever the catalogue (71 users at 59,000
#: items, 431 at 9,724), so memory does not grow with the number of users asked for.
BLOCK_SCORES = 1 << 22


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the indices of the `k` largest finite scores, best first; ties go to the lower index.

    Args:
        scores: `[rows, n]` floats; non-finite entries (masked items) are never chosen, and are set to
            -inf in place.
        k: how many per row.

    Returns:
        `top` `[rows, min(k, n)]` int64 and `counts` `[rows]`: row `r`'s answer is `top[r, :counts[r]]`
        (fewer than `k` when fewer scores are finite).

    Cost: one `argpartition` and a few elementwise passes over the block, then a sort of `k` per row. Exact
    ties at the k-th score are the only case that needs more (a row whose tied entries outnumber the slots
    left for them is redone alone), which scores of a trained model practically never have.
    """
    rows, n = scores.shape
    k = min(k, n)
    if k == 0 or rows == 0:
        return np.zeros((rows, 0), dtype=np.int64), np.zeros(rows, dtype=np.int64)
    bad = ~(scores < np.inf)  # NaN and +inf; -inf (a masked item) is already what they become
    if bad.any():
        scores[bad] = -np.inf
    row = np.arange(rows)[:, None]
    if k < n:
        top = np.argpartition(scores, n - k, axis=1)[:, n - k:]
        values = scores[row, top]
        kth = values.min(axis=1)
        # Every score above the k-th is chosen, so more than k at or above it means ties left out.
        ambiguous = np.count_nonzero(scores >= kth[:, None], axis=1) > k
        for r in np.flatnonzero(ambiguous & np.isfinite(kth)):
            above = np.flatnonzero(scores[r] > kth[r])
            top[r] = np.concatenate([above, np.flatnonzero(scores[r] == kth[r])[:k - len(above)]])
            values[r] = scores[r, top[r]]
    else:
        top = np.broadcast_to(np.arange(n), (rows, n))
        values = scores
    order = np.lexsort((top, -values), axis=-1)
    top = top[row, order]
    counts = np.count_nonzero(np.isfinite(values[row, order]), axis=1)
    return top, counts
