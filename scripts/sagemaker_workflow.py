"""The AWS side: data to S3, a training job, a real-time endpoint and a batch transform, all with this image.

    .venv-aws/bin/python scripts/sagemaker_workflow.py upload --bucket B
    .venv-aws/bin/python scripts/sagemaker_workflow.py train --image URI --role ARN --train s3://B/ncf/data/train/
    .venv-aws/bin/python scripts/sagemaker_workflow.py deploy --image URI --role ARN --model-data s3://.../model.tar.gz
    .venv-aws/bin/python scripts/sagemaker_workflow.py deploy --image URI --role ARN --multi-model \
        --model-data s3://B/ncf/models/ --target-model tenant-a.tar.gz --target-model tenant-b.tar.gz
    .venv-aws/bin/python scripts/sagemaker_workflow.py transform --image URI --role ARN --model-data ... --users u.jsonl

Built on the SageMaker Python SDK v3: training goes through `ModelTrainer`; hosting and batch transform send
the API's own requests through the SDK's session clients, which in local mode (`--local`) are the SDK's
`LocalSession` running the same image on the local docker engine (docker compose). The requests are built by
small functions here so that tests can read them. It runs from `.venv-aws` (scripts/setup.sh): the SDK needs
protobuf < 7, TensorFlow 2.21 protobuf 7, and the image never needs the SDK.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from container.metric_definitions import METRIC_DEFINITIONS  # noqa: E402  (plain data, no TensorFlow)
from container.serve_config import BATCH_TIMEOUT_MAX  # noqa: E402  (plain Python, no numpy)

log = logging.getLogger("sagemaker_workflow")

#: What batch transform sends: one JSON object per line, many lines per request (the container's JSON Lines codec).
JSON_LINES = "application/jsonlines"
#: CreateTransformJob's BatchStrategy, as the API spells it (the container's SAGEMAKER_BATCH_STRATEGY and
#: /execution-parameters say MULTI_RECORD and SINGLE_RECORD; the API rejects those spellings).
MULTI_RECORD, SINGLE_RECORD = "MultiRecord", "SingleRecord"
MB = 1024 * 1024


class WorkflowError(Exception):
    """A bad argument or a failed AWS step, said in one line."""


# ---------------------------------------------------------------------------------------------- data

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


# ---------------------------------------------------------------------------------------------- training

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


# ---------------------------------------------------------------------------------------------- hosting

def model_request(name: str, image: str, model_data: str, role: str, environment: dict | None = None) -> dict:
    return {"ModelName": name, "ExecutionRoleArn": role,
            "PrimaryContainer": {"Image": image, "ModelDataUrl": model_data, "Environment": environment or {}}}


def endpoint_config_request(name: str, model: str, instance_type: str, instance_count: int = 1) -> dict:
    return {"EndpointConfigName": name, "ProductionVariants": [{
        "VariantName": "AllTraffic", "ModelName": model, "InstanceType": instance_type,
        "InitialInstanceCount": instance_count}]}


def endpoint_request(name: str, config: str) -> dict:
    return {"EndpointName": name, "EndpointConfigName": config}


@dataclass(frozen=True)
class Batching:
    """How a transform groups an input file's lines into requests, chosen from the file (`batching`).

    MultiRecord packs up to MaxPayloadInMB of lines (1 MB at the least) into one request: right for
    recommend, similar-item and scoring lines, whose worst case per byte (`{"user":1}` asking k=1000) the
    container sizes the payload it advertises on. A fold-in line costs a whole solve (100 steps of its items
    and their negatives through the model: 10 ms to 0.3 s a line) in as few as 14 bytes, so 1 MB of 3-item
    fold-ins (33,201 lines) was a 413 of which the first 9,398 fit in 300 s: no payload the API allows
    holds few enough of them. SingleRecord sends one line per request instead, which the container answers
    within any timeout (a 1,000-item fold-in is well under a second), at one HTTP round trip a line.

    Attributes:
        strategy: `MULTI_RECORD` or `SINGLE_RECORD`.
        max_payload_mb: MaxPayloadInMB: at least the longest line (a record over it fails the job).
        longest_line: bytes of the file's longest line.
        fold_ins: lines that fold items in (`"items"`).
    """

    strategy: str
    max_payload_mb: int
    longest_line: int = 0
    fold_ins: int = 0


def batching(lines: Path, strategy: str = "auto", max_payload_mb: int = 1) -> Batching:
    """`strategy` auto: SingleRecord when any line of `lines` (JSON Lines) folds items in, else MultiRecord;
    MaxPayloadInMB `max_payload_mb` raised to the longest line's size. Reads the file once, a line at a time;
    a line that is not JSON is left to the container, which answers its error in its place."""
    longest = fold_ins = 0
    with open(lines, "rb") as f:
        for line in f:
            longest = max(longest, len(line))
            if b'"items"' in line:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                fold_ins += isinstance(record, dict) and "items" in record
    if strategy == "auto":
        strategy = SINGLE_RECORD if fold_ins else MULTI_RECORD
    return Batching(strategy={"multi": MULTI_RECORD, "single": SINGLE_RECORD}.get(strategy, strategy),
                    max_payload_mb=max(max_payload_mb, -(-longest // MB), 1), longest_line=longest,
                    fold_ins=fold_ins)


def transform_request(name: str, model: str, input_s3: str, output_s3: str, instance_type: str,
                      max_payload_mb: int = 1, concurrent: int = 1, timeout_s: int = BATCH_TIMEOUT_MAX,
                      strategy: str = MULTI_RECORD) -> dict:
    """SplitType=Line: one output line per input line, in order; `strategy` MultiRecord packs many lines into
    a request, SingleRecord sends one (fold-ins: `Batching`).

    The invocation timeout is set twice to the same value: `ModelClientConfig.InvocationsTimeoutInSeconds`
    (how long SageMaker waits; 600 s when unset) and the container's `SAGEMAKER_MODEL_SERVER_TIMEOUT` (how
    long gunicorn lets a worker answer, and what the container sizes the payloads it accepts and advertises
    on). The default payload, 1 MB, is the smallest the API takes, so never more than the container
    advertises on `/execution-parameters` for any model; raise it to that value (`--max-payload-mb`)."""
    if not 1 <= timeout_s <= BATCH_TIMEOUT_MAX:
        raise WorkflowError(f"--invocations-timeout must be 1 to {BATCH_TIMEOUT_MAX} s, got {timeout_s}")
    if not 1 <= max_payload_mb <= 100 or max_payload_mb * concurrent > 100:
        raise WorkflowError(f"--max-payload-mb must be 1 to 100, and times MaxConcurrentTransforms ({concurrent}) "
                            f"at most 100; got {max_payload_mb}")
    if strategy not in (MULTI_RECORD, SINGLE_RECORD):
        raise WorkflowError(f"BatchStrategy must be {MULTI_RECORD} or {SINGLE_RECORD}, got {strategy!r}")
    return {
        "TransformJobName": name, "ModelName": model, "BatchStrategy": strategy,
        "MaxPayloadInMB": max_payload_mb, "MaxConcurrentTransforms": concurrent,
        "ModelClientConfig": {"InvocationsTimeoutInSeconds": timeout_s},
        "Environment": {"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(timeout_s)},
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_s3}},
                           "ContentType": JSON_LINES, "SplitType": "Line", "CompressionType": "None"},
        "TransformOutput": {"S3OutputPath": output_s3, "Accept": JSON_LINES, "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": 1},
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def wait_until(sm, waiter: str, describe, status_key: str, timeout: float, what: str,
               poll_s: float | None = None, **name) -> dict:
    """Waits with boto3's own waiter (`endpoint_in_service`, `transform_job_completed_or_stopped`: their delays,
    their failure states) for at most `timeout` seconds, and returns the final description. A failure says the
    resource's FailureReason; running out of time says the status it was left in. Local mode's client has no
    waiters: its calls return once the container answers, so one description tells."""
    from botocore.exceptions import WaiterError

    if hasattr(sm, "get_waiter"):
        w = sm.get_waiter(waiter)
        delay = w.config.delay if poll_s is None else poll_s
        try:
            w.wait(**name, WaiterConfig={"Delay": delay, "MaxAttempts": max(1, math.ceil(timeout / max(delay, 1)))})
        except WaiterError as e:
            state = e.last_response or {}
            status = state.get(status_key, "unknown")
            if "Max attempts exceeded" in str(e):
                raise WorkflowError(f"{what} still {status} after {timeout:.0f} s") from None
            raise WorkflowError(f"{what} ended {status}: {state.get('FailureReason', 'no reason given')}") from None
    return describe()


def invoke(runtime, endpoint: str, body: dict) -> Any:
    """The endpoint's JSON answer; a 4xx from the container (ModelError) comes back as {"error": ...}."""
    from botocore.exceptions import ClientError

    try:
        response = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                           Accept="application/json", Body=json.dumps(body))
    except ClientError as e:
        return {"error": e.response.get("Error", {}).get("Message", str(e))}
    payload = response["Body"].read()
    try:
        return json.loads(payload)
    except ValueError:
        return {"error": f"not JSON: {payload[:200]!r}"}


