"""The three evaluation protocols (sampled candidates, full ranking, a balanced like/dislike set), on any
scoring function.

A scorer is `score(users [n], items [n]) -> [n]` (probabilities for models, counts for popularity), so the
same code ranks a Keras model during training, the numpy Recommender, and every baseline. Candidates are a
fixed-width matrix `[rows, 1 + n_neg]` (column 0 the positive) drawn once from a seed, so every model is
ranked on exactly the same candidates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .arrays import BLOCK_SCORES, top_k_rows, unique
from .calibration import Calibration, reliability
from .dataset import Dataset, Pairs
from .metrics import hit_rate, ndcg, positive_ranks, rank_metrics, standard_error, top_k_metrics
from .sampling import NegativeSampler
from .seen import SeenItems

log = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
TopK = Callable[[np.ndarray, int], np.ndarray]

#: Pairs scored per call: bounds memory for big candidate sets while keeping calls few.
CHUNK = 1 << 18


@dataclass(frozen=True)
class Candidates:
    """`users [rows]`, `items [rows, 1 + n_neg]` with the positive in column 0."""

    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def sample_users(held_out: Pairs, max_users: int, seed: int = 0) -> Pairs:
    """The rows of at most `max_users` distinct users, drawn with `seed` (all rows when there are fewer users):
    evaluation of a 162k-user data set costs what that of `max_users` users does, on the same users every time.
    """
    users = unique(held_out.user)
    if len(users) <= max_users:
        return held_out
    chosen = np.random.default_rng(seed).choice(users, max_users, replace=False)
    keep = np.isin(held_out.user, chosen)
    return Pairs(held_out.user[keep], held_out.item[keep])


def draw_candidates(held_out: Pairs, seen: SeenItems, n_neg: int = 99, seed: int = 0) -> Candidates:
    """One row per held-out positive with `n_neg` distinct items the user never interacted with.

    Users with fewer than `n_neg` unseen items cannot be ranked this way and are left out (logged).
    """
    sampler = NegativeSampler(seen)
    ok = sampler.unseen[held_out.user] >= n_neg
    if not ok.all():
        log.warning("%d held-out rows left out of evaluation: fewer than %d unseen items", (~ok).sum(), n_neg)
    users, positives = held_out.user[ok], held_out.item[ok]
    negatives = sampler.sample_distinct(users, n_neg, np.random.default_rng(seed))
    return Candidates(users, np.concatenate([positives[:, None], negatives], axis=1))


def score_candidates(score: Scorer, candidates: Candidates) -> np.ndarray:
    """`[rows, 1 + n_neg]` scores."""
    flat_users = np.repeat(candidates.users, candidates.items.shape[1])
    flat_items = candidates.items.ravel()
    out = np.empty(len(flat_items), dtype=np.float64)
    for start in range(0, len(flat_items), CHUNK):
        stop = start + CHUNK
        out[start:stop] = score(flat_users[start:stop], flat_items[start:stop])
    return out.reshape(candidates.items.shape)


def evaluate_candidates(
    score: Scorer, candidates: Candidates, k: int = 10, *, probabilities: bool = True, threshold: float = 0.5
) -> dict[str, float]:
    """HR@k and NDCG@k (LOO-99 and the seed protocol); when scores are probabilities, also
    `accuracy@<threshold>` on a balanced set: each held-out positive and its first sampled negative (a random
    item the user never interacted with), right when the positive scores at or above the threshold and the
    negative below. Counting positives alone would give a model that always says 1 a perfect score; a
    model that cannot tell them apart scores 0.5. On the same set, `ece`: the expected calibration error of the
    probabilities (`calibration.reliability`, 10 bins). No candidates, no metrics."""
    if len(candidates) == 0:
        return {}
    return candidate_metrics(score_candidates(score, candidates), k, probabilities=probabilities,
                             threshold=threshold)


def candidate_metrics(scores: np.ndarray, k: int = 10, *, probabilities: bool = True,
                      threshold: float = 0.5) -> dict[str, float]:
    """`evaluate_candidates` of scores already computed, `[rows, 1 + n_neg]` (several readings of one pass).
    Rank on logits where there are any: a calibrated probability saturates to exactly 0 or 1 for logits far
    out, and those ties would count half."""
    ranks = positive_ranks(scores)
    metrics = {f"hr@{k}": hit_rate(ranks, k), f"ndcg@{k}": ndcg(ranks, k)}
    if probabilities:
        metrics.update(balanced_metrics(scores, threshold))
    return metrics


def balanced_metrics(probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """On the balanced set of candidate probabilities `[rows, 1 + n_neg]` (column 0, the positive, and column 1,
    its first sampled negative: what `calibration.REFERENCE` promises a probability means): accuracy at
    `threshold` and the expected calibration error (`calibration.reliability`, 10 bins)."""
    right = np.concatenate([probabilities[:, 0] >= threshold, probabilities[:, 1] < threshold])
    return {f"accuracy@{threshold:g}": float(np.mean(right)), "ece": balanced_reliability(probabilities)[0]}


def balanced_reliability(probabilities: np.ndarray) -> tuple[float, list[dict]]:
    """`calibration.reliability` of the balanced set of candidate probabilities `[rows, 1 + n_neg]`."""
    labels = np.concatenate([np.ones(len(probabilities)), np.zeros(len(probabilities))])
    return reliability(np.concatenate([probabilities[:, 0], probabilities[:, 1]]), labels)


def evaluate_full_ranking(top_k: TopK, held_out: Pairs, n_items: int, k: int = 10,
                          prefix: str = "") -> dict[str, float]:
    """Precision/recall/NDCG/MAP@k against all held-out items of each user, plus catalogue coverage, named
    `prefix + name` (so they can sit beside the candidate metrics of the same name).

    `top_k(users [u], k) -> [u, k]` must already exclude each user's training items (see `scorer_top_k`).
    """
    if len(held_out) == 0:
        return {}
    k = min(k, n_items)
    users, n_relevant = np.unique(held_out.user, return_counts=True)
    block = max(16, BLOCK_SCORES // n_items)
    top = np.concatenate([top_k(users[s:s + block], k) for s in range(0, len(users), block)])
    held = SeenItems.from_pairs(held_out.user, held_out.item, int(users.max()) + 1, n_items)
    filled = top >= 0  # a user with fewer than k unseen items gets fewer recommendations (`top_k_unseen`)
    relevant = np.zeros(top.shape, dtype=bool)
    relevant[filled] = held.contains(np.repeat(users, k)[filled.ravel()], top[filled])
    metrics = top_k_metrics(top, relevant, n_relevant)
    metrics["coverage"] = float(len(unique(top[filled])) / n_items)
    return {prefix + name: value for name, value in metrics.items()}


def popularity_scorer(popularity: np.ndarray) -> Scorer:
    """The baseline every model is reported beside: an item's score is its training popularity."""
    return lambda users, items: popularity[items].astype(np.float64)


