"""The training side of the AWS workflow: ratings to S3, the channels a job reads, and the job through `ModelTrainer`.

The channels are train, validation, test, `items` and a warm start's `model`; the job runs on SageMaker or on
the local docker engine.

Kept apart from hosting and batch because it is the only part that goes through the SDK's trainer rather than
the API's own requests, and the only one that reads the hyperparameters and MetricDefinitions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from container.metric_definitions import METRIC_DEFINITIONS  # plain data, no TensorFlow
from scripts.sm_common import WorkflowError, split_s3


def upload_data(s3, bucket: str, prefix: str, ratings: Path) -> str:
    """Puts a ratings file where `train` reads its train channel: `s3://BUCKET/PREFIX/train/<file name>`."""
    key = f"{prefix.strip('/')}/train/{ratings.name}"
    s3.upload_file(str(ratings), bucket, key)
    return f"s3://{bucket}/{prefix.strip('/')}/train/"


def ratings_file(movielens: str | None, ratings: Path | None) -> Path:
    if ratings is not None:
        if not ratings.is_file():
            raise WorkflowError(f"--ratings {ratings}: no such file")
        return ratings
    from ncf import movielens as ml  # the library's downloader, MD5-checked

    return ml.download(movielens or "ml-latest-small")


def parse_hyperparameters(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs; a VALUE that is JSON (`5`, `false`, `[64, 32]`) is sent as that value, which the SDK
    then `json.dumps` into the string SageMaker passes on (`"5"`, `"false"`, `"[64, 32]"`)."""
    hyperparameters = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WorkflowError(f"--set {item!r}: expected KEY=VALUE")
        try:
            hyperparameters[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            hyperparameters[key.strip()] = value
    return hyperparameters


@dataclass(frozen=True)
class TrainSpec:
    image: str
    role: str
    channels: dict[str, str]
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    hyperparameters: dict[str, Any] | None = None
    output_path: str | None = None
    checkpoint_s3: str | None = None
    spot: bool = False
    max_run_seconds: int = 24 * 3600
    max_wait_seconds: int | None = None
    base_job_name: str = "ncf"
    local: bool = False
    local_root: Path = Path("local-sagemaker")

    def __post_init__(self):
        if "train" not in self.channels:
            raise WorkflowError("the train channel is required (--train)")
        if self.instance_count < 1:
            raise WorkflowError(f"--instance-count must be >= 1, got {self.instance_count}")
        if self.spot and self.local:
            raise WorkflowError("--spot is for SageMaker, not --local")
        if self.max_wait_seconds is not None and not self.spot:
            raise WorkflowError("--max-wait applies to managed spot training only (add --spot)")
        if self.spot and (self.max_wait_seconds or self.max_run_seconds) < self.max_run_seconds:
            raise WorkflowError("--max-wait must be >= --max-run (SageMaker's rule for spot jobs)")


def model_trainer(spec: TrainSpec, session):
    """The SDK's `ModelTrainer` for this image, with the documented MetricDefinitions."""
    from sagemaker.core.shapes import MetricDefinition
    from sagemaker.core.training.configs import CheckpointConfig, Compute, OutputDataConfig, StoppingCondition
    from sagemaker.train import ModelTrainer
    from sagemaker.train.model_trainer import Mode

    stopping = StoppingCondition(max_runtime_in_seconds=spec.max_run_seconds)
    if spec.spot:
        stopping = StoppingCondition(max_runtime_in_seconds=spec.max_run_seconds,
                                     max_wait_time_in_seconds=spec.max_wait_seconds or spec.max_run_seconds)
    trainer = ModelTrainer(
        training_image=spec.image,
        role=spec.role,
        sagemaker_session=session,
        training_mode=Mode.LOCAL_CONTAINER if spec.local else Mode.SAGEMAKER_TRAINING_JOB,
        base_job_name=spec.base_job_name,
        compute=Compute(instance_type="local" if spec.local else spec.instance_type,
                        instance_count=spec.instance_count,
                        enable_managed_spot_training=True if spec.spot else None),
        stopping_condition=stopping,
        hyperparameters=spec.hyperparameters or {},
        local_container_root=str(spec.local_root.resolve()),
        **({"output_data_config": OutputDataConfig(s3_output_path=spec.output_path)} if spec.output_path else {}),
    )
    trainer = trainer.with_metric_definitions(
        [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in METRIC_DEFINITIONS])
    if spec.checkpoint_s3:
        trainer = trainer.with_checkpoint_config(CheckpointConfig(s3_uri=spec.checkpoint_s3))
    return trainer


def previous_model(sm, source: str) -> str:
    """Where the `model` channel reads a warm start from: `source` itself when it is a URI, else the
    model.tar.gz of the training job it names (which must have completed)."""
    if source.startswith(("s3://", "file://")):
        return source
    from botocore.exceptions import ClientError

    try:
        job = sm.describe_training_job(TrainingJobName=source)
    except ClientError as e:
        raise WorkflowError(f"--warm-start-from {source}: no such training job "
                            f"({e.response.get('Error', {}).get('Message', e)})") from None
    artifacts = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if job.get("TrainingJobStatus") != "Completed" or not artifacts:
        raise WorkflowError(f"--warm-start-from {source}: the job is {job.get('TrainingJobStatus')} and has no "
                            "model to start from")
    return artifacts


def items_channel(s3, source: str, train: str, local: bool) -> str:
    """Where the `items` channel reads item metadata from: an s3:// (or, locally, file://) URI as it is; a local
    file is uploaded beside the train channel (`s3://B/ncf/data/train/` -> `s3://B/ncf/data/items/<file name>`,
    `upload`'s layout), or in local mode mounted as it is."""
    if source.startswith(("s3://", "file://")):
        return source
    path = Path(source)
    if not path.is_file():
        raise WorkflowError(f"--items {source}: no such file")
    if local:
        return str(path.resolve())
    if not train.startswith("s3://"):
        raise WorkflowError(f"--items {source}: a local file is uploaded beside the train channel, which is not at "
                            f"s3:// ({train}); give --items s3://... instead")
    bucket, key = split_s3(train)
    parent = key.rstrip("/").rpartition("/")[0]
    key = f"{parent}/items/{path.name}" if parent else f"items/{path.name}"
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def content_type(channel: str, source: str) -> str:
    if channel == "model":
        return "application/x-sagemaker-model"
    return "application/x-parquet" if source.rstrip("/").endswith(".parquet") else "text/csv"


def train(spec: TrainSpec, session, wait: bool = True) -> str:
    """Starts the job, streams its logs until it ends, and returns where the model landed."""
    from sagemaker.core.training.configs import InputData

    trainer = model_trainer(spec, session)
    trainer.train(input_data_config=[
        InputData(channel_name=name, data_source=source, content_type=content_type(name, source))
        for name, source in spec.channels.items()], wait=wait, logs=wait)
    if spec.local:
        return str(Path(trainer.local_container_root) / "compressed_artifacts" / "model.tar.gz")
    job = trainer._latest_training_job  # the SDK keeps the job it created here; no public accessor in 3.27
    job.refresh()
    if job.model_artifacts is None or not getattr(job.model_artifacts, "s3_model_artifacts", None):
        return f"(job {job.training_job_name} is {job.training_job_status}; no model yet)"
    return job.model_artifacts.s3_model_artifacts
