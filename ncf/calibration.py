"""Probabilities that mean what the `like` flag promises: the model's logit re-stated against a written-down
reference set.

A model trained on one positive and `negatives` sampled unseen items learns the odds of that mix: with 8
negatives a held-out positive often scores under 0.5, so the blog's 0.5 threshold calls most true likes
dislikes. The served probability is instead `sigmoid(scale * logit + bias)`, the probability that the pair is
the user's held-out interaction rather than an item drawn uniformly from those the user never interacted
with, when both are equally likely a priori (`REFERENCE`: the balanced set `accuracy@0.5` is measured on).

- `fit` (Platt scaling) estimates `scale` and `bias` on validation candidates: each validation positive
  weighs 1 and each of its n sampled negatives (`validation_negatives`, 99) `1 / n`, so both classes weigh
  the same. Validation only: test data never shapes it. When `refit` retrains on training + validation, the
  refit model reuses the selected model's fit (same hyperparameters and epochs; its validation items are no
  longer held out).
- `prior` is the correction for the sampling ratio alone (King & Zeng 2001): `logit + log(negatives)`, used
  when there is no validation data to fit on.
The map is increasing (`scale > 0`, enforced), so rankings never change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ArtifactError

REFERENCE = ("one held-out interaction of the user against one item drawn uniformly from those the user never "
             "interacted with, equally likely a priori")
METHODS = ("platt", "prior", "none")
#: Newton steps of the Platt fit at most; from the prior it converged in far fewer on every model benchmarked,
#: so the bound only ends a fit that would not converge.
_STEPS = 50
#: Pseudo-observations pulling (scale, bias) towards the prior correction, so data a model separates
#: perfectly (a tiny validation set) cannot drive `scale` to infinity.
_RIDGE = 1.0


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free and as accurate as 1 / (1 + exp(-z))


@dataclass(frozen=True)
class Calibration:
    scale: float = 1.0
    bias: float = 0.0
    method: str = "none"

    def probability(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of `logits` (float64, overflow-free)."""
        return _sigmoid(self.scale * np.asarray(logits, dtype=np.float64) + self.bias)

    def to_dict(self) -> dict:
        return {"scale": self.scale, "bias": self.bias, "method": self.method, "reference": REFERENCE}

    @classmethod
    def from_dict(cls, value) -> "Calibration":
        """From a model folder's metadata; None (a folder written before calibration) is the plain sigmoid."""
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise ArtifactError(f"calibration must be an object, got {value!r}")
        scale, bias, method = value.get("scale"), value.get("bias"), value.get("method")
        for name, number in (("scale", scale), ("bias", bias)):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                raise ArtifactError(f"calibration {name} {number!r} is not a finite number")
        if scale <= 0:
            raise ArtifactError(f"calibration scale {scale!r} must be > 0 (a calibration must keep the ranking)")
        if method not in METHODS:
            raise ArtifactError(f"calibration method {method!r} is not one of {list(METHODS)}")
        return cls(float(scale), float(bias), method)


def prior(negatives: int) -> Calibration:
    """The sampling-ratio correction alone: training's odds of 1 to `negatives` re-stated as 1 to 1."""
    return Calibration(1.0, math.log(negatives), "prior")


def fit(positive_logits: np.ndarray, negative_logits: np.ndarray, negatives: int) -> Calibration:
    """Platt scaling on validation candidates: `positive_logits [rows]`, `negative_logits [rows, n]`.

    Weighted logistic regression of the label on the logit, by Newton's method with a backtracking line
    search and a ridge of `_RIDGE` pseudo-observations around the prior correction (for `negatives` training
    negatives). Falls back to that prior when there is nothing to fit or the fit would not be increasing."""
    start = prior(negatives)
    positive_logits = np.asarray(positive_logits, dtype=np.float64).ravel()
    negative_logits = np.asarray(negative_logits, dtype=np.float64)
    if positive_logits.size == 0 or negative_logits.size == 0:
        return start
    z = np.concatenate([positive_logits, negative_logits.ravel()])
    y = np.concatenate([np.ones(positive_logits.size), np.zeros(negative_logits.size)])
    w = np.concatenate([np.ones(positive_logits.size),
                        np.full(negative_logits.size, positive_logits.size / negative_logits.size)])
    if not np.isfinite(z).all():
        return start
    theta = center = np.array([start.scale, start.bias])
    x = np.stack([z, np.ones_like(z)], axis=1)

    def loss(t: np.ndarray) -> float:  # weighted cross-entropy plus the ridge: convex in (scale, bias)
        a = x @ t
        return float(w @ (np.logaddexp(0.0, a) - y * a) + 0.5 * _RIDGE * np.sum((t - center) ** 2))

    current = loss(theta)
    for _ in range(_STEPS):
        p = _sigmoid(x @ theta)
        gradient = x.T @ (w * (p - y)) + _RIDGE * (theta - center)
        hessian = (x * (w * p * (1.0 - p))[:, None]).T @ x + _RIDGE * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        size = 1.0  # backtracking: a full Newton step from a poor start can overshoot by orders of magnitude
        while size >= 1e-6 and loss(theta - size * step) > current - 1e-4 * size * float(gradient @ step):
            size /= 2
        if size < 1e-6:
            break  # no step along the Newton direction lowers the loss: theta is the fit
        theta = theta - size * step
        current = loss(theta)
        if np.abs(size * step).max() < 1e-9:
            break
    scale, bias = float(theta[0]), float(theta[1])
    if not (math.isfinite(scale) and math.isfinite(bias) and scale > 0):
        return start
    return Calibration(scale, bias, "platt")


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    """Expected calibration error over `bins` equal-width bins, and the bins (for a reliability diagram):
    each with its count, mean predicted probability and observed share of positives. Non-finite
    probabilities (a diverged model) are left out rather than failing the report."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    finite = np.isfinite(probabilities)
    probabilities, labels = probabilities[finite], labels[finite]
    if not len(probabilities):
        return float("nan"), []
    which = np.minimum((probabilities * bins).astype(np.int64), bins - 1)
    counts = np.bincount(which, minlength=bins)
    predicted = np.bincount(which, probabilities, minlength=bins)
    observed = np.bincount(which, labels, minlength=bins)
    table, error = [], 0.0
    for b in range(bins):
        if counts[b]:
            mean_p, share = predicted[b] / counts[b], observed[b] / counts[b]
            error += counts[b] / len(probabilities) * abs(mean_p - share)
            table.append({"low": b / bins, "high": (b + 1) / bins, "count": int(counts[b]),
                          "predicted": float(mean_p), "observed": float(share)})
    return float(error), table