def scorer_top_k(all_items: Callable[[np.ndarray], np.ndarray], train_seen: SeenItems) -> TopK:
    """A `TopK` from a function scoring every item for some users (`[u] -> [u, n_items]`), training items
    excluded: what full-ranking evaluation needs from a model."""
    return lambda users, k: top_k_unseen(np.array(all_items(users), dtype=np.float64), users, train_seen, k)


def popularity_top_k(popularity: np.ndarray, train_seen: SeenItems) -> TopK:
    return scorer_top_k(lambda users: np.broadcast_to(popularity, (len(users), len(popularity))), train_seen)


def top_k_unseen(scores: np.ndarray, users: np.ndarray, seen: SeenItems, k: int) -> np.ndarray:
    """`[users, k]` best-scoring items per row of `scores [users, n_items]`, seen items excluded (in place);
    a user with fewer than `k` unseen items has -1 in the slots left (serving answers fewer items then)."""
    scores[seen.cells(users)] = -np.inf
    top, counts = top_k_rows(scores, k)  # what serving recommends, ties to the lower item index
    top[np.arange(top.shape[1]) >= counts[:, None]] = -1
    return top


#: A model's HR@10 must exceed popularity's by this many standard errors of the paired difference to count as
#: beating it (a one-sided 97.5% bound): on a few hundred validation users a lead of a few hits is noise.
BEATS_POPULARITY_Z = 1.96


def against_popularity(model_scores: np.ndarray, popularity_scores: np.ndarray, k: int = 10) -> dict:
    """Whether a model ranks better than popularity on the same candidates `[rows, 1 + n_neg]`, paired by row.

    A model that learned nothing still scores about popularity's HR@k (its items are the ones sampled most),
    so "above popularity" is the least a trained model must show before anyone serves it. Returns both HR@k,
    the margin (model minus popularity), its standard error, and `beats_popularity`: the margin is above
    `BEATS_POPULARITY_Z` standard errors. Rows are held-out positives (one per user under LOO). Empty under
    two rows: one row cannot say how far its margin may be from the truth."""
    if len(model_scores) < 2:
        return {}
    model_hits = (positive_ranks(model_scores) < k).astype(np.float64)
    popular_hits = (positive_ranks(popularity_scores) < k).astype(np.float64)
    margin, error = float(np.mean(model_hits - popular_hits)), standard_error(model_hits - popular_hits)
    return {f"hr@{k}": float(np.mean(model_hits)), f"popularity_hr@{k}": float(np.mean(popular_hits)),
            "margin": margin, "margin_se": error, "rows": int(len(model_hits)),
            "beats_popularity": bool(margin > BEATS_POPULARITY_Z * error and margin > 0)}


#: Test users ranked against sampled negatives when the job names no number: HR@10's standard error is at most
#: 0.0035 on 20,000 users, and the final evaluation stops growing with the data's users.
CANDIDATE_USERS = 20_000
#: Cells (users x items) scored for full-ranking metrics when the job names no number of users, within
#: `FULL_RANKING_USERS`: every unseen item of a user is scored by the full model, so the cost is the catalogue's
#: size per user; 50M cells keep it a fraction of any job that trains on as many interactions.
FULL_RANKING_CELLS = 50_000_000
#: At least 500 users while that is at most 2x the cell budget (catalogues up to 200,000 items); past that the
#: floor falls with the catalogue, to 100 users at 1,000,000 items, so that the evaluation of a catalogue of
#: millions stays a bounded share of its job rather than 500 full passes over it. The standard error beside
#: each metric says what the smaller sample costs in precision.
FULL_RANKING_USERS = (500, 5_000)
FULL_RANKING_FLOOR_CELLS = 2 * FULL_RANKING_CELLS
FULL_RANKING_MIN_USERS = 100


