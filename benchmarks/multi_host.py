"""Training samples/s of one `train` host against two on loopback, same data and hyperparameters, in one run.

    .venv/bin/python -m benchmarks.multi_host --movielens ml-latest-small

Each host is a real `train` process with its own /opt/ml tree and a resourceconfig.json naming algo-1 and
algo-2, joined through NCF_HOST_ADDRESSES exactly as tests/container/test_multi_host.py does. On one 2-core
machine two hosts share the same cores, so this measures the cost of the gradient all-reduce, not a speed-up.
The result is written, stamped, to `benchmarks/results/multi-host.json` (`--json` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from benchmarks import results  # noqa: E402
from benchmarks.datasets import add_arguments, label, ratings_path  # noqa: E402

EPOCH = re.compile(r"epoch=(\d+)/\d+ .*samples_per_s=(\d+) seconds=([0-9.]+)")
TEST = re.compile(r"test:hr@10=([0-9.]+) test:ndcg@10=([0-9.]+)")


def lay_out(root: Path, ratings: Path, hyperparameters: dict, host: str, hosts: list[str]) -> None:
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({k: json.dumps(v) for k, v in hyperparameters.items()}))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"TrainingInputMode": "File",
                                                                       "S3DistributionType": "FullyReplicated"}}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": hosts}))
    (root / "input" / "data" / "train").mkdir(parents=True)
    shutil.copy(ratings, root / "input" / "data" / "train" / ratings.name)
    (root / "model").mkdir()
    (root / "output").mkdir()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_job(workdir: Path, ratings: Path, hyperparameters: dict, n_hosts: int) -> dict:
    hosts = [f"algo-{i + 1}" for i in range(n_hosts)]
    addresses = ",".join(f"{h}=127.0.0.1:{free_port()}" for h in hosts)
    processes = []
    started = time.perf_counter()
    for host in hosts:
        root = workdir / f"{n_hosts}-hosts" / host
        lay_out(root, ratings, hyperparameters, host, hosts)
        env = {**os.environ, "SAGEMAKER_BASE_DIR": str(root), "NCF_HOST_ADDRESSES": addresses,
               "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        processes.append(subprocess.Popen([sys.executable, "-c", "from container.train import entry_point; "
                                           "entry_point()"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate()[0] for p in processes]
    wall = time.perf_counter() - started
    for p, log in zip(processes, logs):
        if p.returncode != 0:
            raise SystemExit(f"{n_hosts}-host job failed:\n{log[-3000:]}")
    epochs = [(int(e), float(s), float(t)) for e, s, t in EPOCH.findall(logs[0])]
    later = [e for e in epochs if e[0] > 1]  # the first epoch traces the step function
    hr, ndcg = map(float, TEST.search(logs[0]).groups())
    return {"hosts": n_hosts, "samples_per_s": sum(s * t for _, s, t in later) / sum(t for *_, t in later),
            "epoch_seconds": [t for *_, t in epochs], "wall_seconds": wall, "hr@10": hr, "ndcg@10": ndcg}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--model", default="neumf")
    p.add_argument("--batch-size", type=int, default=4096)
    results.add_argument(p, "multi-host")
    args = p.parse_args(argv)
    hyperparameters = {"model": args.model, "epochs": args.epochs, "patience": 0, "batch_size": args.batch_size,
                       "refit": False}  # steps per second is the question here, not the shipped model
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_job(Path(tmp), ratings_path(args).resolve(), hyperparameters, n) for n in (1, 2)]
    result = results.write(args.json, "multi_host", sys.argv[1:] if argv is None else argv, {
        "data": label(args), "hyperparameters": hyperparameters, "rows": rows})
    print(markdown(result))


def markdown(result: dict) -> str:
    """docs/benchmarks.md's table of a results file: one row per number of hosts."""
    one = result["rows"][0]["samples_per_s"]
    rows = [[r["hosts"], f"{r['samples_per_s']:,.0f}", f"{r['samples_per_s'] / one:.2f}x", f"{r['wall_seconds']:.0f}",
             f"{r['hr@10']:.3f}", f"{r['ndcg@10']:.3f}"] for r in result["rows"]]
    return "\n\n".join([
        results.provenance(result),
        results.table(["hosts", "samples/s (epochs 2+)", "vs one host", "wall s", "test HR@10", "test NDCG@10"], rows,
                      "rrrrrr")])


if __name__ == "__main__":
    main()
