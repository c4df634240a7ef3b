"""Which items each user has interacted with: a CSR matrix without scipy.

Sampling needs it to draw only unseen items, evaluation to draw candidates, and serving to exclude seen
items from recommendations. Rows are sorted, so membership is one `searchsorted` over global keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrays import unique


@dataclass(frozen=True)
class SeenItems:
    """`indices[indptr[u]:indptr[u + 1]]` are the sorted distinct items of user `u`.

    Attributes:
        indptr: `[n_users + 1]` int64.
        indices: `[nnz]` int32 item indices.
        n_items: width of the matrix.
    """

    indptr: np.ndarray
    indices: np.ndarray
    n_items: int

    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> "SeenItems":
        keys = users.astype(np.int64)  # built in place: 8 bytes per pair at the peak, not 24
        keys *= n_items
        keys += items
        keys = unique(keys, overwrite=True)
        row = keys // n_items
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(row, minlength=n_users), out=indptr[1:])
        return cls(indptr, (keys % n_items).astype(np.int32), n_items)

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def counts(self, users: np.ndarray | None = None) -> np.ndarray:
        """Number of distinct items per user: `[n_users]`, or `[len(users)]` for `users` alone (without a pass
        over every user: one top-10 at 162k users paid it)."""
        if users is None:
            return np.diff(self.indptr)
        return self.indptr[users + 1] - self.indptr[users]

    def row(self, user: int) -> np.ndarray:
        return self.indices[self.indptr[user]:self.indptr[user + 1]]

    def cells(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`(rows, items)`, both `[sum of the users' counts]`: the seen items of `users[r]` paired with `r`, so
        that `scores[rows, items] = -inf` masks a `[len(users), n_items]` block without a loop over users."""
        users = np.asarray(users, dtype=np.int64)
        counts = self.counts(users)
        rows = np.repeat(np.arange(len(users)), counts)
        first = np.repeat(self.indptr[users] - (np.cumsum(counts) - counts), counts)
        return rows, self.indices[first + np.arange(len(rows))].astype(np.int64)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """`[n]` bool: whether each (user, item) pair is in the matrix."""
        keys = self._keys()
        query = users.astype(np.int64) * self.n_items + items
        pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
        return (keys[pos] == query) if len(keys) else np.zeros(len(query), dtype=bool)

    def _keys(self) -> np.ndarray:
        row = np.repeat(np.arange(self.n_users, dtype=np.int64), self.counts())
        return row * self.n_items + self.indices
