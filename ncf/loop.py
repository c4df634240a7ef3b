"""The training loop of one stage: fresh negatives every epoch, large batches, early stopping on validation.

Each epoch's examples are built in numpy a chunk at a time (`sampling.epoch_chunks`), so memory grows with
the data, not with the epoch. One process hands each chunk to the graph and runs it as calls of several
XLA-compiled steps in a graph loop, with `optimizers.LazyAdam` updating only the embedding rows a batch
touches, so a sample's cost does not grow with the tables. Several replicas read the chunks through
`tf.data`, one slice of every global batch each (`distribute`), with Keras' dense Adam. Validation ranks the
same seeded candidates every round, so the curve moves only because the model does; a long epoch validates
in rounds (`TrainConfig.validate_every`), and early stopping counts rounds. Given a seed, two runs produce
the same weights. A long epoch logs a progress line every `PROGRESS_SECONDS`, and one when a stop is
requested. What runs around a stage (pretraining, calibration, the refit) is `stages`.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import closing
from typing import Callable

import numpy as np

from .checkpoint import TrainState, data_key
from .config import TrainConfig
from .dataset import Dataset
from .distribute import agree, sharded_batches
from .errors import ConfigError, Interrupted
from .evaluation import Candidates, evaluate_candidates
from .export import keras_logits
from .history import EpochLog, TrainResult
from .prefetch import ahead
from .sampling import NegativeSampler, epoch_chunks, positives_per_chunk

log = logging.getLogger(__name__)

#: Seconds between progress lines inside an epoch: an epoch of a large data set lasts minutes, and its log
#: must not stay silent that long.
PROGRESS_SECONDS = 30.0
#: Examples one call into the compiled graph trains on, as several steps in a graph loop: Python and the
#: host-to-graph round trip are paid once per call, not once per step. `should_stop` is polled between calls,
#: a fraction of a second apart.
STEP_CALL_EXAMPLES = 1 << 18


class Progress:
    """Where a long epoch stands: a log line every `PROGRESS_SECONDS`, and at a stop request, so the log of a
    long job is never silent (`progress stage=mf epoch=1/60 examples=... samples_per_s=... epoch_eta_s=...`).
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


def lazy(config: TrainConfig, strategy) -> bool:
    """Whether `LazyAdam` trains (it applies the embeddings' L2 itself), or Keras' Adam (the layers do);
    `stages.fit` has made several replicas' config say adam."""
    return config.optimizer == "lazy_adam" and strategy.num_replicas_in_sync == 1


def build(dataset: Dataset, config: TrainConfig, strategy):
    """A fresh model of `config.model` for the data's tables, its embeddings' L2 where the optimiser wants it."""
    from .models import build_model

    return build_model(config.model, dataset.n_users, dataset.n_items, factors=config.factors,
                       mlp_layers=config.mlp_layers, dropout=config.dropout, l2=config.l2,
                       embedding_l2=0.0 if lazy(config, strategy) else config.l2)


def make_optimizer(model, config: TrainConfig, strategy):
    """`LazyAdam` in one process, Keras' Adam across replicas, built on the model's variables."""
    import keras

    from .models import embedding_tables
    from .optimizers import LazyAdam

    if lazy(config, strategy):
        # A table of up to two batches' rows is updated whole: row by row saves nothing on a table that small.
        optimizer = LazyAdam(config.learning_rate, row_l2=config.l2, penalised=embedding_tables(model),
                             whole_rows=2 * config.batch_size)
    else:
        optimizer = keras.optimizers.Adam(config.learning_rate)
    optimizer.build(model.trainable_variables)
    return optimizer


def epoch_trainer(model, optimizer, strategy, batch_size: int):
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
    lazy_adam = isinstance(optimizer, LazyAdam)

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
        if not lazy_adam:  # Keras' Adam
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
                if lazy_adam and id(v) in lookups and optimizer.row_wise(v)}
    return _chunked_trainer(replica_step, batch_size, row_wise)


def _chunked_trainer(replica_step, batch_size: int, row_wise: set[str]):
    """One process: a chunk's arrays go to the graph once, and each call runs several steps in a graph loop,
    every step compiled with XLA (lookups, MLP and Adam fused). For the inputs whose tables `LazyAdam` updates
    row by row (`row_wise`) the loop, outside XLA, finds which of each batch's lookups share an id
    (`tf.unique`, see `optimizers`)."""
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


def train_stage(dataset: Dataset, config: TrainConfig, *, sampler: NegativeSampler, validation: Candidates | None,
                report: Callable[[EpochLog], None], strategy, should_stop: Callable[[], bool] | None = None,
                model=None, checkpoint=None, resume: TrainState | None = None, stage: str | None = None,
                initial=None) -> TrainResult:
    """Trains one model (a pretraining stage, the model itself, or a refit) for up to `config.epochs`, and
    returns it holding the best round's weights and optimiser state.

    `model` is trained as given, else a fresh one is built and `initial` sets its start (a warm start).
    `resume` (what `checkpoint.resumable` found) continues after its epoch; `checkpoint` saves after every
    epoch, so a stop loses at most the epoch under way.
    """
    stage = stage or config.model  # what epoch lines and checkpoints call this run: the kind, or "refit"

    with strategy.scope():
        built = model is None
        if built:
            model = build(dataset, config, strategy)
        optimizer = make_optimizer(model, config, strategy)
        if built and initial is not None and resume is None:
            initial(model, optimizer)
    train = epoch_trainer(model, optimizer, strategy, config.batch_size)
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

    On large data one epoch is hundreds of millions of samples, and early stopping that waits `patience`
    whole epochs after the best one, then refits, would spend most of a job confirming that nothing improves;
    rounds keep its cost in samples, whatever the data's size."""
    return max(1, -(-samples // validate_every)) if validate_every else 1


def _rounds_left(config: TrainConfig, epoch: int, r: int, rounds: int) -> int:
    return (config.epochs - epoch) * rounds + rounds - r


def _end_round(search: EarlyStopping, model, validation, strategy, report, stage: str, epoch: int, epochs: int,
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
    few users per round on a large data set (several rounds an epoch) ends the search instead of prolonging it.
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
           search: EarlyStopping, data: dict, finished: bool) -> TrainState:
    return TrainState(
        stage=stage, epoch=epoch, config=config.to_dict(), history=list(result.history),
        best_epoch=result.best_epoch, best_validation=result.best_validation, best_key=search.best_key,
        waited=search.waited, model_variables=[np.asarray(v.numpy()) for v in model.variables],
        optimizer_variables=[np.asarray(v.numpy()) for v in optimizer.variables],
        best_weights=search.best_weights, finished=finished, data=data, best_optimizer=search.best_optimizer,
    )


def _restore(model, optimizer, state: TrainState) -> None:
    for variables, values, what in ((model.variables, state.model_variables, "model"),
                                    (optimizer.variables, state.optimizer_variables, "optimizer")):
        if len(variables) != len(values) or any(v.shape != a.shape for v, a in zip(variables, values)):
            raise ConfigError(f"checkpoint does not fit this model's {what} variables")
        for variable, value in zip(variables, values):
            variable.assign(value)
