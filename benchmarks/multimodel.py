"""A multi-model endpoint's memory, load time and latency (issue #35's targets), as a stamped result and a
Markdown table.

    .venv/bin/python -m benchmarks.multimodel              # ~5 min; writes results/multimodel.json

One small model, a default NeuMF trained briefly on synthetic data of ml-latest-small's shape (610 users, 9,724
items, 100,836 interactions: the widths and arrays of a real one; what it learned does not change what it
costs), copied into 50 folders as SageMaker unpacks 50 model.tar.gz files, served by the real `serve` with
`SAGEMAKER_MULTI_MODEL=true` and 2 workers:

- memory: PSS and RSS of the master and its workers with no model, one model and 50 models loaded (each one
  invoked until both workers map its arrays: every worker serving every model), then after unloading 49 and
  all 50 (target: 50 models within 2 GB of PSS in all);
- loading: each `POST /models`, as the server timed it and as the client waited (target: <= 1 s): every copy
  is a model of its own (its metadata.json says which tenant), so every first load times its requests; and
  10 models unloaded and loaded again, as SageMaker does when it evicts a model, whose costs were kept;
- latency: top-10 of one model through `POST /models/NAME/invoke` against a single-model server on the same
  folder (2 workers too), p50 and p99, one connection, the two servers in turn request by request so that the
  machine's drift weighs on both alike, and the median of the paired differences (target: <= 1 ms more); and,
  as a loaded machine moves both servers' figures by more than that, the same top-10 in one process through
  the model's own app and through the dispatch.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks import results
from benchmarks.server import Server

SHAPE = {"users": 610, "items": 9_724, "interactions": 100_836}
MODELS = 50


def trained(folder: Path) -> Path:
    """A default NeuMF of ml-latest-small's shape in `folder`, trained for one epoch (reused when there)."""
    if (folder / "metadata.json").is_file():
        return folder
    from ncf import artifacts
    from ncf.dataset import prepare
    from ncf.synthetic import SyntheticSpec, generate
    from ncf.training import TrainConfig, fit, to_artifact

    data = prepare(generate(SyntheticSpec(seed=0, **SHAPE)).interactions())
    result = fit(data, TrainConfig(epochs=1), on_epoch=lambda e: None)
    artifacts.save(folder, to_artifact(result, data, extra={"threshold": 0.5}))
    return folder


def memory_mb(server: Server) -> dict[str, float]:
    """PSS (shared pages counted once) and RSS (counted in each process) of the master and its workers."""
    totals = {"Pss": 0, "Rss": 0}
    for pid in [server.process.pid] + workers(server):
        for line in open(f"/proc/{pid}/smaps_rollup"):
            field = line.split(":")[0]
            if field in totals:
                totals[field] += int(line.split()[1])
    return {"pss_mb": totals["Pss"] / 1024, "rss_mb": totals["Rss"] / 1024}


def workers(server: Server) -> list[int]:
    return [int(p) for p in os.popen(f"pgrep -P {server.process.pid}").read().split()]


