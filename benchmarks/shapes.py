"""The data-shape matrix: every default of `train` judged on data that is not MovieLens, against tuned peers.

    .venv/bin/pip install -r requirements/bench.lock         # implicit (iALS): benchmark-only
    .venv/bin/python -m benchmarks.shapes --quick            # the small shapes and MovieLens' two sets: minutes
    .venv/bin/python -m benchmarks.shapes --only sparse-1m   # one row of the full matrix

Each shape is planted data with known structure (`ncf.synthetic`) or a MovieLens set, written to a file and
trained by the real `train` with no hyperparameters at all, as a user would start it (`benchmarks/jobs.py`'s
`run_job`: the job's own phase timings and peak RSS). The peers train in this process on the same split (the
job's `prepare` is deterministic) and are ranked on the same test users and candidates as the job's
(`ncf.evaluation.TestSample`, seed 0): popularity; iALS (`implicit`), tuned on the validation split over a
small grid and refit on training + validation, as the job refits; EASE^R where its item-item matrix fits in
memory. Per shape: HR@10 and NDCG@10 against 99 sampled items (LOO-99) and full-ranking recall@10, each with
its standard error; the job's read / prepare / train / evaluate / export seconds and peak RSS; the targets
(the default's HR@10 and NDCG@10 >= 0.95x the best tuned peer's; above popularity wherever a peer is).

The result is written, stamped, to `benchmarks/results/shapes.json` (`--json` to change), which
docs/benchmarks.md's "Data shapes" table is generated from (`docs/tables.py`). With `--replace`, the rows run
replace the rows of the same shape in that file instead, each with its own stamp and command, which the table
names under it: a row rerun after a default changed for its kind of data, without the hour of the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit asks for this

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from benchmarks.datasets import add_cache_argument, movielens  # noqa: E402
from benchmarks import results  # noqa: E402
from benchmarks.jobs import run_job  # noqa: E402

from ncf.arrays import BLOCK_SCORES  # noqa: E402
from ncf.data import Interactions, read_interactions  # noqa: E402
from ncf.dataset import Dataset, Pairs, prepare  # noqa: E402
from ncf.evaluation import (TestSample, draw_candidates, evaluate_full_ranking, sample_users,  # noqa: E402
                            scorer_top_k)
from ncf.metrics import positive_ranks, rank_metrics  # noqa: E402
from ncf.synthetic import SyntheticSpec, generate  # noqa: E402

#: EASE^R inverts an items x items matrix: 15k items is 1.8 GB of float64, and the inverse as much again.
EASE_MAX_ITEMS = 15_000
#: The targets of the matrix (issue #30): the default against the best tuned peer, per metric.
PEER_RATIO = 0.95


@dataclass(frozen=True)
class Shape:
    """One row of the matrix: synthetic (`spec`, optionally with `repeats`: a share of extra rows that repeat
    a user's earlier item later on) or a MovieLens set (`movielens`)."""

    name: str
    what: str
    spec: SyntheticSpec | None = None
    repeats: float = 0.0
    movielens: str | None = None
    quick: bool = True
    settings: dict = field(default_factory=dict)


SHAPES = [
    Shape("pilot-clustered", "8k interactions, 400 users x 300 items, 5 tight clusters (a pilot)",
          SyntheticSpec(interactions=8_000, users=400, items=300, topics=5, slots=1, noise=0.05)),
    Shape("flat-popularity", "20k, 1,000 x 1,000, popularity almost flat (Zipf 0.3)",
          SyntheticSpec(interactions=20_000, users=1_000, items=1_000, zipf_exponent=0.3, head_draws=0.5)),
    Shape("few-per-user", "30k, 10,000 users x 2,000 items, 3 per user at least (~3 on average)",
          SyntheticSpec(interactions=30_000, users=10_000, items=2_000, min_per_user=3, activity_sigma=0.3)),
    Shape("heavy-users", "100k, 200 users x 2,000 items (~500 per user)",
          SyntheticSpec(interactions=100_000, users=200, items=2_000, max_user_share=0.6)),
    Shape("zipf-extreme", "100k, 2,000 x 5,000, extreme popularity (Zipf 1.6)",
          SyntheticSpec(interactions=100_000, users=2_000, items=5_000, zipf_exponent=1.6)),
    Shape("repeat-use", "100k rows of which 30% repeat an item the user had before, 2,000 x 3,000",
          SyntheticSpec(interactions=70_000, users=2_000, items=3_000), repeats=0.3),
    Shape("ml-latest-small", "MovieLens ml-latest-small: 100,836 ratings, 610 x 9,724", movielens="ml-latest-small"),
    Shape("ml-100k", "MovieLens ml-100k: 100,000 ratings, 943 x 1,682", movielens="ml-100k"),
    Shape("sparse-1m", "1M, 136,000 users x 58,000 items (sparse, large catalogue)",
          SyntheticSpec(interactions=1_000_000, users=136_000, items=58_000), quick=False),
    # Flat popularity, so that ~930k of the 10^6 items occur at all (Zipf 1.0 at 2M draws reaches 425k).
    Shape("catalogue-1m-items", "3M, 100,000 users x 1,000,000 items (930k occur), flat popularity (Zipf 0.3)",
          SyntheticSpec(interactions=3_000_000, users=100_000, items=1_000_000, zipf_exponent=0.3), quick=False),
    # catalogue-1m-items at a tenth of its size, the same interactions per user and per item: where a rule for
    # it is tried before the hour that row takes.
    Shape("catalogue-100k-items", "300k, 10,000 users x 100,000 items (~3 per item), flat popularity (Zipf 0.3)",
          SyntheticSpec(interactions=300_000, users=10_000, items=100_000, zipf_exponent=0.3), quick=False),
    Shape("users-1m", "5M, 1,000,000 users x 20,000 items",
          SyntheticSpec(interactions=5_000_000, users=1_000_000, items=20_000, min_per_user=3), quick=False),
    Shape("large-10m", "10M, 70,000 users x 26,000 items",
          SyntheticSpec(interactions=10_000_000, users=70_000, items=26_000), quick=False),
]


def with_repeats(data: Interactions, share: float, seed: int = 0) -> Interactions:
    """`data` plus `share * len(data)` rows, each a copy of a random row moved later in its user's time (a
    re-watch, a repeat purchase): between the copied row's time and its user's last time, plus one second."""
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(data), int(share * len(data)))
    users, times = data.users, data.timestamps
    order = np.argsort(users, kind="stable")
    last = np.zeros(len(users), dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, users[order][1:] != users[order][:-1]])
    last_of_group = np.maximum.reduceat(times[order], starts)
    last[order] = np.repeat(last_of_group, np.diff(np.r_[starts, len(users)]))
    later = times[picked] + 1 + (rng.random(len(picked)) * (last[picked] - times[picked])).astype(np.int64)
    return Interactions(np.concatenate([users, users[picked]]), np.concatenate([data.items, data.items[picked]]),
                        None, np.concatenate([times, later]))