def demo_requests(user, items: list) -> dict[str, dict]:
    """One request of each kind `/invocations` answers (README, "HTTP API")."""
    return {"score pairs": {"instances": [{"user": user, "item": item} for item in items[:3]]},
            "recommend": {"user": user, "k": 5},
            "similar items": {"item": items[0], "k": 5}}


def deploy(sm, runtime, image: str, role: str, model_data: str, instance_type: str, user, items: list,
           keep: bool = False, timeout: float = 1800, hosting: Hosting | None = None, s3=None) -> dict[str, dict]:
    """Creates model, endpoint config and endpoint; invokes it once per request kind; deletes all three.
    `hosting`: serverless, async or with data capture (`Hosting`); async invocations go through `s3`."""
    hosting = hosting or Hosting(instance_type=instance_type, image=image)
    name = unique("ncf")
    sm.create_model(**model_request(name, image, model_data, role, hosting.environment()))
    sm.create_endpoint_config(**hosting.endpoint_config(name, name))
    sm.create_endpoint(**endpoint_request(name, name))
    answers = {}
    try:
        state = wait_until(sm, "endpoint_in_service", lambda: sm.describe_endpoint(EndpointName=name),
                           "EndpointStatus", timeout, f"endpoint {name}", EndpointName=name)
        if state["EndpointStatus"] != "InService":
            raise WorkflowError(f"endpoint {name} is {state['EndpointStatus']}: "
                                f"{state.get('FailureReason', 'no reason given')}")
        for kind, body in demo_requests(user, items).items():
            if hosting.async_output:
                where = f"{hosting.async_output.rstrip('/')}/inputs/{name}/{kind.replace(' ', '-')}.json"
                answers[kind] = invoke_async(runtime, s3, name, body, where, hosting.timeout_s)
            else:
                answers[kind] = invoke(runtime, name, body)
            print(f"{kind}: {json.dumps(body)}\n  -> {json.dumps(answers[kind])[:400]}", flush=True)
    finally:
        if keep:
            print(f"endpoint {name} kept; delete it with: aws sagemaker delete-endpoint --endpoint-name {name}")
        else:
            sm.delete_endpoint(EndpointName=name)
            sm.delete_endpoint_config(EndpointConfigName=name)
            sm.delete_model(ModelName=name)
            print(f"endpoint {name}, its config and model deleted", flush=True)
    return answers


