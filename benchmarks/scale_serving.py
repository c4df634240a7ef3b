"""Sections 3 and 4 of `benchmarks.scale`: the 25M models served by the real `serve`, one top-10 at a time and
as a batch transform's advertised payload (what each measures: `benchmarks/scale.py`'s docstring)."""

from __future__ import annotations

import http.client
import json
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import results
from benchmarks.jobs import ML25M
from benchmarks.server import Server


def top10_latency(server: Server, users: list, requests: int = 300) -> tuple[float, float]:
    """p50 and p99 milliseconds of single top-10 requests at one connection (keep-alive)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    times = []
    for n in range(requests):
        body = json.dumps({"user": users[n % len(users)], "k": 10})
        t0 = time.perf_counter()
        connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        times.append((time.perf_counter() - t0) * 1000)
        if response.status != 200:
            raise RuntimeError(f"top-10 answered {response.status}")
    connection.close()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99) - 1]


def models_25m(work: Path, trained_model: Path | None) -> dict[str, Path]:
    """The 25M models served: the trained MF of section 1 (when there is one) and a NeuMF folder of the same
    shape with random weights (`benchmarks/fake_model.py`)."""
    from benchmarks.fake_model import fake_model

    fake = work / "serve-neumf" / "model"
    if not (fake / "metadata.json").exists():
        fake_model(fake, "neumf", **ML25M)
    trained = {}
    if trained_model is not None:
        metadata = json.loads((trained_model / "metadata.json").read_text())
        trained = {f"{metadata['kind']} (trained, {metadata['data']['interactions'] / 1e6:.0f}M)": trained_model}
    return {**trained, "neumf (random weights, same shape)": fake}


def serving_root(work: Path, name: str, folder: Path) -> Path:
    """A fresh `SAGEMAKER_BASE_DIR` whose `model/` is `folder`."""
    base = work / f"base-{re.sub(r'[^a-z0-9]+', '-', name)}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    (base / "model").symlink_to(folder.resolve())
    return base


def serve_table(work: Path, trained_model: Path | None, save) -> None:
    from ncf.artifacts import load

    rows = []
    for name, folder in models_25m(work, trained_model).items():
        base = serving_root(work, name, folder)
        t0 = time.perf_counter()
        artifact = load(folder)
        load_s = time.perf_counter() - t0
        users = random.Random(0).sample(artifact.users.ids.tolist(), 300)
        del artifact
        server = Server(base, None, 2)
        try:
            top10_latency(server, users, 20)  # both workers warm
            p50, p99 = top10_latency(server, users)
            rows.append((name, load_s, server.first_ping, server.pss_mb(), p50, p99))
        finally:
            server.stop()
        print(f"{name}: {rows[-1]}", file=sys.stderr, flush=True)
    save("serve", {"workers": 2, "rows": [
        {"model": name, "load_s": load_s, "first_ping_s": ping, "pss_mb": pss, "p50_ms": p50, "p99_ms": p99}
        for name, load_s, ping, pss, p50, p99 in rows]}, serve_markdown)


def serve_markdown(result: dict) -> str:
    """Section 3's table: one row per model served."""
    rows = [[r["model"], f"{r['load_s']:.1f}", f"{r['first_ping_s']:.1f}", f"{r['pss_mb']:,.0f}", f"{r['p50_ms']:.1f}",
             f"{r['p99_ms']:.1f}"] for r in result["rows"]]
    return "\n\n".join([
        f"{results.provenance(result)} {result['workers']} workers, 1 connection.",
        results.table(["model", "load s", "first /ping s", f"PSS MB (master + {result['workers']} workers)",
                       "top-10 p50 ms", "top-10 p99 ms"], rows, "lrrrrr")])


def worker_peak_mb(server: Server) -> float:
    """The largest peak RSS (VmHWM) among the server's workers."""
    workers = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split()
    peaks = [int(line.split()[1]) / 1024 for pid in workers for line in open(f"/proc/{pid}/status")
             if line.startswith("VmHWM")]
    return max(peaks)


def batch_table(work: Path, trained_model: Path | None, save) -> None:
    from ncf.artifacts import load

    rows = []
    for name, folder in models_25m(work, trained_model).items():
        base = serving_root(work, name, folder)
        ids = load(folder).users.ids[:1000].tolist()
        # as scripts/sagemaker_workflow.py runs a transform: InvocationsTimeoutInSeconds and the server's timeout
        # both at 3600 s (the default 600 s leaves NeuMF at 59k items less than the 1 MB the API's smallest takes)
        server = Server(base, None, 2, {"SAGEMAKER_BATCH": "true", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "3600"})
        try:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=7200)
            connection.request("GET", "/execution-parameters")
            advertised = json.loads(connection.getresponse().read())["MaxPayloadInMB"]
            limit = advertised * 1024 * 1024
            lines, size = [], 0
            while True:
                line = b'{"user":%d}\n' % ids[len(lines) % len(ids)]
                if size + len(line) > limit:
                    break
                lines.append(line)
                size += len(line)
            t0 = time.perf_counter()
            connection.request("POST", "/invocations", b"".join(lines), {"Content-Type": "application/jsonlines"})
            response = connection.getresponse()
            answer = response.read()
            seconds = time.perf_counter() - t0
            rows.append((name, advertised, len(lines), response.status, seconds, answer.count(b"\n"),
                         len(answer) / 1e6, worker_peak_mb(server)))
        finally:
            server.stop()
        print(f"{name}: {rows[-1]}", file=sys.stderr, flush=True)
    save("batch", {"timeout_s": 3600, "rows": [
        {"model": name, "max_payload_mb": mb, "records": records, "status": status, "seconds": seconds,
         "answer_lines": answered, "answer_mb": answer_mb, "worker_peak_rss_mb": peak}
        for name, mb, records, status, seconds, answered, answer_mb, peak in rows]}, batch_markdown)


def batch_markdown(result: dict) -> str:
    """Section 4's table: the advertised payload of the smallest records, on each model."""
    rows = [[r["model"], r["max_payload_mb"], f"{r['records']:,}", r["status"], f"{r['seconds']:.0f}",
             f"{r['answer_lines']:,}", f"{r['answer_mb']:.0f}", f"{r['worker_peak_rss_mb']:,.0f}"]
            for r in result["rows"]]
    return "\n\n".join([
        f"{results.provenance(result)} Timeout {result['timeout_s']} s.",
        results.table(["model", "MaxPayloadInMB", "records", "status", "seconds", "answer lines", "answer MB",
                       "worker peak RSS MB"], rows, "lrrrrrrr")])
