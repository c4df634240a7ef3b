"""The object serving uses: a loaded model folder answering in raw ids, with numpy alone.

Three questions, as Amazon Personalize users know them: how likely is this user to like these items
(score pairs), what should this user see next (top-k, seen items excluded, popular items for a user the model
has never met, flagged as a fallback), and what is like this item (nearest items by learned embedding). And
what should someone who just interacted with these items see (`recommend_from_items`: a fold-in, `foldin`),
for a new user or a known one whose actions since training should count.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import artifacts
from .arrays import BLOCK_SCORES, top_k_rows
from .errors import ConfigError, UnknownIdError
from .calibration import Calibration
from .filters import ItemFilter
from .foldin import FoldIn, FoldInConfig
from .inference import NumpyScorer
from .rerank import Diversity, Pool, Promotion, assemble, request_seed, shortlist_size
from .retrieval import Stage, pool_candidates, removed_cells
from .retrieval_choice import choose

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recommendations:
    """Items best first, with scores (probabilities, or popularity shares when `fallback`)."""

    items: list
    scores: list[float]
    fallback: bool = False
    #: Given items the model does not know (`recommend_from_items`): left out of the fold-in.
    ignored: tuple = ()
    #: The items' model indices (their rows in `ItemMetadata`), for metadata lookups.
    indices: tuple = ()
    #: Per item, the name of the promotion that placed it or None; empty when no promotion was asked for.
    promoted: tuple = ()


@dataclass(frozen=True)
class Ranking:
    """A given list of items best first (Personalize's GetPersonalizedRanking).

    Attributes:
        items, scores, indices: the given items the model knows and the rule lets through, each once, with
            calibrated probabilities (popularity shares when `fallback`) and model indices.
        unknown: the given ids the model does not know, each once, in the order given.
        filtered: how many distinct known items the rule left out.
        fallback: the user is unknown, so the items are ranked by popularity.
    """

    items: list
    scores: list[float]
    indices: tuple = ()
    unknown: tuple = ()
    filtered: int = 0
    fallback: bool = False


def _restrict(scores: np.ndarray, rule: ItemFilter | None, cells, *, copy: bool) -> np.ndarray:
    """`scores` `[rows, n_items]` with the items `rule` blocks set to -inf (in place unless `copy`).

    `cells` are the rows' seen items (`SeenItems.cells`), None when the rows have none. A rule over Items
    alone is one `[n_items]` mask broadcast over the block; an EXCLUDE over interactions is the seen cells, as
    `exclude_seen` masks them; only an INCLUDE over interactions needs a mask of the block's shape."""
    out = scores.copy() if copy else scores
    if rule is None:
        return out
    if rule.include_seen:
        allowed = np.zeros(out.shape, dtype=bool) if rule.include is None else \
            np.repeat(rule.include[None, :], len(out), axis=0)
        if cells is not None:
            allowed[cells] = True
        if rule.exclude is not None:
            allowed &= ~rule.exclude
        np.copyto(out, -np.inf, where=~allowed)
    else:
        static = replace(rule, exclude_seen=False).static()
        if static is not None:
            np.copyto(out, -np.inf, where=~static)
    if rule.exclude_seen and cells is not None:
        out[cells] = -np.inf
    return out


def _choose(scores: np.ndarray, k: int, cells, rule: ItemFilter | None, promotions: Sequence[Promotion],
            diversity: Diversity | None, seeds: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray, list]]:
    """Per row of `scores` `[rows, n_items]` (the request's options already at -inf; overwritten): the
    answer's `(indices, scores, promotion names)`. The rule masks the scores before one `top_k_rows` per
    pool, so k items come back whenever k pass. Without promotions or diversity that top-k is the answer;
    otherwise `assemble` fills the slots from each pool's shortlist."""
    size = shortlist_size(k, diversity)
    pools = []
    for promotion in promotions:  # before the request's rule overwrites `scores`
        masked = _restrict(scores, promotion.rule, cells, copy=True)
        pools.append((promotion, masked) + top_k_rows(masked, size))
    main = _restrict(scores, rule, cells, copy=False)
    top, counts = top_k_rows(main, size)
    if not promotions and diversity is None:
        values = np.take_along_axis(main, top, axis=1)
        return [(top[r, :counts[r]], values[r, :counts[r]], []) for r in range(len(main))]
    answers = []
    for r in range(len(main)):
        shares = [(p.name, p.slots(k), Pool(m[r], t[r, :c[r]], bool(c[r] < size))) for p, m, t, c in pools]
        rng = np.random.default_rng(seeds[r]) if promotions else None
        answers.append(assemble(k, Pool(main[r], top[r, :counts[r]], bool(counts[r] < size)), shares,
                                diversity, rng))
    return answers


