"""The planted process behind `ncf.synthetic`: its parameters (`SyntheticSpec`) and the vectorised draws that
realise them, so that the data is skewed like real data and holds structure a collaborative model can find.

- Items: each belongs to one of K topics (topic sizes vary) and has a Zipf-Mandelbrot weight
  `(rank + q) ** -a` from a random global rank, so popularity follows a power law. The offset `q` is chosen
  so that the most popular item is drawn `head_draws` times per user in expectation; as an item counts once
  per user, it then reaches about half the users, as MovieLens' most rated movie does, instead of saturating.
- Users: `slots` topics each, drawn in proportion to topic mass (so an item's expected share stays
  proportional to its weight), with two Dirichlet mixtures over them, one for the start and one for the end
  of the user's history: taste drifts slowly from the one to the other. Activity is `min_per_user` plus a
  lognormal share, rescaled so the counts add up to exactly `interactions` (capped at `max_user_share` of the
  items, redistributed).
- Interactions: a time `t` in [0, 1) of the user's history, a topic from the mixture at `t`, then an item
  within that topic by weight (inverse CDF into the topic-sorted cumulative weights); a `noise` share comes
  from global popularity instead. Repeated (user, item) pairs are dropped and what each user lacks is redrawn:
  from the same process, then from global popularity, then uniformly among the items the user lacks, so
  every user ends with exactly their count and the total is exact. Heavy users exhaust their topics, and
  their overflow lands on popular items.
- Ratings (half stars 0.5-5) are higher for items of the user's own topics, so filtering by a minimum rating
  keeps the structure.

Nothing is users x items: the tables are `[users, slots]` and `[items]`, and every draw is vectorised over a
chunk of users (no Python loop per user or per interaction; loops run over slots or rounds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, NCFError
from .sampling import NegativeSampler
from .seen import SeenItems

#: Cells of the guide table that speeds up inverse-CDF sampling (4 MB of int32).
GUIDE = 1 << 20
#: Redraw rounds from the planted process, then from global popularity, for users who exhausted their topics;
#: after both, what is still missing is drawn uniformly from all items.
PROCESS_ROUNDS, POPULARITY_ROUNDS = 3, 4
#: Bound on all rounds; uniform rounds shrink what is missing at least 2.7x each, so ~20 suffice for any size.
MAX_ROUNDS = 200


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Every field has a default; the shape (interactions, users, items) and seed are the
    usual knobs.

    Attributes:
        interactions: rows wanted; met exactly.
        users: users, every one with at least `min_per_user` rows.
        items: items; rare tail items may end up with no row at small sizes.
        seed: same seed and spec, same data (bit for bit).
        topics: K, planted topics; None picks `sqrt(items) / 2` clipped to [4, 200].
        slots: topics per user (drawn with replacement, so some users have fewer distinct ones).
        user_alpha: Dirichlet concentration over a user's slots: small = a user sticks to one or two topics.
        drift: 0 = a user's mixture is fixed; 1 = it moves fully from its start mixture to its end mixture.
        noise: share of draws from global popularity, ignoring the user's topics.
        zipf_exponent: `a` of the item weights `(rank + q) ** -a`.
        head_draws: the most popular item is drawn `head_draws * users` times in expectation (sets `q`);
            repeats count once, so it ends up with fewer users than that: about half of them at 3.
        min_per_user: least rows per user.
        activity_sigma: sigma of the lognormal user activity (ml-latest-small: mean/median 2.35, sigma ~1.3).
        max_user_share: most rows per user, as a share of the items.
        id_spread: raw ids are drawn without replacement from `[1, id_spread * n]`.
        string_ids: raw ids as text (`u123`, `m456`) instead of int64.
    """

    interactions: int = 1_000_000
    users: int = 7_000
    items: int = 2_600
    seed: int = 0
    topics: int | None = None
    slots: int = 4
    user_alpha: float = 0.5
    drift: float = 0.5
    noise: float = 0.1
    zipf_exponent: float = 1.0
    head_draws: float = 3.0
    min_per_user: int = 5
    activity_sigma: float = 1.3
    max_user_share: float = 0.5
    id_spread: int = 4
    string_ids: bool = False

    def __post_init__(self):
        positive = {"users": self.users, "items": self.items, "slots": self.slots, "min_per_user": self.min_per_user,
                    "id_spread": self.id_spread, "user_alpha": self.user_alpha,
                    "zipf_exponent": self.zipf_exponent, "head_draws": self.head_draws}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"synthetic {name} must be > 0, not {value}")
        if self.items < 2:
            raise ConfigError(f"synthetic items must be at least 2, not {self.items}")
        if self.topics is not None and not 1 <= self.topics <= self.items:
            raise ConfigError(f"synthetic topics must be between 1 and the {self.items} items, not {self.topics}")
        for name in ("drift", "noise"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"synthetic {name} must be between 0 and 1, not {getattr(self, name)}")
        if not 0 < self.max_user_share <= 1:
            raise ConfigError(f"synthetic max_user_share must be in (0, 1], not {self.max_user_share}")
        if self.activity_sigma < 0 or self.seed < 0:
            raise ConfigError("synthetic activity_sigma and seed must be >= 0")
        low, high = self.users * self.min_per_user, self.users * self.max_per_user
        if not low <= self.interactions <= high:
            raise ConfigError(
                f"{self.interactions:,} interactions cannot be spread over {self.users:,} users with "
                f"{self.min_per_user} to {self.max_per_user:,} each ({low:,} to {high:,})")

    @property
    def max_per_user(self) -> int:
        return max(self.min_per_user, int(self.items * self.max_user_share))

    @property
    def resolved_topics(self) -> int:
        if self.topics is not None:
            return self.topics
        return int(min(self.items, np.clip(round(np.sqrt(self.items) / 2), 4, 200)))


