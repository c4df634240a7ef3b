"""Training loop: fresh negatives every epoch, large batches, early stopping on validation HR@10.

Each epoch's examples are built in numpy (`sampling.epoch_examples`) and fed through `tf.data` from memory;
Keras' compiled step does the rest. Validation ranks the same seeded candidates every epoch, so the curve
moves only because the model does. Given a seed, two runs produce the same weights.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from .dataset import Dataset
from .errors import ConfigError
from .evaluation import Candidates, draw_candidates, evaluate_candidates
from .sampling import NegativeSampler, epoch_examples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the library. The container maps its SageMaker hyperparameters onto this."""

    model: str = "neumf"
    factors: int = 32
    mlp_layers: tuple[int, ...] = (64, 32, 16, 8)
    dropout: float = 0.0
    l2: float = 0.0
    learning_rate: float = 1e-3
    batch_size: int = 1024
    epochs: int = 20
    negatives: int = 4
    patience: int = 3
    pretrain: bool = False
    alpha: float = 0.5
    seed: int = 0
    validation_negatives: int = 99

    def __post_init__(self):
        from .models import MODEL_KINDS

        object.__setattr__(self, "mlp_layers", tuple(int(s) for s in self.mlp_layers))
        checks = [
            (self.model in MODEL_KINDS, f"model must be one of {list(MODEL_KINDS)}, got {self.model!r}"),
            (self.factors >= 1, f"factors must be >= 1, got {self.factors}"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.l2 >= 0.0, f"l2 must be >= 0, got {self.l2}"),
            (self.learning_rate > 0.0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.negatives >= 1, f"negatives must be >= 1, got {self.negatives}"),
            (self.patience >= 0, f"patience must be >= 0 (0 = no early stopping), got {self.patience}"),
            (0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}"),
            (not self.pretrain or self.model == "neumf", "pretrain applies to model 'neumf' only"),
            (self.validation_negatives >= 1, f"validation_negatives must be >= 1, got {self.validation_negatives}"),
            (len(self.mlp_layers) >= 2 and self.mlp_layers[0] % 2 == 0 and min(self.mlp_layers) >= 1,
             f"mlp_layers must be an even embedding width then hidden sizes, e.g. (64, 32, 16, 8), "
             f"got {self.mlp_layers}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mlp_layers"] = list(self.mlp_layers)
        return d


@dataclass(frozen=True)
class EpochLog:
    """What one epoch did; `stage` is 'gmf' or 'mlp' while pretraining, else the model kind."""

    stage: str
    epoch: int
    epochs: int
    loss: float
    samples: int
    seconds: float
    validation: dict[str, float]
    eta_seconds: float

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        """The stable, regex-friendly line of the epoch (MetricDefinitions read these)."""
        metrics = "".join(f" validation:{k}={v:.4f}" for k, v in self.validation.items())
        return (
            f"stage={self.stage} epoch={self.epoch}/{self.epochs} train:loss={self.loss:.4f}{metrics} "
            f"samples_per_s={self.samples_per_second:.0f} seconds={self.seconds:.1f} eta_s={self.eta_seconds:.0f}"
        )


@dataclass
class TrainResult:
    model: object  # keras.Model; typed loosely so importing this module's names needs no Keras
    config: TrainConfig
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_validation: dict[str, float] = field(default_factory=dict)

    def throughput(self) -> float:
        """Mean training samples per second of the final stage's epochs."""
        final = [e for e in self.history if e.stage == self.config.model]
        seconds = sum(e.seconds for e in final)
        return sum(e.samples for e in final) / seconds if seconds else float("nan")


def keras_scorer(model) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Probabilities from a Keras model, `score(users [n], items [n]) -> [n]`."""
    import keras

    def score(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        logits = model({"user": users.astype(np.int32), "item": items.astype(np.int32)}, training=False)
        return keras.ops.convert_to_numpy(keras.ops.sigmoid(logits)).astype(np.float64)

    return score


def fit(
    dataset: Dataset, config: TrainConfig, on_epoch: Callable[[EpochLog], None] | None = None
) -> TrainResult:
    """Train `config.model` on `dataset.train`, early-stopping on `dataset.validation` when present.

    With `pretrain`, GMF and MLP are trained first with the same settings and NeuMF starts from them.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    validation = None
    if dataset.validation is not None and len(dataset.validation):
        validation = draw_candidates(dataset.validation, dataset.seen, config.validation_negatives, config.seed)
    sampler = NegativeSampler(dataset.train_seen)
    report = on_epoch or (lambda e: log.info("%s", e.line()))

    if config.pretrain:
        parts = {}
        for kind in ("gmf", "mlp"):
            parts[kind] = _fit_one(dataset, replace(config, model=kind, pretrain=False), sampler, validation, report)
        model = _build(dataset, config)
        from .models import neumf_from_pretrained

        neumf_from_pretrained(model, parts["gmf"].model, parts["mlp"].model, config.alpha)
        result = _fit_one(dataset, config, sampler, validation, report, model=model)
        result.history = parts["gmf"].history + parts["mlp"].history + result.history
        return result
    return _fit_one(dataset, config, sampler, validation, report)


def _build(dataset: Dataset, config: TrainConfig):
    from .models import build_model

    return build_model(config.model, dataset.n_users, dataset.n_items, factors=config.factors,
                       mlp_layers=config.mlp_layers, dropout=config.dropout, l2=config.l2)


def _fit_one(dataset: Dataset, config: TrainConfig, sampler: NegativeSampler, validation: Candidates | None,
             report: Callable[[EpochLog], None], model=None) -> TrainResult:
    import keras
    import tensorflow as tf

    model = model if model is not None else _build(dataset, config)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    result = TrainResult(model=model, config=config)
    best_weights, best_key, waited = None, (-1.0, -1.0), 0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        rng = np.random.default_rng([config.seed, epoch])
        users, items, labels = epoch_examples(dataset.train.user, dataset.train.item, sampler, config.negatives, rng)
        data = tf.data.Dataset.from_tensor_slices(({"user": users, "item": items}, labels))
        data = data.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)
        history = model.fit(data, epochs=1, verbose=0, shuffle=False)
        train_seconds = time.perf_counter() - t0
        metrics = evaluate_candidates(keras_scorer(model), validation) if validation is not None else {}
        elapsed = time.perf_counter() - started
        entry = EpochLog(
            stage=config.model, epoch=epoch, epochs=config.epochs, loss=float(history.history["loss"][-1]),
            samples=len(labels), seconds=train_seconds, validation=metrics,
            eta_seconds=elapsed / epoch * (config.epochs - epoch),
        )
        result.history.append(entry)
        report(entry)
        if not math.isfinite(entry.loss):
            raise ConfigError(f"training diverged at epoch {epoch} (loss {entry.loss}); lower the learning rate")
        if not metrics:
            result.best_epoch = epoch
            continue
        key = (metrics["hr@10"], metrics["ndcg@10"])
        if key > best_key:
            best_key, best_weights, waited = key, model.get_weights(), 0
            result.best_epoch, result.best_validation = epoch, metrics
        else:
            waited += 1
            if config.patience and waited >= config.patience:
                log.info("early stop at epoch %d: best validation hr@10 %.4f at epoch %d",
                         epoch, best_key[0], result.best_epoch)
                break
    if best_weights is not None:
        model.set_weights(best_weights)
    return result



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
        metadata=metadata,
    )