class Recommender:
    """Answers in raw ids from a model folder. Build with `Recommender.load(path)`.

    Every top-k question takes the same business rules, keyword-only: `rule` (an `ItemFilter`: what may be
    recommended, applied before top-k so that k items come back whenever k pass), `promotions` (shares of the
    slots for items passing their own rules, `ncf.rerank.Promotion`) and `diversity` (a cap per metadata
    value, `ncf.rerank.Diversity`). The request's `exclude` list and `exclude_seen` bind promoted items too.
    """

    def __init__(self, artifact: artifacts.ModelArtifact, *, retrieval: str = "auto"):
        self.artifact = artifact
        self.users, self.items = artifact.users, artifact.items
        self.scorer = NumpyScorer(artifact.kind, artifact.weights)
        #: What a probability means (`calibration.REFERENCE`); the plain sigmoid for folders without one.
        self.calibration = Calibration.from_dict(artifact.metadata.get("calibration"))
        self._item_vectors = self.scorer.item_vectors()
        negatives = artifact.metadata.get("hyperparameters", {}).get("negatives")
        #: Fold-in (`recommend_from_items`) samples as the model's training did, 8 per item when unknown.
        self.fold_in = FoldIn(self.scorer, artifact.weights, FoldInConfig(
            negatives=negatives if isinstance(negatives, int) and 1 <= negatives <= 100 else FoldInConfig.negatives))
        popularity = artifact.popularity.astype(np.float64)
        self._popularity_share = popularity / max(popularity.max(), 1.0)
        #: The first stage of two-stage top-k, None for exact top-k (`ncf.retrieval`).
        self.retrieval: Stage | None = None
        #: Which path answers top-k and why, measured (`retrieval_choice.choose`): `serve` logs it at start.
        self.retrieval_choice = choose(self, retrieval)
        self.retrieval = self.retrieval_choice.stage
        if self.retrieval is not None and self.retrieval.index is not None:  # its bytes, read, are a second copy
            self.artifact = replace(artifact, retrieval_index=None)
        log.info("top-k: %s: %s", self.retrieval_choice.path, self.retrieval_choice.why)

    @classmethod
    def load(cls, path: str | Path, *, retrieval: str = "auto") -> "Recommender":
        return cls(artifacts.load(path), retrieval=retrieval)

    def with_retrieval(self, stage: Stage | None) -> "Recommender":
        """This recommender answering top-k through `stage` (None: exactly), sharing every array: recall and
        timing compare the two paths on one model."""
        other = copy.copy(self)
        other.retrieval = stage
        return other

    @property
    def metadata(self) -> dict:
        return self.artifact.metadata

    @property
    def item_metadata(self):
        """The model's `ItemMetadata` (rows aligned with `items`), or None when it was trained without."""
        return getattr(self.artifact, "item_metadata", None)

    def _known(self, kind: str, vocab, ids: Sequence) -> np.ndarray:
        index = vocab.lookup(ids)
        if (index < 0).any():
            raise UnknownIdError(kind, [ids[n] for n in np.flatnonzero(index < 0)])
        return index

    def _check(self, k: int, rule: ItemFilter | None, promotions: Sequence[Promotion],
               diversity: Diversity | None) -> None:
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        n = len(self.items)
        for p in promotions:
            if not isinstance(p, Promotion):
                raise ConfigError(f"promotions must be Promotion objects, got {type(p).__name__}")
        for what, f in [("the rule", rule)] + [(f"promotion {p.name!r}", p.rule) for p in promotions]:
            if f is not None and f.n_items != n:
                raise ConfigError(f"{what} was compiled for {f.n_items:,} items, this model has {n:,}")
        if diversity is not None and diversity.column.n_items != n:
            raise ConfigError(f"diversity column {diversity.column.name!r} describes {diversity.column.n_items:,} "
                              f"items, this model has {n:,}")

    def _answer(self, chosen, to_score, promotions: Sequence[Promotion], **fields) -> Recommendations:
        indices, values, names = chosen
        return Recommendations(self.items.decode(indices), to_score(values).tolist(), indices=tuple(indices.tolist()),
                               promoted=tuple(names) if promotions else (), **fields)

    def score(self, users: Sequence, items: Sequence) -> np.ndarray:
        """`[n]` calibrated probabilities that each user likes the paired item (`calibration`). Unknown ids
        raise `UnknownIdError`."""
        if len(users) != len(items):
            raise ConfigError(f"{len(users)} users but {len(items)} items: pairs need one of each")
        u = self._known("user", self.users, users)
        i = self._known("item", self.items, items)
        return self.calibration.probability(self.scorer.pairs(u, i))

    def score_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """`[n]` probabilities for pairs of user and item indices (known ids, from `users.lookup`)."""
        logits = self.scorer.pairs(np.asarray(users, np.int64), np.asarray(items, np.int64))
        return self.calibration.probability(logits)

    def recommend(self, user, k: int = 10, *, exclude_seen: bool = True, exclude: Iterable = (),
                  rule: ItemFilter | None = None, promotions: Sequence[Promotion] = (),
                  diversity: Diversity | None = None) -> Recommendations:
        """Top-`k` items for `user`; for a user the model does not know, the most popular items (`fallback`)."""
        return self.recommend_many([user], k, exclude_seen=exclude_seen, exclude=exclude, rule=rule,
                                   promotions=promotions, diversity=diversity)[0]

    @property
    def block_users(self) -> int:
        """Users scored together by `recommend_many`: `[block_users, n_items]` float32 is `BLOCK_SCORES`
        (an index's search holds `[block_users, shortlist]` instead)."""
        if self.retrieval is not None and self.retrieval.index is not None:
            return max(1, BLOCK_SCORES // (16 * self.retrieval.shortlist))
        return max(1, BLOCK_SCORES // max(1, len(self.items)))

    def recommend_many(self, users: Sequence, k: int = 10, *, exclude_seen: bool = True, exclude: Iterable = (),
                       rule: ItemFilter | None = None, promotions: Sequence[Promotion] = (),
                       diversity: Diversity | None = None) -> list[Recommendations]:
        """`recommend` for several users, a block of `block_users` at a time: one matrix product, one mask
        of seen and excluded items and one top-k per block, no loop over users but to build the answers.
        Same answers as one user at a time, at a lower cost per user than `recommend` one user at a time.

        A rule over Items is one mask per block; rules over interactions use the block's seen cells, as
        `exclude_seen` does. Unknown users get the popular items under the same rule, promotions and caps."""
        promotions = list(promotions)
        self._check(k, rule, promotions, diversity)
        index = self.users.lookup(users)
        excluded = self.items.lookup(list(exclude))
        excluded = excluded[excluded >= 0]
        known = np.flatnonzero(index >= 0)
        per_user = exclude_seen or any(f is not None and f.per_user for f in [rule] + [p.rule for p in promotions])
        names = [p.name for p in promotions]
        results: list[Recommendations | None] = [None] * len(users)
        for start in range(0, len(known), self.block_users):
            rows = known[start:start + self.block_users]
            cells = self.artifact.seen.cells(index[rows]) if per_user else None
            seeds = [request_seed("user", users[row], names, k) for row in rows] if promotions else []
            if self.retrieval is not None:
                chosen = self._two_stage(self.scorer.user_side(index[rows]), k, excluded, cells, exclude_seen, rule,
                                         promotions, diversity, seeds)
            else:
                logits = self.scorer.all_items(index[rows])
                logits[:, excluded] = -np.inf
                if exclude_seen:
                    logits[cells] = -np.inf
                chosen = _choose(logits, k, cells, rule, promotions, diversity, seeds)
            for r, row in enumerate(rows):
                results[row] = self._answer(chosen[r], self.calibration.probability, promotions)
        if len(known) < len(users):
            shared = None if promotions else self._popular(k, excluded, rule, promotions, diversity, 0)
            for n in np.flatnonzero(index < 0).tolist():  # with promotions, each request its own positions
                results[n] = shared if shared is not None else self._popular(
                    k, excluded, rule, promotions, diversity, request_seed("user", users[n], names, k))
        return results  # type: ignore[return-value]

    def _two_stage(self, side, k: int, excluded: np.ndarray, cells, exclude_seen: bool, rule: ItemFilter | None,
                   promotions: Sequence[Promotion], diversity: Diversity | None, seeds: Sequence[int]) -> list:
        """`_choose`'s answers for the users of `side` (a `UserSide` block, seen items `cells`) through the first
        stage: each pool's candidates under its own rule, the request's `excluded` and (with `exclude_seen`)
        the seen items, then the full model's scores of those candidates alone. The shortlist grows to what
        `shortlist_size` needs (k, or a capped answer's walk), so k come back whenever k candidates pass."""
        size = shortlist_size(k, diversity)
        stage = self.retrieval if self.retrieval.shortlist >= size else replace(self.retrieval, shortlist=size)
        queries = stage.query(side)
        removed = removed_cells(len(queries), excluded, cells if exclude_seen else None)
        pools = []
        for f in [rule] + [p.rule for p in promotions]:
            candidates = pool_candidates(stage, queries, f, removed, cells)
            values = self.scorer.candidates_of(side, candidates)
            top, counts = top_k_rows(values, size)
            pools.append((candidates, values, np.take_along_axis(candidates, top, 1),
                          np.take_along_axis(values, top, 1), counts))
        candidates, values, top, best, counts = pools[0]
        if not promotions and diversity is None:
            return [(top[r, :counts[r]], best[r, :counts[r]], []) for r in range(len(top))]
        answers = []
        for r in range(len(top)):  # a loop per user, as `_choose`'s: each answer is assembled alone
            made = []
            for c, v, t, _, n in pools:
                scores = np.full(len(self.items), -np.inf, dtype=np.float32)
                scores[c[r][c[r] >= 0]] = v[r][c[r] >= 0]
                made.append(Pool(scores, t[r, :n[r]], bool(n[r] < size)))
            shares = [(p.name, p.slots(k), pool) for p, pool in zip(promotions, made[1:])]
            rng = np.random.default_rng(seeds[r]) if promotions else None
            answers.append(assemble(k, made[0], shares, diversity, rng))
        return answers

    def _popular(self, k: int, excluded: np.ndarray, rule: ItemFilter | None = None,
                 promotions: Sequence[Promotion] = (), diversity: Diversity | None = None,
                 seed: int = 0) -> Recommendations:
        """The cold-start answer: the `k` most popular items not in `excluded` that `rule` lets through (for
        someone with no seen items), scored by popularity share."""
        popular = self._popularity_share.copy()
        popular[excluded] = -np.inf
        chosen = _choose(popular[None, :], k, None, rule, promotions, diversity, [seed])[0]
        return self._answer(chosen, np.asarray, promotions, fallback=True)

    def recommend_from_items(self, items: Sequence, k: int = 10, *, user=None, exclude_seen: bool = True,
                             exclude: Iterable = (), rule: ItemFilter | None = None,
                             promotions: Sequence[Promotion] = (),
                             diversity: Diversity | None = None) -> Recommendations:
        """Top-`k` items for someone who interacted with `items` (raw ids, most recent last), the given items
        excluded: a known `user` starts from their trained vectors (their seen items excluded too unless
        `exclude_seen` is false), anyone else from the mean user's. Unknown items are left out and listed in
        `ignored`; with no known item and no known user, the popular items (`fallback`). A rule over
        interactions sees the known user's trained seen items (none for anyone else), not the given ones."""
        promotions = list(promotions)
        self._check(k, rule, promotions, diversity)
        given = self.items.lookup(list(items))
        ignored = tuple(items[n] for n in np.flatnonzero(given < 0))
        given = given[given >= 0]
        user_index = int(self.users.lookup([user])[0]) if user is not None else -1
        excluded = self.items.lookup(list(exclude))
        excluded = np.concatenate([excluded[excluded >= 0], given])
        seed = request_seed("items", list(items), user, [p.name for p in promotions], k) if promotions else 0
        if user_index < 0 and len(given) == 0:
            return replace(self._popular(k, excluded, rule, promotions, diversity, seed), ignored=ignored)
        seen = self.artifact.seen.row(user_index).astype(np.int64) if user_index >= 0 else np.zeros(0, np.int64)
        side = self.fold_in.solve(given, None if user_index < 0 else user_index, excluded=seen, history=seen)
        cells = (np.zeros(len(seen), np.int64), seen) if len(seen) else None
        if self.retrieval is not None:
            chosen = self._two_stage(side, k, excluded, cells, exclude_seen, rule, promotions, diversity, [seed])[0]
            return self._answer(chosen, self.calibration.probability, promotions, ignored=ignored)
        logits = self.scorer.all_items_of(side)[0]
        logits[excluded] = -np.inf
        if exclude_seen and len(seen):
            logits[seen] = -np.inf
        chosen = _choose(logits[None, :], k, cells, rule, promotions, diversity, [seed])[0]
        return self._answer(chosen, self.calibration.probability, promotions, ignored=ignored)

    def similar_items(self, item, k: int = 10, *, rule: ItemFilter | None = None,
                      promotions: Sequence[Promotion] = (), diversity: Diversity | None = None) -> Recommendations:
        """The `k` items whose learned embeddings are closest (cosine) to `item`'s, itself excluded. There is
        no user here: a rule over interactions sees no seen items."""
        promotions = list(promotions)
        self._check(k, rule, promotions, diversity)
        index = self._known("item", self.items, [item])[0]
        scores = (self._item_vectors @ self._item_vectors[index]).astype(np.float64)
        scores[index] = -np.inf
        seed = request_seed("item", item, [p.name for p in promotions], k) if promotions else 0
        chosen = _choose(scores[None, :], k, None, rule, promotions, diversity, [seed])[0]
        return self._answer(chosen, np.asarray, promotions)

    def rank(self, user, items: Sequence, *, rule: ItemFilter | None = None) -> Ranking:
        """The given `items` (raw ids) best first for `user`, as Personalize's GetPersonalizedRanking: those
        the model knows and `rule` lets through, each once, with calibrated probabilities; for a user the model
        does not know, by popularity (`fallback`). Unknown ids are listed in `unknown`, not an error; seen
        items stay unless the rule removes them (ranking a list is not recommending something new)."""
        if rule is not None and rule.n_items != len(self.items):
            raise ConfigError(f"the rule was compiled for {rule.n_items:,} items, this model has {len(self.items):,}")
        items = list(items)
        index = self.items.lookup(items)
        unknown = tuple(dict.fromkeys(items[n] for n in np.flatnonzero(index < 0)))
        _, first = np.unique(index, return_index=True)
        given = index[np.sort(first)]
        given = given[given >= 0]
        user_index = int(self.users.lookup([user])[0])
        if rule is not None:
            seen = self.artifact.seen.row(user_index) if user_index >= 0 else None
            passing = rule.allowed(seen)[given]
        else:
            passing = np.ones(len(given), dtype=bool)
        candidates = given[passing]
        if user_index >= 0:
            values = self.scorer.pairs(np.full(len(candidates), user_index, np.int64), candidates)
        else:
            values = self._popularity_share[candidates]
        order = np.lexsort((candidates, -np.asarray(values, np.float64)))
        best = candidates[order]
        scores = self.calibration.probability(values[order]) if user_index >= 0 else values[order]
        return Ranking(self.items.decode(best), scores.tolist(), tuple(best.tolist()), unknown,
                       int(len(given) - len(candidates)), user_index < 0)