@dataclass(frozen=True)
class Planted:
    """The hidden structure: item weights sorted by topic, and each user's topics and mixtures."""

    order: np.ndarray        # [items] item index at each position of the topic-sorted weights
    cumulative: np.ndarray   # [items] float64 cumulative weight in topic order
    guide: np.ndarray        # [GUIDE] int32 searchsorted(cumulative, cell starts): see `_inverse_cdf`
    seg_lo: np.ndarray       # [K + 1] first position of each topic; the last "topic" is every item (noise)
    seg_hi: np.ndarray       # [K + 1] one past its last position
    seg_start: np.ndarray    # [K + 1] cumulative weight before the topic
    seg_mass: np.ndarray     # [K + 1] the topic's total weight
    item_topic: np.ndarray   # [items]
    user_topics: np.ndarray  # [users, slots]
    slot_cdf: np.ndarray     # [slots - 1, 2 * users] cumulative mixtures: start ones, then end ones (see `_draw`)


def user_activity(spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    """`[users]` int64 rows per user: min + lognormal share, capped, summing exactly to `interactions`."""
    extra_total = spec.interactions - spec.users * spec.min_per_user
    cap = spec.max_per_user - spec.min_per_user
    raw = np.exp(rng.normal(0.0, spec.activity_sigma, spec.users))
    share = np.zeros(spec.users)
    free = np.ones(spec.users, bool)
    remaining = float(extra_total)
    for _ in range(64):  # water-filling: users over the cap are pinned to it and the rest rescaled; few rounds
        share[free] = raw[free] * remaining / raw[free].sum()
        over = free & (share > cap)
        if not over.any():
            break
        share[over] = cap
        free &= ~over
        remaining = extra_total - cap * (~free).sum()
    extra = np.floor(share).astype(np.int64)
    short = extra_total - int(extra.sum())  # hand out the rounding remainder by largest fraction, never over the cap
    fraction = np.where(extra < cap, share - extra, -1.0)
    extra[np.argsort(-fraction, kind="stable")[:short]] += 1
    return spec.min_per_user + extra


def _zipf_offset(spec: SyntheticSpec) -> float:
    """The `q` giving the top item `head_draws * users` expected draws (0 if already below)."""
    ranks = np.arange(1, spec.items + 1, dtype=np.float64)
    target = min(1.0, spec.head_draws * spec.users / spec.interactions)

    def top_share(q: float) -> float:
        w = (ranks + q) ** -spec.zipf_exponent
        return w[0] / w.sum()

    if top_share(0.0) <= target:
        return 0.0
    lo, hi = 0.0, float(spec.items)
    if top_share(hi) > target:
        return hi
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if top_share(mid) > target else (lo, mid)
    return hi


def plant(spec: SyntheticSpec, rng: np.random.Generator) -> Planted:
    k = spec.resolved_topics
    weight = (rng.permutation(spec.items) + 1.0 + _zipf_offset(spec)) ** -spec.zipf_exponent
    item_topic = rng.choice(k, size=spec.items, p=rng.dirichlet(np.full(k, 2.0)))
    order = np.argsort(item_topic, kind="stable")
    cumulative = np.cumsum(weight[order])
    edges = np.r_[0.0, cumulative]
    seg_lo = np.r_[np.searchsorted(item_topic[order], np.arange(k), side="left"), 0]
    seg_hi = np.r_[np.searchsorted(item_topic[order], np.arange(k), side="right"), spec.items]
    seg_start, seg_mass = edges[seg_lo], edges[seg_hi] - edges[seg_lo]
    user_topics = rng.choice(k, size=(spec.users, spec.slots), p=seg_mass[:k] / seg_mass[:k].sum())
    mixtures = rng.dirichlet(np.full(spec.slots, spec.user_alpha), size=(2, spec.users))
    mixtures[1] = (1 - spec.drift) * mixtures[0] + spec.drift * mixtures[1]
    slot_cdf = np.cumsum(mixtures, axis=2)[:, :, :-1].reshape(2 * spec.users, spec.slots - 1).T
    cells = np.arange(GUIDE) * (cumulative[-1] / GUIDE)
    guide = np.searchsorted(cumulative, cells, side="right").astype(np.int32)
    return Planted(order, cumulative, guide, seg_lo, seg_hi, seg_start, seg_mass, item_topic,
                   user_topics, np.ascontiguousarray(slot_cdf))


def _draw(spec: SyntheticSpec, planted: Planted, user: np.ndarray, rng: np.random.Generator, noise: float):
    """One item and time per entry of `user [m]` (global user indices) from the planted process, a `noise`
    share of them from global popularity.

    The mixture at time t, `(1 - t) * start + t * end`, is sampled as a mixture of the two: the end mixture
    with probability t, else the start one; then inverse CDF over its slots (a loop over slots only).
    """
    m = len(user)
    t = rng.random(m)
    row = user + spec.users * (rng.random(m) < t)
    pick = rng.random(m)
    slot = np.zeros(m, np.int64)
    for cdf in planted.slot_cdf:
        slot += pick >= cdf[row]
    topic = planted.user_topics.ravel()[user * spec.slots + slot]
    topic[rng.random(m) < noise] = len(planted.seg_lo) - 1  # the segment of all items: global popularity
    target = planted.seg_start[topic] + rng.random(m) * planted.seg_mass[topic]
    pos = np.clip(_inverse_cdf(planted, target), planted.seg_lo[topic], planted.seg_hi[topic] - 1)
    return planted.order[pos].astype(np.int64), t


def _inverse_cdf(planted: Planted, target: np.ndarray) -> np.ndarray:
    """`searchsorted(cumulative, target, side="right")` without a binary search for most targets: a guide
    table gives each target's position directly unless its cell holds an item boundary, and only those few
    targets are searched."""
    c = planted.cumulative
    cell = np.minimum((target * (GUIDE / c[-1])).astype(np.int64), GUIDE - 1)
    pos = planted.guide[cell].astype(np.int64)
    at = np.minimum(pos, len(c) - 1)
    exact = (pos < len(c)) & (c[at] > target) & ((pos == 0) | (c[at - 1] <= target))
    miss = np.flatnonzero(~exact)
    pos[miss] = np.searchsorted(c, target[miss], side="right")
    return pos


def draw_chunk(spec: SyntheticSpec, planted: Planted, counts: np.ndarray, lo: int, hi: int,
               rng: np.random.Generator):
    """Users `[lo, hi)`, exactly `counts[u]` distinct items each: `(user [m] int64, item [m], t [m])` in
    (user, t) order.

    Each round draws what each user still lacks and keeps the pairs not drawn before: first from the planted
    process, then from global popularity (users whose topics ran out), then uniformly from the items the user
    lacks (`NegativeSampler`), where with replacement at least 63% of what is missing is found per round.
    """
    n_items = spec.items
    local = np.arange(hi - lo)
    need = counts[lo:hi].copy()
    keys: list[np.ndarray] = []   # each round's new keys `local user * n_items + item`, sorted and distinct
    times: list[np.ndarray] = []
    for round_ in range(MAX_ROUNDS):
        if not need.any():
            break
        who = np.repeat(local, need)
        if round_ < PROCESS_ROUNDS + POPULARITY_ROUNDS:
            items, t = _draw(spec, planted, who + lo, rng, 1.0 if round_ >= PROCESS_ROUNDS else spec.noise)
        else:
            items, t = _unseen(keys, np.flatnonzero(need), need, n_items, rng), rng.random(len(who))
        key, first = np.unique(who * n_items + items, return_index=True)
        fresh = np.ones(len(key), bool)
        for old in filter(len, keys):
            at = np.minimum(np.searchsorted(old, key), len(old) - 1)
            fresh &= old[at] != key
        keys.append(key[fresh])
        times.append(t[first[fresh]])
        need -= np.bincount(keys[-1] // n_items, minlength=len(local))
    else:  # pragma: no cover - the uniform rounds find most of what is missing each time
        raise NCFError(f"synthetic data: users still lack items after {MAX_ROUNDS} rounds of drawing")
    key, t = np.concatenate(keys), np.concatenate(times)
    who = key // n_items
    order = np.argsort((who << 32) | (t * 2.0**32).astype(np.int64), kind="stable")
    return who[order] + lo, key[order] % n_items, t[order]


def _unseen(keys: list[np.ndarray], needy: np.ndarray, need: np.ndarray, n_items: int,
            rng: np.random.Generator) -> np.ndarray:
    """For each of `needy`'s users, `need[u]` items drawn uniformly (with replacement) among those it lacks;
    only the needy users' rows are indexed, so this stays small."""
    is_needy = np.zeros(len(need), bool)
    is_needy[needy] = True
    # Rounds hold disjoint sorted keys: a stable sort of their concatenation merges them (no hashing, no dedup).
    held = np.sort(np.concatenate([k[is_needy[k // n_items]] for k in keys]), kind="stable")
    row = np.searchsorted(needy, held // n_items)
    indptr = np.r_[0, np.cumsum(np.bincount(row, minlength=len(needy)))]
    seen = SeenItems(indptr, (held % n_items).astype(np.int32), n_items)
    rows = np.repeat(np.arange(len(needy)), need[needy])
    return NegativeSampler(seen).sample(rows, 1, rng)[:, 0]


def draw_ratings(user: np.ndarray, item: np.ndarray, planted: Planted, user_bias: np.ndarray,
             item_bias: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Half stars: about MovieLens' mean (3.5) and spread, half a star higher for items of the user's topics."""
    own = np.zeros(len(user), bool)
    topic = planted.item_topic[item]
    for s in range(planted.user_topics.shape[1]):
        own |= planted.user_topics[:, s][user] == topic
    value = 3.2 + 0.5 * own + user_bias[user] + item_bias[item] + rng.normal(0.0, 0.8, len(user))
    return np.clip(np.round(value * 2) / 2, 0.5, 5.0).astype(np.float32)


def raw_ids(n: int, spread: int, rng: np.random.Generator, prefix: str | None) -> np.ndarray:
    """`n` distinct ids drawn from `[1, spread * n]` in random order (index order is not id order)."""
    ids = rng.choice(spread * n, size=n, replace=False).astype(np.int64) + 1
    if prefix is None:
        return ids
    return np.char.add(prefix, ids.astype(str)).astype(f"U{len(prefix) + len(str(spread * n))}")
