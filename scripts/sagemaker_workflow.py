"""The AWS side: data to S3, a training job, a real-time endpoint and a batch transform, all with this image.

    .venv-aws/bin/python scripts/sagemaker_workflow.py upload --bucket B
    .venv-aws/bin/python scripts/sagemaker_workflow.py train --image URI --role ARN --train s3://B/ncf/data/train/
    .venv-aws/bin/python scripts/sagemaker_workflow.py deploy --image URI --role ARN --model-data s3://.../model.tar.gz
    .venv-aws/bin/python scripts/sagemaker_workflow.py deploy --image URI --role ARN --multi-model \
        --model-data s3://B/ncf/models/ --target-model tenant-a.tar.gz --target-model tenant-b.tar.gz
    .venv-aws/bin/python scripts/sagemaker_workflow.py transform --image URI --role ARN --model-data ... --users u.jsonl

Built on the SageMaker Python SDK v3: training goes through `ModelTrainer`; hosting and batch transform send
the API's own requests through the SDK's session clients, which in local mode (`--local`) are the SDK's
`LocalSession` running the same image on the local docker engine (docker compose). It runs from `.venv-aws`
(scripts/setup.sh): the SDK needs protobuf < 7, TensorFlow 2.21 protobuf 7, and the image never needs the SDK.

This file is the command line; each step is a module beside it: scripts/sm_training.py (upload, train),
scripts/sm_requests.py (the API requests, built by small functions so that tests can read them),
scripts/sm_hosting.py (real-time, serverless, async, data capture), scripts/sm_endpoints.py (deploy, one
model or many), scripts/sm_batch.py (transform), scripts/sm_common.py (errors, waiting, clients).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from container.serve_config import BATCH_TIMEOUT_MAX  # noqa: E402  (plain Python, no numpy)
from scripts.sm_batch import transform  # noqa: E402
from scripts.sm_common import WorkflowError, sessions  # noqa: E402
from scripts.sm_endpoints import deploy, deploy_multi_model, local_model_data, target_models  # noqa: E402
from scripts.sm_hosting import (  # noqa: E402
    ASYNC_MAX_CONCURRENCY, ASYNC_PAYLOAD_MB, ASYNC_TIMEOUT_MAX_S, ASYNC_TIMEOUT_S, SERVERLESS_MAX_CONCURRENCY,
    SERVERLESS_MEMORY_MB, SERVERLESS_PAYLOAD_MB, SERVERLESS_TIMEOUT_S, Hosting)
# data_capture_config: tests/container/test_hosting_modes.py loads this file and reads it from here
from scripts.sm_requests import data_capture_config, multi_model_request  # noqa: E402,F401
from scripts.sm_training import (  # noqa: E402
    TrainSpec, items_channel, parse_hyperparameters, previous_model, ratings_file, train, upload_data)


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
        q.add_argument("--model-data", required=True,
                       help="model.tar.gz: s3://; with --local also file:// or a path (what train --local prints)")
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


def _multi_model_arguments(q) -> None:
    """deploy's multi-model endpoint (`deploy_multi_model`)."""
    q.add_argument("--multi-model", action="store_true",
                   help="a multi-model endpoint: --model-data is an s3:// prefix holding many model.tar.gz files, "
                        "each loaded when an invocation names it (--target-model); on instances, in real time")
    q.add_argument("--target-model", action="append", default=[], metavar="KEY",
                   help="--multi-model: a model.tar.gz's key below --model-data to invoke (repeat for several)")


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
    if args.command == "deploy" and args.local:
        args.model_data = local_model_data(args.model_data)  # the SDK's local mode takes file:// or s3:// only
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
