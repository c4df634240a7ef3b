"""Serving speed of the real `serve` against two references, in one run, as a Markdown table.

    .venv/bin/python -m benchmarks.serve_bench --movielens ml-latest-small

Trains a model on the ratings (default hyperparameters, few epochs: speed does not depend on quality), times
the bare numpy arithmetic of one top-10 (`numpy_top10_ms`, the roofline top-10 requests are read against), then
for each server — ours (`serve`), a no-op Flask route and the naive Keras `model.predict` server of AWS's
examples, all under the same gunicorn settings (container/gunicorn.conf.py, 2 gevent workers; ours and the no-op
also with sync workers, the naive server only with them) — drives
requests with wrk (Debian package `wrk`) on loopback and reports requests/s and p50/p99 latency. Also the
time from start to the first 200 /ping, and memory (PSS, shared pages counted once) with 1 and 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.datasets import add_arguments, ratings_path  # noqa: E402
from benchmarks.server import Server  # noqa: E402

WORKERS = 2  # the servers' workers, one per core: the numpy roofline's requests/s is WORKERS / its time


def wrk(port: int, bodies: list[str], content_type: str, connections: int, seconds: int) -> dict:
    """wrk on loopback cycling through `bodies` (different users and items, so no answer repeats)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'local headers = {{["Content-Type"] = {json.dumps(content_type)}}}\n')
        script.write("local bodies = {" + ",".join(json.dumps(b) for b in bodies) + "}\n")
        script.write("local n = 0\n"
                     "request = function()\n"
                     "  n = n % #bodies + 1\n"
                     '  return wrk.format("POST", "/invocations", headers, bodies[n])\n'
                     "end\n")
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "60s", "--latency",
                          "-s", script.name, f"http://127.0.0.1:{port}/invocations"],
                         capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([0-9.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)), "p50_ms": latency("50"),
            "p99_ms": latency("99"), "non_2xx": int(errors.group(1)) if errors else 0}


def numpy_top10_ms(kind: str, weights: dict, repeats: int = 7, calls: int = 200) -> dict[str, float]:
    """The roofline of one top-10: milliseconds of one core (BLAS held to one thread, as in a worker) for the
    bare numpy arithmetic of scoring every item for one user and choosing 10, the large buffers allocated
    beforehand, no Python between the products (best of `repeats`). Two forms, both checked against
    `ncf.inference.NumpyScorer` before they are timed:

    - "model's shapes": the network's layers over every item: the MLP's concatenated embeddings
      `[n_items, layers[0]]` through each dense layer, the GMF product (its head weights folded into the user's
      row: one matrix-vector product, a little cheaper than Keras' concatenation and head);
    - "cheapest exact": what serving computes (`ncf.inference`): the item side of the first layer precomputed,
      then per layer one `max(a, -c)` pass and one product over items as columns, and GMF as one product.
    """
    from threadpoolctl import threadpool_limits

    from ncf.inference import NumpyScorer

    w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    expected = NumpyScorer(kind, w).all_items(np.zeros(1, dtype=np.int64))[0]
    scores = np.empty(len(expected), np.float32)
    if kind == "mf":
        item, user = w["mf/item"], w["mf/user"][0]
        offset = w["mf/item_bias"] + w["mf/user_bias"][0] + w["mf/bias"]

        def only_form():
            np.matmul(item, user, out=scores)
            np.add(scores, offset, out=scores)
            return np.argpartition(scores, -10)[-10:]

        forms = {"model's shapes": only_form, "cheapest exact": only_form}
    else:
        forms = _neumf_forms(w, scores)
    timed = {}
    with threadpool_limits(1):
        for name, form in forms.items():
            form()
            if not np.allclose(scores, expected, rtol=1e-4, atol=1e-4):
                raise SystemExit(f"numpy_top10_ms: the {name!r} form scores differently from NumpyScorer")
            timed[name] = _best_ms(form, repeats, calls)
    return timed


