"""The API requests the workflow sends, built by small functions of their arguments so that a reader (and a
test) sees each one whole: CreateModel (one model, or a multi-model prefix), CreateEndpointConfig,
CreateEndpoint, the DataCaptureConfig and CreateTransformJob.

Each checks what SageMaker would refuse and says which flag was wrong, before any request is sent. How an
endpoint is hosted (serverless, async) is scripts/sm_hosting.py; this module only shapes the requests.
"""

from __future__ import annotations

from container.serve_config import BATCH_TIMEOUT_MAX  # plain Python, no numpy
from scripts.sm_common import WorkflowError


def model_request(name: str, image: str, model_data: str, role: str, environment: dict | None = None) -> dict:
    return {"ModelName": name, "ExecutionRoleArn": role,
            "PrimaryContainer": {"Image": image, "ModelDataUrl": model_data, "Environment": environment or {}}}


def endpoint_config_request(name: str, model: str, instance_type: str, instance_count: int = 1) -> dict:
    return {"EndpointConfigName": name, "ProductionVariants": [{
        "VariantName": "AllTraffic", "ModelName": model, "InstanceType": instance_type,
        "InitialInstanceCount": instance_count}]}


def endpoint_request(name: str, config: str) -> dict:
    return {"EndpointName": name, "EndpointConfigName": config}


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


#: What data capture records as text rather than base64 (CaptureContentTypeHeader): the types `serve` answers
#: in, each answer in its request's own type (container/codecs.py `answer_type`), so that Model Monitor finds
#: one encoding on both sides of a capture.
CAPTURE_JSON_TYPES = ("application/json", "application/jsonlines")
CAPTURE_CSV_TYPES = ("text/csv",)


def data_capture_config(destination: str, percent: int = 100) -> dict:
    """DataCaptureConfig: requests and answers under `destination`, JSON and CSV captured as text."""
    return {"EnableCapture": True, "InitialSamplingPercentage": percent, "DestinationS3Uri": destination,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": list(CAPTURE_JSON_TYPES),
                                         "CsvContentTypes": list(CAPTURE_CSV_TYPES)}}


#: What batch transform sends: one JSON object per line, many lines per request (the container's JSON Lines codec).
JSON_LINES = "application/jsonlines"
#: CreateTransformJob's BatchStrategy, as the API spells it (the container's SAGEMAKER_BATCH_STRATEGY and
#: /execution-parameters say MULTI_RECORD and SINGLE_RECORD; the API rejects those spellings).
MULTI_RECORD, SINGLE_RECORD = "MultiRecord", "SingleRecord"


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