# ---------------------------------------------------------------------------------------------- multi-model

#: What `serve` reads to start as a multi-model endpoint (AWS's own images read the same variable).
MULTI_MODEL_ENVIRONMENT = {"SAGEMAKER_MULTI_MODEL": "true"}


def multi_model_request(name: str, image: str, prefix: str, role: str, environment: dict | None = None) -> dict:
    """CreateModel for a multi-model endpoint: Mode MultiModel, ModelDataUrl the S3 prefix under which every
    model is a model.tar.gz, which SageMaker downloads when an invocation names it (TargetModel: its key
    below the prefix) and loads through the container's `POST /models`."""
    if not prefix.startswith("s3://") or not prefix.endswith("/") or len(prefix) <= len("s3://x/"):
        raise WorkflowError(f"--model-data {prefix!r}: a multi-model endpoint reads its models from an s3:// prefix "
                            "ending in '/' (s3://BUCKET/ncf/models/), each one a model.tar.gz below it")
    return {"ModelName": name, "ExecutionRoleArn": role,
            "PrimaryContainer": {"Image": image, "Mode": "MultiModel", "ModelDataUrl": prefix,
                                 "Environment": {**(environment or {}), **MULTI_MODEL_ENVIRONMENT}}}


def target_models(targets: Sequence[str]) -> list[str]:
    """The TargetModels to invoke: keys relative to the prefix (`tenant-a/model.tar.gz`), as InvokeEndpoint
    takes them (1 to 1024 characters, no leading '/')."""
    if not targets:
        raise WorkflowError("--multi-model needs at least one --target-model: a model.tar.gz's key below --model-data")
    for target in targets:
        if not 1 <= len(target) <= 1024 or target.startswith("/") or not target.strip():
            raise WorkflowError(f"--target-model {target!r}: a key relative to --model-data, such as "
                                "tenant-a/model.tar.gz (1 to 1024 characters, no leading '/')")
    return list(targets)


def invoke_target(runtime, endpoint: str, target: str, body: dict) -> Any:
    """`invoke` of one model of a multi-model endpoint (its first invocation waits for SageMaker to load it)."""
    from botocore.exceptions import ClientError

    try:
        response = runtime.invoke_endpoint(EndpointName=endpoint, TargetModel=target, ContentType="application/json",
                                           Accept="application/json", Body=json.dumps(body))
    except ClientError as e:
        return {"error": e.response.get("Error", {}).get("Message", str(e))}
    payload = response["Body"].read()
    try:
        return json.loads(payload)
    except ValueError:
        return {"error": f"not JSON: {payload[:200]!r}"}