def _neumf_forms(w: dict, scores: np.ndarray) -> dict:
    """`numpy_top10_ms`'s two forms for the kinds with a head (NeuMF, GMF, MLP), writing user 0's logits into
    `scores`."""
    head, bias = w["head/kernel"][:, 0], float(w["head/bias"][0])
    gmf = "gmf/item" in w
    factors = w["gmf/item"].shape[1] if gmf else 0
    gmf_user = w["gmf/user"][0] * head[:factors] if gmf else None
    dense = [(w[f"mlp/dense_{n}/kernel"], w[f"mlp/dense_{n}/bias"]) for n in range(len(w))
             if f"mlp/dense_{n}/kernel" in w]
    n_items = len(scores)
    if dense:
        half = w["mlp/user"].shape[1]
        joined = np.empty((n_items, 2 * half), np.float32)  # [user row repeated, item embedding]
        joined[:, half:] = w["mlp/item"]
        rows = [np.empty((n_items, k.shape[1]), np.float32) for k, _ in dense]
        mlp_user = w["mlp/user"][0]
        kernel0 = dense[0][0]
        item_part = np.ascontiguousarray((w["mlp/item"] @ kernel0[half:] + dense[0][1]).T)
        user_part = (mlp_user @ kernel0[:half])[:, None]
        rest = [(np.ascontiguousarray(k.T), b[:, None]) for k, b in dense[1:]]
        columns = [np.empty((k.shape[1], n_items), np.float32) for k, _ in dense]
        mlp_head = head[factors:]

    def start():
        if gmf:
            np.matmul(w["gmf/item"], gmf_user, out=scores)
            np.add(scores, bias, out=scores)
        else:
            scores.fill(bias)

    def model_shapes():
        start()
        if dense:
            joined[:, :half] = mlp_user
            x = joined
            for (kernel, b), out in zip(dense, rows):
                np.matmul(x, kernel, out=out)
                np.add(out, b, out=out)
                np.maximum(out, 0.0, out=out)
                x = out
            np.add(scores, x @ mlp_head, out=scores)
        return np.argpartition(scores, -10)[-10:]

    def cheapest():
        start()
        if dense:
            c = user_part
            x = np.maximum(item_part, -c, out=columns[0])
            for (kernel, b), out in zip(rest, columns[1:]):
                c = kernel @ c + b
                np.matmul(kernel, x, out=out)
                x = np.maximum(out, -c, out=out)
            np.add(scores, mlp_head @ x, out=scores)
            np.add(scores, float(mlp_head @ c[:, 0]), out=scores)
        return np.argpartition(scores, -10)[-10:]

    return {"model's shapes": model_shapes, "cheapest exact": cheapest}


