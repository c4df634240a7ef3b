"""The object serving uses: a loaded model folder answering in raw ids, with numpy alone.

Three questions, as Amazon Personalize users know them: how likely is this user to like these items
(score pairs), what should this user see next (top-k, seen items excluded, popular items for a user the model
has never met, flagged as a fallback), and what is like this item (nearest items by learned embedding).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import artifacts
from .errors import ConfigError, UnknownIdError
from .inference import NumpyScorer, sigmoid


@dataclass(frozen=True)
class Recommendations:
    """Items best first, with scores (probabilities, or popularity shares when `fallback`)."""

    items: list
    scores: list[float]
    fallback: bool = False


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` largest finite scores, best first; ties keep index order."""
    finite = np.flatnonzero(np.isfinite(scores))
    k = min(k, len(finite))
    if k == 0:
        return np.array([], dtype=np.int64)
    candidates = finite[np.argpartition(-scores[finite], k - 1)[:k]] if k < len(finite) else finite
    return candidates[np.lexsort((candidates, -scores[candidates]))]


class Recommender:
    """Answers in raw ids from a model folder. Build with `Recommender.load(path)`."""

    def __init__(self, artifact: artifacts.ModelArtifact):
        self.artifact = artifact
        self.users, self.items = artifact.users, artifact.items
        self.scorer = NumpyScorer(artifact.kind, artifact.weights)
        self._item_vectors = self.scorer.item_vectors()
        popularity = artifact.popularity.astype(np.float64)
        self._popularity_share = popularity / max(popularity.max(), 1.0)

    @classmethod
    def load(cls, path: str | Path) -> "Recommender":
        return cls(artifacts.load(path))

    @property
    def metadata(self) -> dict:
        return self.artifact.metadata

    def _known(self, kind: str, vocab, ids: Sequence) -> np.ndarray:
        index = vocab.lookup(ids)
        if (index < 0).any():
            raise UnknownIdError(kind, [ids[n] for n in np.flatnonzero(index < 0)])
        return index

    def score(self, users: Sequence, items: Sequence) -> np.ndarray:
        """`[n]` probabilities that each user likes the paired item. Unknown ids raise `UnknownIdError`."""
        if len(users) != len(items):
            raise ConfigError(f"{len(users)} users but {len(items)} items: pairs need one of each")
        u = self._known("user", self.users, users)
        i = self._known("item", self.items, items)
        return sigmoid(self.scorer.pairs(u, i)).astype(np.float64)

    def recommend(self, user, k: int = 10, *, exclude_seen: bool = True, exclude: Iterable = ()) -> Recommendations:
        """Top-`k` items for `user`; for a user the model does not know, the most popular items (`fallback`)."""
        return self.recommend_many([user], k, exclude_seen=exclude_seen, exclude=exclude)[0]

    def recommend_many(self, users: Sequence, k: int = 10, *, exclude_seen: bool = True,
                       exclude: Iterable = ()) -> list[Recommendations]:
        """`recommend` for several users, scored as one matrix product per block."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        index = self.users.lookup(users)
        excluded = self.items.lookup(list(exclude))
        excluded = excluded[excluded >= 0]
        known = np.flatnonzero(index >= 0)
        results: list[Recommendations | None] = [None] * len(users)
        for start in range(0, len(known), 256):
            rows = known[start:start + 256]
            logits = self.scorer.all_items(index[rows]).astype(np.float64)
            logits[:, excluded] = -np.inf
            for r, row in enumerate(rows):
                scores = logits[r]
                if exclude_seen:
                    scores[self.artifact.seen.row(index[row])] = -np.inf
                top = _top(scores, k)
                results[row] = Recommendations(self.items.decode(top), sigmoid(scores[top]).tolist())
        if len(known) < len(users):
            popular = self._popularity_share.copy()
            popular[excluded] = -np.inf
            top = _top(popular, k)
            fallback = Recommendations(self.items.decode(top), popular[top].tolist(), fallback=True)
            results = [r if r is not None else fallback for r in results]
        return results  # type: ignore[return-value]

    def similar_items(self, item, k: int = 10) -> Recommendations:
        """The `k` items whose learned embeddings are closest (cosine) to `item`'s, itself excluded."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        index = self._known("item", self.items, [item])[0]
        scores = (self._item_vectors @ self._item_vectors[index]).astype(np.float64)
        scores[index] = -np.inf
        top = _top(scores, k)
        return Recommendations(self.items.decode(top), scores[top].tolist())