def call(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(method, path, json.dumps(body) if body is not None else None,
                           {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def served_by_every_worker(server: Server, name: str, user, tries: int = 400) -> None:
    """Invokes `name` until every worker maps its arrays from the registry (its first use there built it)."""
    from container.model_store import key

    folder = key(name)
    for n in range(tries):
        status, answer = call(server.port, "POST", f"/models/{name}/invoke", {"user": user, "k": 10})
        if status != 200:
            raise RuntimeError(f"{name}: {status} {answer}")
        if n % 5 == 4 and all(folder in open(f"/proc/{pid}/maps").read() for pid in workers(server)):
            return
    raise RuntimeError(f"{name} was not built by every worker after {tries} invocations")


def latencies(path: str, users: list, n: int, connection: http.client.HTTPConnection) -> list[float]:
    times = []
    for i in range(n):
        body = json.dumps({"user": users[i % len(users)], "k": 10})
        start = time.perf_counter()
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        times.append((time.perf_counter() - start) * 1000)
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status}")
    return times


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"p50_ms": values[len(values) // 2], "p99_ms": values[int(len(values) * 0.99) - 1], "requests": len(values)}


def dispatch(work: Path, folder: Path, requests: int) -> dict:
    """Top-10 through the model's own app (`/invocations`) against the same app behind the multi-model
    dispatch (`/models/NAME/invoke`), in this process, no network: what the dispatch itself adds (a stat of
    the registry, a lookup, the path rewritten), without the noise of a loaded machine's two servers."""
    from werkzeug.test import Client

    from container.app import create_app
    from container.model_store import ModelStore
    from container.multimodel import MultiModel
    from container.serve_config import ServeConfig
    from ncf.recommender import Recommender

    config = ServeConfig.from_env({"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
                                   "NCF_MODELS_MEMORY_MB": "4096", "SAGEMAKER_BASE_DIR": str(work)})
    store = ModelStore(work / "dispatch-registry")
    store.clear()
    server = MultiModel(config, create_app, store, 4096 * 2**20)
    through = Client(server)
    response = through.post("/models", json={"model_name": "m", "url": str(folder)})
    if response.status_code != 200:
        raise RuntimeError(response.get_data(as_text=True))
    direct = Client(server.served["m"].app)
    recommender = Recommender.load(folder)
    users = recommender.users.decode(range(0, len(recommender.users), 7))
    paths = {"/invocations, the model's app": (direct, "/invocations"),
             "/models/NAME/invoke, through the dispatch": (through, "/models/m/invoke")}
    times: dict[str, list[float]] = {name: [] for name in paths}
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # as a worker scores (gunicorn.conf.py's post_fork)
    for i in range(requests + 50):  # the two paths in turn, request by request: the machine's drift hits both
        body = {"user": users[i % len(users)], "k": 10}
        for name, (client, path) in paths.items():
            start = time.perf_counter()
            if client.post(path, json=body).status_code != 200:
                raise RuntimeError(path)
            if i >= 50:  # the first 50 warm up
                times[name].append((time.perf_counter() - start) * 1000)
    store.clear()
    out = {name: percentiles(values) for name, values in times.items()}
    first, second = times.values()
    return {**out, "overhead_p50_ms": sorted(b - a for a, b in zip(first, second))[len(first) // 2]}


def run(work: Path, requests: int) -> dict:
    from ncf.recommender import Recommender

    model = trained(work / "trained")
    folders = []
    for n in range(MODELS):
        folder = work / "models" / f"tenant-{n:02d}" / "model"
        if not folder.is_dir():
            shutil.copytree(model, folder)
            # A model of its own (another training job's metadata.json), so that its load times its requests.
            metadata = json.loads((folder / "metadata.json").read_text())
            (folder / "metadata.json").write_text(json.dumps({**metadata, "tenant": n}))
        folders.append(folder)
    recommender = Recommender.load(model)
    users = recommender.users.decode(range(0, len(recommender.users), 7))
    env = {"SAGEMAKER_MULTI_MODEL": "true", "TMPDIR": str(work)}
    mme = Server(work / "mme-base", None, 2, env)
    single_base = work / "single-base"
    if not (single_base / "model").is_dir():
        shutil.copytree(model, single_base / "model")
    memory, loads = [], []
    try:
        memory.append({"state": "no model", **memory_mb(mme)})
        for n, folder in enumerate(folders):
            start = time.perf_counter()
            status, answer = call(mme.port, "POST", "/models", {"model_name": folder.parent.name, "url": str(folder)})
            waited = time.perf_counter() - start
            if status != 200:
                raise RuntimeError(f"load {folder}: {status} {answer}")
            loads.append({"server_s": answer["seconds"], "client_s": waited, "memory_bytes": answer["memoryBytes"]})
            served_by_every_worker(mme, folder.parent.name, users[0])
            if n == 0:
                memory.append({"state": "1 model, in both workers", **memory_mb(mme)})
        memory.append({"state": f"{MODELS} models, each in both workers", **memory_mb(mme)})
        single = Server(single_base, None, 2)
        try:
            times: dict[str, list[float]] = {"single-model server, /invocations": [],
                                             "multi-model server, /models/NAME/invoke": []}
            paths = dict(zip(times, ["/invocations", f"/models/{folders[0].parent.name}/invoke"]))
            ports = dict(zip(times, [single.port, mme.port]))
            connections = {name: http.client.HTTPConnection("127.0.0.1", ports[name], timeout=60) for name in times}
            for name in times:  # warm-up: first requests, caches
                latencies(paths[name], users, 50, connections[name])
            for i in range(requests):  # the two servers in turn, request by request: the machine's drift hits both
                for name in times:
                    times[name] += latencies(paths[name], users[i % len(users):], 1, connections[name])
        finally:
            single.stop()
        reloads = []
        for folder in folders[1:11]:  # evicted by SageMaker and called again: its costs were kept
            call(mme.port, "DELETE", f"/models/{folder.parent.name}")
            start = time.perf_counter()
            status, answer = call(mme.port, "POST", "/models", {"model_name": folder.parent.name, "url": str(folder)})
            if status != 200:
                raise RuntimeError(f"reload {folder}: {status} {answer}")
            reloads.append({"server_s": answer["seconds"], "client_s": time.perf_counter() - start})
        for folder in folders[1:]:
            call(mme.port, "DELETE", f"/models/{folder.parent.name}")
        time.sleep(5)  # every worker drops what was unloaded within its 2 s sweep
        memory.append({"state": f"after unloading {MODELS - 1}", **memory_mb(mme)})
        call(mme.port, "DELETE", f"/models/{folders[0].parent.name}")
        time.sleep(5)
        memory.append({"state": "after unloading all", **memory_mb(mme)})
    finally:
        mme.stop()
    latency = {name: percentiles(values) for name, values in times.items()}
    single, multi = times.values()
    paired = sorted(b - a for a, b in zip(single, multi))[len(single) // 2]
    server_s = sorted(load["server_s"] for load in loads)
    client_s = sorted(load["client_s"] for load in loads)
    again_s = sorted(load["client_s"] for load in reloads)
    return {"model": f"default NeuMF trained 1 epoch on synthetic data of ml-latest-small's shape "
                     f"({SHAPE['users']:,} users x {SHAPE['items']:,} items, {SHAPE['interactions']:,} interactions)",
            "models": MODELS, "workers": 2, "memory": memory,
            "load": {"server_p50_s": server_s[len(server_s) // 2], "server_max_s": server_s[-1],
                     "client_p50_s": client_s[len(client_s) // 2], "client_max_s": client_s[-1],
                     "reload_client_p50_s": again_s[len(again_s) // 2], "reload_client_max_s": again_s[-1],
                     "reloads": len(again_s),
                     "budget_mb_per_model": loads[0]["memory_bytes"] / 2**20},
            "latency": latency, "overhead_p50_ms": paired,
            "dispatch": dispatch(work, folders[0], requests),
            "load_average": os.getloadavg()}


def markdown(result: dict) -> str:
    memory = result["memory"]
    rows = [[m["state"], f"{m['pss_mb']:,.0f}", f"{m['rss_mb']:,.0f}"] for m in memory]
    per_model = (memory[2]["pss_mb"] - memory[0]["pss_mb"]) / result["models"]
    load, latency = result["load"], result["latency"]
    return "\n\n".join([
        f"{results.provenance(result)} {result['model']}, {result['workers']} workers.",
        results.table(["models loaded", "PSS MB (all processes)", "RSS MB (all processes)"], rows, "lrr"),
        results.table(["figure", "value", "target"], [
            [f"PSS per model, {result['models']} loaded", f"{per_model:.1f} MB "
             f"(budget counts {load['budget_mb_per_model']:.1f})", ""],
            [f"PSS with {result['models']} models", f"{memory[2]['pss_mb']:,.0f} MB", "<= 2,048 MB"],
            ["a load, p50 / max (server; client)", f"{load['server_p50_s']:.2f} / {load['server_max_s']:.2f} s "
             f"({load['client_p50_s']:.2f} / {load['client_max_s']:.2f} s)", "<= 1 s"],
            [f"a load again after an unload, costs kept, p50 / max of {load['reloads']} (client)",
             f"{load['reload_client_p50_s']:.2f} / {load['reload_client_max_s']:.2f} s", "<= 1 s"],
            *[[f"top-10, {name}: p50 / p99", f"{v['p50_ms']:.2f} / {v['p99_ms']:.2f} ms", ""]
              for name, v in latency.items()],
            ["invoke over a single-model server, median of paired requests",
             f"{result['overhead_p50_ms']:+.2f} ms", "<= +1 ms"],
            *[[f"top-10 in one process, {name}: p50 / p99", f"{v['p50_ms']:.3f} / {v['p99_ms']:.3f} ms", ""]
              for name, v in result["dispatch"].items() if name != "overhead_p50_ms"],
            ["what the dispatch adds, median of paired requests (one process)",
             f"{result['dispatch']['overhead_p50_ms'] * 1000:+.0f} us", "<= +1 ms"],
        ], "lrl")])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/ncf-bench-multimodel"),
                   help="where the trained model, its 50 copies and the servers' files go (kept between runs)")
    p.add_argument("--requests", type=int, default=2000, help="top-10 requests per server")
    p.add_argument("--note", help="what else shared the machine while it ran")
    results.add_argument(p, "multimodel")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    figures = run(args.work, args.requests)
    written = results.write(args.json, "multimodel", sys.argv[1:] if argv is None else argv, figures, args.note)
    print(markdown(written))


if __name__ == "__main__":
    main()