def synthetic(shape: Shape) -> Interactions:
    """A synthetic shape's interactions, the same on every call."""
    data = generate(shape.spec).interactions()
    return with_repeats(data, shape.repeats) if shape.repeats else data


def ratings_file(shape: Shape, work: Path, args) -> Path:
    if shape.movielens is not None:
        return movielens(shape.movielens, args)
    path = work / f"{shape.name}.csv"
    data = synthetic(shape)
    import pandas as pd

    pd.DataFrame({"user": data.users, "item": data.items, "timestamp": data.timestamps}).to_csv(path, index=False)
    return path


# ---- peers: each `fit(X) -> (score pairs, score every item for some users)`


def factor_scorers(U: np.ndarray, V: np.ndarray):
    return (lambda users, items: np.einsum("ij,ij->i", U[users], V[items]), lambda users: U[users] @ V.T)


def ials(X: sp.csr_matrix, factors: int, regularization: float, alpha: float):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha, iterations=15,
                                    random_state=0)
    model.fit(X, show_progress=False)
    return factor_scorers(model.user_factors, model.item_factors)


def ease(X: sp.csr_matrix, l2: float):
    """EASE^R (Steck 2019), closed form: B = I - P diagMat(1 / diag(P)), P = (X'X + l2 I)^-1."""
    G = (X.T @ X).toarray().astype(np.float64)
    G[np.diag_indices_from(G)] += l2
    P = np.linalg.inv(G)
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return None, lambda users: np.asarray(X[users] @ B)  # pairs: through every item's score (`candidate_scores`)


def popularity(X: sp.csr_matrix):
    counts = np.asarray(X.sum(axis=0)).ravel().astype(np.float64)
    return (lambda users, items: counts[items], lambda users: np.broadcast_to(counts, (len(users), len(counts))))


