"""Scale: the whole training job and the server from 100k to 25M interactions, as Markdown tables.

    .venv/bin/python -m benchmarks.scale                       # every section (~40 min on 2 cores)
    .venv/bin/python -m benchmarks.scale --sizes 100k,1m --skip-serve

Every job is the real `train` (one process, as SageMaker runs it) on synthetic data from `ncf.synthetic`
with ml-25m's shape scaled down (`shape`: users in proportion, items with the square root), so 23M
interactions are ml-25m's 161,916 users x 59,000 items (a MovieLens set, `--movielens`, ml-latest-small by
default, is a row of its own; `benchmarks/datasets.py` says where it is read from). Jobs run one epoch without
refit or pretraining (`epochs=1 refit=false patience=0 pretrain=none`); a default job's time is that epoch times
the epochs early stopping picks, plus the refit.

Sections:
1. One row per size: read, prepare, samples/s, epoch, evaluation and export seconds (the job's own `timing:`
   line and epoch line), the whole job's wall time, its peak RSS (`wait4`), the model folder's size, and test
   HR@10 (LOO-99) of the model against popularity.
2. The cost curve: the same 1M interactions with small tables (5k x 2k) and with ml-25m's (162k x 59k), two
   epochs each: samples/s and whole-job ratios (targets: >= 0.70 and <= 3x).
3. Serving the 25M model with 2 workers: load and first /ping seconds, PSS, and top-10 p50/p99 over 59k items
   at one connection, for the trained MF and for a NeuMF folder of the same shape with random weights
   (`benchmarks/fake_model.py`: speed does not depend on the weights' values).
4. Batch transform (`--batch`, long: the point is that it is long and still finishes): a server in batch
   mode (`SAGEMAKER_BATCH=true`, timeout 3600 s as the workflow script sets it, 2 workers) gets the payload its `/execution-parameters` advertises, filled with
   the smallest records (`{"user":N}` lines, default k), on both 25M models: seconds against the worker
   timeout, the worker's peak RSS, the answer's size and lines.
5. A default job (`--default-job SIZE`, alone): `train` with no hyperparameters at all (early stopping in
   validation rounds, `refit=auto`), as a user would start it: epochs and rounds run, the best epoch, each
   phase's seconds, the whole job's minutes (target on 23M: <= 45), peak RSS and test HR@10.
6. Reading a channel (`--read SIZE`, alone): the same CSV read as `train` reads a File-mode channel and as it
   reads a Pipe-mode FIFO (fed by `cat`, as SageMaker's writer is another process), each in a process of its
   own: seconds, peak RSS, and the most bytes the temporary folder held (sampled every 50 ms).
Each table is stamped with the commit, the date and the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]

from benchmarks.datasets import add_cache_argument, movielens  # noqa: E402
from benchmarks.results import describe, stamp  # noqa: E402
from benchmarks.server import Server  # noqa: E402

ML25M = {"interactions": 23_000_000, "users": 161_916, "items": 59_000}
SIZES = {"100k": 100_000, "1m": 1_000_000, "5m": 5_000_000, "25m": ML25M["interactions"]}
# One epoch of the model itself: no refit, and no pretraining stage (`pretrain=auto` adds an MF stage to NeuMF
# jobs whose validation holds out every user, as the 100k and 1M rows' do), so every row measures the same unit.
ONE_STAGE = {"refit": "false", "patience": "0", "pretrain": "none"}
ONE_EPOCH = {"epochs": "1", **ONE_STAGE}


def shape(interactions: int) -> tuple[int, int]:
    """ml-25m's users and items scaled to `interactions`: users in proportion (~142 interactions each), items
    with its square root (in proportion, 100k interactions would have 256 items, denser than any real set)."""
    scale = interactions / ML25M["interactions"]
    return max(100, round(ML25M["users"] * scale)), max(50, round(ML25M["items"] * scale ** 0.5))


def synthetic(work: Path, interactions: int, users: int, items: int) -> Path:
    from ncf.synthetic import SyntheticSpec, generate

    path = work / f"synthetic-{interactions}-{users}x{items}.csv"
    if not path.exists():
        generate(SyntheticSpec(interactions=interactions, users=users, items=items, seed=0,
                               min_per_user=min(5, interactions // users))).write(path)
    return path


def run_job(ratings: Path, out: Path, settings: dict[str, str]) -> dict:
    """The real `train` on `ratings`; its timings, epoch lines, metrics, wall time and peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    command = [str(ROOT / ".venv" / "bin" / "train"), "--ratings", str(ratings), "--model-dir", str(out / "model"),
               "--output-dir", str(out / "output")] + [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    log_path = out / "train.log"
    out.mkdir(parents=True)
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    text = log_path.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"train failed on {ratings}:\n{text[-3000:]}")
    metrics = json.loads((out / "output" / "metrics.json").read_text())
    rounds = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in text.splitlines() if " epoch=" in line
              and "progress" not in line]
    epoch_s: dict[tuple[str, str], float] = {}  # per epoch of each stage: a long epoch logs a line per round
    for r in rounds:
        key = (r.get("stage", ""), r["epoch"].split("/")[0])
        epoch_s[key] = epoch_s.get(key, 0.0) + float(r["seconds"])
    size = sum(f.stat().st_size for f in (out / "model").rglob("*") if f.is_file())
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "seconds": metrics["seconds"],
            "samples_per_s": metrics["train_samples_per_s"], "epoch_s": list(epoch_s.values()),
            "rounds": len(rounds), "refit_epochs": sum(1 for stage, _ in epoch_s if stage.startswith("refit")),
            "stages": {stage: sum(1 for s, _ in epoch_s if s == stage) for stage, _ in epoch_s},
            "best_epoch": metrics["best_epoch"], "log": text,
            "test_hr": metrics["test"].get("hr@10", float("nan")),
            "popularity_hr": metrics["popularity"].get("hr@10", float("nan")),
            "model_mb": size / 1e6, "data": metrics["data"], "model_dir": str(out / "model")}


