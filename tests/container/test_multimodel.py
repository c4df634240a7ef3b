"""A multi-model endpoint as SageMaker drives it (`SAGEMAKER_MULTI_MODEL=true`): the real gunicorn with two
workers, loading, listing, invoking and unloading models through `/models`, answers compared with a
single-model server's on the same folder."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.fake_model import fake_model
from ncf.recommender import Recommender
from tests.container.opt_ml import ROOT
from tests.container.test_serve import free_port, request
from tests.waiting import wait_until

JSON_TYPE = {"Content-Type": "application/json"}
IN_STOCK = 'INCLUDE ItemID WHERE Items.IN_STOCK IN ("true")'
MODELS = ("plain", "shop", "wide")


class Server:
    """`serve` on loopback with its log in a file, which the tests read: which worker loaded or built a model."""

    def __init__(self, folder: Path, **env):
        self.port = free_port()
        self.folder = folder
        self.log = folder / f"serve-{self.port}.log"
        environment = {**os.environ, "SAGEMAKER_BASE_DIR": str(folder), "SAGEMAKER_BIND_TO_PORT": str(self.port),
                       "SAGEMAKER_MODEL_SERVER_WORKERS": "2", "TMPDIR": str(folder), **env}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-c", "from container.serve import main; main()"],
                                            cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_until(lambda: self._alive() and request(self.port, "GET", "/ping", timeout=1)[0] == 200, 60,
                   self.text, ignoring=(OSError,), interval=0.05)
        count = int(environment["SAGEMAKER_MODEL_SERVER_WORKERS"])
        wait_until(lambda: len(self.workers()) == count, 60, lambda: f"workers {self.workers()}, expected {count}")

    def _alive(self) -> bool:
        assert self.process.poll() is None, self.text()
        return True

    def text(self) -> str:
        return self.log.read_text()

    def workers(self) -> set[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return {int(pid) for pid in out.split()}

    def call(self, method: str, path: str, body=None, headers=None):
        """(status, JSON answer) of a request; every answer of this server is JSON."""
        data = body if body is None or isinstance(body, (str, bytes)) else json.dumps(body)
        status, kind, raw = request(self.port, method, path, data, {**JSON_TYPE, **(headers or {})}, timeout=60)
        assert kind.startswith("application/json"), (status, kind, raw[:300])
        return status, json.loads(raw)

    def load(self, name: str, folder: Path):
        return self.call("POST", "/models", {"model_name": name, "url": str(folder)})

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def parsed(raw: bytes, kind: str):
    """An answer's values: JSON (a list of them for JSON Lines), or CSV rows of numbers."""
    text = raw.decode()
    if kind == "text/csv":
        return [[float(v) for v in line.split(",")] for line in text.splitlines()]
    return [json.loads(line) for line in text.splitlines()] if kind == "application/jsonlines" else json.loads(text)


def same(a, b) -> bool:
    """Equal answers, scores within float32's rounding: a model's derived arrays (its items' first MLP layer)
    come out a unit in the last place apart when the BLAS that made them ran on another number of threads (a
    single-model server's master, before the workers' one-thread limit) or on arrays of another alignment."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def post(port: int, path: str, body: str, kind: str = "application/json", target: str | None = None):
    """(status, body) of a POST; `target`: the X-Amzn-SageMaker-Target-Model header SageMaker adds."""
    headers = {"Content-Type": kind, "Accept": kind, **({"X-Amzn-SageMaker-Target-Model": target} if target else {})}
    status, _, raw = request(port, "POST", path, body, headers, timeout=60)
    return status, raw


@pytest.fixture(scope="module")
def folders(tmp_path_factory, model_dir, shop_dir):
    """Model folders as SageMaker unpacks them under /opt/ml/models: a plain model, the shop model with item
    metadata and a deploy-time filter of its own (filters.json), and a wider one whose arrays are large
    enough to be shared between the workers (`shared_arrays.MIN_BYTES`)."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(model_dir, root / "plain")
    shutil.copytree(shop_dir, root / "shop")
    (root / "shop" / "filters.json").write_text(json.dumps({"in-stock": IN_STOCK}))
    fake_model(root / "wide", users=600, items=4_000, interactions=40_000, metadata=True)
    return root


@pytest.fixture(scope="module")
def mme(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("mme"), SAGEMAKER_MULTI_MODEL="true")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def singles(tmp_path_factory, folders):
    """A single-model server per folder: what each model's answers must equal."""
    servers = {}
    for name in MODELS:
        base = tmp_path_factory.mktemp(f"single-{name}")
        shutil.copytree(folders / name, base / "model")
        servers[name] = Server(base, SAGEMAKER_MODEL_SERVER_WORKERS="1")
    yield servers
    for server in servers.values():
        server.stop()


