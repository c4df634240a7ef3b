"""One image for every SageMaker hosting mode: what each endpoint type (`NCF_ENDPOINT_TYPE`) lets a request do,
which answers carry a Content-Length (asynchronous endpoints fail without one) and which stream (batch
transform's JSON Lines), the answer's content type as data capture records it, and how many workers fit the
container's CPUs and memory. Real gunicorn servers on loopback, as SageMaker runs `serve`."""

import csv
import http.client
import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from container import codecs, resources
from container.serve_config import ServeConfig
from ncf.errors import ConfigError
from tests.container.opt_ml import ROOT
from tests.container.test_serve import free_port
from tests.waiting import wait_until

MB = 1024 * 1024


class Serve:
    """`serve` as a process, its log in a file (read while it runs)."""

    def __init__(self, base_dir: Path, log: Path, **env):
        self.port, self.log = free_port(), log
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "NCF_"))}
        environment.update({"SAGEMAKER_BASE_DIR": str(base_dir), "SAGEMAKER_BIND_TO_PORT": str(self.port), **env})
        with log.open("w") as out:
            self.process = subprocess.Popen([sys.executable, "-c", "from container.serve import main; main()"],
                                            cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_until(self._ready, 90, lambda: log.read_text()[-3000:], ignoring=(OSError,), interval=0.05)

    def _ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        return self.exchange("GET", "/ping")[0] == 200 and "workers:" in self.log.read_text()

    def exchange(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers as a dict of lower-case names, body) as the wire carried them."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def invoke(self, body: bytes, content_type: str, accept: str | None = None):
        return self.exchange("POST", "/invocations", body, {"Content-Type": content_type,
                                                            **({"Accept": accept} if accept else {})})

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="module")
def opt_ml(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("opt_ml")
    shutil.copytree(model_dir, root / "model")
    return root


@pytest.fixture(scope="module", params=["realtime", "serverless", "async", "batch"])
def endpoint(request, opt_ml, tmp_path_factory):
    """A one-worker server of each endpoint type; `batch`: a batch transform's (SAGEMAKER_BATCH=true)."""
    env = {"SAGEMAKER_BATCH": "true"} if request.param == "batch" else {"NCF_ENDPOINT_TYPE": request.param}
    server = Serve(opt_ml, tmp_path_factory.mktemp("log") / "serve.log", SAGEMAKER_MODEL_SERVER_WORKERS="1", **env)
    server.kind = request.param
    yield server
    server.stop()


def bodies(recommender) -> dict[str, bytes]:
    """A request of each type the server reads, with the model's own ids."""
    users, items = recommender.users.decode(range(3)), recommender.items.decode(range(3))
    pairs = [{"user": u, "item": i} for u, i in zip(users, items)]
    return {codecs.JSON: json.dumps({"instances": pairs}).encode(),
            codecs.JSONLINES: "".join(json.dumps({"user": u, "k": 3}) + "\n" for u in users).encode(),
            codecs.CSV: "".join(f"{u},{i}\n" for u, i in zip(users, items)).encode()}


@pytest.mark.parametrize("content_type", [codecs.JSON, codecs.JSONLINES, codecs.CSV])
@pytest.mark.parametrize("accept", [None, codecs.JSON, codecs.JSONLINES, codecs.CSV])
def test_every_answer_carries_its_length_but_a_batch_transforms_json_lines_which_stream(endpoint, recommender,
                                                                                        content_type, accept):
    status, headers, body = endpoint.invoke(bodies(recommender)[content_type], content_type, accept)
    assert status == 200, body
    if endpoint.kind == "batch" and content_type == codecs.JSONLINES:
        # a transform's answer can be gigabytes: sent a chunk at a time as it is made, which batch transform
        # reads; no other endpoint gets one (async needs a length: deepjavalibrary/djl-serving#2567)
        assert headers.get("transfer-encoding") == "chunked" and "content-length" not in headers
    else:
        assert int(headers["content-length"]) == len(body) and "transfer-encoding" not in headers


def test_endpoint_types_set_the_body_limit_and_how_long_a_request_may_last(endpoint, recommender):
    limit_mb = {"realtime": 6, "serverless": 4, "async": 1024, "batch": 6}[endpoint.kind]
    for length, refused in ((limit_mb * MB, False), (limit_mb * MB + 1, True)):
        # the announced length decides, before any byte of the body is read: send none
        with socket.create_connection(("127.0.0.1", endpoint.port), timeout=30) as sock:
            sock.sendall(f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {length}\r\n\r\n".encode())
            if not refused:
                sock.shutdown(socket.SHUT_WR)  # a body cut short: 400, past the size check
            status = int(sock.makefile("rb").readline().split()[1])
        assert status == (413 if refused else 400)
    config = ServeConfig.from_env({"SAGEMAKER_BATCH": "true"} if endpoint.kind == "batch"
                                  else {"NCF_ENDPOINT_TYPE": endpoint.kind})
    # a real-time or serverless request has SageMaker's 60 s whatever the timeout; async and batch the timeout
    assert (config.timeout, config.deadline_s) == {"realtime": (60, 60), "serverless": (60, 60),
                                                   "async": (900, 900), "batch": (600, 600)}[endpoint.kind]
    assert config.max_answer_bytes == {"realtime": 6 * MB, "serverless": 4 * MB, "async": 1024 * MB,
                                       "batch": None}[endpoint.kind]


def test_an_async_endpoint_answers_a_json_lines_body_over_100_mb_whole_with_its_length(opt_ml, recommender,
                                                                                      tmp_path):
    """Async takes its input from S3, up to 1 GB: far above a real-time body or a transform's 100 MB. Each line
    here excludes 10,000 ids (the most a request may): 110 MB in 820 lines, answered in seconds."""
    user = recommender.users.decode([0])[0]
    line = (json.dumps({"user": user, "k": 2, "exclude": [f"{n:011d}" for n in range(10_000)]}) + "\n").encode()
    body = line * (110 * MB // len(line) + 1)
    server = Serve(opt_ml, tmp_path / "serve.log", SAGEMAKER_MODEL_SERVER_WORKERS="1", NCF_ENDPOINT_TYPE="async")
    try:
        status, headers, answer = server.invoke(body, codecs.JSONLINES)
    finally:
        server.stop()
    assert status == 200, answer[:500]
    assert int(headers["content-length"]) == len(answer)
    lines = answer.decode().splitlines()
    assert len(lines) == body.count(b"\n") and all(len(json.loads(x)["itemList"]) == 2 for x in lines[::100])


def _workflow():
    """scripts/sagemaker_workflow.py, whose DataCaptureConfig says which content types are captured as text."""
    spec = importlib.util.spec_from_file_location("sagemaker_workflow", ROOT / "scripts" / "sagemaker_workflow.py")
    module = sys.modules.setdefault("sagemaker_workflow", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def _captured(data: bytes, observed: str, header: dict) -> dict:
    """One side of a data-capture record as SageMaker writes it: text under the encoding its content type is
    listed with in CaptureContentTypeHeader, base64 otherwise."""
    encoding = ("JSON" if observed in header["JsonContentTypes"] else "CSV" if observed in header["CsvContentTypes"]
                else "BASE64")
    return {"observedContentType": observed, "encoding": encoding,
            "data": data.decode() if encoding != "BASE64" else "(base64)"}


def _parse(data: str, content_type: str):
    """The captured answer read back as its request's type reads."""
    kind = codecs.ALIASES[content_type]
    if kind == codecs.CSV:
        return [float(row[0]) for row in csv.reader(io.StringIO(data))]
    if kind == codecs.JSONLINES:
        return list(codecs.decode_jsonlines(data.encode()))
    return codecs.decode_json(data.encode())


@pytest.mark.parametrize("endpoint", ["realtime"], indirect=True)  # data capture records real-time endpoints
@pytest.mark.parametrize("sent, kind", [(codecs.JSON, codecs.JSON), (codecs.JSONLINES, codecs.JSONLINES),
                                        (codecs.CSV, codecs.CSV), ("text/csv; charset=utf-8", codecs.CSV),
                                        ("application/x-ndjson", codecs.JSONLINES)])
def test_an_answer_is_in_its_requests_type_and_its_capture_parses_back_with_the_requests_codec(
        endpoint, recommender, sent, kind):
    status, headers, answer = endpoint.invoke(bodies(recommender)[kind], sent)  # no Accept, as data capture sees it
    assert status == 200, answer
    spelled = sent.split(";")[0]
    assert headers["content-type"] == spelled  # the request's own spelling, no charset added
    header = _workflow().data_capture_config("s3://bucket/capture")["CaptureContentTypeHeader"]
    listing = "CsvContentTypes" if kind == codecs.CSV else "JsonContentTypes"
    if spelled not in header[listing]:  # a client's own spelling: its capture config lists it as it sends it
        header[listing] = header[listing] + [spelled]
    request_side = _captured(bodies(recommender)[kind], spelled, header)
    answer_side = _captured(answer, headers["content-type"], header)
    assert request_side["encoding"] == answer_side["encoding"] != "BASE64"  # what Model Monitor requires
    parsed = _parse(answer_side["data"], headers["content-type"])
    if kind == codecs.JSON:
        assert len(parsed[0]["predictions"]) == 3
    elif kind == codecs.JSONLINES:
        assert len(parsed) == 3 and all(len(record["itemList"]) == 3 for record in parsed)
    else:
        assert len(parsed) == 3 and all(0 <= score <= 1 for score in parsed)


# ------------------------------------------------------------------------------------ fitting the container

def _lay_out(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


MEMINFO = "MemTotal:       16384000 kB\nMemFree:         1000 kB\n"


@pytest.mark.parametrize("files, cpus, memory, source", [
    # cgroup v2 inside a container: the mount is the container's own cgroup
    ({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "150000 100000\n",
      "sys/fs/cgroup/memory.max": "1073741824\n"}, 2, 1024 * MB, "cgroup memory.max"),
    ({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "max 100000\n", "sys/fs/cgroup/memory.max": "max\n"},
     8, 16384000 * 1024, "MemTotal"),
    # v2 on a host: the lowest limit along the path wins
    ({"proc/self/cgroup": "0::/a/b\n", "sys/fs/cgroup/a/memory.max": "536870912\n",
      "sys/fs/cgroup/a/b/memory.max": "max\n", "sys/fs/cgroup/a/b/cpu.max": "100000 100000\n"},
     1, 512 * MB, "cgroup memory.max"),
    # cgroup v1, as docker run --memory 1g --cpus 1 lays it out; 2^63 rounded to a page is no limit
    ({"proc/self/cgroup": "4:memory:/docker/abc\n1:cpu,cpuacct:/docker/abc\n",
      "sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824\n", "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "100000\n",
      "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, 1, 1024 * MB, "cgroup memory.limit_in_bytes"),
    ({"proc/self/cgroup": "4:memory:/\n", "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
      "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n", "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"},
     8, 16384000 * 1024, "MemTotal"),
])
def test_the_containers_cpus_and_memory_are_what_its_cgroup_enforces(tmp_path, files, cpus, memory, source):
    limits = resources.read_limits(_lay_out(tmp_path, {"proc/meminfo": MEMINFO, **files}), cpus=8)
    assert (limits.cpus, limits.memory_bytes, limits.memory_source) == (cpus, memory, source)


def test_workers_fit_the_cpus_and_the_memory_beside_the_shared_model():
    small = resources.Limits(cpus=4, memory_bytes=1024 * MB, memory_source="cgroup memory.max")
    fit = resources.fit_workers(small, shared_bytes=200 * MB, per_worker_bytes=300 * MB)
    # (1024 * 0.9 - 200) / 300 = 2.4: memory holds 2 of the 4 CPUs' workers
    assert fit.workers == 2 and "bound by memory" in fit.why and "memory holds 2" in fit.why
    assert resources.fit_workers(small, 200 * MB, 100 * MB).workers == 4  # 7 fit: one per CPU
    none = resources.fit_workers(small, 900 * MB, 300 * MB)
    assert none.workers == 1 and "WARNING: memory holds none" in none.why
    asked = resources.fit_workers(small, 200 * MB, 300 * MB, requested=3)
    assert asked.workers == 3 and "as SAGEMAKER_MODEL_SERVER_WORKERS says" in asked.why and "WARNING" in asked.why


def test_a_worker_is_costed_at_its_request_limits():
    realtime = resources.worker_bytes(6 * MB, 6 * MB)
    streamed = resources.worker_bytes(100 * MB, None)  # batch: bodies up to 100 MB, answers a chunk at a time
    built_whole = resources.worker_bytes(1024 * MB, 1024 * MB)  # async: 1 GB bodies and answers
    assert realtime < streamed < built_whole
    assert built_whole - resources.worker_bytes(0, 0) == (resources.BODY_COPIES + 1) * 1024 * MB


@pytest.mark.parametrize("value", ["lambda", "batch", "1"])
def test_an_unknown_endpoint_type_stops_serve_naming_the_types(value):
    with pytest.raises(ConfigError, match=f"NCF_ENDPOINT_TYPE='{value}' is not one of realtime, serverless, async"):
        ServeConfig.from_env({"NCF_ENDPOINT_TYPE": value})


def test_serve_logs_how_many_workers_it_runs_and_why(opt_ml, tmp_path):
    config = ServeConfig.from_env({"SAGEMAKER_BASE_DIR": str(opt_ml)})
    server = Serve(opt_ml, tmp_path / "serve.log")  # no SAGEMAKER_MODEL_SERVER_WORKERS: fitted
    try:
        wait_until(lambda: len(subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True,
                                              text=True).stdout.split()) == config.workers, 60,
                   lambda: server.log.read_text()[-2000:])
        log = server.log.read_text()
    finally:
        server.stop()
    assert f"with {config.workers} workers" in log and f"workers: {config.workers_why}" in log
    limits = resources.read_limits()
    assert f"{limits.cpus} CPU(s)" in config.workers_why and f"({limits.memory_source})" in config.workers_why