def _best_ms(f, repeats: int, calls: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            f()
        best = min(best, (time.perf_counter() - start) / calls * 1e3)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--seconds", type=int, default=8, help="per measurement")
    p.add_argument("--model", default="neumf", help="model kind to serve (neumf, the default; mf, gmf, mlp)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if not shutil.which("wrk"):
        sys.exit("serve_bench.py needs wrk: apt-get install wrk")

    from ncf import artifacts
    from ncf.data import read_interactions
    from ncf.dataset import prepare
    from ncf.training import TrainConfig, fit, to_artifact

    base = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    data = prepare(read_interactions(ratings_path(args)))
    result = fit(data, TrainConfig(model=args.model, epochs=3), on_epoch=lambda e: None)
    artifact = to_artifact(result, data)
    artifacts.save(base / "model", artifact)
    result.model.save(base / "model" / "model.keras")

    roofline = numpy_top10_ms(artifact.kind, artifact.weights)  # before any server runs
    users = data.users.decode(range(data.n_users))
    items = data.items.decode(range(data.n_items))
    rng = random.Random(0)
    one_pair = [json.dumps({"instances": [{"user": rng.choice(users), "item": rng.choice(items)}]})
                for _ in range(200)]
    hundred = [json.dumps({"instances": [{"user": rng.choice(users), "item": rng.choice(items)} for _ in range(100)]})
               for _ in range(20)]
    top10 = [json.dumps({"user": u, "k": 10}) for u in users[:200]]
    batch = ["".join(json.dumps({"user": users[n % len(users)], "k": 10}) + "\n" for n in range(1000))]
    scenarios = {
        "one pair": (one_pair, "application/json"),
        "100 pairs": (hundred, "application/json"),
        "top-10 recommend": (top10, "application/json"),
        "JSON Lines, 1,000 users": (batch, "application/jsonlines"),
    }
    rows = []

    def measure(server_name: str, server: Server, name: str, bodies: list[str], kind: str):
        for connections in (1, 4):
            r = wrk(server.port, bodies, kind, connections, args.seconds)
            rows.append({"server": server_name, "request": name, "connections": connections, **r})
            print(f"{server_name} / {name} / c={connections}: {r}", file=sys.stderr)

    ours = Server(base, None, WORKERS)
    startup = {"first_ping_s": ours.first_ping, "pss_2_workers_mb": ours.pss_mb()}
    for name, (body, kind) in scenarios.items():
        measure("serve", ours, name, body, kind)
    ours.stop()
    single = Server(base, None, 1)
    startup["pss_1_worker_mb"] = single.pss_mb()
    single.stop()

    noop = Server(base, "benchmarks.reference_apps:noop_app()", WORKERS)
    measure("no-op Flask", noop, "one pair", one_pair, "application/json")
    noop.stop()
    # The same servers with gunicorn's sync workers (what serve ran before gevent): what gevent costs.
    ours_sync = Server(base, None, WORKERS, worker_class="sync")
    for name in ("one pair", "top-10 recommend"):
        measure("serve, sync workers", ours_sync, name, *scenarios[name])
    ours_sync.stop()
    noop_sync = Server(base, "benchmarks.reference_apps:noop_app()", WORKERS, worker_class="sync")
    measure("no-op Flask, sync workers", noop_sync, "one pair", one_pair, "application/json")
    noop_sync.stop()

    # AWS's examples run sync workers (behind nginx); TensorFlow is not run under gevent's patched threads.
    naive = Server(base, "benchmarks.reference_apps:keras_app()", WORKERS, {"NAIVE_MODEL_DIR": str(base / "model")},
                   worker_class="sync")
    for name in ("one pair", "top-10 recommend"):
        bodies, kind = scenarios[name]
        for _ in range(10):  # load the model in both workers, and trace predict, before measuring
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{naive.port}/invocations",
                                                          bodies[_ % len(bodies)].encode(), {"Content-Type": kind}), timeout=60).read()
        measure("naive Keras predict", naive, name, bodies, kind)
    naive.stop()
    shutil.rmtree(base, ignore_errors=True)

    def find(server, request, connections):
        return next(r for r in rows if r["server"] == server and r["request"] == request
                    and r["connections"] == connections)

    from benchmarks.results import describe, stamp

    print(f"\n#### Serving speed ({describe(stamp())}; {args.model}, {args.seconds} s a row)")
    print("\n| server | request | connections | requests/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['server']} | {r['request']} | {r['connections']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['non_2xx']} |")
    floor = find("no-op Flask", "one pair", 4)["rps"]
    ratios = {
        "one pair / no-op (c=4)": find("serve", "one pair", 4)["rps"] / floor,
        "top-10 / no-op (c=4)": find("serve", "top-10 recommend", 4)["rps"] / floor,
        "p50 one pair - no-op p50 (c=1), ms": find("serve", "one pair", 1)["p50_ms"]
        - find("no-op Flask", "one pair", 1)["p50_ms"],
        "one pair, gevent / sync workers (c=4)": find("serve", "one pair", 4)["rps"]
        / find("serve, sync workers", "one pair", 4)["rps"],
        "top-10, gevent / sync workers (c=4)": find("serve", "top-10 recommend", 4)["rps"]
        / find("serve, sync workers", "top-10 recommend", 4)["rps"],
        "no-op, gevent / sync workers (c=4)": floor / find("no-op Flask, sync workers", "one pair", 4)["rps"],
        "one pair / naive (c=4)": find("serve", "one pair", 4)["rps"] / find("naive Keras predict", "one pair", 4)["rps"],
        "top-10 / naive (c=4)": find("serve", "top-10 recommend", 4)["rps"]
        / find("naive Keras predict", "top-10 recommend", 4)["rps"],
        "numpy top-10 (model's shapes), ms of one core": roofline["model's shapes"],
        "numpy top-10 (cheapest exact), ms of one core": roofline["cheapest exact"],
        "top-10 / numpy roofline, model's shapes (2 cores, c=4)": find("serve", "top-10 recommend", 4)["rps"]
        / (WORKERS * 1e3 / roofline["model's shapes"]),
        "top-10 / numpy roofline, cheapest exact (2 cores, c=4)": find("serve", "top-10 recommend", 4)["rps"]
        / (WORKERS * 1e3 / roofline["cheapest exact"]),
        "top-10 / min(no-op, cheapest exact numpy) (c=4)": find("serve", "top-10 recommend", 4)["rps"]
        / min(floor, WORKERS * 1e3 / roofline["cheapest exact"]),
        "first 200 /ping after start, s": startup["first_ping_s"],
        "PSS 2 workers / 1 worker": startup["pss_2_workers_mb"] / startup["pss_1_worker_mb"],
    }
    print("\n| ratio or figure | value |\n|---|---:|")
    for name, value in ratios.items():
        print(f"| {name} | {value:.3f} |" if value < 1 else f"| {name} | {value:.2f} |")
    print(f"\nPSS: {startup['pss_1_worker_mb']:.0f} MB with 1 worker, {startup['pss_2_workers_mb']:.0f} MB with 2")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ratios": ratios, "startup": startup}, indent=2))


if __name__ == "__main__":
    main()
