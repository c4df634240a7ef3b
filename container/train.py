"""`train`: SageMaker's training contract, and the same job run locally.

SageMaker runs `train` with no arguments: everything comes from `/opt/ml` (or `SAGEMAKER_BASE_DIR`). Given
arguments (`train --ratings FILE --model-dir DIR --set epochs=5`), it builds the same `TrainJob` from them
and runs the same code. Exit code 0 means Completed; on failure `output/failure` holds the reason (its first
1024 characters become the job's FailureReason) and the exit code says which kind of failure it was.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

from ncf.errors import ArtifactError, ClusterError, ConfigError, DataError, Interrupted, NCFError, UnknownIdError

from .model_channel import load_previous
from .train_config import TrainJob
from .paths import SageMakerPaths
from .quiet import import_tensorflow

log = logging.getLogger("container.train")

#: The one place exceptions become exit codes; failure files start with the same label.
EXIT_CODES = {ConfigError: 2, DataError: 3, UnknownIdError: 3, ArtifactError: 4, ClusterError: 5, Interrupted: 143}


def exit_code(error: BaseException) -> int:
    for kind, code in EXIT_CODES.items():
        if isinstance(error, kind):
            return code
    return 1


def failure_reason(error: BaseException) -> str:
    labels = {ConfigError: "Bad hyperparameter or configuration", DataError: "Bad input data",
              UnknownIdError: "Bad input data", ArtifactError: "Cannot write or read the model",
              ClusterError: "Hosts of the job cannot train together", Interrupted: "Stopped"}
    label = next((text for kind, text in labels.items() if isinstance(error, kind)), "Internal error")
    return f"{label}: {error}"


class StopFlag:
    """Set by SIGTERM (StopTrainingJob, spot interruption); training polls it every few steps (under a second).

    Reading a channel cannot poll: a Pipe-mode FIFO whose writer stalls blocks in `read` until data comes, and
    SageMaker kills the container 120 s after SIGTERM with no failure file. Inside `interrupting()` the
    handler raises instead, which ends the blocked read (Python retries a read that a signal interrupts only
    when the handler returns). It raises `_StopRequested`, a BaseException, so that no reader's
    `except Exception` can take it for a damaged file; the block turns it into `Interrupted`."""

    def __init__(self):
        self._event = threading.Event()
        self._raise = False

    def __call__(self) -> bool:
        return self._event.is_set()

    def install(self) -> None:
        def handler(signum, frame):
            log.warning("SIGTERM received: stopping within a few steps; the last checkpoint is kept")
            self._event.set()
            if self._raise:
                self._raise = False
                raise _StopRequested
        signal.signal(signal.SIGTERM, handler)

    @contextlib.contextmanager
    def interrupting(self):
        """A SIGTERM inside the block raises `Interrupted` at once (one received before it, on entry)."""
        if self():
            raise Interrupted("stopped by request before reading the channels")
        self._raise = True
        try:
            yield
        except _StopRequested:
            raise Interrupted("stopped by request while reading the channels") from None
        finally:
            self._raise = False


class _StopRequested(BaseException):
    """SIGTERM inside `StopFlag.interrupting`: passes through `except Exception` to the block's end."""


