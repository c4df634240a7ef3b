"""Promotions and diversity: what fills the k slots once every candidate has a score.

Both are Amazon Personalize's ideas or its users' requests, done after scoring and before the answer:

- A `Promotion` gives a share of the slots to the best-scored items passing its own filter (a campaign, the
  items in stock of one brand), as Personalize's `promotions` do: the promoted items are "positioned randomly
  relative to other recommended items, but in sorted order relative to other promoted items". The positions
  come from a generator seeded by a stable hash of the request (`request_seed`), so one request always gets
  one answer, across workers and restarts.
- A `Diversity` caps how many items of one metadata value (one genre, one brand) the answer holds, by a
  greedy pass over the candidates best first: an item enters when none of its values is at its cap. Greedy
  is what keeps it cheap (a pass over a shortlist, not a search over subsets), and it never puts a worse item
  above a better one.

Each pool of candidates (the request's, each promotion's) arrives as a `Pool`: its scores over every item and
the shortlist the caller took with one `top_k_rows`. The selection here loops over the answer's slots and the
shortlist only, never over the catalogue: the whole order of a pool is sorted only when a capped answer has
used up its shortlist.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from itertools import repeat
from typing import Iterator, Sequence

import numpy as np

from .errors import ConfigError
from .filters import ItemFilter
from .metadata import Column


@dataclass(frozen=True)
class Promotion:
    """`percent` (1-100) of the k slots for the best items that pass `rule`, marked with `name`.

    The promotion's own rule chooses its items, not the request's; the request's `exclude` list and
    `exclude_seen` still apply to them (an item the caller said never to show stays hidden)."""

    name: str
    percent: int
    rule: ItemFilter

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a promotion needs a name, got {self.name!r}")
        if isinstance(self.percent, bool) or not isinstance(self.percent, (int, np.integer)) \
                or not 1 <= self.percent <= 100:
            raise ConfigError(f"promotion {self.name!r}: percent must be an integer from 1 to 100, "
                              f"got {self.percent!r}")
        if not isinstance(self.rule, ItemFilter):
            raise ConfigError(f"promotion {self.name!r}: its rule must be an ItemFilter, got "
                              f"{type(self.rule).__name__}")

    def slots(self, k: int) -> int:
        """The slots this promotion asks for among `k`: `percent` of them rounded half up, at least 1
        (Personalize rounds 25% of 10 to 3)."""
        return max(1, (2 * int(self.percent) * k + 100) // 200)


@dataclass(frozen=True, eq=False)  # a column of arrays has no meaningful ==
class Diversity:
    """At most `max_per_value` items per value of `column` in an answer.

    `column` is a categorical, text or boolean column of the model's `ItemMetadata`: an item with several
    categories (`Comedy|Drama`) counts once for each (a text value is one, whole), and an item with no value
    is never capped. A numeric
    column is refused: capping by exact number (a price of 9.99) is rarely what anyone means, and a range
    would need a bucketing this request does not say."""

    column: Column
    max_per_value: int

    def __post_init__(self):
        if not isinstance(self.column, Column):
            raise ConfigError(f"diversity needs a metadata column, got {type(self.column).__name__}")
        if self.column.kind not in ("categorical", "text", "boolean"):
            raise ConfigError(f"diversity over {self.column.name!r}: a {self.column.kind} column cannot be "
                              "capped per value; use a categorical, text or boolean column")
        if isinstance(self.max_per_value, bool) or not isinstance(self.max_per_value, (int, np.integer)) \
                or self.max_per_value < 1:
            raise ConfigError(f"diversity over {self.column.name!r}: max_per_value must be an integer >= 1, "
                              f"got {self.max_per_value!r}")

    @classmethod
    def of(cls, metadata, name: str, max_per_value: int) -> "Diversity":
        """The cap over column `name` (any case) of `metadata` (`ItemMetadata`, or None for a model without
        any), with an error naming what is missing."""
        if metadata is None:
            raise ConfigError(f"diversity over {name!r}: this model has no item metadata")
        column = metadata.find(name)
        if column is None:
            raise ConfigError(f"diversity over {name!r}: no such item metadata column; the columns are "
                              f"{metadata.names}")
        return cls(column, max_per_value)


def shortlist_size(k: int, diversity: Diversity | None) -> int:
    """Candidates each pool keeps from its one top-k pass: `k` when nothing is capped (enough for every
    promotion and the rest, see `assemble`), else `max(10 k, 200)`. A capped answer that walks past them sorts
    the rest of its pool (less what the full caps rule out), a pass over the catalogue instead of a shortlist:
    strict caps over values most items share (2 per genre where the average film has 2.3) do that often."""
    return k if diversity is None else max(10 * k, 200)


def request_seed(*parts) -> int:
    """A 64-bit seed from the parts of a request (ids as text, names, k): the same on every worker and run
    (Python's `hash` of a string changes with each process)."""
    text = json.dumps([p if isinstance(p, (int, type(None))) else
                       [str(x) for x in p] if isinstance(p, (list, tuple)) else str(p) for p in parts])
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


@dataclass
class Pool:
    """One row's candidates for one purpose (the request's rule, or one promotion's).

    Attributes:
        scores: `[n_items]` scores, -inf where an item is not a candidate.
        shortlist: the best candidates, best first, ties to the lower index (`top_k_rows`' order).
        complete: whether `shortlist` holds every candidate (fewer candidates than it could hold).
    """

    scores: np.ndarray
    shortlist: np.ndarray
    complete: bool

    def walk(self, caps: "_Caps | None") -> Iterator[tuple[int, list | None]]:
        """Every candidate best first with its capped values (None without `caps`): the shortlist, then,
        when asked for more, the rest in the same order, less the items a value at its cap already rules out
        (caps only fill up, so they could never enter). Values are gathered a chunk at a time: an answer
        usually needs few more than `k` items."""
        yield from _chunks(self.shortlist, caps)
        if self.complete:
            return
        rest = np.isfinite(self.scores)
        rest[self.shortlist] = False
        if caps is not None:
            rest &= ~caps.blocked()
        rest = np.flatnonzero(rest)
        yield from _chunks(rest[np.lexsort((rest, -self.scores[rest]))], caps)


def _chunks(items: np.ndarray, caps: "_Caps | None", size: int = 64) -> Iterator[tuple[int, list | None]]:
    for start in range(0, len(items), size):
        part = items[start:start + size]
        yield from zip(part.tolist(), caps.values(part) if caps is not None else repeat(None))


class _Caps:
    """The running count of each value of a `Diversity` column in one answer, and the values at the cap."""

    def __init__(self, diversity: Diversity):
        self.column = diversity.column
        self.limit = int(diversity.max_per_value)
        self.counts: dict[int, int] = {}
        self.full: set[int] = set()

    def values(self, items: np.ndarray) -> list[list[int]]:
        """Each item's values (category codes, or the flag 0 / 1), `[]` where missing: one gather for all
        `items`, so the greedy loop touches Python ints only."""
        column = self.column
        if column.kind == "boolean":
            return [[f] if f >= 0 else [] for f in column.flags[items].tolist()]
        starts = column.indptr[items]
        lengths = column.indptr[items + 1] - starts
        bounds = np.cumsum(lengths)
        flat = column.codes[np.repeat(starts - bounds + lengths, lengths) + np.arange(int(bounds[-1]))].tolist() \
            if len(items) else []
        ends = bounds.tolist()
        return [flat[a:b] for a, b in zip([0] + ends[:-1], ends)]

    def admit(self, values: list[int]) -> bool:
        """Count an item with `values` in and say True when none of them is at the cap; else change nothing."""
        if not self.full.isdisjoint(values):
            return False
        for v in (values if len(values) < 2 else set(values)):  # "A|A" counts A once
            count = self.counts.get(v, 0) + 1
            self.counts[v] = count
            if count >= self.limit:
                self.full.add(v)
        return True

    def blocked(self) -> np.ndarray:
        """`[n_items]` True where an item has a value at the cap."""
        column, full = self.column, np.array(sorted(self.full), dtype=np.int64)
        if column.kind == "boolean":
            return np.isin(column.flags[:column.n_items], full)
        at_cap = np.zeros(len(column.categories), dtype=bool)
        at_cap[full] = True
        hits = np.zeros(len(column.codes) + 1, dtype=np.int64)
        np.cumsum(at_cap[column.codes], out=hits[1:])  # hits[e]: entries before e with a value at the cap
        return hits[column.indptr[1:column.n_items + 1]] > hits[column.indptr[:column.n_items]]


def assemble(k: int, main: Pool, promotions: Sequence[tuple[str, int, Pool]], diversity: Diversity | None,
             rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray, list]:
    """One answer of at most `k` items from scored pools.

    Each promotion in order takes up to its slots (`Promotion.slots`, the total at most `k`) from its pool,
    best first, skipping items taken already; the request's pool fills the slots left (all of them when a
    promotion finds too few items) with items not promoted. With `diversity`, every item, promoted or not,
    enters only while none of its values is at the cap, in that same order: the answer is shorter than `k`
    when the caps let no more candidates in. Promoted items then take random positions drawn by `rng`, in
    score order among themselves; the others keep theirs.

    Args:
        main: the request's candidates.
        promotions: `(name, slots, pool)` per promotion.
        rng: draws the promoted items' positions (unused without promotions).

    Returns:
        `indices` `[m]` int64, `scores` `[m]` (from the pool each item came from) and `names` `[m]`: the
        promotion's name of each item, None for the others.
    """
    caps = _Caps(diversity) if diversity is not None else None
    taken: set[int] = set()
    promoted: list[tuple[float, int, str]] = []
    for name, slots, pool in promotions:
        want = min(slots, k - len(promoted))
        got = 0
        for item, values in (pool.walk(caps) if want > 0 else ()):
            if item in taken or (caps is not None and not caps.admit(values)):
                continue
            taken.add(item)
            promoted.append((float(pool.scores[item]), item, name))
            got += 1
            if got == want:
                break
    others: list[int] = []
    want = k - len(promoted)
    for item, values in (main.walk(caps) if want > 0 else ()):
        if item in taken or (caps is not None and not caps.admit(values)):
            continue
        others.append(item)
        if len(others) == want:
            break
    size = len(promoted) + len(others)
    indices = np.empty(size, dtype=np.int64)
    scores = np.empty(size, dtype=np.float64)
    names: list = [None] * size
    at = np.zeros(size, dtype=bool)
    if promoted:
        at[rng.choice(size, len(promoted), replace=False)] = True
        promoted.sort(key=lambda p: (-p[0], p[1]))
        for slot, (score, item, name) in zip(np.flatnonzero(at).tolist(), promoted):
            indices[slot], scores[slot], names[slot] = item, score, name
    rest = np.flatnonzero(~at)
    indices[rest] = others
    scores[rest] = main.scores[np.asarray(others, dtype=np.int64)]
    return indices, scores, names
