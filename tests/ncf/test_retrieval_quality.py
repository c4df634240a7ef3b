"""Two-stage against exact on held-out items: the figures metrics.json's `retrieval.test` reports (#34)."""

from dataclasses import replace

import numpy as np
import pytest

from ncf.evaluation import TestSample, evaluate_full_ranking, scorer_top_k
from ncf.export import to_artifact
from ncf.inference import NumpyScorer
from ncf.recommender import Recommendations
from ncf.retrieval_quality import held_out_quality, two_stage_on_test, with_first_stage


@pytest.fixture(scope="module")
def neumf_artifact(trained, dataset):
    return to_artifact(trained["neumf"], dataset)


def with_stage(artifact, shortlist: int):
    """`artifact` keeping an exact first stage of `shortlist` candidates, as `prepare` would write it."""
    section = {"backend": "numpy", "shortlist": shortlist, "nprobe": 0, "k": 10, "users": 10, "recall": 1.0}
    return replace(artifact, metadata={**artifact.metadata, "retrieval": section})


def test_the_exact_paths_hits_are_full_rankings_recall_of_the_same_test_users(neumf_artifact, dataset):
    sample = TestSample(full_ranking_users=60)
    got = two_stage_on_test(with_stage(neumf_artifact, dataset.n_items), dataset, sample)
    _, full, known = sample.draw(dataset)
    scorer = NumpyScorer(neumf_artifact.kind, neumf_artifact.weights)
    expected = evaluate_full_ranking(scorer_top_k(scorer.all_items, known), full, dataset.n_items)
    assert got["users"] == len(np.unique(full.user)) == 60
    assert got["exact"]["hr@10"] == pytest.approx(expected["recall@10"], abs=1e-4)  # one held-out item a user
    assert got["exact"]["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-4)
    assert got["exact"]["hr@10"] > 0  # the held-out item is rankable: only training items are excluded


def test_a_shortlist_of_the_whole_catalogue_ranks_exactly_as_exact(neumf_artifact, dataset):
    got = two_stage_on_test(with_stage(neumf_artifact, dataset.n_items), dataset, TestSample(full_ranking_users=60))
    assert got["two_stage"] == got["exact"]
    assert got["difference"]["hr@10"] == 0 and got["difference"]["hr@10_within_noise"]


class Answers:
    """A recommender that answers fixed item indices, whoever asks."""

    def __init__(self, indices):
        self.indices = tuple(indices)

    def recommend_many(self, users, k=10):
        return [Recommendations(items=list(self.indices), scores=[0.0] * len(self.indices), indices=self.indices)
                for _ in users]


def test_two_stage_losing_every_hit_is_a_loss_outside_the_noise():
    users, held = list(range(20)), [{3}] * 20
    got = held_out_quality(Answers(range(10)), Answers(range(10, 20)), users, held)
    assert got["exact"] == {"hr@10": 1.0, "ndcg@10": pytest.approx(1 / np.log2(5), abs=1e-4)}
    assert got["two_stage"] == {"hr@10": 0.0, "ndcg@10": 0.0}
    assert got["difference"]["hr@10"] == -1.0 and not got["difference"]["hr@10_within_noise"]


def test_a_model_within_the_latency_target_keeps_exact_and_reports_no_test_comparison(neumf_artifact, dataset):
    artifact, section = with_first_stage(neumf_artifact, dataset, TestSample(full_ranking_users=20))
    assert section["backend"] is None and "test" not in section and artifact.retrieval_index is None
    assert artifact.metadata["retrieval"]["exact_ms"] == section["exact_ms"]
