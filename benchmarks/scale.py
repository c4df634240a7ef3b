"""Scale: the whole training job and the server from 100k to 25M interactions, as Markdown tables.

    .venv/bin/python -m benchmarks.scale                       # every section (~40 min on 2 cores)
    .venv/bin/python -m benchmarks.scale --sizes 100k,1m --skip-serve

Every job is the real `train` (one process, as SageMaker runs it) on synthetic data from `ncf.synthetic`
with ml-25m's shape scaled down (`jobs.shape`: users in proportion, items with the square root), so 23M
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
3. Serving the 25M model with 2 workers (this section and the next: `benchmarks/scale_serving.py`): load and first /ping seconds, PSS, and top-10 p50/p99 over 59k items
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
Each section writes its result, stamped, to `benchmarks/results/scale-SECTION.json` (`--results-dir` to
change): `sizes`, `cost-curve`, `serve`, `batch`, `default-job-SIZE` (and the settings), `read-SIZE`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import results  # noqa: E402
from benchmarks.datasets import add_cache_argument, movielens  # noqa: E402
from benchmarks.jobs import ML25M, ONE_EPOCH, ONE_STAGE, ROOT, SIZES, run_job, shape, synthetic  # noqa: E402
from benchmarks.scale_serving import batch_table, serve_table  # noqa: E402


def size_table(work: Path, sizes: list[str], model: str, settings: dict[str, str],
               real: tuple[str, Path] | None, save) -> list[dict]:
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
    save("sizes", {"model": model, "settings": settings, "rows": [
        {"label": r["label"], **{k: r["data"][k] for k in ("interactions", "users", "items")},
         **{f"{k}_s": r["seconds"][k] for k in ("read", "prepare", "evaluate", "export")},
         "samples_per_s": r["samples_per_s"], "epoch_s": sum(r["epoch_s"]), "job_s": r["wall_s"],
         "peak_rss_mb": r["peak_rss_mb"], "model_mb": r["model_mb"], "test_hr@10": r["test_hr"],
         "popularity_hr@10": r["popularity_hr"]} for r in rows]}, sizes_markdown)
    return rows


def sizes_markdown(result: dict) -> str:
    """Section 1's table: one row per size."""
    rows = [[r["label"], f"{r['users']:,} x {r['items']:,}", f"{r['read_s']:.1f} / {r['prepare_s']:.1f}",
             f"{r['samples_per_s']:,.0f}", f"{r['epoch_s']:.1f}", f"{r['evaluate_s']:.1f} / {r['export_s']:.1f}",
             f"{r['job_s']:.0f}", f"{r['peak_rss_mb']:,.0f}", f"{r['model_mb']:.0f}",
             f"{r['test_hr@10']:.4f} / {r['popularity_hr@10']:.4f}"] for r in result["rows"]]
    return "\n\n".join([
        f"{results.provenance(result)} {_described(result['model'], result['settings'])}, one epoch, no refit.",
        results.table(["data", "users x items", "read / prepare s", "samples/s", "epoch s", "evaluate / export s",
                       "job s", "peak RSS MB", "model MB", "test HR@10 / popularity's"], rows, "lrrrrrrrrr")])


