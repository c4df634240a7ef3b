"""Two-stage top-k for catalogues too large to score exactly: candidates by a dot product, then the full model.

Exact NeuMF top-k runs the MLP against every item, so its cost grows with the catalogue past what a real-time
answer allows (`benchmarks/catalogue.py` measures both paths at 10^5 and 10^6 items). Only a dot product
reduces to maximum inner-product search (Rendle et al. 2020), so the first stage ranks items by the part of
the model that is one, plus an item's own term folded in as one more dimension (queries end in a 1):

- MF: `p_u . q_i + b_i` (the user's bias and the global one move no item, so the first stage is the model's
  own order);
- GMF: `user_dot . item_dot`, the whole model;
- NeuMF: GMF's `user_dot . item_dot` plus the MLP's score of the item for the average user (the mean of the
  users' first-layer rows): in a trained NeuMF the MLP's term moves items largely alike for every user, and
  a shortlist by the GMF tower alone misses what it lifts (`benchmarks/catalogue.py` measures both).

The second stage scores the shortlist of `m` candidates with the full model and takes top-k. The shortlist
comes from:

- numpy, exactly (`Stage.backend == "numpy"`), while a user's product reads at most `NUMPY_MAX_FLOATS`;
- above that, a faiss IVF index (`IndexIVFFlat`, L2 over the vectors lifted so that the nearest is the largest
  inner product: `x' = [x, sqrt(M^2 - |x|^2)]`, `q' = [q, 0]`, so clustering sees vectors of one norm), with
  `nlist` about `4 sqrt(n_items)` and `nprobe` lists searched.

Masks apply during retrieval, so k results come back whenever k pass: the numpy stage masks the dot scores as
exact top-k masks the model's; the index asks for `m` plus as many candidates as a row has items removed
(seen, `exclude`), which keeps the masked top-m exact with respect to the index, and searches only the items a
rule over Items lets through (an `IDSelectorBitmap`). A rule that lets few items through is scored exactly over
those items instead; a row the index cannot fill falls back to the exact product.

How good the shortlist is is measured, never assumed, and which path serves is decided by measurement: see
`ncf.retrieval_choice`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .arrays import top_k_rows
from .errors import ArtifactError

if TYPE_CHECKING:  # pragma: no cover
    from .filters import ItemFilter
    from .inference import NumpyScorer, UserSide

#: Shortlist sizes tried, smallest first: the first reaching `TARGET_RECALL` serves.
LADDER = (100, 200, 500, 1000, 2000)
#: Inverted lists an IVF search visits, tried for each shortlist size (those up to the index's own count): the
#: lifted vectors of a NeuMF trained at 10^6 items cluster loosely, and its recall rises past a few per cent.
PROBES = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
#: Recall@k of the two-stage top-k against the exact one that two-stage serving promises (issue #34).
TARGET_RECALL = 0.98
#: A library top-10 (one user, one thread, median) at most this long keeps exact top-k the default: served
#: p99 is targeted at 15 ms, and HTTP, JSON and the tail take the rest.
TARGET_MS = 10.0
#: Floats one user's exact dot product may read before an index replaces it: the product is bound by memory
#: bandwidth, and 2^24 floats (64 MiB) keep the first stage a fraction of `TARGET_MS`.
NUMPY_MAX_FLOATS = 1 << 24
#: A rule letting fewer items through than this many times an IVF search's scan is scored exactly over them.
SUBSET_FACTOR = 4
#: A row whose searched lists held too few candidates searches this many times as many lists again.
WIDEN = 4
#: Points per centroid the IVF's k-means trains on (faiss warns below 39), and its iterations: the build is
#: k-means' `points x nlist x d x iterations`, and lists good enough to search need no more.
TRAIN_PER_LIST = 40
TRAIN_ITERATIONS = 10


@dataclass(frozen=True)
class Stage:
    """What the first stage needs: item vectors whose dot product with `query(side)` orders the candidates,
    and, with `backend == "ivf"`, the index over them.

    Attributes:
        items: `[n_items, d]` float32, C-contiguous.
        bias_column: the last column is an item's own term (MF's bias, NeuMF's MLP at the average user), so
            queries end in a 1.
        backend: "numpy" (exact product) or "ivf".
        shortlist: candidates the full model re-scores, `m`.
        nprobe: inverted lists an IVF search visits.
        index: the faiss index (None for numpy); read-only once built, so forked workers share its pages.
    """

    items: np.ndarray
    bias_column: bool
    backend: str = "numpy"
    shortlist: int = LADDER[0]
    nprobe: int = 0
    index: object | None = field(default=None, repr=False)

    @classmethod
    def of(cls, scorer: "NumpyScorer") -> "Stage | None":
        """The dot-product part of `scorer`'s model, None when it has none (an MLP alone). NeuMF's MLP term
        is one user's exact top-k pass over the catalogue."""
        if scorer.item_dot is None:
            return None
        if scorer.item_bias is not None:
            own = scorer.item_bias
        elif scorer.user_hidden is not None and len(scorer.user_hidden):
            from .inference import UserSide

            average = UserSide(dot=None, bias=None, hidden=scorer.user_hidden.mean(axis=0, keepdims=True))
            own = scorer.all_items_of(average)[0] - scorer.bias
        else:
            return cls(np.ascontiguousarray(scorer.item_dot, np.float32), False)
        return cls(np.ascontiguousarray(np.concatenate([scorer.item_dot, own[:, None]], axis=1), np.float32), True)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def scanned(self) -> int:
        """Vectors one IVF search compares (n_items for numpy)."""
        if self.index is None:
            return self.n_items
        return int(np.ceil(self.nprobe * self.n_items / self.index.nlist))

    def query(self, side: "UserSide") -> np.ndarray:
        """`[rows, d]` float32 queries of the users in `side`."""
        if self.bias_column:
            return np.concatenate([side.dot, np.ones((len(side.dot), 1), np.float32)], axis=1).astype(np.float32)
        return np.ascontiguousarray(side.dot, np.float32)

    def describe(self) -> str:
        if self.index is None:
            return f"an exact dot product over {self.n_items:,} items, shortlist {self.shortlist}"
        return (f"an IVF index ({self.index.nlist} lists, {self.nprobe} searched), shortlist {self.shortlist}")

    def candidates(self, queries: np.ndarray, allowed: np.ndarray | None,
                   removed: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        """`[rows, shortlist]` int64 item indices (-1 past the last) of each query's best candidates among the
        items `allowed` lets through (`[n_items]` bool, None for all) less the row's `removed` items
        (`(rows, items)` cells, as `SeenItems.cells` gives them), by item index: the second stage's top-k
        then breaks ties of the full model's scores to the lower index, as exact top-k does."""
        return _by_index(self._candidates(queries, allowed, removed), self.n_items)

    def _candidates(self, queries: np.ndarray, allowed: np.ndarray | None,
                    removed: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        m = self.shortlist
        if self.index is None:
            return _exact(self.items, queries, m, allowed, removed)
        if allowed is not None:
            passing = np.flatnonzero(allowed)
            if len(passing) <= max(m, SUBSET_FACTOR * self.scanned):
                return _exact(self.items, queries, m, allowed, removed, passing)
        rows = len(queries)
        counts = np.bincount(removed[0], minlength=rows) if removed is not None else np.zeros(rows, np.int64)
        want = m + int(counts.max(initial=0))
        keys = (np.sort(removed[0].astype(np.int64) * self.n_items + removed[1])
                if removed is not None and len(removed[0]) else None)
        found = self._kept(self._search(queries, want, allowed, self.nprobe), np.arange(rows), keys)
        short = np.flatnonzero(np.count_nonzero(found >= 0, axis=1) < m)
        nprobe = self.nprobe
        while len(short) and nprobe < self.index.nlist:
            # The lists searched held too few passing items for these rows (small lists, a rule, many seen
            # items): search WIDEN times as many lists, not every item, so a catalogue of unequal lists keeps
            # the index's speed.
            nprobe = min(self.index.nlist, nprobe * WIDEN)
            found[short] = self._kept(self._search(queries[short], want, allowed, nprobe), short, keys)
            short = short[np.count_nonzero(found[short] >= 0, axis=1) < m]
        valid = found >= 0
        order = np.argsort(~valid, axis=1, kind="stable")[:, :m]  # each row's kept candidates first, in order
        out = np.where(np.take_along_axis(valid, order, 1), np.take_along_axis(found, order, 1), -1)
        if out.shape[1] < m:
            out = np.pad(out, ((0, 0), (0, m - out.shape[1])), constant_values=-1)
        for r in short.tolist():
            # Every list searched and still too few: the catalogue (or the rule) passes fewer than m; exactly.
            mine = None if removed is None else (np.zeros(np.count_nonzero(removed[0] == r), np.int64),
                                                 removed[1][removed[0] == r])
            out[r] = _exact(self.items, queries[r:r + 1], m, allowed, mine)[0]
        return out

    def _kept(self, found: np.ndarray, rows: np.ndarray, keys: np.ndarray | None) -> np.ndarray:
        """`found` (`[len(rows), want]`, the search's answer for `rows`) with each row's removed items as -1;
        `keys`: the removed cells as sorted `row * n_items + item`, None when there are none."""
        if keys is None:
            return found
        query = rows[:, None].astype(np.int64) * self.n_items + np.maximum(found, 0)
        at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return np.where(keys[at] == query, -1, found)

    def _search(self, queries: np.ndarray, want: int, allowed: np.ndarray | None, nprobe: int) -> np.ndarray:
        import faiss

        lifted = np.concatenate([queries, np.zeros((len(queries), 1), np.float32)], axis=1)
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        if allowed is not None:
            bitmap = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
            params.sel = selector
        _, found = self.index.search(np.ascontiguousarray(lifted), min(want, self.n_items), params=params)
        return found


def _by_index(candidates: np.ndarray, n_items: int) -> np.ndarray:
    """Each row sorted by item index, -1 (no candidate) last."""
    ordered = np.sort(np.where(candidates < 0, n_items, candidates), axis=1)
    return np.where(ordered == n_items, -1, ordered)


def _exact(items: np.ndarray, queries: np.ndarray, m: int, allowed: np.ndarray | None,
           removed: tuple[np.ndarray, np.ndarray] | None, passing: np.ndarray | None = None) -> np.ndarray:
    """`Stage.candidates` by the exact product: over the `passing` items alone when given (a rule that lets
    few through), else over every item with the others masked, as exact top-k masks them."""
    if passing is not None:
        scores = queries @ items[passing].T
        if removed is not None and len(removed[0]) and len(passing):
            at = np.searchsorted(passing, removed[1])
            hit = (at < len(passing)) & (passing[np.minimum(at, len(passing) - 1)] == removed[1])
            scores[removed[0][hit], at[hit]] = -np.inf
    else:
        scores = queries @ items.T
        if allowed is not None:
            np.copyto(scores, -np.inf, where=~allowed)
        if removed is not None:
            scores[removed] = -np.inf
    top, counts = top_k_rows(scores, m)
    if passing is not None:
        top = passing[top]
    out = np.full((len(queries), m), -1, dtype=np.int64)
    columns = np.arange(top.shape[1])
    out[:, :top.shape[1]] = np.where(columns[None, :] < counts[:, None], top, -1)
    return out


def removed_cells(rows: int, excluded: np.ndarray, cells) -> tuple[np.ndarray, np.ndarray] | None:
    """`(rows, items)` cells no pool of a block may hold: every row's `excluded`, and `cells` (seen, or None)."""
    parts = [] if cells is None else [cells]
    if len(excluded):
        parts.append((np.repeat(np.arange(rows), len(excluded)), np.tile(excluded, rows)))
    if not parts:
        return None
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]).astype(np.int64)