def battery(recommender) -> list[tuple[str, str]]:
    """A request of every kind `/invocations` takes, as (content type, body)."""
    users = [str(u) for u in recommender.users.decode([0, 1, 2])]
    items = [str(i) for i in recommender.items.decode([0, 1, 2, 3])]
    return [
        ("application/json", json.dumps({"user": users[0], "k": 5})),
        ("application/json", json.dumps({"user": "someone new", "k": 3})),
        ("application/json", json.dumps({"item": items[0], "k": 4})),
        ("application/json", json.dumps({"items": items[:3], "k": 4})),
        ("application/json", json.dumps({"user": users[1], "inputList": items})),
        ("application/json", json.dumps({"instances": [{"user": users[0], "item": items[1]}]})),
        ("application/jsonlines", "".join(json.dumps({"user": u, "k": 2}) + "\n" for u in users)),
        ("text/csv", "".join(f"{u},{i}\n" for u, i in zip(users, items))),
    ]


def test_a_server_without_models_answers_ping_and_says_where_invocations_go(mme):
    assert mme.call("GET", "/ping") == (200, {"status": "ok"})
    status, answer = mme.call("POST", "/invocations", {"user": "1"})
    assert status == 404 and "POST /models/NAME/invoke" in answer["error"]
    status, answer = mme.call("GET", "/no-such-route")
    assert status == 404 and "error" in answer


def test_every_worker_answers_a_model_loaded_through_another_as_a_single_model_server_would(
        mme, singles, folders, recommender, shop):
    for name in MODELS:
        status, answer = mme.load(name, folders / name)
        assert status == 200 and answer["modelName"] == name and answer["modelUrl"] == str(folders / name)
    wide = Recommender.load(folders / "wide")
    requests = {"plain": battery(recommender), "shop": battery(shop) + [
        ("application/json", json.dumps({"user": str(shop.users.decode([0])[0]), "k": 5, "filterName": "in-stock",
                                         "metadataColumns": ["TITLE", "GENRES"]})),
        ("application/json", json.dumps({"user": str(shop.users.decode([1])[0]), "k": 5, "filter": IN_STOCK}))],
        "wide": battery(wide) + [("application/json", json.dumps({"user": 1, "k": 6, "metadataColumns": ["GENRES"],
                                                                  "diversity": {"column": "GENRES", "maxPerValue": 1}}))]}
    expected = {name: [post(singles[name].port, "/invocations", body, kind) for kind, body in requests[name]]
                for name in MODELS}
    assert all(status == 200 for answers in expected.values() for status, _ in answers)

    def served_by_both() -> bool:
        for name in MODELS:
            for (kind, body), (_, want) in zip(requests[name], expected[name]):
                status, got = post(mme.port, f"/models/{name}/invoke", body, kind, target=f"{name}.tar.gz")
                assert status == 200 and same(parsed(got, kind), parsed(want, kind)), (body, got, want)
        # The first use in the worker that did not load a model is logged, with the header SageMaker passes on
        # from InvokeEndpoint's TargetModel.
        log = mme.text()
        built = {(name, int(pid)) for name, target, pid in re.findall(
            r"model '(\w+)' \(X-Amzn-SageMaker-Target-Model (\w+)\.tar\.gz\) ready in worker (\d+)", log)
            if name == target}
        loaded = {(name, int(pid)) for name, pid in re.findall(r"model '(\w+)' .*? loaded from .*? by worker (\d+)", log)}
        return all({pid for n, pid in built | loaded if n == name} == mme.workers() for name in MODELS)

    wait_until(served_by_both, 120, lambda: "both workers did not serve both models:\n" + mme.text()[-3000:])
    # One copy of the wide model's weights and what the scorer derives from them: both workers map the
    # registry's files rather than hold their own.
    manifests = {json.loads(m.read_text())["modelName"]: m for m in mme.folder.glob("ncf-models-*/models/*/model.json")}
    arrays = json.loads(manifests["wide"].read_text())["arrays"]
    weights = {str(manifests["wide"].parent / name) for name, paths in arrays.items()
               if any(p.startswith((".artifact.weights", ".scorer.", "._item_vectors")) for p in paths)}
    assert len(weights) >= 5
    for pid in mme.workers():
        mapped = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()}
        assert weights <= mapped, pid


def test_models_are_listed_a_page_at_a_time_and_described_one_at_a_time(mme, folders):
    for name in ("list-a", "list-b", "list-c"):
        assert mme.load(name, folders / "plain")[0] == 200
    seen, token, pages = [], None, 0
    while True:
        status, page = mme.call("GET", "/models?page_size=2" + (f"&next_page_token={token}" if token else ""))
        assert status == 200 and len(page["models"]) <= 2
        seen += [m["modelName"] for m in page["models"]]
        pages += 1
        token = page.get("nextPageToken")
        if token is None:
            break
    assert seen == sorted(seen) and {"list-a", "list-b", "list-c"} <= set(seen) and pages >= 2
    status, one = mme.call("GET", "/models/list-b")
    assert status == 200 and one["modelName"] == "list-b" and one["modelUrl"] == str(folders / "plain")
    assert one["memoryBytes"] > 0 and one["kind"] == "neumf"
    assert mme.call("GET", "/models?page_size=0")[0] == 400
    status, answer = mme.call("GET", "/models?next_page_token=%25%25")
    assert status == 400 and "next_page_token" in answer["error"]
    for name in ("list-a", "list-b", "list-c"):
        assert mme.call("DELETE", f"/models/{name}")[0] == 200