def run(job: TrainJob, should_stop=None) -> dict:
    """Read the channels, train, evaluate, and write the model folder and outputs. Returns the metrics."""
    from ncf.checkpoint import Checkpointer
    from ncf.dataset import prepare
    from ncf.distribute import agree
    from ncf.training import fit

    from .channels import read_channel
    from .cluster import strategy_for
    from .report import TensorBoardWriter

    cluster = job.cluster
    sharded = sorted(c.name for c in job.channels.values() if c.distribution == "ShardedByS3Key")
    if cluster.size > 1 and sharded:
        raise ConfigError(f"channel(s) {', '.join(sharded)} use S3DistributionType=ShardedByS3Key: every host must "
                          "build the same vocabulary and split from the whole data set; use FullyReplicated")
    strategy = strategy_for(cluster)  # before TensorFlow runs anything else in this process
    hp = job.hyperparameters
    clock = PhaseClock()
    # Several hosts stop together inside training (the request goes through the all-reduce); one that left
    # between phases alone would leave the others waiting in a collective.
    stop_point = _stop_point(should_stop if cluster.size == 1 else None)
    previous = load_previous(job.warm_start) if job.warm_start is not None else None
    if previous is not None:
        from ncf.warmstart import inherited

        hp = replace(hp, train=inherited(hp.train, previous, hp.given))
        job = replace(job, hyperparameters=hp)  # what the outputs and the model's metadata say was used
    with getattr(should_stop, "interrupting", contextlib.nullcontext)():  # a stalled Pipe read stops too
        parts = {name: read_channel(channel, hp.columns) for name, channel in job.channels.items()}
    clock.lap("read")
    stop_point("after reading the channels")
    dataset = prepare(parts["train"], test_k=hp.test_k, validation_k=hp.validation_k, min_rating=hp.min_rating,
                      validation=parts.get("validation"), test=parts.get("test"),
                      known_users=None if previous is None else previous.users,
                      known_items=None if previous is None else previous.items)
    del parts  # the raw ids and timestamps: as large as the indexed data, and no longer needed
    item_metadata = _item_metadata(job, previous, dataset.items)  # before training: a bad table fails at once
    clock.lap("prepare")
    stop_point("after preparing the data")
    log.info("data: %s", json.dumps(dataset.statistics()))
    initial = None
    if previous is not None:
        from ncf.warmstart import initialiser, rows_kept

        initial = initialiser(previous, dataset.users, dataset.items)
        log.info("warm start from %s (%s): rows kept %s", job.warm_start, previous.kind,
                 json.dumps(rows_kept(dataset.users, dataset.items, previous)))

    listeners = [lambda e: log.info("%s", e.line())]
    if job.tensorboard_dir is not None and cluster.is_chief:
        listeners.append(TensorBoardWriter(job.tensorboard_dir))
    checkpoint = Checkpointer(job.checkpoint_dir, f"ncf-{cluster.current_host}") if job.checkpoint_dir else None
    with _peers_lost(cluster):
        if cluster.size > 1:
            _check_same_data(strategy, cluster, dataset)
        result = fit(dataset, hp.train, lambda e: [listen(e) for listen in listeners],
                     checkpoint=checkpoint, should_stop=should_stop, strategy=strategy, initial=initial)
        clock.lap("train")
        stop_point("after training, before evaluation (the last checkpoint is kept)")
        metrics = _evaluate_and_save(job, dataset, result, clock, stop_point, item_metadata) if cluster.is_chief \
            else {}
        if cluster.size > 1:
            agree(strategy, [0.0])  # workers leave only after the chief wrote the model: local mode stops
            # every container when the first one exits
    return metrics


def _item_metadata(job: TrainJob, previous, items):
    """The model's item metadata: the `items` channel's table, else the warm start's previous model's carried
    over to the new vocabulary, else None."""
    if job.items is not None:
        from .channels import read_items_channel

        return read_items_channel(job.items, items)
    if previous is None or previous.item_metadata is None:
        return None
    from ncf.warmstart import carried_metadata

    metadata = carried_metadata(previous, items)
    log.info("items: the previous model's metadata carried over (columns %s); %s metadata-only", metadata.describe(),
             f"{len(metadata.extra_ids):,}")
    return metadata


def _stop_point(should_stop):
    """Between phases, a stop request ends the job (exit 143) instead of waiting for evaluation and export:
    SageMaker kills the container 120 s after SIGTERM, and each phase of a 23M-interaction job but training,
    which polls the flag itself, ends well within that (docs/benchmarks.md, Scale)."""
    def check(where: str) -> None:
        if should_stop is not None and should_stop():
            raise Interrupted(f"stopped by request {where}")
    return check


def _check_same_data(strategy, cluster, dataset) -> None:
    from ncf.distribute import gather

    fingerprints = gather(strategy, float(dataset.fingerprint()))
    if len(set(fingerprints.tolist())) > 1:
        raise ClusterError(f"the hosts read different training data (data fingerprints by host: "
                           f"{dict(zip(cluster.hosts, fingerprints.astype(int).tolist()))}); every host must "
                           "receive the whole train channel: use S3DistributionType=FullyReplicated")


_TF_MESSAGE_FRAME = ("Graph execution error:", "Detected at node ", 'File "', "[[{{node ")


