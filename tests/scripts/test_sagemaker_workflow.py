"""scripts/sagemaker_workflow.py against moto as a real server: the S3 layout `train` reads, and the exact
CreateTrainingJob / CreateModel / CreateEndpointConfig / CreateEndpoint / CreateTransformJob requests."""

import json

import pytest

from container.metric_definitions import METRIC_DEFINITIONS
from tests.scripts.aws import ROLE, body, workflow

# By digest, as scripts/build_and_push.sh prints it.
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ncf-sagemaker@sha256:" + "ab" * 32
BUCKET = "ncf-test"


@pytest.fixture
def aws(aws):
    """An emptied server holding one bucket."""
    aws.aws("s3api", "create-bucket", "--bucket", BUCKET)
    return aws


def ok(out):
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_upload_puts_the_ratings_where_the_train_channel_reads_them(aws, ratings_csv):
    printed = ok(workflow(aws, "upload", "--bucket", BUCKET, "--ratings", str(ratings_csv)))
    assert printed.strip().splitlines()[-1] == f"s3://{BUCKET}/ncf/data/train/"
    keys = [o["Key"] for o in aws.aws("s3api", "list-objects-v2", "--bucket", BUCKET)["Contents"]]
    assert keys == ["ncf/data/train/ratings.csv"]
    size = aws.aws("s3api", "head-object", "--bucket", BUCKET, "--key", keys[0])["ContentLength"]
    assert size == ratings_csv.stat().st_size