def deploy_multi_model(sm, runtime, image: str, role: str, prefix: str, targets: Sequence[str], user, items: list,
                       hosting: "Hosting", keep: bool = False, timeout: float = 1800) -> dict[str, dict[str, dict]]:
    """A multi-model endpoint over the models under `prefix`: creates model, endpoint config and endpoint,
    invokes each of `targets` once per request kind, deletes all three. Returns `{target: {kind: answer}}`."""
    targets = target_models(targets)
    name = unique("ncf-mme")
    request = multi_model_request(name, image, prefix, role, hosting.environment())  # fails before any request
    sm.create_model(**request)
    sm.create_endpoint_config(**hosting.endpoint_config(name, name))
    sm.create_endpoint(**endpoint_request(name, name))
    answers: dict[str, dict[str, dict]] = {}
    try:
        state = wait_until(sm, "endpoint_in_service", lambda: sm.describe_endpoint(EndpointName=name),
                           "EndpointStatus", timeout, f"endpoint {name}", EndpointName=name)
        if state["EndpointStatus"] != "InService":
            raise WorkflowError(f"endpoint {name} is {state['EndpointStatus']}: "
                                f"{state.get('FailureReason', 'no reason given')}")
        for target in targets:
            answers[target] = {}
            for kind, body in demo_requests(user, items).items():
                answers[target][kind] = invoke_target(runtime, name, target, body)
                print(f"{target}, {kind}: {json.dumps(body)}\n  -> {json.dumps(answers[target][kind])[:400]}",
                      flush=True)
    finally:
        if keep:
            print(f"endpoint {name} kept; delete it with: aws sagemaker delete-endpoint --endpoint-name {name}")
        else:
            sm.delete_endpoint(EndpointName=name)
            sm.delete_endpoint_config(EndpointConfigName=name)
            sm.delete_model(ModelName=name)
            print(f"endpoint {name}, its config and model deleted", flush=True)
    return answers


def _multi_model_arguments(q) -> None:
    """deploy's multi-model endpoint (`deploy_multi_model`)."""
    q.add_argument("--multi-model", action="store_true",
                   help="a multi-model endpoint: --model-data is an s3:// prefix holding many model.tar.gz files, "
                        "each loaded when an invocation names it (--target-model); on instances, in real time")
    q.add_argument("--target-model", action="append", default=[], metavar="KEY",
                   help="--multi-model: a model.tar.gz's key below --model-data to invoke (repeat for several)")


# ---------------------------------------------------------------------------------------------- hosting modes

#: Serverless Inference, as SageMaker documents it (ProductionVariantServerlessConfig; "Invoke a serverless
#: endpoint"): memory in 1 GB steps, at most 200 concurrent invocations an endpoint, 4 MB each way, 60 s to
#: answer, no GPU, and no data capture.
SERVERLESS_MEMORY_MB = tuple(range(1024, 6144 + 1, 1024))
SERVERLESS_MAX_CONCURRENCY = 200
SERVERLESS_PAYLOAD_MB = 4
SERVERLESS_TIMEOUT_S = 60
#: Asynchronous inference: requests from S3 up to 1 GB, InvocationTimeoutSeconds 900 s unless the invocation
#: says up to 3600, MaxConcurrentInvocationsPerInstance 1 to 1000.
ASYNC_PAYLOAD_MB = 1024
ASYNC_TIMEOUT_S = 900
ASYNC_TIMEOUT_MAX_S = 3600
ASYNC_MAX_CONCURRENCY = 1000
#: What data capture records as text rather than base64 (CaptureContentTypeHeader): the types `serve` answers
#: in, each answer in its request's own type (container/codecs.py `answer_type`), so that Model Monitor finds
#: one encoding on both sides of a capture.
CAPTURE_JSON_TYPES = ("application/json", "application/jsonlines")
CAPTURE_CSV_TYPES = ("text/csv",)