def cost_curve(work: Path, model: str, settings: dict[str, str], save) -> None:
    n = SIZES["1m"]
    shapes = {"small tables": (5_000, 2_000), "ml-25m tables": (ML25M["users"], ML25M["items"])}
    runs = {}
    for name, (users, items) in shapes.items():
        path = synthetic(work, n, users, items)
        runs[name] = run_job(path, work / "jobs" / f"curve-{name.replace(' ', '-')}",
                             {"model": model, **settings, "epochs": "2", **ONE_STAGE})
        print(f"{name}: {brief(runs[name])}", file=sys.stderr, flush=True)
    small, big = runs.values()
    save("cost-curve", {"model": model, "settings": settings, "interactions": n, "rows": [
        {"tables": name, "users": r["data"]["users"], "items": r["data"]["items"], "samples_per_s": r["samples_per_s"],
         "epoch_s_mean": sum(r["epoch_s"]) / len(r["epoch_s"]), "job_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}
        for name, r in runs.items()], "ratios": {"samples_per_s": big["samples_per_s"] / small["samples_per_s"],
                                                 "job": big["wall_s"] / small["wall_s"]}}, cost_curve_markdown)


def cost_curve_markdown(result: dict) -> str:
    """Section 2's table, and its two ratios (ml-25m's tables over small ones) against their targets."""
    ratios = result["ratios"]
    rows = [[r["tables"], f"{r['users']:,} x {r['items']:,}", f"{r['samples_per_s']:,.0f}", f"{r['epoch_s_mean']:.1f}",
             f"{r['job_s']:.0f}", f"{r['peak_rss_mb']:,.0f}"] for r in result["rows"]]
    return "\n\n".join([
        f"{results.provenance(result)} {_described(result['model'], result['settings'])}, 2 epochs, no refit.",
        results.table(["tables", "users x items", "samples/s", "epoch s (mean)", "job s", "peak RSS MB"], rows,
                      "llrrrr"),
        f"samples/s, ml-25m tables / small tables: **{ratios['samples_per_s']:.2f}** (target >= 0.70); whole job: "
        f"**{ratios['job']:.2f}x** (target <= 3x)."])


def _described(model: str, settings: dict[str, str]) -> str:
    return " ".join([model] + [f"{k}={v}" for k, v in settings.items()])


def brief(result: dict) -> str:
    return json.dumps({k: v for k, v in result.items() if k not in ("data", "log")})


def default_job(work: Path, size: str, settings: dict[str, str], save) -> None:
    """A job with every default (early stopping, refit=auto) on `size`, or every default but `settings`: the
    time a user of that much data waits."""
    n = SIZES[size]
    path = synthetic(work, n, *shape(n))
    name = "-".join(["default", size] + [f"{k}-{v}" for k, v in settings.items()])
    result = run_job(path, work / "jobs" / name, settings)
    print(f"default {size}: {brief(result)}", file=sys.stderr, flush=True)
    s, d = result["seconds"], result["data"]
    searched = {stage: k for stage, k in result["stages"].items() if not stage.startswith("refit")}
    epochs = " + ".join(f"{k} ({stage})" for stage, k in searched.items()) if len(searched) > 1 else \
        str(sum(searched.values()))
    save(name.replace("default", "default-job", 1), {
        "size": size, "settings": settings, **{k: d[k] for k in ("interactions", "users", "items")},
        "epochs": epochs, "validation_rounds": result["rounds"] - result["refit_epochs"],
        "best_epoch": result["best_epoch"], "refit_epochs": result["refit_epochs"],
        "read_prepare_s": s["read"] + s["prepare"], "train_s": s["train"], "evaluate_s": s["evaluate"],
        "export_s": s["export"], "job_s": result["wall_s"], "peak_rss_mb": result["peak_rss_mb"],
        "test_hr@10": result["test_hr"], "popularity_hr@10": result["popularity_hr"],
        "early_stop": re.findall(r"early stop at epoch [^\n]*", result["log"]), "target_min": 45},
        default_job_markdown)


def default_job_markdown(result: dict) -> str:
    """Section 5's table: one job, each phase's seconds, and how it stopped against the time target."""
    r = result
    but = f" but {', '.join(f'{k}={v}' for k, v in r['settings'].items())}" if r["settings"] else ""
    phases = " / ".join(f"{r[k]:.0f}" for k in ("read_prepare_s", "train_s", "evaluate_s", "export_s"))
    row = [f"{r['users']:,} x {r['items']:,}", f"{r['epochs']} ({r['best_epoch']})", r["validation_rounds"],
           r["refit_epochs"], phases,
           f"{r['job_s'] / 60:.1f}", f"{r['peak_rss_mb']:,.0f}", f"{r['test_hr@10']:.4f} / {r['popularity_hr@10']:.4f}"]
    said = "" if r["early_stop"] is None else (  # None: the log's line was not recorded
        "; ".join(r["early_stop"]) or "no early stop: ran every epoch") + "; "
    end = f"{said}target: <= {r['target_min']} min."
    return "\n\n".join([
        f"{results.provenance(r)} Every default{but}, {r['interactions']:,} interactions.",
        results.table(["users x items", "epochs (best)", "validation rounds", "refit epochs",
                       "read + prepare / train / evaluate / export s", "job min", "peak RSS MB",
                       "test HR@10 / popularity's"], [row], "lrrrrrrr"),
        end[0].upper() + end[1:]])


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


def read_table(work: Path, size: str, save) -> None:
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
    save(f"read-{size}", {"size": size, "file_mib": path.stat().st_size / 2**20, "rows": [
        {"mode": mode, "rows": count, "read_s": read_s, "process_s": wall, "peak_rss_mb": rss,
         "most_temp_mib": most / 2**20} for mode, count, read_s, wall, rss, most in rows]}, read_markdown)


def read_markdown(result: dict) -> str:
    """Section 6's table: File against Pipe mode."""
    rows = [[r["mode"], f"{r['rows']:,}", f"{r['read_s']:.1f}", f"{r['process_s']:.1f}", f"{r['peak_rss_mb']:,.0f}",
             f"{r['most_temp_mib']:,.0f}"] for r in result["rows"]]
    return "\n\n".join([
        f"{results.provenance(result)} {result['file_mib']:,.0f} MiB of CSV.",
        results.table(["input mode", "rows", "read s", "process s", "peak RSS MB", "most temporary disk MiB"], rows,
                      "lrrrrr")])


def main(argv: list[str] | None = None) -> None:
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
    p.add_argument("--results-dir", type=Path, default=results.RESULTS,
                   help="where each section's stamped scale-SECTION.json goes (default: benchmarks/results)")
    p.add_argument("--skip-curve", action="store_true")
    p.add_argument("--skip-serve", action="store_true")
    p.add_argument("--serve-model", type=Path, help="the trained model folder sections 3-4 serve (default: section "
                                                     "1's 25M job's, e.g. --serve-model WORK/jobs/default-25m/model)")
    p.add_argument("--batch", action="store_true", help="also section 4 (~20 min for NeuMF here)")
    p.add_argument("--default-job", metavar="SIZE", help=f"only section 5: a job with every default on SIZE, of "
                                                         f"{list(SIZES)}")
    p.add_argument("--read", metavar="SIZE", help=f"only section 6: File against Pipe mode reading SIZE, of "
                                                  f"{list(SIZES)}")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    settings = dict(pair.split("=", 1) for pair in args.set)
    command = sys.argv[1:] if argv is None else argv

    def save(section: str, figures: dict, markdown) -> None:
        print("\n" + markdown(results.write(args.results_dir / f"scale-{section}.json", "scale", command, figures)))

    if args.default_job:
        default_job(args.work, args.default_job, settings, save)
        return
    if args.read:
        read_table(args.work, args.read, save)
        return
    sizes = [s for s in args.sizes.split(",") if s]
    if sizes:
        real = (args.movielens, movielens(args.movielens, args)) if args.movielens else None
        size_table(args.work, sizes, args.model, settings, real, save)
    if not args.skip_curve:
        cost_curve(args.work, args.model, settings, save)
    biggest = args.serve_model or args.work / "jobs" / "synthetic-25m" / "model"  # section 1's, or as told
    trained = biggest if (biggest / "metadata.json").exists() else None
    if not args.skip_serve:
        serve_table(args.work, trained, save)
    if args.batch:
        batch_table(args.work, trained, save)


if __name__ == "__main__":
    main()