GRIDS = {
    "popularity": (popularity, [{}]),
    # regularization up to 100: on small or sparse data iALS's best sits far above implicit's default (0.01)
    "iALS": (ials, [{"factors": f, "regularization": r, "alpha": a}
                    for f in (64, 128) for r in (0.1, 1.0, 10.0, 100.0) for a in (1.0, 10.0)]),
    "EASE^R": (ease, [{"l2": l} for l in (30.0, 300.0, 3000.0)]),
}
#: Past this many items iALS's grid keeps 128 factors and regularization 10 and 100 (4 fits, not 16): a fit of a
#: catalogue of 10^6 items takes minutes here, and every smaller shape's best had regularization >= 10 and, on 7
#: of 9, 128 factors.
LARGE_CATALOGUE = 200_000


def grid(name: str, n_items: int) -> list[dict]:
    settings = GRIDS[name][1]
    if name == "iALS" and n_items > LARGE_CATALOGUE:
        return [p for p in settings if p["factors"] == 128 and p["regularization"] >= 10.0]
    return settings


def candidate_scores(scorers, candidates, n_items: int) -> np.ndarray:
    """`[rows, 1 + n_neg]` scores, in blocks of rows: from the pair scorer, or where a peer has none (EASE^R)
    from every item's scores of the block's users."""
    pairs, all_items = scorers
    out = np.empty(candidates.items.shape)
    width = candidates.items.shape[1]
    step = max(1, (1 << 16) // width if pairs is not None else BLOCK_SCORES // n_items)
    for s in range(0, len(candidates), step):
        users, block = candidates.users[s:s + step], candidates.items[s:s + step]
        if pairs is not None:
            out[s:s + step] = pairs(np.repeat(users, width), block.ravel()).reshape(block.shape)
        else:
            out[s:s + step] = np.take_along_axis(all_items(users), block, axis=1)
    return out


def matrix(data: Dataset, parts: list[Pairs]) -> sp.csr_matrix:
    users = np.concatenate([p.user for p in parts])
    items = np.concatenate([p.item for p in parts])
    return sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(data.n_users, data.n_items))