def test_a_loaded_name_is_a_409_and_an_unloaded_model_is_a_404_in_every_worker(mme, folders, recommender):
    user = str(recommender.users.decode([0])[0])
    assert mme.load("twice", folders / "plain")[0] == 200
    status, answer = mme.load("twice", folders / "shop")
    assert status == 409 and "loaded already" in answer["error"]
    for _ in range(10):  # both workers build it
        assert post(mme.port, "/models/twice/invoke", json.dumps({"user": user, "k": 3}))[0] == 200
    status, answer = mme.call("DELETE", "/models/twice")
    assert status == 200 and answer["status"] == "unloaded"
    for _ in range(20):  # whichever worker answers has dropped it
        status, raw = post(mme.port, "/models/twice/invoke", json.dumps({"user": user, "k": 3}))
        assert status == 404 and "not loaded" in json.loads(raw)["error"]
    assert mme.call("GET", "/models/twice")[0] == 404
    assert mme.call("DELETE", "/models/twice")[0] == 404
    assert "twice" not in [m["modelName"] for m in mme.call("GET", "/models")[1]["models"]]
    # Loaded again from another folder, the name serves the other model (the shop's metadata columns).
    assert mme.load("twice", folders / "shop")[0] == 200
    for _ in range(10):
        status, raw = post(mme.port, "/models/twice/invoke", json.dumps({"user": user, "k": 2,
                                                                         "metadataColumns": ["TITLE"]}))
        assert status == 200 and all("title" in e["metadata"] for e in json.loads(raw)["itemList"])
    assert mme.call("DELETE", "/models/twice")[0] == 200


def test_a_broken_load_request_or_folder_is_a_4xx_that_says_why(mme, folders, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(folders / "plain", broken)
    (broken / "weights.npz").write_bytes(b"not a zip file")
    bad_filter = tmp_path / "bad-filter"
    shutil.copytree(folders / "plain", bad_filter)
    (bad_filter / "filters.json").write_text('{"x": "INCLUDE ItemID WHERE Items.NOPE IN (\\"a\\")"}')
    cases = [
        ("not json", 400, "must be JSON"),
        ({"url": str(folders / "plain")}, 400, "model_name must be"),
        ({"model_name": "m", "url": 7}, 400, "url must be"),
        ({"model_name": "m", "url": str(tmp_path / "nowhere")}, 404, "no such folder"),
        ({"model_name": "m", "url": str(tmp_path / "file")}, 400, "is not a folder"),
        ({"model_name": "m", "url": str(tmp_path / "empty")}, 400, "holds no metadata.json"),
        ({"model_name": "m", "url": str(broken)}, 400, "weights.npz"),
        ({"model_name": "m", "url": str(bad_filter)}, 400, "NOPE"),
    ]
    for body, status, words in cases:
        got, answer = mme.call("POST", "/models", body)
        assert got == status and words in answer["error"], (body, got, answer)
    assert mme.call("GET", "/models/m")[0] == 404


def test_a_load_past_the_memory_budget_is_a_507_until_a_model_is_unloaded(tmp_path, folders):
    server = Server(tmp_path, SAGEMAKER_MULTI_MODEL="true", NCF_MODELS_MEMORY_MB="6")
    try:
        status, first = server.load("first", folders / "plain")
        assert status == 200 and 0 < first["memoryBytes"] <= 6 * 2**20 < 2 * first["memoryBytes"]
        status, answer = server.load("second", folders / "plain")
        assert status == 507 and "does not fit in memory" in answer["error"]
        assert answer["budget_bytes"] == 6 * 2**20 and answer["used_bytes"] == first["memoryBytes"]
        assert server.call("GET", "/models/second")[0] == 404
        assert server.call("DELETE", "/models/first")[0] == 200
        assert server.load("second", folders / "plain")[0] == 200
    finally:
        server.stop()


def test_a_model_loaded_again_after_an_unload_is_not_timed_again(mme, folders, tmp_path):
    # SageMaker unloads the least used models when memory runs short and loads them again when called.
    folder = tmp_path / "tenant"
    shutil.copytree(folders / "plain", folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**metadata, "tenant": str(tmp_path)}))  # a model of its own

    def load_line() -> str:
        status, _ = mme.load("evicted", folder)
        assert status == 200
        return [line for line in mme.text().splitlines() if "model 'evicted'" in line and "loaded from" in line][-1]

    first = load_line()
    assert "timing its requests" in first and "earlier load" not in first
    assert mme.call("DELETE", "/models/evicted")[0] == 200
    assert "its costs measured at an earlier load" in load_line()
    assert mme.call("DELETE", "/models/evicted")[0] == 200


def test_two_loads_of_one_name_at_once_load_it_once(mme, folders):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(s for s, _ in pool.map(lambda _: mme.load("raced", folders / "plain"), range(4)))
    assert statuses == [200, 409, 409, 409]
    assert [m["modelName"] for m in mme.call("GET", "/models")[1]["models"]].count("raced") == 1
    assert mme.call("DELETE", "/models/raced")[0] == 200
