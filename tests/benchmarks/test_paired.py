"""The paired bootstrap's verdict says what each metric's interval says; one word only when both agree."""

import numpy as np
import pytest

from benchmarks.paired import bootstrap, verdict


@pytest.mark.parametrize("hr, ndcg, said", [
    ((0.05, 0.02, 0.08), (0.03, 0.01, 0.05), "win"),
    ((-0.05, -0.08, -0.02), (-0.03, -0.05, -0.01), "loss"),
    ((0.01, -0.01, 0.03), (0.00, -0.02, 0.02), "within noise"),
    ((0.003, -0.008, 0.015), (0.017, 0.007, 0.026), "NDCG@10 better, HR@10 within noise"),
    ((-0.015, -0.036, 0.007), (-0.024, -0.039, -0.008), "NDCG@10 worse, HR@10 within noise"),
    ((0.03, 0.01, 0.06), (-0.02, -0.04, -0.01), "HR@10 better, NDCG@10 worse"),
])
def test_a_difference_on_one_metric_alone_is_named_not_called_noise_or_a_loss(hr, ndcg, said):
    assert verdict(hr, ndcg) == said


def test_identical_rankers_are_within_noise_and_a_clearly_better_one_wins():
    rng = np.random.default_rng(0)
    hits = (rng.random(2000) < 0.6).astype(float)
    gains = hits * rng.random(2000)
    assert bootstrap((hits, gains), (hits, gains), "a", "b")["verdict"] == "within noise"
    better = (np.maximum(hits, rng.random(2000) < 0.3).astype(float), np.maximum(gains, 0.5 * hits))
    assert bootstrap(better, (hits, gains), "a", "b")["verdict"] == "win"
