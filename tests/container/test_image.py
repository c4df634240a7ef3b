"""The train and serve contracts again, against the built image, run as SageMaker runs it.

Needs a Docker engine. Without one these tests skip, saying why; with NCF_REQUIRE_DOCKER=1 (CI) a missing
engine or image is a failure instead. NCF_IMAGE names a prebuilt image; otherwise the fixture builds one.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from tests.container.opt_ml import lay_out
from tests.container.test_serve import free_port, request
from tests.waiting import wait_until


def docker(*args, timeout=600, check=False):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


WORKER_UIDS = """
import os
procs = []
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        cmd = open(f'/proc/{pid}/cmdline', 'rb').read()
        uid = next(l.split()[1] for l in open(f'/proc/{pid}/status') if l.startswith('Uid:'))
    except OSError:
        continue
    if b'gunicorn' in cmd and int(pid) != os.getpid():
        procs.append((int(pid), uid))
print(' '.join(uid for _, uid in sorted(procs)))
"""


def csv_bytes(frame):
    return frame.to_csv(index=False).encode()


def test_the_image_declares_what_sagemaker_reads(image):
    config = json.loads(docker("image", "inspect", image, "--format", "{{json .Config}}", check=True).stdout)
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.multi-models"] == "true"
    assert config["Cmd"] == ["train"]
    listing = docker("run", "--rm", "--entrypoint", "sh", image, "-c",
                     "find / -xdev \\( -name 'ratings.csv' -o -name 'u.data' -o -name 'tests' -path '*program*' \\) "
                     "2>/dev/null; ls /opt/program", check=True).stdout
    assert "ratings.csv" not in listing and "u.data" not in listing and "tests" not in listing.split()


def test_the_image_proves_what_it_contains_by_label_sbom_and_ncf_version(image):
    from pathlib import Path

    lock = Path(__file__).resolve().parents[2] / "requirements" / "image-cpu.lock"
    lock_sha = hashlib.sha256(lock.read_bytes()).hexdigest()
    pinned = dict(re.findall(r"^([a-z0-9_.-]+)==(\S+)", lock.read_text(), re.M))
    labels = json.loads(docker("image", "inspect", image, "--format", "{{json .Config.Labels}}", check=True).stdout)
    assert labels["ncf.lock.sha256"] == lock_sha and labels["org.opencontainers.image.revision"]
    versions = json.loads(docker("run", "--rm", image, "ncf-version", check=True).stdout)
    assert versions["lock"]["sha256"] == lock_sha and versions["revision"] == labels["org.opencontainers.image.revision"]
    assert versions["packages"]["tensorflow-cpu"] == pinned["tensorflow-cpu"]
    sbom = json.loads(docker("run", "--rm", image, "cat", "/opt/program/sbom.cdx.json", check=True).stdout)
    assert sbom["bomFormat"] == "CycloneDX"
    components = {re.sub(r"[-_.]+", "-", c["name"].lower()): c["version"] for c in sbom["components"]}
    for name in ("tensorflow-cpu", "numpy", "flask", "gunicorn"):
        assert components[name] == pinned[name], name
    assert "cyclonedx-bom" not in components  # the tool's throwaway environment is not what runs


def test_train_in_the_container_writes_the_model_onto_the_volume(image, tmp_path, ratings):
    root = lay_out(tmp_path / "opt_ml", {"train": {"ratings.csv": csv_bytes(ratings)}}, {"model": '"mf"'})
    out = docker("run", "--rm", "-v", f"{root}:/opt/ml", image, "train")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (root / "model" / "metadata.json").is_file() and (root / "model" / "saved_model").is_dir()
    assert "test:hr@10=" in out.stdout and (root / "output" / "data" / "metrics.json").is_file()


def test_a_failing_job_leaves_its_reason_on_the_volume(image, tmp_path, ratings):
    root = lay_out(tmp_path / "opt_ml", {"train": {"ratings.csv": csv_bytes(ratings)}}, {"epochs": "lots"})
    out = docker("run", "--rm", "-v", f"{root}:/opt/ml", image, "train")
    assert out.returncode == 2
    assert "hyperparameter 'epochs' = 'lots'" in (root / "output" / "failure").read_text()


def test_two_containers_named_algo_1_and_algo_2_train_one_job(image, tmp_path, ratings):
    """As SageMaker's local mode runs instance_count=2: one user-defined network, host names algo-1 and algo-2."""
    network = f"ncf-test-{os.getpid()}"
    docker("network", "create", network, check=True)
    hosts, containers = ["algo-1", "algo-2"], []
    try:
        for host in hosts:
            root = lay_out(tmp_path / host, {"train": {"ratings.csv": csv_bytes(ratings)}}, {"model": "mf"},
                           resources={"current_host": host, "hosts": hosts, "network_interface_name": "eth0"})
            started = docker("run", "-d", "--network", network, "--name", f"{network}-{host}", "--hostname", host,
                             "--network-alias", host, "-v", f"{root}:/opt/ml", image, "train", check=True)
            containers.append((root, started.stdout.strip()))
        for root, container in containers:
            code = docker("wait", container, timeout=600, check=True).stdout.strip()
            logs = docker("logs", container)
            assert code == "0", logs.stdout[-3000:] + logs.stderr[-3000:]
            assert "multi-worker training" in logs.stdout
        (chief, _), (worker, _) = containers
        assert (chief / "model" / "metadata.json").is_file() and not list((worker / "model").iterdir())
    finally:
        for _, container in containers:
            docker("rm", "-f", container)
        docker("network", "rm", network)


