"""The serve-only image (the Dockerfile's `serve` target): the same `serve` without TensorFlow, for endpoints and
batch transform of any model folder the full image trains. Needs a Docker engine, as test_image.py does."""

import hashlib
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
