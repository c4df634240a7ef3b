"""The served probability means what `calibration.REFERENCE` says, and calibration never changes a ranking."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncf import artifacts, calibration
from ncf.calibration import Calibration
from ncf.errors import ArtifactError
from ncf.evaluation import draw_candidates, score_candidates
from ncf.recommender import Recommender
from ncf.training import keras_logits


def _gaussian_logits(rows: int, negatives: int, seed: int = 0):
    """Positives' logits ~ N(1, 1), negatives' ~ N(-1, 1): on a balanced set the true log-odds are 2 * logit."""
    rng = np.random.default_rng(seed)
    return rng.normal(1.0, 1.0, rows), rng.normal(-1.0, 1.0, (rows, negatives))


def test_platt_scaling_recovers_the_balanced_log_odds_whatever_the_number_of_negatives():
    for negatives in (1, 4, 99):
        fitted = calibration.fit(*_gaussian_logits(20_000, negatives), negatives=8)
        assert fitted.method == "platt"
        assert fitted.scale == pytest.approx(2.0, abs=0.05)
        assert fitted.bias == pytest.approx(0.0, abs=0.05)


def test_the_prior_correction_restates_the_training_odds_of_one_in_nine_as_one_to_one():
    prior = calibration.prior(8)
    assert (prior.scale, prior.bias, prior.method) == (1.0, math.log(8), "prior")
    # A logit of -log(8): the training mix's odds of 1 to 8, even odds on the balanced reference.
    assert prior.probability(np.array([-math.log(8)]))[0] == pytest.approx(0.5)


def test_data_a_model_separates_perfectly_still_gives_a_finite_increasing_map():
    fitted = calibration.fit(np.full(50, 5.0), np.full((50, 4), -5.0), negatives=4)
    assert math.isfinite(fitted.scale) and math.isfinite(fitted.bias) and fitted.scale > 0


def test_nothing_to_fit_on_falls_back_to_the_prior_correction():
    assert calibration.fit(np.array([]), np.zeros((0, 99)), negatives=4) == calibration.prior(4)
    assert calibration.fit(np.array([np.nan]), np.zeros((1, 2)), negatives=4) == calibration.prior(4)


@settings(max_examples=50, deadline=None)
@given(scale=st.floats(1e-3, 1e3), bias=st.floats(-50, 50),
       logits=st.lists(st.floats(-1e4, 1e4), min_size=2, max_size=50))
def test_any_calibration_keeps_the_order_of_the_logits(scale, bias, logits):
    z = np.array(logits)
    p = Calibration(scale, bias, "platt").probability(z)
    assert np.all((p >= 0) & (p <= 1))
    order = np.argsort(z, kind="stable")
    assert np.all(np.diff(p[order]) >= 0)  # non-decreasing where the logits are


def test_expected_calibration_error_is_zero_when_each_bin_says_its_share_and_a_half_for_always_one():
    p = np.repeat([0.25, 0.75], 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    error, bins = calibration.reliability(p, y)
    assert error == pytest.approx(0.0)
    assert [(b["count"], b["observed"]) for b in bins] == [(4, 0.25), (4, 0.75)]
    assert calibration.reliability(np.ones(10), np.repeat([1, 0], 5))[0] == pytest.approx(0.5)


@pytest.mark.parametrize("value, message", [
    ({"scale": 0.0, "bias": 0.0, "method": "platt"}, "must be > 0"),
    ({"scale": -1.0, "bias": 0.0, "method": "platt"}, "must be > 0"),
    ({"scale": float("nan"), "bias": 0.0, "method": "platt"}, "scale nan is not a finite number"),
    ({"scale": 1.0, "bias": "high", "method": "platt"}, "bias 'high' is not a finite number"),
    ({"scale": True, "bias": 0.0, "method": "platt"}, "scale True is not a finite number"),
    ({"scale": 1.0, "bias": 0.0, "method": "isotonic"}, "method 'isotonic' is not one of"),
    ("platt", "must be an object"),
])
def test_a_calibration_that_is_not_an_increasing_map_is_refused_at_load(value, message, tmp_path, trained, dataset):
    from ncf.training import to_artifact

    folder = artifacts.save(tmp_path / "m", to_artifact(trained["mf"], dataset))
    metadata = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**metadata, "calibration": value}))
    with pytest.raises(ArtifactError, match=message):
        Recommender.load(folder)


def test_fit_calibrates_the_chosen_model_on_validation_candidates_only(dataset):
    from ncf.training import TrainConfig, fit

    result = fit(dataset, TrainConfig(model="mf", factors=8, epochs=3, batch_size=256, refit=False, seed=2),
                 on_epoch=lambda e: None)
    config = result.config
    validation = draw_candidates(dataset.validation, dataset.seen, config.validation_negatives, config.seed)
    logits = score_candidates(keras_logits(result.model), validation)
    assert result.calibration == calibration.fit(logits[:, 0], logits[:, 1:], config.negatives)
    assert result.calibration.method == "platt"


def test_without_validation_the_sampling_ratio_alone_is_corrected(dataset):
    from dataclasses import replace

    from ncf.training import TrainConfig, fit

    no_validation = replace(dataset, validation=None)
    result = fit(no_validation, TrainConfig(model="mf", factors=8, epochs=1, batch_size=256, negatives=3),
                 on_epoch=lambda e: None)
    assert result.calibration == calibration.prior(3)


def _weighted_loss(fitted: Calibration, positives: np.ndarray, negatives: np.ndarray) -> float:
    """The balanced cross-entropy the fit minimises (without its ridge)."""
    p_pos = np.clip(fitted.probability(positives), 1e-300, 1.0)
    p_neg = np.clip(1.0 - fitted.probability(negatives), 1e-300, 1.0)
    return float(-np.log(p_pos).mean() - np.log(p_neg).mean())


def test_a_wide_spread_of_logits_far_from_the_prior_converges_to_the_best_fit_not_away_from_it():
    # Shaped like a trained GMF's validation logits: positives around -0.3 (spread 4), negatives around -6.4
    # (spread 2.5). An undamped Newton step from the prior overshot to a scale of thousands (4,819 here; 4,295
    # on a GMF), which saturates the probabilities into ties of exactly 0 and 1 (HR@10 on them: 0.74 -> 0.44).
    rng = np.random.default_rng(3)
    positives, negatives = rng.normal(-0.3, 4.0, 610), rng.normal(-6.4, 2.5, (610, 99))
    fitted = calibration.fit(positives, negatives, negatives=8)
    best = min(_weighted_loss(Calibration(a, b, "platt"), positives, negatives)
               for a in np.linspace(0.05, 3.0, 60) for b in np.linspace(-5.0, 8.0, 66))
    assert 0.05 < fitted.scale < 3.0
    assert _weighted_loss(fitted, positives, negatives) <= best + 1e-3