@dataclass(frozen=True)
class TestSample:
    """How many test users each protocol ranks, and the seed that draws them (the same users every time).

    `None` chooses: `CANDIDATE_USERS` for the sampled-candidate metrics, and for full ranking as many users as
    `FULL_RANKING_CELLS` allows, within `FULL_RANKING_USERS` (whose floor falls to `FULL_RANKING_MIN_USERS` on
    catalogues past `FULL_RANKING_FLOOR_CELLS / 500` items). Each metric reports its standard error beside it,
    so a sample's precision is stated, not assumed."""

    candidate_users: int | None = None
    full_ranking_users: int | None = None
    seed: int = 0

    def candidates(self) -> int:
        return CANDIDATE_USERS if self.candidate_users is None else self.candidate_users

    def full_ranking(self, n_items: int) -> int:
        if self.full_ranking_users is not None:
            return self.full_ranking_users
        low, high = FULL_RANKING_USERS
        low = int(np.clip(FULL_RANKING_FLOOR_CELLS // max(n_items, 1), FULL_RANKING_MIN_USERS, low))
        return int(np.clip(FULL_RANKING_CELLS // max(n_items, 1), low, high))

    def draw(self, dataset: Dataset) -> tuple[Candidates, Pairs, SeenItems]:
        """The test's sampled candidates, its full-ranking users' held-out pairs, and those users' training
        and validation items (what full ranking excludes): what every model and peer is ranked on."""
        ranked = sample_users(dataset.test, self.candidates(), seed=self.seed)
        full = sample_users(dataset.test, self.full_ranking(dataset.n_items), seed=self.seed)
        return (draw_candidates(ranked, dataset.seen, 99, seed=self.seed), full,
                dataset.seen_before_test(unique(full.user)))  # the ranked users' rows alone


TestSample.__test__ = False  # a library class, not a pytest test class


def test_metrics(logits: Scorer, all_items: Callable[[np.ndarray], np.ndarray], dataset: Dataset,
                 calibration: Calibration, threshold: float = 0.5, sample: TestSample = TestSample()) -> dict:
    """The final evaluation of a trained model on `dataset.test`, and popularity's on the same users.

    Args:
        logits: the model's logits for pairs (`Scorer`); they rank, and `calibration` turns them into the
            served probabilities whose accuracy at `threshold` and calibration error are reported.
        all_items: `users [u] -> [u, n_items]` scores, for the full-ranking metrics (`full_` names).

    Returns `{"test", "popularity", "calibration", "against_popularity", "candidate_users",
    "full_ranking_users"}`: the metrics (each mean with its `_se`), the reliability of the served probabilities
    against the plain sigmoid's, the paired comparison with popularity on the test candidates, and how many
    users each protocol ranked of how many.
    """
    candidates, full, known = sample.draw(dataset)
    test, popularity, report, verdict = {}, {}, {}, {}
    if len(candidates):
        scores = score_candidates(logits, candidates)
        served, raw = calibration.probability(scores), Calibration().probability(scores)
        test = rank_metrics(positive_ranks(scores))  # ranked on logits: calibration cannot tie them
        at_threshold, plain = balanced_metrics(served, threshold), balanced_metrics(raw, threshold)
        test.update(accuracy=at_threshold[f"accuracy@{threshold:g}"], ece=at_threshold["ece"])
        if threshold != 0.5:  # the blog's like/dislike line, whatever this job's threshold
            test["accuracy@0.5"] = balanced_metrics(served, 0.5)["accuracy@0.5"]
        report = {"uncalibrated": {"accuracy": plain[f"accuracy@{threshold:g}"], "ece": plain["ece"]},
                  "reliability": balanced_reliability(served)[1],
                  "reliability_uncalibrated": balanced_reliability(raw)[1]}
        popular = score_candidates(popularity_scorer(dataset.popularity), candidates)
        popularity = rank_metrics(positive_ranks(popular))
        verdict = against_popularity(scores, popular)
    test.update(evaluate_full_ranking(scorer_top_k(all_items, known), full, dataset.n_items, prefix="full_"))
    popularity.update(evaluate_full_ranking(popularity_top_k(dataset.popularity, known), full, dataset.n_items,
                                            prefix="full_"))
    of = int(len(unique(dataset.test.user)))
    return {"test": test, "popularity": popularity, "calibration": report, "against_popularity": verdict,
            "candidate_users": {"evaluated": int(len(unique(candidates.users))), "of": of, "seed": sample.seed},
            "full_ranking_users": {"evaluated": int(len(unique(full.user))), "of": of, "seed": sample.seed}}


test_metrics.__test__ = False  # a library function, not a pytest test