def peer_rows(data: Dataset, sample: TestSample) -> dict[str, dict]:
    """Each peer tuned on validation HR@10, refit on training + validation, ranked on the job's test users."""
    test, full, known = sample.draw(data)  # the job's own test users and candidates
    validation = draw_candidates(sample_users(data.validation, sample.candidates(), seed=1), data.seen, 99, seed=1)
    X_train, X_full = matrix(data, [data.train]), matrix(data, [data.train, data.validation])
    rows = {}
    for name, (peer, _) in GRIDS.items():
        if name == "EASE^R" and data.n_items > EASE_MAX_ITEMS:
            continue
        t0 = time.perf_counter()
        tuned = [(np.mean(positive_ranks(candidate_scores(peer(X_train, **p), validation, data.n_items)) < 10), p)
                 for p in grid(name, data.n_items)]
        best_hr, best = max(tuned, key=lambda t: t[0])
        scorers = peer(X_full, **best)
        all_items = scorers[1]
        row = rank_metrics(positive_ranks(candidate_scores(scorers, test, data.n_items)))
        block = max(16, BLOCK_SCORES // data.n_items)
        top_k = scorer_top_k(lambda users: np.vstack([all_items(users[s:s + block])
                                                      for s in range(0, len(users), block)]), known)
        row.update(evaluate_full_ranking(top_k, full, data.n_items, prefix="full_"))
        rows[name] = {"setting": best, "validation_hr@10": float(best_hr), **row,
                      "seconds": time.perf_counter() - t0}
        print(f"  {name}: {json.dumps({k: v for k, v in rows[name].items() if not k.endswith('_se')})}",
              file=sys.stderr, flush=True)
    return rows


def run_shape(shape: Shape, work: Path, args) -> dict:
    t0 = time.perf_counter()
    path = ratings_file(shape, work, args)
    job = run_job(path, work / "jobs" / shape.name, dict(shape.settings))
    print(f"{shape.name}: job {job['wall_s']:.0f} s, test HR@10 {job['test_hr']:.4f}", file=sys.stderr, flush=True)
    metrics = json.loads((work / "jobs" / shape.name / "output" / "metrics.json").read_text())
    used = json.loads((work / "jobs" / shape.name / "output" / "hyperparameters.json").read_text())
    data = prepare(read_interactions(path))  # the job's split, deterministically
    peers = peer_rows(data, TestSample())
    default = {k: v for k, v in metrics["test"].items()
               if k.split("_se")[0] in ("hr@10", "ndcg@10", "full_recall@10")}
    return {"shape": shape.name, "what": shape.what, "data": metrics["data"], "default": default,
            "resolved": {k: used[k] for k in ("batch_size", "pretrain", "refit")},
            "against_popularity": metrics.get("against_popularity", {}), "best_epoch": metrics["best_epoch"],
            "seconds": metrics["seconds"], "wall_s": job["wall_s"], "peak_rss_mb": job["peak_rss_mb"],
            "peers": peers, "verdict": verdict(default, peers), "bench_s": time.perf_counter() - t0}


def verdict(default: dict, peers: dict) -> dict:
    """The matrix's targets for one shape: the default's HR@10 and NDCG@10 against the best tuned peer's
    (ratio, met at `PEER_RATIO`), and whether it is above popularity."""
    out = {}
    for metric in ("hr@10", "ndcg@10"):
        others = {name: row[metric] for name, row in peers.items() if name != "popularity"}
        best = max(others, key=others.get) if others else None
        ratio = default[metric] / others[best] if best and others[best] > 0 else float("nan")
        out[metric] = {"best_peer": best, "ratio": ratio, "met": bool(ratio >= PEER_RATIO),
                       "above_popularity": bool(default[metric] > peers["popularity"][metric])}
    return out


def replaced(path: Path, rows: list[dict], command: str) -> dict:
    """The results file at `path` with `rows` in place of its rows of the same shapes (new shapes appended),
    each stamped and with `command`; the file's own stamp stays that of the run that wrote the rest. Rows that
    replace every row (or a file not there yet) make a file of their own run."""
    result = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    if {row["shape"] for row in result["rows"]} <= {row["shape"] for row in rows}:
        return results.save(path, {"stamp": results.stamp(), "command": command, "rows": rows})
    fresh = {row["shape"]: {**row, "stamp": results.stamp(), "command": command} for row in rows}
    kept = [fresh.pop(row["shape"], row) for row in result["rows"]]
    result["rows"] = kept + list(fresh.values())
    return results.save(path, result)


def markdown(result: dict) -> str:
    """docs/benchmarks.md's table of a results file."""
    lines = [results.provenance(result), "",
             "| shape | default HR@10 / NDCG@10 / recall@10 | best peer (HR@10 / NDCG@10) | popularity HR@10 | "
             "ratio HR / NDCG | batch | train s | evaluate | peak RSS MB |",
             "|---|---|---|---|---|---:|---:|---:|---:|"]
    for row in result["rows"]:
        d, v, s = row["default"], row["verdict"], row["seconds"]
        best = v["hr@10"]["best_peer"]
        peer = row["peers"].get(best, {})
        flag = "" if v["hr@10"]["met"] and v["ndcg@10"]["met"] else " (missed)"
        lines.append(
            f"| {row['shape']} | {d['hr@10']:.3f} / {d['ndcg@10']:.3f} / {d.get('full_recall@10', float('nan')):.3f} "
            f"| {best}: {peer.get('hr@10', float('nan')):.3f} / {peer.get('ndcg@10', float('nan')):.3f} "
            f"| {row['peers']['popularity']['hr@10']:.3f} | {v['hr@10']['ratio']:.2f} / {v['ndcg@10']['ratio']:.2f}"
            f"{flag} | {row['resolved']['batch_size']} | {s['train']:.0f} | {s['evaluate'] / sum(s.values()):.0%} "
            f"| {row['peak_rss_mb']:.0f} |")
    rerun = [row for row in result["rows"] if "stamp" in row]
    if rerun:
        lines += [""] + [f"Row {row['shape']} rerun: `{row['command']}` at {results.describe(row['stamp'])}."
                         for row in rerun]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the small shapes and MovieLens' two sets only")
    p.add_argument("--only", help="comma-separated shape names")
    p.add_argument("--work", type=Path, help="where the data and each job's folders are kept (default: a temporary "
                   "folder, removed at the end); a kept model serves `benchmarks.catalogue --trained`")
    p.add_argument("--replace", action="store_true", help="replace these shapes' rows of the --json file, each "
                   "stamped, and keep the rest")
    results.add_argument(p, "shapes")
    add_cache_argument(p)
    args = p.parse_args(argv)
    chosen = [s for s in SHAPES if (not args.quick or s.quick) and (not args.only or s.name in args.only.split(","))]
    rows = []
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ncf-shapes-")))
        work.mkdir(parents=True, exist_ok=True)
        for shape in chosen:
            rows.append(run_shape(shape, work, args))
    argv = sys.argv[1:] if argv is None else argv
    if args.replace:
        result = replaced(args.json, rows, results.command("shapes", argv))
    else:
        result = results.write(args.json, "shapes", argv, {"rows": rows})
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
