"""The serve-only image (the Dockerfile's `serve` target): the same `serve` without TensorFlow, for endpoints and
batch transform of any model folder the full image trains. Needs a Docker engine, as test_image.py does."""

import hashlib
import http.client
import json
import re
import shutil
from pathlib import Path

import pytest

from tests.container.opt_ml import lay_out
from tests.container.test_image import docker, logs_of, ping
from tests.container.test_serve import free_port, request
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_the_serve_image_holds_no_tensorflow_and_serves_by_default(serve_image):
    config = json.loads(docker("image", "inspect", serve_image, "--format", "{{json .Config}}", check=True).stdout)
    assert config["Cmd"] == ["serve"]
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    lock = ROOT / "requirements" / "image-serve.lock"
    assert config["Labels"]["ncf.lock.sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    found = docker("run", "--rm", serve_image, "python3", "-c",
                   "import importlib.util as u; print([m for m in ('tensorflow', 'keras', 'pandas', 'pyarrow', "
                   "'matplotlib') if u.find_spec(m)])", check=True).stdout.strip()
    assert found == "[]"
    versions = json.loads(docker("run", "--rm", serve_image, "ncf-version", check=True).stdout)
    pinned = dict(re.findall(r"^([a-z0-9_.-]+)==(\S+)", lock.read_text(), re.M))
    assert versions["packages"]["numpy"] == pinned["numpy"] and "tensorflow-cpu" not in versions["packages"]


def test_the_serve_image_serves_a_model_folder_that_training_wrote(serve_image, tmp_path, model_dir, recommender):
    shutil.copytree(model_dir, tmp_path / "model")
    port = free_port()
    container = docker("run", "-d", "-p", f"127.0.0.1:{port}:8080", "-v", f"{tmp_path / 'model'}:/opt/ml/model",
                       "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=2", serve_image, check=True).stdout.strip()
    try:
        wait_until(lambda: ping(port)[0] == 200, 60, lambda: logs_of(container), ignoring=(OSError,))
        user = recommender.users.decode([0])[0]
        status, _, body = request(port, "POST", "/invocations", json.dumps({"user": user, "k": 4}),
                                  {"Content-Type": "application/json"})
        assert status == 200, body
        served = [entry["itemId"] for entry in json.loads(body)["itemList"]]
        assert [str(i) for i in served] == [str(i) for i in recommender.recommend(user, k=4).items]
    finally:
        docker("rm", "-f", container)


def test_train_in_the_serve_image_fails_saying_which_image_trains(serve_image, tmp_path):
    root = lay_out(tmp_path / "opt_ml", {"train": {"ratings.csv": b"user,item\n1,2\n"}}, {})
    out = docker("run", "--rm", "-v", f"{root}:/opt/ml", serve_image, "train")
    assert out.returncode == 2
    assert "serve-only image" in out.stderr and "full ncf-sagemaker image" in out.stderr
    assert "serve-only image" in (root / "output" / "failure").read_text()


# gunicorn's processes in the container, less the master (and this one, whose command line names gunicorn)
WORKER_COUNT = ("import os; print(sum(b'gunicorn' in open(f'/proc/{p}/cmdline', 'rb').read() "
                "for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()) - 1)")


@pytest.mark.parametrize("limits, env, why", [
    # a 1 GB serverless endpoint: 4 MB bodies and answers; one CPU's worth of quota, one worker
    (["--memory", "1g", "--cpus", "1"], ["NCF_ENDPOINT_TYPE=serverless"],
     "workers: 1 worker(s), bound by CPUs: 1 CPU(s), 1,024 MB of memory (cgroup memory"),
    # two CPUs, but 100 MB bodies (three copies of one in a worker at worst) leave room for one worker in 768 MB
    (["--memory", "768m", "--cpus", "2"], ["SAGEMAKER_MAX_PAYLOAD_IN_MB=100"],
     "workers: 1 worker(s), bound by memory: 2 CPU(s), 768 MB of memory (cgroup memory"),
])
def test_under_a_containers_cpu_and_memory_limits_serve_fits_its_workers_and_says_why(
        serve_image, tmp_path, model_dir, recommender, limits, env, why):
    shutil.copytree(model_dir, tmp_path / "model")
    port = free_port()
    container = docker("run", "-d", *limits, "-p", f"127.0.0.1:{port}:8080", "-v",
                       f"{tmp_path / 'model'}:/opt/ml/model", *[a for e in env for a in ("-e", e)], serve_image,
                       check=True).stdout.strip()
    try:
        wait_until(lambda: ping(port)[0] == 200, 90, lambda: logs_of(container), ignoring=(OSError,))
        user = recommender.users.decode([0])[0]
        status, _, body = request(port, "POST", "/invocations", json.dumps({"user": user, "k": 4}),
                                  {"Content-Type": "application/json"})
        assert status == 200 and len(json.loads(body)["itemList"]) == 4, body
        assert why in logs_of(container)
        assert docker("exec", container, "python3", "-c", WORKER_COUNT, check=True).stdout.strip() == "1"
    finally:
        docker("rm", "-f", container)