@dataclass(frozen=True)
class Hosting:
    """How `deploy` hosts the model: on instances in real time (the default), serverless (`serverless_mb`) or
    asynchronously (`async_output`), with data capture or not; checked against SageMaker's documented limits
    before any request, and what the container is told of it (`environment`).

    Attributes:
        instance_type: real time and async: the instance type.
        serverless_mb: MemorySizeInMB of a serverless endpoint (1024 to 6144, in 1 GB steps).
        max_concurrency: serverless: MaxConcurrency (1 to 200, default 5); async:
            MaxConcurrentInvocationsPerInstance (1 to 1000, default: SageMaker's choice).
        async_output: async: the S3OutputPath (failures go to its `failures/`, demo requests to its `inputs/`).
        timeout_s: async: InvocationTimeoutSeconds of the invocations and the container's worker timeout alike.
        capture: the DestinationS3Uri of data capture, or None.
        capture_percent: InitialSamplingPercentage (1 to 100).
        image: the image the model runs (a GPU variant is refused for serverless).
    """

    instance_type: str = "ml.m5.large"
    serverless_mb: int | None = None
    max_concurrency: int | None = None
    async_output: str | None = None
    timeout_s: int = ASYNC_TIMEOUT_S
    capture: str | None = None
    capture_percent: int = 100
    image: str = ""

    def __post_init__(self):
        if self.serverless_mb is not None:
            if self.serverless_mb not in SERVERLESS_MEMORY_MB:
                raise WorkflowError(f"--serverless {self.serverless_mb}: memory is 1024 to 6144 MB in 1024 MB steps "
                                    f"({', '.join(map(str, SERVERLESS_MEMORY_MB))})")
            if self.async_output:
                raise WorkflowError("--serverless and --async-output exclude each other: async endpoints run on "
                                    "instances")
            if self.capture:
                raise WorkflowError("--data-capture is not available on serverless endpoints")
            if not 1 <= (self.max_concurrency or 1) <= SERVERLESS_MAX_CONCURRENCY:
                raise WorkflowError(f"--max-concurrency must be 1 to {SERVERLESS_MAX_CONCURRENCY} for a serverless "
                                    f"endpoint, got {self.max_concurrency}")
            tag = self.image.rpartition("/")[2].partition("@")[0].partition(":")[2]
            if tag.endswith("gpu") or "-gpu-" in tag:
                raise WorkflowError(f"--serverless: {self.image} is a GPU image, and serverless endpoints have no GPU: "
                                    "deploy the cpu or serve image")
        elif self.async_output:
            split_s3(self.async_output)
            if not 1 <= self.timeout_s <= ASYNC_TIMEOUT_MAX_S:
                raise WorkflowError(f"--invocations-timeout must be 1 to {ASYNC_TIMEOUT_MAX_S} s, got {self.timeout_s}")
            if not 1 <= (self.max_concurrency or 1) <= ASYNC_MAX_CONCURRENCY:
                raise WorkflowError(f"--max-concurrency must be 1 to {ASYNC_MAX_CONCURRENCY} for an async endpoint, "
                                    f"got {self.max_concurrency}")
        elif self.max_concurrency is not None:
            raise WorkflowError("--max-concurrency applies to --serverless and --async-output endpoints")
        if self.capture:
            split_s3(self.capture)
            if not 1 <= self.capture_percent <= 100:
                raise WorkflowError(f"--capture-percent must be 1 to 100, got {self.capture_percent}")

    @property
    def kind(self) -> str:
        """The container's `NCF_ENDPOINT_TYPE`."""
        return "serverless" if self.serverless_mb else "async" if self.async_output else "realtime"

    def environment(self) -> dict[str, str]:
        """What the model tells the container: its endpoint type (the body and answer limits, the deadline); an
        async one also the timeout its invocations give, and 1 GB bodies."""
        if self.kind == "async":
            return {"NCF_ENDPOINT_TYPE": "async", "SAGEMAKER_MODEL_SERVER_TIMEOUT": str(self.timeout_s),
                    "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(ASYNC_PAYLOAD_MB)}
        return {"NCF_ENDPOINT_TYPE": self.kind} if self.kind != "realtime" else {}

    def endpoint_config(self, name: str, model: str) -> dict:
        """CreateEndpointConfig's request: a ServerlessConfig in place of instances, or an AsyncInferenceConfig
        beside them, and the DataCaptureConfig."""
        if self.serverless_mb:
            request = {"EndpointConfigName": name, "ProductionVariants": [{
                "VariantName": "AllTraffic", "ModelName": model, "ServerlessConfig": {
                    "MemorySizeInMB": self.serverless_mb, "MaxConcurrency": self.max_concurrency or 5}}]}
        else:
            request = endpoint_config_request(name, model, self.instance_type)
        if self.async_output:
            output = self.async_output.rstrip("/")
            request["AsyncInferenceConfig"] = {"OutputConfig": {"S3OutputPath": output,
                                                                "S3FailurePath": f"{output}/failures"}}
            if self.max_concurrency:
                request["AsyncInferenceConfig"]["ClientConfig"] = {
                    "MaxConcurrentInvocationsPerInstance": self.max_concurrency}
        if self.capture:
            request["DataCaptureConfig"] = data_capture_config(self.capture, self.capture_percent)
        return request


def data_capture_config(destination: str, percent: int = 100) -> dict:
    """DataCaptureConfig: requests and answers under `destination`, JSON and CSV captured as text."""
    return {"EnableCapture": True, "InitialSamplingPercentage": percent, "DestinationS3Uri": destination,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": list(CAPTURE_JSON_TYPES),
                                         "CsvContentTypes": list(CAPTURE_CSV_TYPES)}}


