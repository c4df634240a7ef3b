"""Training loop: fresh negatives every epoch, large batches, early stopping on validation HR@10.

Each epoch's examples are built in numpy a chunk at a time (`sampling.epoch_chunks`), so memory grows with
the data, not with the epoch. One process hands each chunk to the graph and runs it as calls of several
XLA-compiled steps in a graph loop, with `optimizers.LazyAdam` updating only the embedding rows a batch
touches, so a sample costs about the same with 5k x 2k tables as with ml-25m's 162k x 59k. Several replicas
read the chunks through `tf.data`, one slice of every global batch each (`distribute`), with Keras' dense Adam.
Validation ranks the same seeded candidates every epoch (at most `VALIDATION_USERS` users), so the curve moves
only because the model does. Given a seed, two runs produce the same weights. A long epoch logs a progress
line every `PROGRESS_SECONDS`, and one when a stop is requested.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from . import calibration
from .arrays import unique
from .calibration import Calibration
from .dataset import Dataset
from .defaults import AUTO, MIN_STEPS_PER_EPOCH, resolved
from .distribute import agree, default_strategy, sharded_batches
from .errors import ConfigError, Interrupted
from .evaluation import (Candidates, against_popularity, draw_candidates, evaluate_candidates,
                         popularity_scorer, score_candidates)
from .kinds import MODEL_KINDS
from .prefetch import ahead
from .sampling import NegativeSampler, epoch_chunks, positives_per_chunk
from .spelling import spelled_bool

log = logging.getLogger(__name__)

OPTIMIZERS = ("lazy_adam", "adam")
#: `auto` refits when validation held out every user's interaction, and not when it held out a sample of
#: users (`Dataset.with_validation_users`): then all others trained on theirs already, and a refit, which costs
#: as much as the search, would add back a few interactions of a few users.
REFIT_MODES = ("auto", "true", "false")
#: `towers`: the paper's GMF and MLP trained first, NeuMF starting from both (He et al. 2017, 3.4.1). `mf`: an MF
#: trained first, NeuMF's GMF half starting from its factors (`models.neumf_from_mf`) and trained on at
#: `finetune_rate` times the learning rate, then all stages refit like any model (`refit`). `auto`: `mf` for
#: NeuMF when validation held out every user, as for `refit` (MovieLens' small sets: the only NeuMF there that
#: the bootstrap calls no worse than MF and EASE^R), else `none`: at ml-25m's size the MF stage adds as much
#: time again to a job (benchmarks: "NeuMF, today's default"), and a warm start keeps its own weights.
PRETRAIN_MODES = ("auto", "none", "towers", "mf")

#: Users whose validation rows are ranked every epoch: the per-epoch cost stays that of ~2M scored pairs
#: however many users the data has, and HR@10 on 20k users moves by ~0.003 between seeds of the sample.
VALIDATION_USERS = 20_000
#: Seconds between progress lines inside an epoch (a 23M-interaction epoch takes minutes).
PROGRESS_SECONDS = 30.0


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the library. The container maps its SageMaker hyperparameters onto this."""

    # NeuMF is the default: the model this image exists for. MF, GMF and MLP are one hyperparameter away; MF at
    # 128 factors, the strongest of them, is within a paired bootstrap's noise of NeuMF on ml-latest-small and
    # below it on ml-100k (5 seeds; docs/benchmarks.md, "NeuMF, today's default"). NeuMF's widths
    # (factors 64, MLP 64-32-16) train 1.7x faster than 128 / 128-64-32 at the same quality (`benchmarks/ab.py`,
    # 3 seeds x 2 data sets); L2, learning rate and negatives come from a 3-seed search on ml-latest-small, run
    # unchanged on ml-100k. `mlp_layers` and `dropout` apply when `model` is neumf or mlp.
    model: str = "neumf"
    factors: int = 64
    mlp_layers: tuple[int, ...] = (64, 32, 16)
    dropout: float = 0.0
    l2: float = 1e-6
    learning_rate: float = 2e-3
    batch_size: int | str = "auto"  # `defaults.resolved`: 4,096 unless the data is too small for it
    epochs: int = 60
    negatives: int = 8
    patience: int = 5
    pretrain: str = "auto"
    alpha: float = 0.5
    finetune_rate: float = 0.1
    refit: str = "auto"
    seed: int = 0
    validation_negatives: int = 99
    optimizer: str = "lazy_adam"
    validate_every: int = 2 ** 25
    min_delta: float = 0.001

    def __post_init__(self):
        object.__setattr__(self, "mlp_layers", tuple(int(s) for s in self.mlp_layers))
        object.__setattr__(self, "refit", _mode(self.refit, "true", "false"))
        object.__setattr__(self, "pretrain", _mode(self.pretrain, "towers", "none"))
        if isinstance(self.batch_size, str) and self.batch_size.strip().lower() == AUTO:
            object.__setattr__(self, "batch_size", AUTO)
        checks = [
            (self.model in MODEL_KINDS, f"model must be one of {list(MODEL_KINDS)}, got {self.model!r}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}"),
            (self.factors >= 1, f"factors must be >= 1, got {self.factors}"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.l2 >= 0.0, f"l2 must be >= 0, got {self.l2}"),
            (self.learning_rate > 0.0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (self.batch_size == AUTO or isinstance(self.batch_size, int) and self.batch_size >= 1,
             f"batch_size must be auto or an integer >= 1, got {self.batch_size!r}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.negatives >= 1, f"negatives must be >= 1, got {self.negatives}"),
            (self.patience >= 0, f"patience must be >= 0 (0 = no early stopping), got {self.patience}"),
            (self.refit in REFIT_MODES, f"refit must be one of {list(REFIT_MODES)}, got {self.refit!r}"),
            (self.validate_every >= 0, f"validate_every must be >= 0 (0 = once per epoch), got {self.validate_every}"),
            (0.0 <= self.min_delta < 1.0, f"min_delta must be in [0, 1), got {self.min_delta}"),
            (0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}"),
            (self.pretrain in PRETRAIN_MODES,
             f"pretrain must be one of {list(PRETRAIN_MODES)} (true = towers, false = none), got {self.pretrain!r}"),
            (self.pretrain in ("auto", "none") or self.model == "neumf", "pretrain applies to model 'neumf' only"),
            (0.0 < self.finetune_rate <= 1.0, f"finetune_rate must be in (0, 1], got {self.finetune_rate}"),
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


def _mode(value, if_true: str, if_false: str) -> str:
    """A setting named by a word (`refit`'s, `pretrain`'s modes), lower-cased; a boolean in any spelling stands
    for `if_true` or `if_false` (`pretrain=true` is the paper's towers, its meaning before `mf` existed)."""
    flag = spelled_bool(value)
    return str(value).strip().lower() if flag is None else if_true if flag else if_false


@dataclass(frozen=True)
class EpochLog:
    """What one epoch (or one validation round of a long epoch) did; `stage` is 'gmf', 'mlp' or 'mf' while
    pretraining, else the model kind."""

    stage: str
    epoch: int
    epochs: int
    loss: float
    samples: int
    seconds: float
    validation: dict[str, float]
    eta_seconds: float
    round: int = 1  # validation rounds of a long epoch (`TrainConfig.validate_every`)
    rounds: int = 1

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")

    @property
    def position(self) -> float:
        """Epochs trained at the end of this round (2.5 after the first of two rounds of epoch 3): where a
        curve plots it, so the rounds of one epoch do not stack at one x."""
        return self.epoch - 1 + self.round / self.rounds

    @property
    def step(self) -> int:
        """This round's ordinal in its stage, counting every round of the epochs before: TensorBoard's step,
        the same whether the job ran through or resumed from a checkpoint."""
        return (self.epoch - 1) * self.rounds + self.round

    def line(self) -> str:
        """The stable, regex-friendly line of the epoch (MetricDefinitions read these)."""
        metrics = "".join(f" validation:{k}={v:.4f}" for k, v in self.validation.items())
        part = f" round={self.round}/{self.rounds}" if self.rounds > 1 else ""
        return (
            f"stage={self.stage} epoch={self.epoch}/{self.epochs}{part} train:loss={self.loss:.4f}{metrics} "
            f"samples_per_s={self.samples_per_second:.0f} seconds={self.seconds:.1f} eta_s={self.eta_seconds:.0f}"
        )


class Progress:
    """Where a long epoch stands: a log line every `PROGRESS_SECONDS`, and at a stop request, so the log of a
    40-minute job is never silent (`progress stage=mf epoch=1/60 examples=... samples_per_s=... epoch_eta_s=...`).
    """

    def __init__(self, stage: str, epoch: int, epochs: int, total: int):
        self.stage, self.epoch, self.epochs, self.total = stage, epoch, epochs, total
        self.done = 0
        self.started = self.last = time.perf_counter()

    def advance(self, examples: int, *, force: bool = False) -> None:
        self.done += examples
        now = time.perf_counter()
        if not force and now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        rate = self.done / max(now - self.started, 1e-9)
        log.info("progress stage=%s epoch=%d/%d examples=%d/%d (%.0f%%) samples_per_s=%.0f epoch_eta_s=%.0f",
                 self.stage, self.epoch, self.epochs, self.done, self.total, 100.0 * self.done / max(self.total, 1),
                 rate, (self.total - self.done) / max(rate, 1e-9))


@dataclass
class TrainResult:
    model: object  # keras.Model; typed loosely so importing this module's names needs no Keras
    config: TrainConfig
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_validation: dict[str, float] = field(default_factory=dict)
    #: What the served probability means (`calibration`): fitted on validation by `fit`.
    calibration: Calibration = field(default_factory=Calibration)
    #: The optimiser that trained `model` last (its state goes into the model folder: `optimizer_state`).
    optimizer: object = None
    #: With `pretrain`: each pretraining stage's best epoch, which its refit trains for.
    pretrained: dict[str, int] = field(default_factory=dict)
    #: The round of `best_epoch` whose weights were chosen, of how many rounds that epoch had: a refit trains
    #: whole epochs (`best_epoch` of them), so with several rounds it trains a little past the chosen point.
    best_round: tuple[int, int] = (1, 1)
    #: The chosen model against popularity on the validation candidates (`evaluation.against_popularity`);
    #: empty without validation.
    against_popularity: dict = field(default_factory=dict)

    def throughput(self) -> float:
        """Mean training samples per second of the model's own epochs (not pretraining, not the refit)."""
        final = [e for e in self.history if e.stage == self.config.model]
        seconds = sum(e.seconds for e in final)
        return sum(e.samples for e in final) / seconds if seconds else float("nan")


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


def fit(
    dataset: Dataset, config: TrainConfig, on_epoch: Callable[[EpochLog], None] | None = None, *,
    checkpoint=None, should_stop: Callable[[], bool] | None = None, strategy=None, initial=None,
) -> TrainResult:
    """Train `config.model` on `dataset.train`, early-stopping on `dataset.validation` when present.

    With `pretrain`, GMF and MLP (`towers`) or MF (`mf`) are trained first with the same settings and NeuMF
    starts from them. With `refit` (and a validation split, and not `pretrain=towers`), a fresh model then
    trains on training + validation for the chosen number of epochs, every stage again, and that is the model
    returned.

    Args:
        checkpoint: a `checkpoint.Checkpointer`: state is saved after every epoch of every stage, each stage
            in a file of its own, and a run whose checkpoint exists resumes after its last epoch (a finished
            stage is reloaded, not trained again).
        should_stop: polled every few steps (`STEP_CALL_EXAMPLES` examples; every step with several replicas);
            when it returns True, training raises `Interrupted` at once, and the last checkpoint (the end of
            the previous epoch) is what a later run resumes from.
        strategy: a `tf.distribute.Strategy` to train under (`ncf.distribute`); by default, this process alone.
            `config.batch_size` is the global batch, split across all replicas.
        initial: `initial(model, optimizer)` sets a freshly built model's starting weights and its
            optimiser's state (a warm start, `warmstart.initialiser`), for the search and for the refit
            alike; a resumed checkpoint wins.
    """
    import keras
    import tensorflow as tf

    if config.pretrain not in ("auto", "none") and initial is not None:
        raise ConfigError("pretrain would replace the weights a warm start gives; use one or the other")
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    validation, searched = None, dataset
    if dataset.validation is not None and len(dataset.validation):
        searched = dataset.with_validation_users(VALIDATION_USERS, config.seed)
        if len(searched.validation) < len(dataset.validation):
            log.info("validation: %d of %d users, sampled with seed %d; the others' validation interactions "
                     "train", VALIDATION_USERS, len(unique(dataset.validation.user)), config.seed)
        validation = draw_candidates(searched.validation, dataset.seen, config.validation_negatives, config.seed)
        if len(validation) == 0:
            log.warning("no validation row can be ranked against %d negatives: no early stopping",
                        config.validation_negatives)
            validation = None
    config, reasons = resolved(config, len(searched.train))
    for name, reason in reasons.items():
        log.info("%s=auto: %s", name, reason)
    sampler = NegativeSampler(searched.train_seen)
    report = on_epoch or (lambda e: log.info("%s", e.line()))
    strategy = strategy or default_strategy()
    if config.optimizer == "lazy_adam" and strategy.num_replicas_in_sync > 1:
        log.info("%d replicas: optimizer adam (Keras' dense Adam; lazy_adam runs in one process only)",
                 strategy.num_replicas_in_sync)
        config = replace(config, optimizer="adam")  # what trains is what checkpoints and metadata say
    config = replace(config, pretrain=_pretraining(config, validation is not None and searched is dataset, initial))
    run = dict(sampler=sampler, validation=validation, report=report, should_stop=should_stop, strategy=strategy,
               initial=initial)

    if config.pretrain != "none":
        result = _pretrained(searched, config, checkpoint=checkpoint, **run)
    else:
        result = _fit_one(searched, config, checkpoint=checkpoint,
                          resume=_resumable(checkpoint, config.model, config, searched), **run)
    scores = None if validation is None else score_candidates(keras_logits(result.model), validation)
    result.calibration = _calibrate(scores, config)
    if validation is not None:
        result.against_popularity = against_popularity(
            scores, score_candidates(popularity_scorer(searched.popularity), validation))
        if result.against_popularity:
            _warn_unless_learned(result.against_popularity, result, config, len(searched.train))
    # The paper's towers were measured without a refit, and keep it so (benchmarks: "NeuMF, today's default").
    if validation is not None and config.pretrain != "towers" and _refits(config, searched is dataset):
        result = _refit(dataset, config, result, checkpoint, **{**run, "validation": None})
    return result


def _pretrained(dataset: Dataset, config: TrainConfig, *, checkpoint, stage: str | None = None,
                epochs: dict[str, int] | None = None, **run) -> TrainResult:
    """The pretraining stages of `config.pretrain`, then NeuMF started from them.

    Each stage early-stops on validation, or in the refit trains for the epochs the search chose (`epochs`,
    per stage). Each checkpoints beside `checkpoint`, so a resumed job reloads a finished stage instead of
    training it again, and still knows its epochs for the refit.
    """
    from .models import neumf_from_mf, neumf_from_pretrained

    parts = {}
    for kind in ("mf",) if config.pretrain == "mf" else ("gmf", "mlp"):
        part = replace(config, model=kind, pretrain="none")
        if epochs is not None:
            part = replace(part, epochs=epochs[kind], patience=0)
        name = kind if stage is None else f"{stage}-{kind}"
        part_checkpoint = checkpoint.stage(kind) if checkpoint is not None else None
        parts[kind] = _fit_one(dataset, part, stage=name, checkpoint=part_checkpoint,
                               resume=_resumable(part_checkpoint, name, part, dataset), **run)
    final = config
    if config.pretrain == "mf":
        final = replace(config, learning_rate=config.learning_rate * config.finetune_rate)
    name = stage or config.model
    resume = _resumable(checkpoint, name, final, dataset)
    strategy = run["strategy"]
    with strategy.scope():
        model = _build(dataset, final, strategy)
    if resume is None and config.pretrain == "mf":
        neumf_from_mf(model, parts["mf"].model)
    elif resume is None:
        neumf_from_pretrained(model, parts["gmf"].model, parts["mlp"].model, config.alpha)
    # Only their epochs are needed from here: the stages' tables and moments (~170 MB at ml-25m's size) are
    # let go before NeuMF's optimiser and training start, where a 23M-interaction job's memory peaks.
    history = [e for part in parts.values() for e in part.history]
    pretrained = {kind: part.best_epoch for kind, part in parts.items()}
    del parts
    result = _fit_one(dataset, final, model=model, stage=name, checkpoint=checkpoint, resume=resume, **run)
    result.config = config  # what the job was given; `final` differs only in the rate the last stage ran at
    result.history = history + result.history
    result.pretrained = pretrained
    return result


def _pretraining(config: TrainConfig, every_user_validated: bool, initial) -> str:
    """The mode that trains: `pretrain`, or what `auto` chooses for this data (`PRETRAIN_MODES`)."""
    if config.pretrain != "auto":
        return config.pretrain
    chosen = "mf" if config.model == "neumf" and every_user_validated and initial is None else "none"
    if config.model == "neumf":
        why = ("a warm start keeps its weights" if initial is not None else "validation held out every user"
               if every_user_validated else "validation held out a sample of users, or none")
        log.info("pretrain=auto: %s (%s)", chosen, why)
    return chosen


def _warn_unless_learned(verdict: dict, result: TrainResult, config: TrainConfig, train_pairs: int) -> None:
    """A WARNING when the chosen model does not beat popularity on validation, naming the likely cause and
    what to try: the job still succeeds and ships its model, but nobody should serve it unawares."""
    if verdict["beats_popularity"]:
        log.info("validation: HR@10 %.4f against popularity's %.4f (margin %+.4f, standard error %.4f)",
                 verdict["hr@10"], verdict["popularity_hr@10"], verdict["margin"], verdict["margin_se"])
        return
    steps = -(-train_pairs * (1 + config.negatives) // config.batch_size)
    own = [e for e in result.history if e.stage == config.model]
    if steps < MIN_STEPS_PER_EPOCH:
        cause = (f"an epoch makes only {steps} optimiser steps (batch_size={config.batch_size}): set a smaller "
                 "batch_size, or leave it at auto")
    elif own and result.best_epoch <= 1 and len(own) > 1:
        cause = ("validation never improved after the first epoch: try a lower learning_rate, a larger l2, or "
                 "more patience")
    else:
        cause = ("the data may hold little beyond popularity (few interactions per user, or most of them on a "
                 "few items), or the model is undertrained: try more epochs and patience, model=mf, or more data")
    log.warning("the model does not beat popularity on validation: HR@10 %.4f against %.4f (margin %+.4f, "
                "standard error %.4f, %d held-out rows). Likely cause: %s. The model is saved; check it before "
                "serving.", verdict["hr@10"], verdict["popularity_hr@10"], verdict["margin"], verdict["margin_se"],
                verdict["rows"], cause)


def _calibrate(logits: np.ndarray | None, config: TrainConfig) -> Calibration:
    """Platt scaling of the selected model on its validation candidates' logits `[rows, 1 + n_neg]`; the
    sampling-ratio correction alone without them (`calibration`)."""
    if logits is None:
        chosen = calibration.prior(config.negatives)
    else:
        chosen = calibration.fit(logits[:, 0], logits[:, 1:], config.negatives)
    log.info("calibration: %s, probability = sigmoid(%.4f * logit + %.4f)", chosen.method, chosen.scale,
             chosen.bias)
    return chosen


def _refits(config: TrainConfig, every_user_validated: bool) -> bool:
    if config.refit == "auto" and not every_user_validated:
        log.info("refit skipped (refit=auto): validation held out a sample of users, every other user's "
                 "validation interaction trained already")
    return config.refit == "true" or (config.refit == "auto" and every_user_validated)


def _refit(dataset: Dataset, config: TrainConfig, chosen: TrainResult, checkpoint, **run) -> TrainResult:
    """Trains afresh on training + validation for the epochs early stopping chose; the validation scores stay
    those of the chosen epoch (the refit has nothing left to validate on).

    Classical peers are refit the same way after tuning (`benchmarks/peers.py`), and the shipped model then
    knows every user's latest training interaction. On ml-latest-small here the refit raised test HR@10 by
    0.010-0.016 in four runs of five and lowered it by 0.007 in one.
    """
    import keras

    merged = dataset.with_validation_in_train()
    refit_config = replace(config, epochs=chosen.best_epoch, patience=0)
    stage_checkpoint = checkpoint.stage("refit") if checkpoint is not None else None
    keras.utils.set_random_seed(config.seed)
    run = {**run, "sampler": NegativeSampler(merged.train_seen)}
    if config.pretrain != "none":  # every stage again, each for its chosen epochs
        result = _pretrained(merged, refit_config, checkpoint=stage_checkpoint, stage="refit",
                             epochs=chosen.pretrained, **run)
    else:
        result = _fit_one(merged, refit_config, stage="refit", checkpoint=stage_checkpoint,
                          resume=_resumable(stage_checkpoint, "refit", refit_config, merged), **run)
    return TrainResult(model=result.model, config=config, history=chosen.history + result.history,
                       best_epoch=chosen.best_epoch, best_validation=chosen.best_validation,
                       calibration=chosen.calibration, optimizer=result.optimizer, pretrained=chosen.pretrained,
                       against_popularity=chosen.against_popularity, best_round=chosen.best_round)


def _resumable(checkpoint, stage: str, config: TrainConfig, dataset: Dataset):
    """The checkpointed state of this stage, these hyperparameters and this data, or None to start afresh.

    SageMaker restores a job's checkpoint prefix at every start: a job on new data with the prefix of an old
    one must train, not ship the old model."""
    resume = checkpoint.load() if checkpoint is not None else None
    if resume is not None and (resume.stage != stage or resume.config != config.to_dict()):
        log.warning("checkpoint %s was written with other hyperparameters; starting afresh", checkpoint.path)
        resume = None
    if resume is not None and resume.data != data_key(dataset):
        log.warning("checkpoint %s was written for other data (%s; this job's: %s); starting afresh",
                    checkpoint.path, resume.data, data_key(dataset))
        resume = None
    return resume


def data_key(dataset: Dataset) -> dict:
    """What a checkpoint must match to be resumed: the data's fingerprint and the tables' sizes."""
    return {"fingerprint": dataset.fingerprint(), "users": dataset.n_users, "items": dataset.n_items,
            "train": len(dataset.train)}


def _lazy(config: TrainConfig, strategy) -> bool:
    """Whether `LazyAdam` trains (it applies the embeddings' L2 itself), or Keras' Adam (the layers do);
    `fit` has made several replicas' config say adam."""
    return config.optimizer == "lazy_adam" and strategy.num_replicas_in_sync == 1


def _build(dataset: Dataset, config: TrainConfig, strategy):
    from .models import build_model

    return build_model(config.model, dataset.n_users, dataset.n_items, factors=config.factors,
                       mlp_layers=config.mlp_layers, dropout=config.dropout, l2=config.l2,
                       embedding_l2=0.0 if _lazy(config, strategy) else config.l2)


def _optimizer(model, config: TrainConfig, strategy):
    import keras

    from .models import embedding_tables
    from .optimizers import LazyAdam

    if _lazy(config, strategy):
        # whole up to two batches' rows: at 2.4 (ml-latest-small's 9,724 items, batch 4,096) both ways ran at
        # about one rate here (whole 1.23-1.25M, row by row 1.11-1.24M samples/s; throwaway script, 2026-11-30)
        optimizer = LazyAdam(config.learning_rate, row_l2=config.l2, penalised=embedding_tables(model),
                             whole_rows=2 * config.batch_size)
    else:
        optimizer = keras.optimizers.Adam(config.learning_rate)
    optimizer.build(model.trainable_variables)
    return optimizer


#: Examples one call into the compiled graph trains on, as several steps in a graph loop: Python and the
#: host-to-graph round trip are paid once per call, not once per step (the paper's model on ml-latest-small:
#: 0.9-1.05M -> 1.7-2.1M samples/s here). `should_stop` is polled between calls, a fraction of a second apart.
STEP_CALL_EXAMPLES = 1 << 18


def _epoch_trainer(model, optimizer, strategy, batch_size: int):
    """`train(users, items, labels, should_stop) -> (summed loss over the examples, stopped by request)`.

    The loss is divided by the global batch's size and the optimizer sums gradients across replicas, so N
    replicas take the step one process would. Keras' `fit` is not used: under MultiWorkerMirroredStrategy it
    fails on dict inputs before the first step.
    """
    import tensorflow as tf

    from .models import embedding_inputs
    from .optimizers import LazyAdam

    replicas = strategy.num_replicas_in_sync
    lookups = embedding_inputs(model)
    lazy = isinstance(optimizer, LazyAdam)

    def replica_step(features, labels, global_size, segments=None):
        with tf.GradientTape() as tape:
            logits = model(features, training=True)
            # float32 whatever the layers computed in (Keras' mixed_bfloat16 runs in `benchmarks/step_speed.py`)
            logits = tf.cast(logits, labels.dtype)
            summed = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
            loss = summed / global_size
            if model.losses:
                loss += tf.add_n(model.losses) / replicas
        gradients = tape.gradient(loss, model.trainable_variables)
        if not lazy:  # Keras' Adam
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        else:
            segments = segments or {}
            optimizer.apply_gradients(zip(gradients, model.trainable_variables),
                                      {key: segments[feature] for key, feature in lookups.items()
                                       if feature in segments})
        return summed

    if replicas > 1:
        return _replicated_trainer(replica_step, strategy, batch_size)
    row_wise = {lookups[id(v)] for v in model.trainable_variables
                if lazy and id(v) in lookups and optimizer.row_wise(v)}
    return _chunked_trainer(replica_step, batch_size, row_wise)


def _chunked_trainer(replica_step, batch_size: int, row_wise: set[str]):
    """One process: a chunk's arrays go to the graph once, and each call runs several steps in a graph loop,
    every step compiled with XLA (fused lookups, MLP and Adam: 1.2x-1.9x the plain graph here). For the inputs
    whose tables `LazyAdam` updates row by row (`row_wise`) the loop, outside XLA, finds which of each batch's
    lookups share an id (`tf.unique`, see `optimizers`)."""
    import tensorflow as tf

    xla_step = tf.function(replica_step, jit_compile=True)
    ids, scalar = tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int64)

    @tf.function(input_signature=[ids, ids, tf.TensorSpec([None], tf.float32), scalar, scalar])
    def chunk(users, items, labels, first, last):
        n, total = tf.size(labels, out_type=tf.int64), tf.constant(0.0)
        for k in tf.range(first, last):
            start = k * batch_size
            end = tf.minimum(start + batch_size, n)
            features = {"user": users[start:end], "item": items[start:end]}
            segments = {name: tf.unique(ids)[1] for name, ids in features.items() if name in row_wise}
            total += xla_step(features, labels[start:end], tf.cast(end - start, tf.float32), segments)
        return total

    per_chunk = max(1, STEP_CALL_EXAMPLES // batch_size)

    def train(users, items, labels, should_stop):
        steps, total = -(-len(labels) // batch_size), 0.0
        tensors = tf.constant(users), tf.constant(items), tf.constant(labels)
        for first in range(0, steps, per_chunk):
            if should_stop is not None and should_stop():
                return total, True
            last = min(first + per_chunk, steps)
            total += float(chunk(*tensors, tf.constant(first, tf.int64), tf.constant(last, tf.int64)))
        return total, False

    return train


def _replicated_trainer(replica_step, strategy, batch_size: int):
    """Several replicas: one step per call, each replica on its slice of the global batch (`distribute`).

    A stop request rides the all-reduce of the loss: when any worker is asked to stop (SIGTERM), every worker
    sees it after the same step and none waits for a peer that left. XLA cannot hold the cross-host
    collectives, so this step is a plain graph.
    """
    import tensorflow as tf

    def replica(features, labels, global_size, stop):
        summed = replica_step(features, labels, global_size)
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.stack([summed, stop]))

    @tf.function
    def step(iterator, stop):
        return strategy.experimental_local_results(strategy.run(replica, args=(*next(iterator), stop)))[0]

    def train(users, items, labels, should_stop):
        data, steps = sharded_batches(strategy, users, items, labels, batch_size)
        iterator, total = iter(data), 0.0
        no, yes = tf.constant(0.0), tf.constant(1.0)
        for _ in range(steps):
            summed, stops = step(iterator, yes if should_stop is not None and should_stop() else no).numpy()
            total += float(summed)
            if stops > 0:
                return total, True
        return total, False

    return train


def _fit_one(dataset: Dataset, config: TrainConfig, *, sampler: NegativeSampler, validation: Candidates | None,
             report: Callable[[EpochLog], None], strategy, should_stop: Callable[[], bool] | None = None,
             model=None, checkpoint=None, resume=None, stage: str | None = None, initial=None) -> TrainResult:
    stage = stage or config.model  # what epoch lines and checkpoints call this run: the kind, or "refit"

    with strategy.scope():
        built = model is None
        if built:
            model = _build(dataset, config, strategy)
        optimizer = _optimizer(model, config, strategy)
        if built and initial is not None and resume is None:
            initial(model, optimizer)
    train = _epoch_trainer(model, optimizer, strategy, config.batch_size)
    result = TrainResult(model=model, config=config, optimizer=optimizer)
    search = EarlyStopping(config.patience, result, min_delta=config.min_delta, optimizer=optimizer)
    first = 1
    if resume is not None:
        _restore(model, optimizer, resume)
        search = EarlyStopping(config.patience, result, resume.best_key, resume.best_weights, resume.waited,
                               resume.finished, config.min_delta, optimizer, resume.best_optimizer)
        result.history, result.best_epoch, result.best_validation = resume.history, resume.best_epoch, \
            resume.best_validation
        result.best_round = next(((e.round, e.rounds) for e in resume.history if e.epoch == resume.best_epoch
                                  and e.validation == resume.best_validation), (1, 1))
        first = resume.epoch + 1
        log.info("resuming %s from checkpoint after epoch %d", stage, resume.epoch)
    started, rounds_done, data = time.perf_counter(), 0, None
    for epoch in range(first, config.epochs + 1):
        if search.finished:
            break
        rng = np.random.default_rng([config.seed, epoch])
        progress = Progress(stage, epoch, config.epochs, len(dataset.train) * (1 + config.negatives))
        chunks = max(1, -(-len(dataset.train) // positives_per_chunk(config.negatives, config.batch_size)))
        rounds = min(chunks, _rounds(progress.total, config.validate_every if validation is not None else 0))
        ends = [chunks * r // rounds for r in range(1, rounds + 1)]  # a round is whole chunks
        t0, summed_loss, samples, r, chunk = time.perf_counter(), 0.0, 0, 1, 0
        drawn = ahead(epoch_chunks(dataset.train.user, dataset.train.item, sampler, config.negatives, rng,
                                   batch_size=config.batch_size))  # the next chunk drawn while this one trains
        with closing(drawn):
            for users, items, labels in drawn:
                chunk_loss, stopped = train(users, items, labels, should_stop)
                summed_loss, samples, chunk = summed_loss + chunk_loss, samples + len(labels), chunk + 1
                progress.advance(0 if stopped else len(labels), force=stopped)
                if stopped:
                    raise Interrupted(f"training stopped by request during epoch {epoch} of {stage}")
                if chunk < ends[r - 1]:
                    continue  # the last round ends with the epoch's last chunk (`ends[-1] == chunks`)
                rounds_done += 1
                _end_round(search, model, validation, strategy, report, stage, epoch, config.epochs, r, rounds,
                           summed_loss, samples, time.perf_counter() - t0,
                           eta=(time.perf_counter() - started) / rounds_done * _rounds_left(config, epoch, r, rounds))
                r, t0, summed_loss, samples = r + 1, time.perf_counter(), 0.0, 0
                if search.finished:
                    break
        if checkpoint is not None:
            data = data if data is not None else data_key(dataset)
            checkpoint.save(_state(model, optimizer, config, stage, epoch, result, search, data,
                                   search.finished or epoch == config.epochs))
    if search.best_weights is not None:
        model.set_weights(search.best_weights)
        if search.best_optimizer is not None:  # the moments and step count of those weights, not the last step's
            for variable, value in zip(optimizer.variables, search.best_optimizer):
                variable.assign(value)
    return result


def _rounds(samples: int, validate_every: int) -> int:
    """Validation rounds in an epoch of `samples`: one, or as many equal rounds as `validate_every` needs.

    On large data one epoch is hundreds of millions of samples (7.7 min for ml-25m's size here) and early
    stopping that waits `patience` whole epochs after the best one, then refits, would spend most of a job
    confirming that nothing improves; rounds keep its cost in samples, whatever the data's size."""
    return max(1, -(-samples // validate_every)) if validate_every else 1


def _rounds_left(config: TrainConfig, epoch: int, r: int, rounds: int) -> int:
    return (config.epochs - epoch) * rounds + rounds - r


def _end_round(search: "EarlyStopping", model, validation, strategy, report, stage: str, epoch: int, epochs: int,
               r: int, rounds: int, loss: float, samples: int, seconds: float, eta: float) -> None:
    # Ranking only: the probabilities are calibrated once the model is chosen.
    metrics = {} if validation is None else evaluate_candidates(keras_logits(model), validation, probabilities=False)
    if metrics:  # every worker must take the same early-stopping decision
        metrics = dict(zip(metrics, map(float, agree(strategy, list(metrics.values())))))
    entry = EpochLog(stage=stage, epoch=epoch, epochs=epochs, loss=loss / max(samples, 1), samples=samples,
                     seconds=seconds, validation=metrics, eta_seconds=eta, round=r, rounds=rounds)
    search.result.history.append(entry)
    report(entry)
    if not math.isfinite(entry.loss):
        raise ConfigError(f"training diverged at epoch {epoch} (loss {entry.loss}); lower the learning rate")
    search.update(entry, model)


class EarlyStopping:
    """The search's state: the best validation so far, its weights, and the validation rounds waited since.
    Without validation every round is the best, and the last weights are kept.

    Better means HR@10 higher by at least `min_delta`, or the same HR@10 with a higher NDCG@10. With
    validation on MovieLens' 610 or 943 users one more hit is already 0.001 or more, so `min_delta=0.001`
    changes nothing there; on a 20,000-user sample it takes 20 more hits, so that a curve creeping up by a
    few users per round on 23M interactions (7 rounds an epoch) ends the search instead of prolonging it.
    """

    def __init__(self, patience: int, result: TrainResult, best_key=(-1.0, -1.0), best_weights=None,
                 waited: int = 0, finished: bool = False, min_delta: float = 0.0, optimizer=None,
                 best_optimizer=None):
        self.patience, self.result, self.min_delta = patience, result, min_delta
        self.best_key, self.best_weights, self.waited, self.finished = tuple(best_key), best_weights, waited, finished
        self.optimizer, self.best_optimizer = optimizer, best_optimizer

    def better(self, hr: float, ndcg: float) -> bool:
        best_hr, best_ndcg = self.best_key
        rise = hr - best_hr  # a tolerance: 20 more hits of 20,000 users is a rise of exactly 0.001
        return rise > 0 and rise >= self.min_delta - 1e-9 or (rise == 0 and ndcg > best_ndcg)

    def update(self, entry: EpochLog, model) -> None:
        if not entry.validation:
            self.result.best_epoch = entry.epoch
            return
        key = (entry.validation["hr@10"], entry.validation["ndcg@10"])
        if self.better(*key):
            self.best_key, self.best_weights, self.waited = key, model.get_weights(), 0
            if self.optimizer is not None:
                self.best_optimizer = [np.array(v.numpy()) for v in self.optimizer.variables]
            self.result.best_epoch, self.result.best_validation = entry.epoch, entry.validation
            self.result.best_round = (entry.round, entry.rounds)
            return
        self.waited += 1
        if self.patience and self.waited >= self.patience:
            log.info("early stop at epoch %d%s: best validation hr@10 %.4f at epoch %d", entry.epoch,
                     f" round {entry.round}/{entry.rounds}" if entry.rounds > 1 else "", self.best_key[0],
                     self.result.best_epoch)
            self.finished = True


def _state(model, optimizer, config: TrainConfig, stage: str, epoch: int, result: TrainResult,
           search: EarlyStopping, data: dict, finished: bool):
    from .checkpoint import TrainState

    return TrainState(
        stage=stage, epoch=epoch, config=config.to_dict(), history=list(result.history),
        best_epoch=result.best_epoch, best_validation=result.best_validation, best_key=search.best_key,
        waited=search.waited, model_variables=[np.asarray(v.numpy()) for v in model.variables],
        optimizer_variables=[np.asarray(v.numpy()) for v in optimizer.variables],
        best_weights=search.best_weights, finished=finished, data=data, best_optimizer=search.best_optimizer,
    )


def _restore(model, optimizer, state) -> None:
    for variables, values, what in ((model.variables, state.model_variables, "model"),
                                    (optimizer.variables, state.optimizer_variables, "optimizer")):
        if len(variables) != len(values) or any(v.shape != a.shape for v, a in zip(variables, values)):
            raise ConfigError(f"checkpoint does not fit this model's {what} variables")
        for variable, value in zip(variables, values):
            variable.assign(value)


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
