"""From a trained Keras model to what outlives training: numpy scorers, the model folder's contents and the
optimiser's state a warm start continues from.

Validation, evaluation and the benchmarks score a Keras model through `keras_logits` / `keras_scorer`, the
same `score(users, items)` shape as the numpy `Recommender`, so one ranking code serves all of them.
`to_artifact` is the one place that decides what a model folder holds besides the weights (vocabularies,
seen items, popularity, metadata), whatever trained the model.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .calibration import Calibration
from .dataset import Dataset
from .history import TrainResult


def keras_logits(model) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Logits from a Keras model, `score(users [n], items [n]) -> [n]` (ranks like its probabilities)."""
    import keras

    def score(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        logits = model({"user": users.astype(np.int32), "item": items.astype(np.int32)}, training=False)
        return keras.ops.convert_to_numpy(logits).astype(np.float64)

    return score


def keras_scorer(model, calibration: Calibration | None = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Probabilities from a Keras model: the plain sigmoid of its logits, or `calibration`'s."""
    logits, calibration = keras_logits(model), calibration or Calibration()
    return lambda users, items: calibration.probability(logits(users, items))


def to_artifact(result: TrainResult, dataset: Dataset, metrics: dict | None = None, extra: dict | None = None):
    """The model folder's contents for a trained model: weights, vocabularies, seen items, popularity and
    metadata (hyperparameters, metrics, data statistics, library versions)."""
    import keras
    import tensorflow as tf

    from . import __version__
    from .artifacts import ModelArtifact
    from .models import export_weights

    metadata = {
        "hyperparameters": result.config.to_dict(),
        "metrics": metrics or {},
        "best_epoch": result.best_epoch,
        "validation": result.best_validation,
        "calibration": result.calibration.to_dict(),
        "data": dataset.statistics(),
        "versions": {"ncf": __version__, "numpy": np.__version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    return ModelArtifact(
        kind=result.config.model, weights=export_weights(result.model), users=dataset.users,
        items=dataset.items, seen=dataset.seen, popularity=np.bincount(
            dataset.seen.indices, minlength=dataset.n_items).astype(np.int64),
        metadata=metadata, optimizer=optimizer_state(result.model, result.optimizer),
    )


def optimizer_state(model, optimizer) -> dict[str, np.ndarray] | None:
    """Adam's moments of every weight, named as `export_weights` names the weight with `m/` or `v/` in front,
    and its step count as `iterations`: what a warm start needs to continue the optimiser rather than restart
    it. None for Keras' dense Adam (several replicas), whose state is not exported."""
    from .models import export_weights
    from .optimizers import LazyAdam

    if not isinstance(optimizer, LazyAdam) or optimizer.iterations is None:
        return None
    state = {"iterations": np.array(int(optimizer.iterations.numpy()), dtype=np.int64)}
    for n, prefix in enumerate(("m/", "v/")):
        moments = export_weights(model, value_of=lambda variable: optimizer.moments(variable)[n])
        state.update({prefix + name: value for name, value in moments.items()})
    return state