def invoke_async(runtime, s3, endpoint: str, body: dict, input_uri: str, timeout_s: int,
                 wait_s: float = 1800, poll_s: float = 5) -> Any:
    """An async endpoint's JSON answer to `body`: put at `input_uri`, invoked with InvokeEndpointAsync, read
    back from the OutputLocation SageMaker names once it is there; a failure comes back as {"error": ...}
    with what SageMaker wrote to the FailureLocation."""
    bucket, key = split_s3(input_uri)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode(), ContentType="application/json")
    response = runtime.invoke_endpoint_async(EndpointName=endpoint, InputLocation=input_uri,
                                             ContentType="application/json", Accept="application/json",
                                             InvocationTimeoutSeconds=timeout_s)
    places = [(response["OutputLocation"], False)] + (
        [(response["FailureLocation"], True)] if response.get("FailureLocation") else [])
    deadline = time.monotonic() + wait_s
    while True:
        for uri, failed in places:
            found = _s3_text(s3, uri)
            if found is not None:
                if failed:
                    return {"error": found}
                try:
                    return json.loads(found)
                except ValueError:
                    return {"error": f"not JSON: {found[:200]!r}"}
        if time.monotonic() > deadline:
            return {"error": f"no answer at {response['OutputLocation']} after {wait_s:.0f} s"}
        time.sleep(poll_s)


def _s3_text(s3, uri: str) -> str | None:
    from botocore.exceptions import ClientError

    bucket, key = split_s3(uri)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
            return None
        raise


def transform(sm, s3, image: str, role: str, model_data: str, users_file: Path, input_s3: str, output_s3: str,
              instance_type: str, max_payload_mb: int = 1, invocations_timeout: int = BATCH_TIMEOUT_MAX,
              timeout: float = 6 * 3600, strategy: str = "auto") -> str:
    """Uploads a JSON Lines file of requests, runs a batch transform over it, and returns its output."""
    batch = batching(users_file, strategy, max_payload_mb)
    if batch.max_payload_mb > max_payload_mb:
        log.info("MaxPayloadInMB %d: the longest line is %d bytes", batch.max_payload_mb, batch.longest_line)
    if batch.strategy == SINGLE_RECORD and strategy == "auto":
        log.info("BatchStrategy %s: %d line(s) fold items in, a whole solve each", SINGLE_RECORD, batch.fold_ins)
    job = transform_request("-", "-", input_s3, output_s3, instance_type, batch.max_payload_mb,
                            timeout_s=invocations_timeout, strategy=batch.strategy)  # fails before any upload
    bucket, key = split_s3(input_s3.rstrip("/") + "/" + users_file.name)
    s3.upload_file(str(users_file), bucket, key)
    name = unique("ncf-batch")
    sm.create_model(**model_request(name, image, model_data, role))
    try:
        sm.create_transform_job(**{**job, "TransformJobName": name, "ModelName": name})
        state = wait_until(sm, "transform_job_completed_or_stopped",
                           lambda: sm.describe_transform_job(TransformJobName=name), "TransformJobStatus", timeout,
                           f"transform job {name}", TransformJobName=name)
        if state["TransformJobStatus"] != "Completed":  # the waiter's success includes Stopped
            raise WorkflowError(f"transform job {name} ended {state['TransformJobStatus']}: "
                                f"{state.get('FailureReason', 'no reason given')}")
    finally:
        sm.delete_model(ModelName=name)
    out_bucket, out_key = split_s3(output_s3.rstrip("/") + "/" + users_file.name + ".out")
    return s3.get_object(Bucket=out_bucket, Key=out_key)["Body"].read().decode()


