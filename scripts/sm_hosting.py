"""How `deploy` hosts a model: on instances in real time, serverless, or async through S3, with data capture or not.

Each mode's documented SageMaker limits are checked before any request, and the container is told its mode.

A mode changes three things at once (the endpoint config, the container's environment, how a request is sent
and its answer read back), so they live together here rather than in the requests or the deploy steps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from scripts.sm_common import WorkflowError, split_s3
from scripts.sm_requests import data_capture_config, endpoint_config_request

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