@pytest.mark.parametrize("mount, what", [
    ("ro", "a read-only model folder"),
    ("tmpfs", "a full disk"),
])
def test_an_unwritable_model_folder_is_a_failure_file_not_a_traceback(image, tmp_path, ratings, mount, what):
    root = lay_out(tmp_path / "opt_ml", {"train": {"ratings.csv": csv_bytes(ratings)}}, {"model": '"mf"'})
    model = ["-v", f"{root / 'model'}:/opt/ml/model:ro"] if mount == "ro" else ["--tmpfs", "/opt/ml/model:size=64k"]
    out = docker("run", "--rm", "-v", f"{root}:/opt/ml", *model, image, "train")
    assert out.returncode == 4, (what, out.stdout[-2000:], out.stderr[-2000:])
    reason = (root / "output" / "failure").read_text()
    assert reason.startswith("Cannot write or read the model: cannot write"), reason
    assert "Traceback" not in reason


def ping(port) -> tuple[int, bytes]:
    """(status, body) of GET /ping; OSError while nothing listens yet."""
    status, _, body = request(port, "GET", "/ping", timeout=2)
    return status, body


def logs_of(container) -> str:
    out = docker("logs", container)
    return out.stdout[-2000:] + out.stderr[-3000:]


def test_serve_in_the_container_answers_and_stops_within_the_grace_period(image, tmp_path, model_dir, recommender):
    shutil.copytree(model_dir, tmp_path / "model")
    port = free_port()
    started = docker("run", "-d", "-p", f"127.0.0.1:{port}:8080", "-v", f"{tmp_path / 'model'}:/opt/ml/model",
                     "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=2", image, "serve", check=True)
    container = started.stdout.strip()
    try:
        wait_until(lambda: ping(port)[0] == 200, 60, lambda: logs_of(container), ignoring=(OSError,))

        def owners():  # uids of the gunicorn processes, master (lowest pid) first
            return docker("exec", container, "python3", "-c", WORKER_UIDS, check=True).stdout.split()

        # /ping is 200 once one worker is up; the second may still be forking, so wait for the condition itself:
        # the master as root and both workers as the unprivileged user.
        wait_until(lambda: (o := owners())[:1] == ["0"] and len(o) == 3 and "0" not in o[1:], 60,
                   lambda: f"gunicorn uids {owners()}, expected root then two others; {logs_of(container)}")
        user = recommender.users.decode([0])[0]
        status, _, body = request(port, "POST", "/invocations", json.dumps({"user": user, "k": 4}),
                                  {"Content-Type": "application/json"})
        assert status == 200 and len(json.loads(body)["itemList"]) == 4
        start = time.monotonic()
        docker("stop", "-t", "30", container, check=True)
        assert time.monotonic() - start < 30
        state = json.loads(docker("inspect", container, "--format", "{{json .State}}", check=True).stdout)
        assert state["ExitCode"] == 0, state
    finally:
        docker("rm", "-f", container)


def test_serve_without_a_model_pings_503_and_stays_up(image, tmp_path):
    (tmp_path / "empty").mkdir()
    port = free_port()
    container = docker("run", "-d", "-p", f"127.0.0.1:{port}:8080", "-v", f"{tmp_path / 'empty'}:/opt/ml/model",
                       image, "serve", check=True).stdout.strip()
    try:
        status, body = wait_until(lambda: ping(port), 60, lambda: logs_of(container), ignoring=(OSError,))
        assert status == 503 and "metadata.json" in json.loads(body)["error"]
    finally:
        docker("rm", "-f", container)