def split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise WorkflowError(f"expected s3://BUCKET/KEY, got {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


# ---------------------------------------------------------------------------------------------- sessions

def sessions(local: bool):
    """(SDK session, sagemaker client, runtime client, s3 client). Local mode needs no AWS account."""
    import boto3

    if local:
        from sagemaker.core.local import LocalSession

        session = LocalSession()
        session.config = {"local": {"local_code": True}}
        return session, session.sagemaker_client, session.sagemaker_runtime_client, None
    from sagemaker.core.helper.session_helper import Session

    boto_session = boto3.Session()
    if boto_session.region_name is None:
        raise WorkflowError("no AWS region: set AWS_REGION or run 'aws configure'")
    session = Session(boto_session=boto_session)
    return session, boto_session.client("sagemaker"), boto_session.client("sagemaker-runtime"), \
        boto_session.client("s3")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("upload", help="put MovieLens (or a ratings file) where the train channel reads it")
    up.add_argument("--bucket", required=True)
    up.add_argument("--prefix", default="ncf/data")
    src = up.add_mutually_exclusive_group()
    src.add_argument("--movielens", default=None, help="ml-latest-small (default), ml-100k, ml-1m, ml-25m")
    src.add_argument("--ratings", type=Path, help="a local ratings file instead")

    def image_role(q):
        q.add_argument("--image", required=True,
                       help="the image, by digest: REPOSITORY@sha256:... (the last line scripts/build_and_push.sh "
                            "prints); a tag works too, but names whatever was pushed under it last")
        q.add_argument("--role", required=True, help="the SageMaker execution role ARN")
        q.add_argument("--local", action="store_true", help="run on the local docker engine (SDK local mode)")

    tr = sub.add_parser("train", help="a training job with this image")
    image_role(tr)
    tr.add_argument("--train", required=True, help="s3:// prefix (or, with --local, file://DIR) of the train channel")
    tr.add_argument("--validation")
    tr.add_argument("--test")
    tr.add_argument("--instance-type", default="ml.m5.xlarge")
    tr.add_argument("--instance-count", type=int, default=1)
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a hyperparameter (README)")
    tr.add_argument("--output-path", help="s3:// prefix for model.tar.gz and output.tar.gz")
    tr.add_argument("--checkpoint-s3", help="s3:// prefix synced with /opt/ml/checkpoints (resume after spot stops)")
    tr.add_argument("--spot", action="store_true", help="managed spot training")
    tr.add_argument("--max-run", type=int, default=24 * 3600, help="seconds")
    tr.add_argument("--max-wait", type=int, help="seconds, spot only: run time plus waiting for capacity")
    tr.add_argument("--no-wait", action="store_true", help="start the job and return")
    tr.add_argument("--warm-start-from", metavar="JOB_NAME_OR_MODEL",
                    help="incremental training: start from a previous training job's model.tar.gz (its name), or "
                         "from a model.tar.gz at s3:// (file:// with --local); passed as the 'model' channel")
    tr.add_argument("--items", metavar="S3_URI_OR_FILE",
                    help="item metadata (CSV or Parquet, docs/training.md#item-metadata) as the 'items' channel: an "
                         "s3:// prefix or object, or a local file, uploaded beside the train channel (PREFIX/items/)")
    tr.add_argument("--local-root", type=Path, default=Path("local-sagemaker"),
                    help="--local: the folder local mode works in; the model lands in its compressed_artifacts/")

    for command, text in (("deploy", "a real-time endpoint: invoke it, then delete it"),
                          ("transform", "a batch transform over a JSON Lines file of users")):
        q = sub.add_parser(command, help=text)
        image_role(q)
        q.add_argument("--model-data", required=True, help="model.tar.gz: s3:// (or a local path with --local)")
        q.add_argument("--instance-type", default="ml.m5.large")
        q.add_argument("--user", default="1", help="a raw user id for the demo requests (JSON: 1 or \"u1\")")
        q.add_argument("--items", default="[1, 2, 3]", help="raw item ids for the demo requests, JSON list")
    sub.choices["deploy"].add_argument("--keep", action="store_true", help="leave the endpoint running")
    _hosting_arguments(sub.choices["deploy"])
    _multi_model_arguments(sub.choices["deploy"])
    tf = sub.choices["transform"]
    tf.add_argument("--users", type=Path, required=True,
                    help='JSON Lines: a request per line, {"user": 1, "k": 10} or any other kind /invocations takes')
    tf.add_argument("--input-s3", help="s3:// prefix to upload --users to")
    tf.add_argument("--output-s3", help="s3:// prefix for the output")
    tf.add_argument("--max-payload-mb", type=int, default=1,
                    help="MaxPayloadInMB (default 1, the smallest; up to what the container's "
                         "/execution-parameters advertises for the model; raised to the longest line's size)")
    tf.add_argument("--batch-strategy", choices=["auto", "multi", "single"], default="auto",
                    help="how lines are grouped into requests: auto (default) sends one line per request "
                         "(SingleRecord) when any line folds items in, else many (MultiRecord)")
    tf.add_argument("--invocations-timeout", type=int, default=BATCH_TIMEOUT_MAX,
                    help=f"seconds per request, for SageMaker and the container alike "
                         f"(default {BATCH_TIMEOUT_MAX}, the most a transform job allows)")
    return p


def _hosting_arguments(q) -> None:
    """deploy's hosting modes (`Hosting`)."""
    q.add_argument("--serve-image", metavar="URI",
                   help="the image the endpoint runs (default: --image, the full image, which serves too); the "
                        "serve-only image (scripts/build_image.sh --target serve, no TensorFlow) is a fifth of the "
                        "size and starts faster, which a serverless endpoint pays at every cold start")
    mode = q.add_mutually_exclusive_group()
    mode.add_argument("--serverless", type=int, metavar="MEMORY_MB",
                      help=f"a serverless endpoint of this memory ({SERVERLESS_MEMORY_MB[0]} to "
                           f"{SERVERLESS_MEMORY_MB[-1]} MB in 1024 MB steps) instead of instances: "
                           f"{SERVERLESS_PAYLOAD_MB} MB each way, {SERVERLESS_TIMEOUT_S} s per request, no GPU, "
                           "no data capture")
    mode.add_argument("--async-output", metavar="S3URI",
                      help="an asynchronous endpoint writing answers under this s3:// prefix (failures under its "
                           f"failures/): requests from S3 up to {ASYNC_PAYLOAD_MB} MB, up to "
                           f"{ASYNC_TIMEOUT_MAX_S} s each; the demo requests are put under its inputs/")
    q.add_argument("--max-concurrency", type=int,
                   help=f"serverless: MaxConcurrency (1 to {SERVERLESS_MAX_CONCURRENCY}, default 5); async: "
                        f"MaxConcurrentInvocationsPerInstance (1 to {ASYNC_MAX_CONCURRENCY}, default SageMaker's)")
    q.add_argument("--invocations-timeout", type=int, default=ASYNC_TIMEOUT_S,
                   help=f"async: seconds per request, for SageMaker (InvocationTimeoutSeconds) and the container "
                        f"alike (default {ASYNC_TIMEOUT_S}, at most {ASYNC_TIMEOUT_MAX_S})")
    q.add_argument("--data-capture", metavar="S3URI",
                   help="capture requests and answers under this s3:// prefix (DataCaptureConfig), for Model Monitor")
    q.add_argument("--capture-percent", type=int, default=100, help="InitialSamplingPercentage (default 100)")


def _hosting(args) -> Hosting:
    hosting = Hosting(instance_type="local" if args.local else args.instance_type, serverless_mb=args.serverless,
                      max_concurrency=args.max_concurrency, async_output=args.async_output,
                      timeout_s=args.invocations_timeout, capture=args.data_capture,
                      capture_percent=args.capture_percent, image=args.serve_image or args.image)
    if args.local and hosting.kind != "realtime":
        raise WorkflowError(f"a {hosting.kind} endpoint runs on SageMaker only; try its limits locally with "
                            f"NCF_ENDPOINT_TYPE={hosting.kind} (docs/aws.md)")
    return hosting


def _check_multi_model(args, hosting: Hosting) -> None:
    """What a multi-model deploy needs, checked before any request."""
    if not args.multi_model:
        raise WorkflowError("--target-model names a model of a multi-model endpoint: add --multi-model")
    if hosting.kind != "realtime" or args.local:
        raise WorkflowError("--multi-model endpoints run on SageMaker instances in real time: not with "
                            "--serverless, --async-output or --local (run the image locally with "
                            "SAGEMAKER_MULTI_MODEL=true instead: docs/aws.md)")
    multi_model_request("-", hosting.image, args.model_data, args.role)
    target_models(args.target_model)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except WorkflowError as e:
        print(f"sagemaker_workflow.py {args.command}: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command == "upload":
        import boto3

        print(upload_data(boto3.client("s3"), args.bucket, args.prefix, ratings_file(args.movielens, args.ratings)))
        return 0
    if not args.local and "@sha256:" not in args.image:
        print(f"note: --image {args.image} is a tag, not a digest: the job runs whatever the tag names when it "
              "starts (scripts/build_and_push.sh prints the digest)", file=sys.stderr)
    hosting = _hosting(args) if args.command == "deploy" else None  # its limits fail before any import or request
    if args.command == "deploy" and (args.multi_model or args.target_model):
        _check_multi_model(args, hosting)
    session, sm, runtime, s3 = sessions(args.local)
    if args.command == "train":
        channels = {n: v for n, v in (("train", args.train), ("validation", args.validation), ("test", args.test)) if v}
        if args.items:
            channels["items"] = items_channel(s3, args.items, args.train, args.local)
        if args.warm_start_from:
            channels["model"] = previous_model(sm, args.warm_start_from)
        spec = TrainSpec(image=args.image, role=args.role, channels=channels, instance_type=args.instance_type,
                         instance_count=args.instance_count, hyperparameters=parse_hyperparameters(args.set),
                         output_path=args.output_path, checkpoint_s3=args.checkpoint_s3, spot=args.spot,
                         max_run_seconds=args.max_run, max_wait_seconds=args.max_wait, local=args.local,
                         local_root=args.local_root)
        print(f"model: {train(spec, session, wait=not args.no_wait)}", flush=True)
        return 0
    user, items = json.loads(args.user), json.loads(args.items)
    instance_type = "local" if args.local else args.instance_type
    if args.command == "deploy" and args.multi_model:
        deploy_multi_model(sm, runtime, hosting.image, args.role, args.model_data, args.target_model, user, items,
                           hosting, keep=args.keep)
        return 0
    if args.command == "deploy":
        deploy(sm, runtime, hosting.image, args.role, args.model_data, instance_type, user, items, keep=args.keep,
               hosting=hosting, s3=s3)
        return 0
    if args.local:
        raise WorkflowError("transform runs on SageMaker; test the same requests locally with 'deploy --local' "
                            "and POST JSON Lines to the endpoint")
    if not (args.input_s3 and args.output_s3):
        raise WorkflowError("transform needs --input-s3 and --output-s3")
    print(transform(sm, s3, args.image, args.role, args.model_data, args.users, args.input_s3, args.output_s3,
                    instance_type, args.max_payload_mb, args.invocations_timeout, strategy=args.batch_strategy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