def test_the_serve_image_hosts_many_models_when_sagemaker_makes_it_a_multi_model_endpoint(
        serve_image, tmp_path, model_dir, shop_dir, recommender):
    labels = json.loads(docker("image", "inspect", serve_image, "--format", "{{json .Config.Labels}}", check=True).stdout)
    assert labels["com.amazonaws.sagemaker.capabilities.multi-models"] == "true"
    # As SageMaker unpacks each model.tar.gz: /opt/ml/models/NAME/model, readable by the workers' user.
    models = tmp_path / "models"
    for name, source in (("plain", model_dir), ("shop", shop_dir)):
        shutil.copytree(source, models / name / "model")
    for path in [models, *models.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = free_port()
    container = docker("run", "-d", "-p", f"127.0.0.1:{port}:8080", "-v", f"{models}:/opt/ml/models:ro",
                       "-e", "SAGEMAKER_MULTI_MODEL=true", "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=2", serve_image,
                       check=True).stdout.strip()

    def call(method, path, body=None):
        status, kind, raw = request(port, method, path, None if body is None else json.dumps(body),
                                    {"Content-Type": "application/json"}, timeout=60)
        assert kind == "application/json", (status, kind, raw[:300])
        return status, json.loads(raw)

    try:
        wait_until(lambda: ping(port)[0] == 200, 60, lambda: logs_of(container), ignoring=(OSError,))
        for name in ("plain", "shop"):
            status, answer = call("POST", "/models", {"model_name": name, "url": f"/opt/ml/models/{name}/model"})
            assert status == 200, (answer, logs_of(container))
        assert [m["modelName"] for m in call("GET", "/models")[1]["models"]] == ["plain", "shop"]
        assert call("POST", "/models", {"model_name": "plain", "url": "/opt/ml/models/shop/model"})[0] == 409
        assert call("POST", "/models", {"model_name": "x", "url": "/opt/ml/models/none/model"})[0] == 404
        user = recommender.users.decode([0])[0]
        expected = [str(i) for i in recommender.recommend(user, k=4).items]
        for _ in range(10):  # both workers answer, whichever loaded the model
            status, answer = call("POST", "/models/plain/invoke", {"user": user, "k": 4})
            assert status == 200 and [e["itemId"] for e in answer["itemList"]] == expected
            status, answer = call("POST", "/models/shop/invoke", {"user": user, "k": 2, "metadataColumns": ["TITLE"]})
            assert status == 200 and all("title" in e["metadata"] for e in answer["itemList"])
        assert call("DELETE", "/models/plain")[0] == 200
        for _ in range(10):
            assert call("POST", "/models/plain/invoke", {"user": user, "k": 4})[0] == 404
        assert call("POST", "/models/shop/invoke", {"user": user, "k": 1})[0] == 200
    finally:
        docker("rm", "-f", container)


def _post(port: int, body: bytes, content_type: str) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_as_an_async_endpoint_the_serve_image_answers_past_real_times_6_mb_whole_and_in_the_requests_type(
        serve_image, tmp_path, model_dir, recommender):
    """Asynchronous inference needs a Content-Length on the answer and takes inputs far over real time's 6 MB;
    data capture needs the answer in the request's own content type (CSV in, CSV out)."""
    shutil.copytree(model_dir, tmp_path / "model")
    port = free_port()
    container = docker("run", "-d", "-p", f"127.0.0.1:{port}:8080", "-v", f"{tmp_path / 'model'}:/opt/ml/model",
                       "-e", "NCF_ENDPOINT_TYPE=async", "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=1", serve_image,
                       check=True).stdout.strip()
    try:
        wait_until(lambda: ping(port)[0] == 200, 60, lambda: logs_of(container), ignoring=(OSError,))
        user = recommender.users.decode([0])[0]
        line = (json.dumps({"user": user, "k": 2, "exclude": [f"{n:09d}" for n in range(2_000)]}) + "\n").encode()
        body = line * (8 * 1024 * 1024 // len(line) + 1)  # 8 MB: refused by a real-time endpoint
        status, headers, answer = _post(port, body, "application/jsonlines")
        assert status == 200, (answer[:300], logs_of(container))
        assert int(headers["content-length"]) == len(answer) and headers["content-type"] == "application/jsonlines"
        assert answer.count(b"\n") == body.count(b"\n")
        item = recommender.items.decode([0])[0]
        status, headers, answer = _post(port, f"{user},{item}\n{user},{item}\n".encode(), "text/csv")
        assert status == 200 and headers["content-type"] == "text/csv", answer
        scores = [float(row) for row in answer.decode().split()]
        assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
    finally:
        docker("rm", "-f", container)