def test_a_training_job_request_carries_image_channels_hyperparameters_and_metric_definitions(aws):
    printed = ok(workflow(
        aws, "train", "--image", IMAGE, "--role", ROLE, "--train", f"s3://{BUCKET}/ncf/data/train/",
        "--instance-type", "ml.c5.2xlarge", "--instance-count", "2",
        "--set", "epochs=5", "--set", "mlp_layers=[64, 32]", "--set", "pretrain=false", "--set", "model=mf",
        "--output-path", f"s3://{BUCKET}/ncf/output", "--checkpoint-s3", f"s3://{BUCKET}/ncf/checkpoints",
        "--spot", "--max-run", "3600", "--max-wait", "7200"))
    [request] = aws.calls("CreateTrainingJob")
    assert request["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    assert request["RoleArn"] == ROLE
    # SageMaker's hyperparameters are strings; the SDK json.dumps every non-string value.
    assert request["HyperParameters"] == {"epochs": "5", "mlp_layers": "[64, 32]", "pretrain": "false",
                                          "model": "mf"}
    [channel] = request["InputDataConfig"]
    assert channel["ChannelName"] == "train"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/ncf/data/train/"
    assert channel["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "FullyReplicated"
    assert request["ResourceConfig"]["InstanceType"] == "ml.c5.2xlarge"
    assert request["ResourceConfig"]["InstanceCount"] == 2
    assert request["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/ncf/output"
    assert request["CheckpointConfig"] == {"S3Uri": f"s3://{BUCKET}/ncf/checkpoints",
                                           "LocalPath": "/opt/ml/checkpoints"}
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    name = request["TrainingJobName"]
    assert printed.strip().splitlines()[-1] == f"model: s3://{BUCKET}/ncf/output/{name}/output/model.tar.gz"


@pytest.mark.parametrize("args, message", [
    (["--max-wait", "7200"], "--max-wait applies to managed spot training only"),
    (["--spot", "--max-run", "7200", "--max-wait", "3600"], "--max-wait must be >= --max-run"),
    (["--set", "epochs"], "--set 'epochs': expected KEY=VALUE"),
    (["--instance-count", "0"], "--instance-count must be >= 1"),
])
def test_bad_training_arguments_fail_before_any_request(aws, args, message):
    out = workflow(aws, "train", "--image", IMAGE, "--role", ROLE, "--train", f"s3://{BUCKET}/x/", *args)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert aws.calls("CreateTrainingJob") == []
    assert "note:" not in out.stderr  # a digest needs no note


def test_an_image_given_by_tag_works_with_a_note_that_a_digest_pins_it(aws):
    tag = IMAGE.split("@")[0] + ":0123abcd"
    out = workflow(aws, "train", "--image", tag, "--role", ROLE, "--train", f"s3://{BUCKET}/x/", "--max-wait", "1")
    assert f"note: --image {tag} is a tag, not a digest" in out.stderr, out.stderr


def test_deploy_creates_invokes_each_kind_of_request_and_deletes_the_endpoint(aws):
    answers = [{"predictions": [{"score": 0.9, "like": True}]}, {"itemList": [{"itemId": 2, "score": 0.8}]},
               {"itemList": [{"itemId": 3, "score": 0.7}]}]
    aws.api("static/sagemaker/endpoint-results", {"region": "us-east-1", "results": [
        {"Body": json.dumps(a), "ContentType": "application/json"} for a in answers]})
    model_data = f"s3://{BUCKET}/ncf/output/job/output/model.tar.gz"
    printed = ok(workflow(aws, "deploy", "--image", IMAGE, "--role", ROLE, "--model-data", model_data,
                          "--instance-type", "ml.m5.large", "--user", "7", "--items", "[1, 2, 3]"))
    [model] = aws.calls("CreateModel")
    assert model["PrimaryContainer"]["Image"] == IMAGE and model["PrimaryContainer"]["ModelDataUrl"] == model_data
    assert model["ExecutionRoleArn"] == ROLE
    [config] = aws.calls("CreateEndpointConfig")
    assert config["ProductionVariants"] == [{"VariantName": "AllTraffic", "ModelName": model["ModelName"],
                                             "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]
    [endpoint] = aws.calls("CreateEndpoint")
    assert endpoint["EndpointConfigName"] == config["EndpointConfigName"]
    invocations = [json.loads(body(e)) for e in aws.requests() if e["url"].endswith("/invocations")]
    assert invocations == [{"instances": [{"user": 7, "item": 1}, {"user": 7, "item": 2}, {"user": 7, "item": 3}]},
                           {"user": 7, "k": 5}, {"item": 1, "k": 5}]
    for answer in answers:
        assert json.dumps(answer) in printed
    assert [c["EndpointName"] for c in aws.calls("DeleteEndpoint")] == [endpoint["EndpointName"]]
    assert len(aws.calls("DeleteEndpointConfig")) == 1 and len(aws.calls("DeleteModel")) == 1


def test_batch_transform_sends_json_lines_split_by_line_and_shows_the_output(aws, tmp_path):
    users = tmp_path / "users.jsonl"
    users.write_text('{"user": 1, "k": 3}\n{"user": 2, "k": 3}\n')
    # SageMaker writes <input file>.out under the output path; moto runs no container, so the test puts it there.
    output = '{"user": 1, "itemList": []}\n{"user": 2, "itemList": []}\n'
    (tmp_path / "out").write_text(output)
    aws.aws("s3api", "put-object", "--bucket", BUCKET, "--key", "ncf/batch-out/users.jsonl.out",
            "--body", str(tmp_path / "out"))
    printed = ok(workflow(aws, "transform", "--image", IMAGE, "--role", ROLE, "--model-data",
                          f"s3://{BUCKET}/m/model.tar.gz", "--users", str(users), "--input-s3",
                          f"s3://{BUCKET}/ncf/batch-in", "--output-s3", f"s3://{BUCKET}/ncf/batch-out"))
    [job] = aws.calls("CreateTransformJob")
    assert job["BatchStrategy"] == "MultiRecord"  # the API's spelling (it rejects the container's MULTI_RECORD)
    # SageMaker waits as long as the container's workers may take (its default, 600 s, is not what serve uses)
    assert job["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 3600}
    assert job["Environment"] == {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "3600"}
    assert job["MaxPayloadInMB"] == 1 and job["MaxConcurrentTransforms"] == 1  # never above what serve advertises
    assert job["TransformInput"]["SplitType"] == "Line"
    assert job["TransformInput"]["ContentType"] == "application/jsonlines"
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/ncf/batch-in"
    assert job["TransformOutput"] == {"S3OutputPath": f"s3://{BUCKET}/ncf/batch-out", "Accept": "application/jsonlines",
                                      "AssembleWith": "Line"}
    assert job["ModelName"] == aws.calls("CreateModel")[0]["ModelName"]
    uploaded = aws.aws("s3api", "list-objects-v2", "--bucket", BUCKET, "--prefix", "ncf/batch-in")["Contents"]
    assert [o["Key"] for o in uploaded] == ["ncf/batch-in/users.jsonl"]
    assert output.strip() in printed


def test_a_transform_takes_the_advertised_payload_and_one_timeout_for_sagemaker_and_the_container(aws, tmp_path):
    users = tmp_path / "users.jsonl"
    users.write_text('{"user": 1}\n')
    aws.aws("s3api", "put-object", "--bucket", BUCKET, "--key", "out/users.jsonl.out", "--body", str(users))
    ok(workflow(aws, "transform", "--image", IMAGE, "--role", ROLE, "--model-data", f"s3://{BUCKET}/m/model.tar.gz",
                "--users", str(users), "--input-s3", f"s3://{BUCKET}/in", "--output-s3", f"s3://{BUCKET}/out",
                "--max-payload-mb", "12", "--invocations-timeout", "1200"))
    [job] = aws.calls("CreateTransformJob")
    assert job["MaxPayloadInMB"] == 12
    assert job["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 1200}
    assert job["Environment"] == {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1200"}


def test_a_transform_of_fold_ins_sends_one_line_per_request_at_any_payload(aws, tmp_path):
    # A fold-in line costs a whole solve in as few as 14 bytes: 1 MB of 3-item fold-ins (33,201 lines) was one
    # MultiRecord request, a 413 (the first 9,398 fit in 300 s). SingleRecord: one line a request.
    lines = tmp_path / "clicks.jsonl"
    lines.write_text('{"user": 1, "k": 3}\n' + '{"items": [1, 2, 3], "k": 3}\n' * 33_201)
    aws.aws("s3api", "put-object", "--bucket", BUCKET, "--key", "out/clicks.jsonl.out", "--body", str(lines))
    ok(workflow(aws, "transform", "--image", IMAGE, "--role", ROLE, "--model-data", f"s3://{BUCKET}/m/model.tar.gz",
                "--users", str(lines), "--input-s3", f"s3://{BUCKET}/in", "--output-s3", f"s3://{BUCKET}/out"))
    [job] = aws.calls("CreateTransformJob")
    assert job["BatchStrategy"] == "SingleRecord" and job["MaxPayloadInMB"] == 1
    assert job["TransformInput"]["SplitType"] == "Line" and job["TransformOutput"]["AssembleWith"] == "Line"


def test_a_transform_raises_the_payload_to_its_longest_line_and_takes_the_strategy_it_is_told(aws, tmp_path):
    lines = tmp_path / "users.jsonl"
    excluded = [f"{n:0256d}" for n in range(10_000)]  # 2.6 MB: one record larger than the 1 MB default
    lines.write_text(json.dumps({"user": 1, "exclude": excluded}) + "\n" + '{"items": [1]}\n')
    aws.aws("s3api", "put-object", "--bucket", BUCKET, "--key", "out/users.jsonl.out", "--body", str(lines))
    ok(workflow(aws, "transform", "--image", IMAGE, "--role", ROLE, "--model-data", f"s3://{BUCKET}/m/model.tar.gz",
                "--users", str(lines), "--input-s3", f"s3://{BUCKET}/in", "--output-s3", f"s3://{BUCKET}/out",
                "--batch-strategy", "multi"))
    [job] = aws.calls("CreateTransformJob")
    assert job["BatchStrategy"] == "MultiRecord" and job["MaxPayloadInMB"] == 3


@pytest.mark.parametrize("args, message", [
    (["--max-payload-mb", "101"], "--max-payload-mb must be 1 to 100"),
    (["--invocations-timeout", "3601"], "--invocations-timeout must be 1 to 3600 s"),
])
def test_bad_transform_arguments_fail_before_any_upload(aws, tmp_path, args, message):
    users = tmp_path / "users.jsonl"
    users.write_text('{"user": 1}\n')
    out = workflow(aws, "transform", "--image", IMAGE, "--role", ROLE, "--model-data", f"s3://{BUCKET}/m.tar.gz",
                   "--users", str(users), "--input-s3", f"s3://{BUCKET}/in", "--output-s3", f"s3://{BUCKET}/out", *args)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert aws.calls("CreateTransformJob") == [] and aws.calls("CreateModel") == []
    assert "Contents" not in aws.aws("s3api", "list-objects-v2", "--bucket", BUCKET)


WAIT = """
import sys
import boto3
from botocore.stub import Stubber
from scripts.sm_common import WorkflowError, wait_until

sm = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
stub = Stubber(sm)
job = {"TransformJobName": "j", "TransformJobArn": "arn:aws:sagemaker:us-east-1:1:transform-job/j",
       "ModelName": "m", "CreationTime": 0, "TransformInput": {"DataSource": {"S3DataSource": {
           "S3DataType": "S3Prefix", "S3Uri": "s3://b/in"}}},
       "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1}}
for status in sys.argv[1:]:
    stub.add_response("describe_transform_job", {**job, "TransformJobStatus": status,
                                                 **({"FailureReason": "ClientError: 413 from the container"}
                                                    if status == "Failed" else {})})
stub.activate()
try:
    state = wait_until(sm, "transform_job_completed_or_stopped", lambda: sm.describe_transform_job(
        TransformJobName="j"), "TransformJobStatus", 2, "transform job j", poll_s=0, TransformJobName="j")
    print("returned", state["TransformJobStatus"])
except WorkflowError as e:
    print("error", e)
"""


@pytest.mark.parametrize("statuses, printed", [
    (["InProgress", "Completed", "Completed"], "returned Completed"),
    (["InProgress", "Failed"], "error transform job j ended Failed: ClientError: 413 from the container"),
    (["InProgress", "InProgress"], "error transform job j still InProgress after 2 s"),
])
def test_waiting_uses_boto3s_waiter_and_says_how_a_job_ended(statuses, printed):
    import subprocess

    from tests.scripts.aws import AWS_VENV, ROOT

    out = subprocess.run([str(AWS_VENV / "bin" / "python"), "-c", WAIT, *statuses], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == printed


def test_a_warm_start_passes_the_previous_jobs_model_as_the_model_channel(aws):
    train = ["train", "--image", IMAGE, "--role", ROLE, "--train", f"s3://{BUCKET}/ncf/data/train/",
             "--output-path", f"s3://{BUCKET}/ncf/output"]
    first = ok(workflow(aws, *train)).strip().splitlines()[-1].removeprefix("model: ")
    [previous] = aws.calls("CreateTrainingJob")
    ok(workflow(aws, *train, "--warm-start-from", previous["TrainingJobName"]))
    request = aws.calls("CreateTrainingJob")[-1]
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    assert set(channels) == {"train", "model"}
    assert channels["model"]["DataSource"]["S3DataSource"]["S3Uri"] == first
    assert channels["model"]["ContentType"] == "application/x-sagemaker-model"


def test_a_warm_start_from_a_job_that_does_not_exist_fails_before_any_request(aws):
    out = workflow(aws, "train", "--image", IMAGE, "--role", ROLE, "--train", f"s3://{BUCKET}/x/",
                   "--warm-start-from", "no-such-job")
    assert out.returncode == 2 and "--warm-start-from no-such-job: no such training job" in out.stderr, out.stderr
    assert aws.calls("CreateTrainingJob") == []


def test_items_at_s3_are_passed_as_the_items_channel(aws):
    ok(workflow(aws, "train", "--image", IMAGE, "--role", ROLE, "--train", f"s3://{BUCKET}/ncf/data/train/",
                "--output-path", f"s3://{BUCKET}/ncf/output",
                "--items", f"s3://{BUCKET}/ncf/data/items/movies.parquet"))
    [request] = aws.calls("CreateTrainingJob")
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    assert set(channels) == {"train", "items"}
    assert channels["items"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/ncf/data/items/movies.parquet"
    assert channels["items"]["ContentType"] == "application/x-parquet"
    assert channels["items"].get("InputMode", "File") == "File"  # a table read whole: never Pipe


def test_a_local_items_file_is_uploaded_beside_the_train_channel_and_read_from_there(aws, tmp_path):
    items = tmp_path / "movies.csv"
    items.write_text("movieId,title,genres\n1,Toy Story (1995),Animation\n")
    ok(workflow(aws, "train", "--image", IMAGE, "--role", ROLE, "--train", f"s3://{BUCKET}/ncf/data/train/",
                "--output-path", f"s3://{BUCKET}/ncf/output", "--items", str(items)))
    [request] = aws.calls("CreateTrainingJob")
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    assert channels["items"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/ncf/data/items/movies.csv"
    assert channels["items"]["ContentType"] == "text/csv"
    size = aws.aws("s3api", "head-object", "--bucket", BUCKET, "--key", "ncf/data/items/movies.csv")["ContentLength"]
    assert size == items.stat().st_size


def test_a_missing_items_file_fails_before_any_request(aws, tmp_path):
    out = workflow(aws, "train", "--image", IMAGE, "--role", ROLE, "--train", f"s3://{BUCKET}/x/",
                   "--items", str(tmp_path / "nowhere.csv"))
    assert out.returncode == 2 and f"--items {tmp_path / 'nowhere.csv'}: no such file" in out.stderr, out.stderr
    assert aws.calls("CreateTrainingJob") == []


def test_a_local_deploy_reads_the_plain_path_train_local_prints_as_an_absolute_file_url(tmp_path, monkeypatch):
    from scripts.sm_common import WorkflowError
    from scripts.sm_endpoints import local_model_data

    model = tmp_path / "compressed_artifacts" / "model.tar.gz"
    model.parent.mkdir()
    model.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    # the SDK's local mode takes only file:// and s3:// (a plain path is its ValueError)
    assert local_model_data("compressed_artifacts/model.tar.gz") == f"file://{model.resolve()}"
    assert local_model_data(str(model)) == f"file://{model.resolve()}"
    assert local_model_data(f"file://{model}") == f"file://{model}"
    assert local_model_data(MODEL_DATA) == MODEL_DATA
    with pytest.raises(WorkflowError, match="--model-data nowhere.tar.gz: no such file"):
        local_model_data("nowhere.tar.gz")


def test_a_local_deploy_of_a_missing_model_fails_before_any_request(aws, tmp_path):
    before = len(aws.requests())
    out = workflow(aws, "deploy", "--local", "--image", IMAGE, "--role", ROLE,
                   "--model-data", str(tmp_path / "model.tar.gz"))
    assert out.returncode == 2 and f"--model-data {tmp_path / 'model.tar.gz'}: no such file" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert len(aws.requests()) == before


# Hosting modes (#35): serverless, asynchronous, data capture. The serve-only image, by digest.
SERVE_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ncf-sagemaker@sha256:" + "cd" * 32
MODEL_DATA = f"s3://{BUCKET}/ncf/output/job/output/model.tar.gz"
DEPLOY = ["deploy", "--image", IMAGE, "--role", ROLE, "--model-data", MODEL_DATA, "--user", "7", "--items", "[1, 2, 3]"]


def test_a_serverless_deploy_sends_a_serverless_config_in_place_of_instances_and_runs_the_serve_image(aws):
    ok(workflow(aws, *DEPLOY, "--serverless", "2048", "--max-concurrency", "10", "--serve-image", SERVE_IMAGE))
    [model] = aws.calls("CreateModel")
    assert model["PrimaryContainer"]["Image"] == SERVE_IMAGE
    # the container limits bodies and answers to serverless' 4 MB, and requests to its 60 s
    assert model["PrimaryContainer"]["Environment"] == {"NCF_ENDPOINT_TYPE": "serverless"}
    [config] = aws.calls("CreateEndpointConfig")
    assert config["ProductionVariants"] == [{"VariantName": "AllTraffic", "ModelName": model["ModelName"],
                                             "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 10}}]
    assert "DataCaptureConfig" not in config and "AsyncInferenceConfig" not in config
    assert len([e for e in aws.requests() if e["url"].endswith("/invocations")]) == 3
    assert len(aws.calls("DeleteEndpoint")) == 1


@pytest.mark.parametrize("args, message", [
    (["--serverless", "1000"], "--serverless 1000: memory is 1024 to 6144 MB in 1024 MB steps"),
    (["--serverless", "2000"], "--serverless 2000: memory is 1024 to 6144 MB in 1024 MB steps"),
    (["--serverless", "7168"], "--serverless 7168: memory is 1024 to 6144 MB in 1024 MB steps"),
    (["--serverless", "1024", "--max-concurrency", "201"], "--max-concurrency must be 1 to 200 for a serverless"),
    (["--serverless", "1024", "--serve-image", IMAGE.split("@")[0] + ":0123abcd-gpu"],
     "serverless endpoints have no GPU"),
    (["--serverless", "1024", "--data-capture", f"s3://{BUCKET}/capture"], "--data-capture is not available on "
                                                                          "serverless endpoints"),
    (["--serverless", "1024", "--async-output", f"s3://{BUCKET}/out"], "not allowed with argument"),
    (["--async-output", f"s3://{BUCKET}/out", "--invocations-timeout", "3601"],
     "--invocations-timeout must be 1 to 3600 s"),
    (["--async-output", f"s3://{BUCKET}/out", "--max-concurrency", "1001"], "--max-concurrency must be 1 to 1000"),
    (["--async-output", "out/"], "expected s3://BUCKET/KEY"),
    (["--max-concurrency", "4"], "--max-concurrency applies to --serverless and --async-output endpoints"),
    (["--data-capture", f"s3://{BUCKET}/capture", "--capture-percent", "0"], "--capture-percent must be 1 to 100"),
])
def test_hosting_limits_are_checked_before_any_request(aws, args, message):
    out = workflow(aws, *DEPLOY, *args)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert aws.calls("CreateModel") == [] and aws.calls("CreateEndpointConfig") == []


def test_an_async_deploy_writes_answers_to_s3_and_invokes_through_input_locations(aws, tmp_path):
    answers = [{"predictions": [{"score": 0.9, "like": True}]}, {"itemList": [{"itemId": "2", "score": 0.8}]},
               {"item": "1", "itemList": [{"itemId": "3", "score": 0.7}]}]
    aws.api("static/sagemaker/async-endpoint-results", {"results": [{"data": json.dumps(a)} for a in answers]})
    output = f"s3://{BUCKET}/ncf/async-out"
    printed = ok(workflow(aws, *DEPLOY, "--instance-type", "ml.c5.xlarge", "--async-output", output,
                          "--invocations-timeout", "1800", "--max-concurrency", "4"))
    [model] = aws.calls("CreateModel")
    # the container lets a request last the invocation's timeout, reads bodies up to async's 1 GB and answers
    # with a Content-Length (container/serve_config.py ENDPOINT_TYPES)
    assert model["PrimaryContainer"]["Environment"] == {
        "NCF_ENDPOINT_TYPE": "async", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "1800", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1024"}
    [config] = aws.calls("CreateEndpointConfig")
    assert config["ProductionVariants"] == [{"VariantName": "AllTraffic", "ModelName": model["ModelName"],
                                             "InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 1}]
    assert config["AsyncInferenceConfig"] == {
        "OutputConfig": {"S3OutputPath": output, "S3FailurePath": f"{output}/failures"},
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4}}
    invocations = [e for e in aws.requests() if e["url"].endswith("/async-invocations")]
    assert [e["url"].split("/")[-2] for e in invocations] == [model["ModelName"]] * 3
    headers = [{k.lower(): v for k, v in e["headers"].items()} for e in invocations]
    name = model["ModelName"]
    locations = [f"{output}/inputs/{name}/{kind}.json" for kind in ("score-pairs", "recommend", "similar-items")]
    assert [h["x-amzn-sagemaker-inputlocation"] for h in headers] == locations
    for sent in headers:
        assert sent["x-amzn-sagemaker-content-type"] == "application/json"
        assert sent["x-amzn-sagemaker-invocationtimeoutseconds"] == "1800"
    for uri, sent in zip(locations, [{"instances": [{"user": 7, "item": i} for i in (1, 2, 3)]},
                                     {"user": 7, "k": 5}, {"item": 1, "k": 5}]):
        aws.aws("s3api", "get-object", "--bucket", BUCKET, "--key", uri.split("/", 3)[3], str(tmp_path / "in"))
        assert json.loads((tmp_path / "in").read_text()) == sent  # what SageMaker reads for the container
    for answer in answers:
        assert json.dumps(answer) in printed
    assert [e["url"] for e in aws.requests() if e["url"].endswith("/invocations")] == []  # no synchronous call
    assert len(aws.calls("DeleteEndpoint")) == 1


def test_data_capture_records_json_and_csv_as_text_under_the_types_serve_answers_in(aws):
    from container import codecs

    ok(workflow(aws, *DEPLOY, "--data-capture", f"s3://{BUCKET}/capture", "--capture-percent", "50"))
    [config] = aws.calls("CreateEndpointConfig")
    capture = config["DataCaptureConfig"]
    assert capture == {"EnableCapture": True, "InitialSamplingPercentage": 50,
                       "DestinationS3Uri": f"s3://{BUCKET}/capture",
                       "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                       "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json", "application/jsonlines"],
                                                    "CsvContentTypes": ["text/csv"]}}
    listed = capture["CaptureContentTypeHeader"]
    for sent, listing in ((codecs.JSON, "JsonContentTypes"), (codecs.JSONLINES, "JsonContentTypes"),
                          (codecs.CSV, "CsvContentTypes")):
        # each side of a capture is text of one encoding only when the answer's type is listed as the request's
        assert sent in listed[listing] and codecs.answer_type(sent, sent) in listed[listing]


def test_a_multi_model_deploy_creates_a_multimodel_container_and_invokes_each_target_model(aws):
    targets = ["tenant-a.tar.gz", "markets/de/model.tar.gz"]
    answers = [{"itemList": [{"itemId": str(n), "score": 0.5}]} for n in range(6)]
    aws.api("static/sagemaker/endpoint-results", {"region": "us-east-1", "results": [
        {"Body": json.dumps(a), "ContentType": "application/json"} for a in answers]})
    prefix = f"s3://{BUCKET}/ncf/models/"
    printed = ok(workflow(aws, "deploy", "--image", IMAGE, "--role", ROLE, "--multi-model", "--model-data", prefix,
                          "--target-model", targets[0], "--target-model", targets[1], "--user", "7"))
    [model] = aws.calls("CreateModel")
    container = model["PrimaryContainer"]
    assert container["Mode"] == "MultiModel" and container["ModelDataUrl"] == prefix
    assert container["Image"] == IMAGE and container["Environment"]["SAGEMAKER_MULTI_MODEL"] == "true"
    [config] = aws.calls("CreateEndpointConfig")
    assert config["ProductionVariants"][0]["ModelName"] == model["ModelName"]
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
    [endpoint] = aws.calls("CreateEndpoint")
    invoked = [e for e in aws.requests() if e["url"].endswith("/invocations")]
    # Each target model gets each kind of demo request, its TargetModel in the header InvokeEndpoint sends.
    sent = [{k.lower(): v for k, v in e["headers"].items()}.get("x-amzn-sagemaker-target-model") for e in invoked]
    assert sent == [targets[0]] * 3 + [targets[1]] * 3
    assert all(endpoint["EndpointName"] in e["url"] for e in invoked)
    assert [json.loads(body(e)) for e in invoked][:3] == [
        {"instances": [{"user": 7, "item": 1}, {"user": 7, "item": 2}, {"user": 7, "item": 3}]},
        {"user": 7, "k": 5}, {"item": 1, "k": 5}]
    assert f"{targets[1]}, similar items" in printed and json.dumps(answers[5]) in printed
    assert [c["EndpointName"] for c in aws.calls("DeleteEndpoint")] == [endpoint["EndpointName"]]
    assert len(aws.calls("DeleteEndpointConfig")) == 1 and len(aws.calls("DeleteModel")) == 1


@pytest.mark.parametrize("args, message", [
    (["--multi-model", "--model-data", f"s3://{BUCKET}/m/model.tar.gz", "--target-model", "a.tar.gz"],
     "ending in '/'"),
    (["--multi-model", "--model-data", f"s3://{BUCKET}/models/"], "at least one --target-model"),
    (["--multi-model", "--model-data", f"s3://{BUCKET}/models/", "--target-model", "/a.tar.gz"], "no leading '/'"),
    (["--model-data", f"s3://{BUCKET}/models/", "--target-model", "a.tar.gz"], "add --multi-model"),
    (["--multi-model", "--model-data", f"s3://{BUCKET}/models/", "--target-model", "a.tar.gz", "--serverless",
      "2048"], "not with --serverless"),
])
def test_a_bad_multi_model_deploy_fails_before_any_request(aws, args, message):
    out = workflow(aws, "deploy", "--image", IMAGE, "--role", ROLE, *args)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert aws.calls("CreateModel") == [] and aws.calls("CreateEndpoint") == []