@contextlib.contextmanager
def _peers_lost(cluster):
    """A collective that fails (a peer died or timed out) becomes a `ClusterError` naming the hosts."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as e:
        if cluster.size == 1:
            raise
        # TensorFlow's message: "Graph execution error:", "Detected at node N defined at ...:", the Python
        # stack as `File "..."` lines, the cause, then "[[{{node N}}]]". Only the cause tells the user anything.
        detail = " ".join(line for line in map(str.strip, (e.message or "").splitlines())
                          if line and not line.startswith(_TF_MESSAGE_FRAME))
        raise ClusterError(f"lost contact with another host of {', '.join(cluster.hosts)} ({type(e).__name__}): "
                           f"{detail[:400]}; the first error is in the log of the host that stopped") from e


class PhaseClock:
    """Seconds spent in each phase of the job (read, prepare, train, evaluate, export): logged as one
    `timing:` line and kept in metrics.json, so a user sees where a long job's time went."""

    def __init__(self):
        import time

        self._now = time.perf_counter
        self._last = self._now()
        self.seconds: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = self._now()
        self.seconds[phase] = round(now - self._last, 3)
        self._last = now


def _evaluate_and_save(job: TrainJob, dataset, result, clock: PhaseClock, stop_point=lambda where: None,
                       item_metadata=None) -> dict:
    """The chief's part: test metrics (`ncf.evaluation.test_metrics`), the model folder, and the outputs."""
    from ncf import artifacts
    from ncf.defaults import RESOLVED
    from ncf.evaluation import TestSample, test_metrics
    from ncf.inference import NumpyScorer
    from ncf.models import export_weights
    from ncf.retrieval_quality import with_first_stage
    from ncf.training import keras_logits, to_artifact

    from .report import write_outputs

    hp = job.hyperparameters
    scorer = NumpyScorer(hp.train.model, export_weights(result.model))
    sample = TestSample(hp.test_users, hp.full_ranking_users, seed=0)
    report = test_metrics(keras_logits(result.model), scorer.all_items, dataset, result.calibration,
                          hp.threshold, sample)
    test, popularity = report["test"], report["popularity"]
    if not report["candidate_users"]["evaluated"]:
        log.warning("no test row can be ranked against sampled items (users need more than test_k=%d "
                    "interactions and 99 unseen items): the model is trained and saved without those test "
                    "metrics", hp.test_k)
    for protocol in ("candidate_users", "full_ranking_users"):
        counts = report[protocol]
        if 0 < counts["evaluated"] < counts["of"]:
            log.info("%s: %d of %d test users (sampled with seed %d)", protocol, counts["evaluated"],
                     counts["of"], counts["seed"])
    verdict = {"validation": result.against_popularity, "test": report["against_popularity"]}
    metrics = {
        "protocol": "loo-99" if hp.test_k == 1 else f"leave-last-{hp.test_k}, 99 negatives per positive",
        "threshold": hp.threshold,
        "calibration": {**result.calibration.to_dict(), **report["calibration"]},
        "validation": result.best_validation,
        "best_epoch": result.best_epoch,
        # a refit trains whole epochs: with several validation rounds an epoch, a little past the chosen round
        "best_round": {"round": result.best_round[0], "of": result.best_round[1]},
        "test": test,
        "popularity": popularity,
        "against_popularity": verdict,
        "candidate_users": report["candidate_users"],
        "full_ranking_users": report["full_ranking_users"],
        "train_samples_per_s": result.throughput(),
        "data": dataset.statistics(),
        "seconds": clock.seconds,
    }
    for name, values in (("test", test), ("popularity", popularity)):
        if values:
            print(" ".join(f"{name}:{k}={v:.4f}" for k, v in values.items()), flush=True)
    for split, judged in verdict.items():
        if judged:
            print(f"{split}:popularity_margin={judged['margin']:.4f} {split}:popularity_margin_se="
                  f"{judged['margin_se']:.4f} {split}:beats_popularity={int(judged['beats_popularity'])}", flush=True)

    clock.lap("evaluate")
    stop_point("after evaluation, before the model was written")
    artifact = replace(to_artifact(result, dataset, metrics, extra={"threshold": hp.threshold}),
                       item_metadata=item_metadata)
    artifact, metrics["retrieval"] = with_first_stage(artifact, dataset, sample)  # a large catalogue's (#34)
    artifacts.save(job.model_dir, artifact, keras_model=result.model)
    clock.lap("export")
    log.info("timing: %s", " ".join(f"{phase}_s={seconds:.1f}" for phase, seconds in clock.seconds.items()))
    try:
        used = {**hp.to_dict(), **{key: getattr(result.config, key) for key in RESOLVED}}  # auto's values
        write_outputs(job.output_data_dir, metrics, used, result.history)
    except OSError as e:
        raise ArtifactError(f"cannot write to {e.filename or job.output_data_dir}: {e.strerror}") from e
    log.info("model written to %s", job.model_dir)
    return metrics


