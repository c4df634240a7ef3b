"""Filters in Amazon Personalize's filter-expression language, compiled once into item masks.

(Parser and compiler to come; `ItemFilter` is what serving consumes.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ItemFilter:
    """What a compiled filter lets through, as Personalize combines expressions joined by `|`: the items of
    every INCLUDE expression together (all items when there is none), less the items of every EXCLUDE one.
    The Items parts are masks fixed at compile time; the Interactions parts (`EVENT_TYPE IN ("*")`) depend on
    the user, so they stay flags until `allowed` is given that user's seen items.

    Attributes:
        include: `[n_items]` bool, the items INCLUDE expressions over Items let through; None when no such
            expression.
        include_seen: an INCLUDE expression over the user's interactions (their seen items are let through).
        exclude: `[n_items]` bool, the items EXCLUDE expressions over Items remove; None when none.
        exclude_seen: an EXCLUDE expression over the user's interactions (their seen items are removed).
    """

    n_items: int
    include: np.ndarray | None = None
    include_seen: bool = False
    exclude: np.ndarray | None = None
    exclude_seen: bool = False

    @property
    def per_user(self) -> bool:
        """Whether what passes depends on the user's seen items."""
        return self.include_seen or self.exclude_seen

    def allowed(self, seen: np.ndarray | None = None) -> np.ndarray:
        """`[n_items]` bool: the items that pass for a user whose seen item indices are `seen` (None or empty
        for someone the model does not know)."""
        seen = np.zeros(0, np.int64) if seen is None else np.asarray(seen, np.int64)
        if self.include is None and not self.include_seen:
            mask = np.ones(self.n_items, dtype=bool)
        else:
            mask = self.include.copy() if self.include is not None else np.zeros(self.n_items, dtype=bool)
            if self.include_seen:
                mask[seen] = True
        if self.exclude is not None:
            mask &= ~self.exclude
        if self.exclude_seen:
            mask[seen] = False
        return mask

    def static(self) -> np.ndarray | None:
        """For a filter that does not depend on the user (`per_user` False): the mask of items that pass, or
        None when every item passes."""
        if self.per_user:
            raise ValueError("this filter depends on the user's seen items: use allowed(seen)")
        if self.include is None and self.exclude is None:
            return None
        return self.allowed()
