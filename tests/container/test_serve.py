"""`serve` as SageMaker runs it: the real gunicorn and Flask, as a process on loopback."""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.container.opt_ml import ROOT
from tests.waiting import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, headers=None, timeout=10):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


class Server:
    def __init__(self, base_dir, **env):
        self.port = free_port()
        environment = {**os.environ, "SAGEMAKER_BASE_DIR": str(base_dir), "SAGEMAKER_BIND_TO_PORT": str(self.port),
                       "SAGEMAKER_MODEL_SERVER_WORKERS": "2", **env}
        self.worker_count = int(environment["SAGEMAKER_MODEL_SERVER_WORKERS"])
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from container.serve import main; main()"], cwd=ROOT, env=environment,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def workers(self) -> list[int]:
        """gunicorn's workers: the master's children (`serve` execs gunicorn, so the master is our child)."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def _alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}: {self.process.stdout.read()}")

    def wait_until_ready(self, timeout=60.0) -> None:
        """Until /ping answers (any status) and every configured worker has forked. /ping answers as soon as
        one worker is up; a test that counts or measures workers right then races the others' boot."""
        def answers():
            self._alive()
            return request(self.port, "GET", "/ping", timeout=1)

        def all_forked():
            self._alive()
            return len(self.workers()) == self.worker_count

        wait_until(answers, timeout, lambda: "serve did not answer /ping", ignoring=(OSError,), interval=0.05)
        wait_until(all_forked, timeout, lambda: f"workers {self.workers()}, expected {self.worker_count}")

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def opt_ml(tmp_path, model_dir):
    shutil.copytree(model_dir, tmp_path / "model")
    return tmp_path


@pytest.fixture
def server(opt_ml):
    s = Server(opt_ml)
    s.wait_until_ready()
    yield s
    s.stop()


def test_serve_answers_ping_and_every_kind_of_request(server, recommender):
    status, kind, body = request(server.port, "GET", "/ping")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    user = recommender.users.decode([0])[0]
    item = recommender.items.decode([0])[0]
    status, kind, body = request(server.port, "POST", "/invocations", json.dumps({"user": user, "k": 3}),
                                 {"Content-Type": "application/json"})
    assert status == 200 and kind == "application/json" and len(json.loads(body)["itemList"]) == 3
    lines = f'{{"user": {json.dumps(user)}}}\n{{"item": {json.dumps(item)}}}\n'
    status, kind, body = request(server.port, "POST", "/invocations", lines, {"Content-Type": "application/jsonlines"})
    assert status == 200 and len(body.decode().splitlines()) == 2
    status, kind, body = request(server.port, "POST", "/invocations", f"{user},{item}\n", {"Content-Type": "text/csv"})
    assert status == 200 and kind.startswith("text/csv") and 0 <= float(body) <= 1
    # Fold-in: from the items someone just interacted with, anonymous in JSON, a known user in JSON Lines.
    given = list(recommender.items.decode([0, 1, 2]))
    status, kind, body = request(server.port, "POST", "/invocations",
                                 json.dumps({"items": given + ["no such item"], "k": 4}),
                                 {"Content-Type": "application/json"})
    answer = json.loads(body)
    assert status == 200 and len(answer["itemList"]) == 4 and answer["ignored"] == ["no such item"]
    assert not {entry["itemId"] for entry in answer["itemList"]} & set(map(str, given))  # ids as strings
    assert answer["fallback"] is False
    lines = json.dumps({"user": user, "items": given, "k": 2}) + "\n" + json.dumps({"items": ["x"]}) + "\n"
    status, kind, body = request(server.port, "POST", "/invocations", lines, {"Content-Type": "application/jsonlines"})
    known, stranger = [json.loads(line) for line in body.decode().splitlines()]
    assert status == 200 and known["user"] == user and len(known["itemList"]) == 2
    assert stranger["fallback"] is True and stranger["ignored"] == ["x"]


def test_the_environment_sets_workers_and_payload_limit(opt_ml):
    server = Server(opt_ml, SAGEMAKER_MODEL_SERVER_WORKERS="3", SAGEMAKER_MAX_PAYLOAD_IN_MB="2",
                    SAGEMAKER_MAX_CONCURRENT_TRANSFORMS="5")
    try:
        server.wait_until_ready()
        status, _, body = request(server.port, "GET", "/execution-parameters")
        assert json.loads(body) == {"MaxConcurrentTransforms": 5, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 2}
        status, _, body = request(server.port, "POST", "/invocations", b"x" * (2 * 1024 * 1024 + 10),
                                  {"Content-Type": "application/json"})
        assert status == 413
        assert len(server.workers()) == 3
    finally:
        server.stop()


