"""Batch transform: how a file of requests is grouped into invocations, and the job that runs over it.

`batching` reads the grouping from the JSON Lines file itself; `transform` uploads it, runs the job and brings
its output back.

Apart from hosting because a transform's limits are its own: the payload per request, the strategy and the
timeout that both SageMaker and the container are told.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from container.serve_config import BATCH_TIMEOUT_MAX  # plain Python, no numpy
from scripts.sm_common import WorkflowError, split_s3, unique, wait_until
from scripts.sm_requests import MULTI_RECORD, SINGLE_RECORD, model_request, transform_request

log = logging.getLogger("sagemaker_workflow")  # the name the CLI's log lines carry

MB = 1024 * 1024


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
