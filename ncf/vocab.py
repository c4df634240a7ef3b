"""Raw ids <-> contiguous indices, kept with the model.

The AWS sample fed raw MovieLens ids straight into one-hot vectors of a fixed width, so every movie id
above that width lost its identity. Here an embedding row exists only through a `Vocabulary`, and the outside
world only ever sees raw ids.

The vocabulary is the sorted array of distinct raw ids (int64 or unicode), so an id's index is its rank:
lookups are one `np.searchsorted`, the file is one plain numpy array (no pickle), and index order equals raw
id order, which the split uses to break timestamp ties by raw item id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .arrays import unique
from .errors import UnknownIdError

_INT_TEXT = np.vectorize(lambda s: s.lstrip("-").isdigit() and (s == "0" or not s.lstrip("-").startswith("0")))


@dataclass(frozen=True)
class Vocabulary:
    """Sorted distinct raw ids. `ids[index]` is the raw id of an index."""

    ids: np.ndarray

    def __post_init__(self):
        if self.ids.dtype.kind not in "iU":
            raise TypeError(f"vocabulary ids must be int64 or unicode, not {self.ids.dtype}")

    @classmethod
    def fit(cls, raw: np.ndarray) -> "Vocabulary":
        return cls(unique(raw))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def is_integer(self) -> bool:
        return self.ids.dtype.kind == "i"

    def encode(self, raw: np.ndarray) -> np.ndarray:
        """Indices `[n]` int64 of raw ids of the vocabulary's own dtype; every id must be known."""
        index = self.lookup_array(raw)
        unknown = index < 0
        if unknown.any():
            raise UnknownIdError("", raw[unknown])
        return index

    def lookup_array(self, raw: np.ndarray) -> np.ndarray:
        """Indices `[n]` int64, -1 where an id is unknown; `raw` has the vocabulary's dtype."""
        if len(self.ids) == 0 or len(raw) == 0:
            return np.full(len(raw), -1, dtype=np.int64)
        pos = np.searchsorted(self.ids, raw)
        clipped = np.minimum(pos, len(self.ids) - 1)
        return np.where(self.ids[clipped] == raw, clipped, -1).astype(np.int64)

    def lookup(self, values: Iterable) -> np.ndarray:
        """Indices `[n]` int64 (-1 = unknown) for ids as a client sends them: `31` and `"31"` are the same
        id in an integer vocabulary, and integers are matched by their text in a string vocabulary."""
        values = list(values)
        if self.is_integer:
            coerced = np.zeros(len(values), dtype=np.int64)
            valid = np.zeros(len(values), dtype=bool)
            for n, v in enumerate(values):
                if isinstance(v, bool):
                    continue
                if isinstance(v, (int, np.integer)):
                    coerced[n], valid[n] = int(v), -(2**63) <= int(v) < 2**63
                elif isinstance(v, str) and v.strip() and _INT_TEXT(v.strip()) and len(v.strip()) <= 19:
                    coerced[n], valid[n] = int(v.strip()), True
            index = self.lookup_array(coerced)
            index[~valid] = -1
            return index
        text = np.array(
            [v if isinstance(v, str) else str(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool)
             else "\x00" for v in values],
            dtype=str,
        )
        return self.lookup_array(text)

    def decode(self, index: np.ndarray) -> list:
        """Raw ids as Python values (int or str) for indices `[n]`, ready for JSON."""
        return self.ids[index].tolist()