def test_a_missing_model_gives_503_with_the_reason_and_the_server_stays_up(tmp_path):
    server = Server(tmp_path)
    try:
        server.wait_until_ready()
        status, _, body = request(server.port, "GET", "/ping")
        assert status == 503 and "does not exist" in json.loads(body)["error"]
        time.sleep(1)
        assert server.process.poll() is None
        assert request(server.port, "GET", "/ping")[0] == 503
    finally:
        server.stop()


def _threshold_high(model):
    meta = json.loads((model / "metadata.json").read_text())
    (model / "metadata.json").write_text(json.dumps({**meta, "threshold": "high"}))


def _weights_fifo(model):
    (model / "weights.npz").unlink()
    os.mkfifo(model / "weights.npz")


def _nan_weights(model):
    import numpy as np

    weights = dict(np.load(model / "weights.npz"))
    first = sorted(weights)[0]
    weights[first] = np.full_like(weights[first], np.nan)
    with open(model / "weights.npz", "wb") as f:
        np.savez(f, **weights)


@pytest.mark.parametrize("breakage, reason", [
    (_threshold_high, "threshold 'high' is not a number from 0 to 1"),
    (_weights_fifo, "weights.npz is not a regular file"),
    (_nan_weights, "hold NaN or infinite values"),
])
def test_a_broken_model_keeps_the_server_up_and_ping_says_why(opt_ml, breakage, reason):
    breakage(opt_ml / "model")
    server = Server(opt_ml)
    try:
        server.wait_until_ready()
        status, _, body = request(server.port, "GET", "/ping")
        assert status == 503 and reason in json.loads(body)["error"]
        status, _, body = request(server.port, "POST", "/invocations", b'{"user": 1}',
                                  {"Content-Type": "application/json"})
        assert status == 503 and reason in json.loads(body)["error"]
        assert server.process.poll() is None
    finally:
        server.stop()


def test_a_model_of_another_format_version_is_refused_clearly(opt_ml):
    meta = json.loads((opt_ml / "model" / "metadata.json").read_text())
    (opt_ml / "model" / "metadata.json").write_text(json.dumps({**meta, "format_version": 7}))
    server = Server(opt_ml)
    try:
        server.wait_until_ready()
        status, _, body = request(server.port, "GET", "/ping")
        assert status == 503 and "format version 7; this library reads versions 1, 2" in json.loads(body)["error"]
    finally:
        server.stop()


def test_sigterm_drains_a_request_in_flight_then_exits_within_thirty_seconds(opt_ml, recommender):
    server = Server(opt_ml, SAGEMAKER_BATCH="true")  # a batch: an answer larger than a real-time one may be
    server.wait_until_ready()
    users = recommender.users.decode(range(len(recommender.users)))
    records = 100_000
    body = "".join(json.dumps({"user": users[n % len(users)], "k": 5}) + "\n" for n in range(records)).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/jsonlines"})
        response = connection.getresponse()  # the status is sent with the first chunk: the request is in flight
        assert response.status == 200, response.read()
        server.process.send_signal(signal.SIGTERM)
        start = time.monotonic()
        lines = response.read().decode().splitlines()
        code = server.process.wait(timeout=30)
    finally:
        connection.close()
        server.stop()
    assert len(lines) == records and all("itemList" in line for line in lines[-3:])
    assert time.monotonic() - start < 30 and code == 0


def test_a_bad_environment_variable_stops_serve_with_its_name(tmp_path):
    out = subprocess.run([sys.executable, "-c", "from container.serve import main; main()"], cwd=ROOT,
                         env={**os.environ, "SAGEMAKER_BASE_DIR": str(tmp_path), "SAGEMAKER_MODEL_SERVER_WORKERS": "many"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "SAGEMAKER_MODEL_SERVER_WORKERS='many' is not an integer" in out.stderr


def test_serve_checks_its_settings_without_importing_numpy_before_gunicorn_does():
    """`serve` is a process of its own that execs gunicorn: what it imports, every cold start pays twice."""
    out = subprocess.run([sys.executable, "-c", "import sys, container.serve; print(sorted(m for m in ('numpy', "
                          "'flask', 'lark', 'faiss') if m in sys.modules))"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_the_server_never_imports_tensorflow(server):
    pid = server.process.pid
    maps = open(f"/proc/{pid}/maps").read()
    assert "tensorflow" not in maps and "_pywrap_tensorflow" not in maps
