"""Whether two-stage top-k ranks held-out items as well as exact top-k: what recall against exact cannot say.

`ncf.retrieval_choice` sizes the first stage by recall@10 against the exact full-model top-10; a shortlist can
miss a tenth of exact's items and still lose no hits, or miss few and lose the ones that matter. Training's end
measures both paths on the test split's full-ranking users (`two_stage_on_test`), paired by user, and
metrics.json's `retrieval.test` keeps it (`with_first_stage`: all that training's end does about retrieval). A
module of its own because it needs `Recommender`, which `retrieval_choice` sits below.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from .artifacts import ModelArtifact
from .dataset import Dataset
from .evaluation import TestSample, sample_users
from .metrics import standard_error
from .recommender import Recommender
from .retrieval_choice import prepare


def held_out_quality(exact: Recommender, two_stage: Recommender, users: Sequence, held: Sequence[set],
                     k: int = 10) -> dict:
    """HR@k and NDCG@k of both paths' top-k against held-out items (`held[i]`: `users[i]`'s held-out item
    indices), paired by user: both recommenders must exclude what the user trained on and nothing held out.
    The difference (two-stage minus exact) comes with its standard error, and `within_noise` says whether it is
    inside 1.96 of them: the target is two-stage ranking as well as exact, not merely agreeing with it."""
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)

    def per_user(answers: list) -> tuple[np.ndarray, np.ndarray]:
        hits, gains = np.zeros(len(answers)), np.zeros(len(answers))
        for row, (answer, wanted) in enumerate(zip(answers, held)):
            found = np.array([item in wanted for item in answer.indices[:k]], dtype=bool)
            ideal = discounts[:min(len(wanted), k)].sum()
            hits[row], gains[row] = float(found.any()), (discounts[:len(found)] * found).sum() / ideal
        return hits, gains

    (exact_hr, exact_ndcg), (two_hr, two_ndcg) = (per_user(r.recommend_many(list(users), k))
                                                  for r in (exact, two_stage))
    out = {"users": len(users), "exact": {}, "two_stage": {}, "difference": {}}
    for name, a, b in ((f"hr@{k}", exact_hr, two_hr), (f"ndcg@{k}", exact_ndcg, two_ndcg)):
        out["exact"][name], out["two_stage"][name] = round(float(a.mean()), 4), round(float(b.mean()), 4)
        gap = b - a
        se = standard_error(gap)
        out["difference"][name] = round(float(gap.mean()), 4)
        out["difference"][f"{name}_se"] = round(se, 4) if np.isfinite(se) else None
        out["difference"][f"{name}_within_noise"] = bool(abs(gap.mean()) <= 1.96 * se) if se > 0 else bool(
            gap.mean() == 0)
    return out


def two_stage_on_test(artifact: ModelArtifact, dataset: Dataset, sample: TestSample) -> dict:
    """HR@10 / NDCG@10 of exact and two-stage top-10 over the whole catalogue for the full-ranking test users,
    each excluding what the user trained on (not the held-out item, as a served model would): recall against
    exact top-10 says the paths agree, this says the disagreements cost no hits (#34)."""
    pairs = sample_users(dataset.test, sample.full_ranking(dataset.n_items), seed=sample.seed)
    users = np.unique(pairs.user)
    held: dict[int, set] = {int(u): set() for u in users}
    for user, item in zip(pairs.user.tolist(), pairs.item.tolist()):
        held[user].add(item)
    ranked = replace(artifact, seen=dataset.seen_before_test(users))
    exact, two_stage = (Recommender(ranked, retrieval=path) for path in ("exact", "two-stage"))
    return held_out_quality(exact, two_stage, dataset.users.ids[users].tolist(), [held[int(u)] for u in users])


def with_first_stage(artifact: ModelArtifact, dataset: Dataset, sample: TestSample) -> tuple[ModelArtifact, dict]:
    """`artifact` with what `retrieval_choice.prepare` decides for it (metadata.json's "retrieval" and the index),
    and metrics.json's "retrieval" section: the measurements and, when a first stage was built, both paths on the
    test split (`two_stage_on_test`)."""
    section, index = prepare(Recommender(artifact, retrieval="exact"))
    artifact = replace(artifact, metadata={**artifact.metadata, "retrieval": section}, retrieval_index=index)
    reported = {key: value for key, value in section.items() if key != "tried"}
    if section.get("backend") is not None:
        reported["test"] = two_stage_on_test(artifact, dataset, sample)
    return artifact, reported