def pool_candidates(stage: Stage, queries: np.ndarray, rule: "ItemFilter | None", removed, cells) -> np.ndarray:
    """`[rows, m]` candidates of one pool: the items `rule` lets through less `removed`. A rule over Items is
    one mask for the block; one over interactions is each row's own (`ItemFilter.allowed` of its seen items)."""
    if rule is None or not rule.per_user:
        return stage.candidates(queries, None if rule is None else rule.static(), removed)
    if rule.exclude_seen and cells is not None:
        removed = cells if removed is None else (np.concatenate([removed[0], cells[0]]),
                                                 np.concatenate([removed[1], cells[1]]))
    out = []
    for r in range(len(queries)):  # a loop per user: the mask depends on the user's seen items
        seen = None if cells is None else cells[1][cells[0] == r]
        mine = None if removed is None else (np.zeros(np.count_nonzero(removed[0] == r), np.int64),
                                             removed[1][removed[0] == r])
        out.append(stage.candidates(queries[r:r + 1], replace(rule, exclude_seen=False).allowed(seen), mine))
    return np.concatenate(out)


def default_nlist(n_items: int) -> int:
    """Inverted lists for `n_items` vectors: the power of two nearest `4 sqrt(n)` (10^6 items: 4,096, 10^5:
    1,024), fewer where k-means would have under 39 points a list."""
    nlist = 2 ** int(round(np.log2(max(4.0 * np.sqrt(n_items), 1.0))))
    return int(max(1, min(nlist, n_items // 39)))


def build_index(items: np.ndarray, nlist: int | None = None, seed: int = 0):
    """An IVF index over `items` `[n, d]` whose L2 order is the inner product's (the module's lift): k-means on
    at most `TRAIN_PER_LIST` points a list, then every item added; `4 (d + 1)` bytes an item."""
    import faiss

    n, d = items.shape
    nlist = nlist or default_nlist(n)
    squares = np.einsum("nd,nd->n", items, items, dtype=np.float64)
    lifted = np.empty((n, d + 1), dtype=np.float32)
    lifted[:, :d] = items
    lifted[:, d] = np.sqrt(np.maximum(squares.max() - squares, 0.0))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d + 1), d + 1, nlist, faiss.METRIC_L2)
    index.cp.seed, index.cp.niter = seed, TRAIN_ITERATIONS
    sample = np.random.default_rng(seed).choice(n, min(n, TRAIN_PER_LIST * nlist), replace=False)
    index.train(lifted[np.sort(sample)])
    index.add(lifted)
    return index


def index_bytes(index) -> np.ndarray:
    """The index in faiss' own format, `[bytes]` uint8 (what `artifacts` writes as `retrieval.faiss`)."""
    import faiss

    return faiss.serialize_index(index)


def index_from_bytes(data: np.ndarray, stage: Stage):
    """The index `index_bytes` wrote, checked against `stage`'s items: an IVF index of every item, one
    dimension more than the item vectors."""
    import faiss

    try:
        index = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
    except RuntimeError as e:
        raise ArtifactError(f"the retrieval index is not a faiss IVF index ({str(e).splitlines()[0]})") from e
    if not isinstance(index, faiss.IndexIVFFlat):
        raise ArtifactError(f"the retrieval index is not a faiss IVF index (a {type(index).__name__})")
    if index.ntotal != stage.n_items or index.d != stage.items.shape[1] + 1:
        raise ArtifactError(f"the retrieval index holds {index.ntotal:,} vectors of {index.d} dimensions; this "
                            f"model needs {stage.n_items:,} of {stage.items.shape[1] + 1}")
    return index