def size_table(work: Path, sizes: list[str], model: str, settings: dict[str, str],
               real: tuple[str, Path] | None) -> list[dict]:
    rows = []
    sources = ([real] if real is not None else []) + [
        (f"synthetic {name}", None) for name in sizes]
    for label, path in sources:
        if path is None:
            n = SIZES[label.split()[1]]
            users, items = shape(n)
            t0 = time.perf_counter()
            path = synthetic(work, n, users, items)
            print(f"{label}: data ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        result = run_job(path, work / "jobs" / label.replace(" ", "-"), {"model": model, **settings, **ONE_EPOCH})
        rows.append({"label": label, **result})
        print(f"{label}: {brief(result)}", file=sys.stderr, flush=True)
    print(f"\n#### Training job by size ({_described(model, settings)}, one epoch, no refit; {describe(stamp())})\n")
    print("| data | interactions | users x items | read s | prepare s | samples/s | epoch s | evaluate s | export s "
          "| job s | peak RSS MB | model MB | test HR@10 | popularity HR@10 |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s, d = r["seconds"], r["data"]
        print(f"| {r['label']} | {d['interactions']:,} | {d['users']:,} x {d['items']:,} | {s['read']:.1f} | "
              f"{s['prepare']:.1f} | {r['samples_per_s']:,.0f} | {sum(r['epoch_s']):.1f} | {s['evaluate']:.1f} | "
              f"{s['export']:.1f} | {r['wall_s']:.0f} | {r['peak_rss_mb']:,.0f} | {r['model_mb']:.0f} | "
              f"{r['test_hr']:.4f} | {r['popularity_hr']:.4f} |")
    return rows


def cost_curve(work: Path, model: str, settings: dict[str, str]) -> None:
    n = SIZES["1m"]
    shapes = {"small tables": (5_000, 2_000), "ml-25m tables": (ML25M["users"], ML25M["items"])}
    results = {}
    for name, (users, items) in shapes.items():
        path = synthetic(work, n, users, items)
        results[name] = run_job(path, work / "jobs" / f"curve-{name.replace(' ', '-')}",
                                {"model": model, **settings, "epochs": "2", **ONE_STAGE})
        print(f"{name}: {brief(results[name])}", file=sys.stderr, flush=True)
    small, big = results["small tables"], results["ml-25m tables"]
    print(f"\n#### Cost curve: 1M interactions, two tables ({_described(model, settings)}, 2 epochs, no refit; "
          f"{describe(stamp())})\n")
    print("| tables | users x items | samples/s | epoch s (mean) | job s | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|")
    for name, r in results.items():
        d = r["data"]
        print(f"| {name} | {d['users']:,} x {d['items']:,} | {r['samples_per_s']:,.0f} | "
              f"{sum(r['epoch_s']) / len(r['epoch_s']):.1f} | {r['wall_s']:.0f} | {r['peak_rss_mb']:,.0f} |")
    print(f"\nsamples/s, ml-25m tables / small tables: **{big['samples_per_s'] / small['samples_per_s']:.2f}** "
          f"(target >= 0.70); whole job: **{big['wall_s'] / small['wall_s']:.2f}x** (target <= 3x)")


def _described(model: str, settings: dict[str, str]) -> str:
    return " ".join([model] + [f"{k}={v}" for k, v in settings.items()])


def brief(result: dict) -> str:
    return json.dumps({k: v for k, v in result.items() if k not in ("data", "log")})


def default_job(work: Path, size: str, settings: dict[str, str]) -> None:
    """A job with every default (early stopping, refit=auto) on `size`, or every default but `settings`: the
    time a user of that much data waits."""
    n = SIZES[size]
    path = synthetic(work, n, *shape(n))
    name = "-".join(["default", size] + [f"{k}-{v}" for k, v in settings.items()])
    result = run_job(path, work / "jobs" / name, settings)
    print(f"default {size}: {brief(result)}", file=sys.stderr, flush=True)
    stopped = re.findall(r"early stop at epoch [^\n]*", result["log"])
    s, d = result["seconds"], result["data"]
    but = f" but {', '.join(f'{k}={v}' for k, v in settings.items())}" if settings else ""
    print(f"\n#### A default job{but} on {d['interactions']:,} interactions ({describe(stamp())})\n")
    print("| users x items | epochs run | validation rounds | best epoch | refit epochs | read + prepare s | train s "
          "| evaluate s | export s | job s (min) | peak RSS MB | test HR@10 | popularity HR@10 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    searched = {stage: k for stage, k in result["stages"].items() if not stage.startswith("refit")}
    epochs = " + ".join(f"{k} ({stage})" for stage, k in searched.items()) if len(searched) > 1 else \
        str(sum(searched.values()))
    print(f"| {d['users']:,} x {d['items']:,} | {epochs} | "
          f"{result['rounds'] - result['refit_epochs']} | {result['best_epoch']} | {result['refit_epochs']} | "
          f"{s['read'] + s['prepare']:.0f} | {s['train']:.0f} | {s['evaluate']:.0f} | {s['export']:.0f} | "
          f"{result['wall_s']:.0f} ({result['wall_s'] / 60:.1f}) | {result['peak_rss_mb']:,.0f} | "
          f"{result['test_hr']:.4f} | {result['popularity_hr']:.4f} |")
    print(f"\n{'; '.join(stopped) if stopped else 'no early stop: ran every epoch'}; target: <= 45 min")


_READ_CHANNEL = """
import sys, time
from pathlib import Path
from container.channels import read_channel
from container.train_config import Channel
from ncf.data import Columns
started = time.perf_counter()
got = read_channel(Channel("train", Path(sys.argv[1]), input_mode=sys.argv[2]), Columns())
print(len(got), time.perf_counter() - started)
"""


def read_table(work: Path, size: str) -> None:
    """File mode against Pipe mode on the same CSV: what streaming the FIFO costs and saves."""
    n = SIZES[size]
    path = synthetic(work, n, *shape(n))
    rows = []
    for mode in ("File", "Pipe"):
        scratch = work / "read-scratch"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        source = path
        feeder = None
        if mode == "Pipe":
            source = scratch / "train_0"
            os.mkfifo(source)
            feeder = subprocess.Popen(f"cat {shlex.quote(str(path))} > {shlex.quote(str(source))}", shell=True)
        env = dict(os.environ, TMPDIR=str(scratch))
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", _READ_CHANNEL, str(source), mode], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, text=True)
        most = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            most = max(most, sum(f.stat().st_size for f in scratch.rglob("*") if f.is_file()))
            time.sleep(0.05)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out = process.stdout.read().split()
        if feeder is not None:
            feeder.wait()
        if process.returncode != 0:
            raise RuntimeError(f"reading in {mode} mode failed")
        rows.append((mode, int(out[0]), float(out[1]), wall, usage.ru_maxrss / 1024, most))
        shutil.rmtree(scratch)
    print(f"\n#### Reading {path.stat().st_size / 2**20:,.0f} MiB of CSV ({n:,} rows) as a channel ({describe(stamp())})\n")
    print("| input mode | rows | read s | process s | peak RSS MB | most temporary disk MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, count, read_s, wall, rss, most in rows:
        print(f"| {mode} | {count:,} | {read_s:.1f} | {wall:.1f} | {rss:,.0f} | {most / 2**20:,.0f} |")


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


def serve_table(work: Path, trained_model: Path | None) -> None:
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
    print(f"\n#### Serving the 25M model (2 workers, 1 connection; {describe(stamp())})\n")
    print("| model | load s | first /ping s | PSS MB (master + 2 workers) | top-10 p50 ms | top-10 p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, load_s, ping, pss, p50, p99 in rows:
        print(f"| {name} | {load_s:.1f} | {ping:.1f} | {pss:,.0f} | {p50:.1f} | {p99:.1f} |")


def worker_peak_mb(server: Server) -> float:
    """The largest peak RSS (VmHWM) among the server's workers."""
    workers = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split()
    peaks = [int(line.split()[1]) / 1024 for pid in workers for line in open(f"/proc/{pid}/status")
             if line.startswith("VmHWM")]
    return max(peaks)


def batch_table(work: Path, trained_model: Path | None) -> None:
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
    print(f"\n#### Batch transform: the advertised payload on the 25M models (timeout 3600 s; {describe(stamp())})\n")
    print("| model | MaxPayloadInMB | records | status | seconds | answer lines | answer MB | worker peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, mb, records, status, seconds, answered, answer_mb, peak in rows:
        print(f"| {name} | {mb} | {records:,} | {status} | {seconds:.0f} | {answered:,} | {answer_mb:.0f} | {peak:,.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100k,1m,5m,25m", help=f"comma-separated, of {list(SIZES)}")
    p.add_argument("--model", default="neumf")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="another hyperparameter of the section 1-2 jobs (and of section 5's), as train --set "
                        "takes it")
    p.add_argument("--movielens", default="ml-latest-small",
                   help="a MovieLens set for a row of its own in section 1 ('' for none)")
    add_cache_argument(p)
    p.add_argument("--work", type=Path, default=Path("/tmp/ncf-scale"), help="data, jobs and models (large)")
    p.add_argument("--skip-curve", action="store_true")
    p.add_argument("--skip-serve", action="store_true")
    p.add_argument("--serve-model", type=Path, help="the trained model folder sections 3-4 serve (default: section "
                                                     "1's 25M job's, e.g. --serve-model WORK/jobs/default-25m/model)")
    p.add_argument("--batch", action="store_true", help="also section 4 (~20 min for NeuMF here)")
    p.add_argument("--default-job", metavar="SIZE", help=f"only section 5: a job with every default on SIZE, of "
                                                         f"{list(SIZES)}")
    p.add_argument("--read", metavar="SIZE", help=f"only section 6: File against Pipe mode reading SIZE, of "
                                                  f"{list(SIZES)}")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    settings = dict(pair.split("=", 1) for pair in args.set)
    if args.default_job:
        default_job(args.work, args.default_job, settings)
        return
    if args.read:
        read_table(args.work, args.read)
        return
    sizes = [s for s in args.sizes.split(",") if s]
    if sizes:
        real = (args.movielens, movielens(args.movielens, args)) if args.movielens else None
        size_table(args.work, sizes, args.model, settings, real)
    if not args.skip_curve:
        cost_curve(args.work, args.model, settings)
    biggest = args.serve_model or args.work / "jobs" / "synthetic-25m" / "model"  # section 1's, or as told
    trained = biggest if (biggest / "metadata.json").exists() else None
    if not args.skip_serve:
        serve_table(args.work, trained)
    if args.batch:
        batch_table(args.work, trained)


if __name__ == "__main__":
    main()