def _local_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train", description="Train locally exactly as a SageMaker training job does. "
        "Without arguments, read the job from /opt/ml (or $SAGEMAKER_BASE_DIR).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ratings", type=Path, help="the train channel: a file or folder of interactions")
    src.add_argument("--movielens", help="download a MovieLens set from GroupLens: ml-latest-small, ml-100k, ...")
    p.add_argument("--movielens-url", help="a mirror of GroupLens' movielens folder")
    p.add_argument("--movielens-dir", type=Path, help=f"the MovieLens cache (default: ${MOVIELENS_DIR_ENV}, else "
                   "~/.cache/ncf/movielens); a folder already holding ml-latest-small/ratings.csv etc. is read as "
                   "it is, without a download")
    p.add_argument("--validation", type=Path, help="optional validation channel")
    p.add_argument("--test", type=Path, help="optional test channel")
    p.add_argument("--items", type=Path, help="the items channel: a table of item metadata (CSV or Parquet, a file "
                   "or folder) kept in the model folder; --movielens brings the set's movies along unless given")
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--output-dir", type=Path, help="metrics, curve, hyperparameters (default: MODEL_DIR/../output)")
    p.add_argument("--checkpoint-dir", type=Path, help="save every epoch here and resume from it")
    p.add_argument("--warm-start", type=Path, help="a previous model folder (or a folder holding its model.tar.gz) "
                   "to start from: incremental training, as SageMaker's 'model' channel gives it")
    p.add_argument("--hyperparameters", type=Path, help="a hyperparameters.json to start from")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a hyperparameter, written as in hyperparameters.json (repeatable; every key: docs/training.md)")
    return p


#: The MovieLens cache folder when `--movielens-dir` is not given (the benchmarks read the same variable).
MOVIELENS_DIR_ENV = "NCF_MOVIELENS_DIR"


def _local_job(argv: Sequence[str], environ: Mapping[str, str]) -> TrainJob:
    args = _local_parser().parse_args(argv)
    raw: dict = json.loads(args.hyperparameters.read_text()) if args.hyperparameters else {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        raw[key.strip()] = value
    ratings, items = args.ratings, args.items
    if args.movielens:
        from ncf import movielens

        cache = args.movielens_dir or (Path(environ[MOVIELENS_DIR_ENV]) if environ.get(MOVIELENS_DIR_ENV) else None)
        ratings = movielens.download(args.movielens, cache,
                                     **({"base_url": args.movielens_url} if args.movielens_url else {}))
        if items is None:
            items = movielens.items_file(args.movielens, cache)
    return TrainJob.local(ratings, args.model_dir, raw, output_dir=args.output_dir, checkpoint_dir=args.checkpoint_dir,
                          validation=args.validation, test=args.test, warm_start=args.warm_start, items=items)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    environ = os.environ if environ is None else environ
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import_tensorflow(environ)
    stop = StopFlag()
    stop.install()
    failure_file = None if argv else SageMakerPaths.from_env(environ).failure
    if failure_file is not None:
        with contextlib.suppress(OSError):
            failure_file.unlink(missing_ok=True)  # an earlier run's: this run writes its own, or none on success
    try:
        job = _local_job(argv, environ) if argv else TrainJob.from_paths(SageMakerPaths.from_env(environ), environ)
        run(job, should_stop=stop)
        return 0
    except BaseException as error:  # noqa: BLE001 - every failure must reach the failure file
        if isinstance(error, SystemExit):
            raise
        if not isinstance(error, NCFError):
            log.error("%s", "".join(traceback.format_exception(error)))
        reason = failure_reason(error)
        log.error("%s", reason)
        if failure_file is not None:
            _write_failure(failure_file, reason)
        return exit_code(error)


def _write_failure(path: Path, reason: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(reason[:1024 * 16] + "\n", encoding="utf-8")
    except OSError as e:
        log.error("cannot write the failure file %s: %s", path, e)


def entry_point() -> None:
    sys.exit(main())
