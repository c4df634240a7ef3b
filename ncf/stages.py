"""`fit`: a whole training job's stages around the loop: validation candidates, the pretraining stages, the
search itself, calibration, the verdict against popularity, and the refit.

The loop (`loop.train_stage`) trains one model and early-stops it; which models train, in what order, on
which data, and what is kept of each is decided here, once, so the container, the benchmarks and a notebook
all train the same job. Each stage checkpoints in a file of its own, so a resumed job skips what finished.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

import numpy as np

from . import calibration
from .arrays import unique
from .calibration import Calibration
from .checkpoint import resumable
from .config import TrainConfig
from .dataset import Dataset
from .defaults import BATCH_SIZES, MIN_STEPS_PER_EPOCH, resolved
from .distribute import default_strategy
from .errors import ConfigError
from .evaluation import against_popularity, draw_candidates, popularity_scorer, score_candidates
from .export import keras_logits
from .history import EpochLog, TrainResult
from .loop import build, train_stage
from .sampling import NegativeSampler

log = logging.getLogger(__name__)

#: Users whose validation rows are ranked every round: the per-round cost stays that of this many users'
#: `1 + validation_negatives` scored pairs however many users the data has.
VALIDATION_USERS = 20_000


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
        should_stop: polled every few steps (`loop.STEP_CALL_EXAMPLES` examples; every step with several
            replicas); when it returns True, training raises `Interrupted` at once, and the last checkpoint
            (the end of the previous epoch) is what a later run resumes from.
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
    config = replace(config, pretrain=_pretraining(config, validation, validation is not None and searched is dataset,
                                                   initial, _per_row(len(searched.train), searched)))
    run = dict(sampler=sampler, validation=validation, report=report, should_stop=should_stop, strategy=strategy,
               initial=initial)

    if config.pretrain != "none":
        result = _pretrained(searched, config, checkpoint=checkpoint, **run)
    else:
        result = train_stage(searched, config, checkpoint=checkpoint,
                             resume=resumable(checkpoint, config.model, config, searched), **run)
    scores = None if validation is None else score_candidates(keras_logits(result.model), validation)
    result.calibration = _calibrate(scores, config)
    if validation is not None:
        result.against_popularity = against_popularity(
            scores, score_candidates(popularity_scorer(searched.popularity), validation))
        if result.against_popularity:
            _warn_unless_learned(result.against_popularity, result, config, len(searched.train), searched.n_users)
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
        parts[kind] = train_stage(dataset, part, stage=name, checkpoint=part_checkpoint,
                                  resume=resumable(part_checkpoint, name, part, dataset), **run)
    final = config
    if config.pretrain == "mf":
        final = replace(config, learning_rate=config.learning_rate * config.finetune_rate)
    name = stage or config.model
    resume = resumable(checkpoint, name, final, dataset)
    strategy = run["strategy"]
    with strategy.scope():
        model = build(dataset, final, strategy)
    if resume is None and config.pretrain == "mf":
        neumf_from_mf(model, parts["mf"].model)
    elif resume is None:
        neumf_from_pretrained(model, parts["gmf"].model, parts["mlp"].model, config.alpha)
    # Only their epochs are needed from here: the stages' tables and moments are let go before NeuMF's
    # optimiser and training start, where a large job's memory peaks.
    history = [e for part in parts.values() for e in part.history]
    pretrained = {kind: part.best_epoch for kind, part in parts.items()}
    del parts
    result = train_stage(dataset, final, model=model, stage=name, checkpoint=checkpoint, resume=resume, **run)
    result.config = config  # what the job was given; `final` differs only in the rate the last stage ran at
    result.history = history + result.history
    result.pretrained = pretrained
    return result


def _per_row(pairs: int, dataset: Dataset) -> tuple[float, float]:
    """Training interactions per user and per item: what each embedding row learns from."""
    return pairs / max(dataset.n_users, 1), pairs / max(dataset.n_items, 1)


def _pretraining(config: TrainConfig, validation, every_user_validated: bool, initial,
                 per_row: tuple[float, float]) -> str:
    """The mode that trains: `pretrain`, or what `auto` chooses for this data (`config.PRETRAIN_MODES`): an MF
    start for NeuMF wherever validation can stop it, when validation held out every user (its cost is small)
    or when users or items have few interactions (where a NeuMF from random weights learns far less than one
    started from an MF); never under a warm start, whose weights it would replace."""
    if config.pretrain != "auto":
        return config.pretrain
    few = [f"{pairs:.1f} training interactions per {row}, under {bound}" for row, pairs, bound in
           (("user", per_row[0], SPARSE_USER_PAIRS), ("item", per_row[1], SPARSE_ITEM_PAIRS)) if pairs < bound]
    sparse = validation is not None and bool(few)
    chosen = "mf" if config.model == "neumf" and (every_user_validated or sparse) and initial is None else "none"
    if config.model == "neumf":
        if initial is not None:
            why = "a warm start keeps its weights"
        elif every_user_validated:
            why = "validation held out every user"
        elif sparse:
            why = " and ".join(few)
        elif few:
            why = f"{' and '.join(few)}, but no validation to stop an MF stage"
        else:
            why = (f"validation held out a sample of users, or none, and there are {per_row[0]:.1f} training "
                   f"interactions per user and {per_row[1]:.1f} per item, at least {SPARSE_USER_PAIRS} and "
                   f"{SPARSE_ITEM_PAIRS}")
        log.info("pretrain=auto: %s (%s)", chosen, why)
    return chosen


#: Training interactions per user under which a NeuMF started from random weights is likely to rank like
#: popularity, and `pretrain=auto` starts it from an MF: on the data-shape matrix's sparse-1m row (~6 a user)
#: NeuMF from random weights did not beat popularity, and started from an MF it came within the matrix's target
#: of the best tuned peer (`benchmarks/ab.py --shape sparse-1m`).
SPARSE_USER_PAIRS = 20
#: The same for items: on catalogue-100k-items (~3 an item) the MF start is a paired-bootstrap win over NeuMF
#: from random weights (`benchmarks/ab.py --shape catalogue-100k-items`); the 23M-interaction job, whose items
#: have hundreds each, keeps its time.
SPARSE_ITEM_PAIRS = 20


def _warn_unless_learned(verdict: dict, result: TrainResult, config: TrainConfig, train_pairs: int,
                         n_users: int) -> None:
    """A WARNING when the chosen model does not beat popularity on validation, naming the likely cause and
    what to try: the job still succeeds and ships its model, but nobody should serve it unawares."""
    if verdict["beats_popularity"]:
        log.info("validation: HR@10 %.4f against popularity's %.4f (margin %+.4f, standard error %.4f)",
                 verdict["hr@10"], verdict["popularity_hr@10"], verdict["margin"], verdict["margin_se"])
        return
    steps = -(-train_pairs * (1 + config.negatives) // config.batch_size)
    own = [e for e in result.history if e.stage == config.model]
    if steps < MIN_STEPS_PER_EPOCH and config.batch_size <= BATCH_SIZES[0]:
        smallest = ", the smallest auto chooses" if config.batch_size == BATCH_SIZES[0] else ""
        cause = (f"an epoch makes only {steps} optimiser steps even at batch_size={config.batch_size}{smallest}: "
                 "the data set is very small; try more epochs and patience, or a higher learning_rate")
    elif steps < MIN_STEPS_PER_EPOCH:
        cause = (f"an epoch makes only {steps} optimiser steps (batch_size={config.batch_size}): set a smaller "
                 "batch_size, or leave it at auto")
    elif config.model == "neumf" and config.pretrain == "none" and train_pairs < SPARSE_USER_PAIRS * n_users:
        cause = (f"few interactions per user ({train_pairs / max(n_users, 1):.1f} on average): a NeuMF started "
                 "from random weights learns little beyond popularity from so few; try model=mf, or pretrain=mf "
                 "(NeuMF started from an MF)")
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
    knows every user's latest training interaction.
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
        result = train_stage(merged, refit_config, stage="refit", checkpoint=stage_checkpoint,
                             resume=resumable(stage_checkpoint, "refit", refit_config, merged), **run)
    return TrainResult(model=result.model, config=config, history=chosen.history + result.history,
                       best_epoch=chosen.best_epoch, best_validation=chosen.best_validation,
                       calibration=chosen.calibration, optimizer=result.optimizer, pretrained=chosen.pretrained,
                       against_popularity=chosen.against_popularity, best_round=chosen.best_round)
