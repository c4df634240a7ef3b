"""A cap per genre in the top 10: what it costs in ranking and time, and what it buys in variety (#32).

    .venv/bin/python -m benchmarks.diversity --movielens ml-latest-small

A default model (`--model`, NeuMF by default) is trained with each user's latest interaction held out for test
and the one before it for validation. Every user's top 10 is then served by `Recommender.recommend_many`, the
items they trained or were validated on excluded, without a cap and with at most 2 and 3 items per genre
(`--caps`; `ncf.rerank.Diversity` over `movies.csv`'s genres, "(no genres listed)" read as missing, so never
capped). Per setting:

- HR@10 / NDCG@10 of the held-out item in that top 10 (full ranking, `ncf.metrics.top_k_metrics`: with one
  held-out item, recall@10 is HR@10), and the difference from the uncapped top 10 with a paired bootstrap;
- catalogue coverage: distinct items recommended to anyone / items the model knows;
- intra-list diversity: per user, the share of pairs in their top 10 that have no genre in common, averaged;
- the cost per user: `recommend_many` over every user (scoring included), best of `--repeats` runs, in ms.

The result is written, stamped, to `benchmarks/results/diversity.json` (`--json` to change).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks import results  # noqa: E402
from benchmarks.datasets import add_arguments, label, ratings_path  # noqa: E402
from benchmarks.paired import bootstrap  # noqa: E402

#: MovieLens' value for a film without genres: not a genre, so not a value to cap.
NO_GENRES = "(no genres listed)"


def genre_metadata(movies_csv, items):
    """`ItemMetadata` with one `genres` column from MovieLens' `movies.csv`, aligned with vocabulary `items`."""
    import pandas as pd

    from ncf.metadata import ItemMetadata

    movies = pd.read_csv(movies_csv, dtype={"movieId": str, "genres": str}, keep_default_na=False)
    genres = movies.genres.where(movies.genres != NO_GENRES, "").tolist()
    index = items.lookup(movies.movieId.tolist())
    return ItemMetadata.from_table(index, movies.movieId.tolist(), {"genres": genres}, len(items))


def genre_matrix(column) -> np.ndarray:
    """`[n_items, n_genres]` bool: which genres each model item has."""
    rows = np.repeat(np.arange(len(column.indptr) - 1), np.diff(column.indptr))
    keep = rows < column.n_items
    matrix = np.zeros((column.n_items, len(column.categories)), dtype=bool)
    matrix[rows[keep], column.codes[keep]] = True
    return matrix


def intra_list_diversity(top: np.ndarray, genres: np.ndarray) -> float:
    """Mean over users of the share of pairs in their list (`top` `[users, k]`, full lists) sharing no genre."""
    lists = genres[top].astype(np.float32)  # [users, k, genres]
    common = np.einsum("ukg,ulg->ukl", lists, lists) > 0
    k = top.shape[1]
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    return float((~common[:, upper]).mean())


def measure(recommender, users: list, held: np.ndarray, diversity, genres: np.ndarray, repeats: int) -> dict:
    """One setting's figures; `held[u]` is user `users[u]`'s held-out item index."""
    from ncf.metrics import top_k_metrics

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        answers = recommender.recommend_many(users, 10, diversity=diversity)
        times.append(time.perf_counter() - t0)
    if any(len(a.indices) != 10 for a in answers):
        raise RuntimeError("a top 10 came back short: the caps must allow 10 items for every user here")
    top = np.array([a.indices for a in answers], dtype=np.int64)
    relevant = top == held[:, None]
    metrics = top_k_metrics(top, relevant, np.ones(len(users), dtype=np.int64))
    ranks = np.where(relevant.any(axis=1), relevant.argmax(axis=1), 10)
    per_user = ((ranks < 10).astype(float), np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0))
    return {"hr@10": metrics["recall@10"], "hr@10_se": metrics["recall@10_se"], "ndcg@10": metrics["ndcg@10"],
            "ndcg@10_se": metrics["ndcg@10_se"], "coverage": len(np.unique(top)) / len(recommender.items),
            "intra_list_diversity": intra_list_diversity(top, genres),
            "ms_per_user": min(times) * 1000 / len(users), "_per_user": per_user}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--model", default="neumf")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--caps", default="2,3", help="comma-separated caps per genre to compare with no cap")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--note", default="", help="what else shared the machine, kept with the figures")
    results.add_argument(p, "diversity")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from ncf.data import read_interactions
    from ncf.dataset import prepare
    from ncf.recommender import Recommender
    from ncf.rerank import Diversity
    from ncf.training import TrainConfig, fit, to_artifact

    path = ratings_path(args)
    movies = path.parent / "movies.csv"
    if not movies.is_file():
        raise SystemExit(f"{movies}: no movies.csv beside the ratings: this benchmark needs MovieLens' genres")
    data = prepare(read_interactions(path), test_k=1, validation_k=1)
    t0 = time.perf_counter()
    result = fit(data, TrainConfig(model=args.model, seed=args.seed), on_epoch=lambda e: None)
    print(f"  trained {args.model} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    recommender = Recommender(replace(to_artifact(result, data), seen=data.seen_before_test()))
    meta = genre_metadata(movies, recommender.items)
    genres = genre_matrix(meta.find("genres"))

    order = np.argsort(data.test.user, kind="stable")
    users_index, held = data.test.user[order], data.test.item[order]
    users = recommender.users.decode(users_index)
    settings = [("no cap", None)] + [(f"at most {c} per genre", Diversity.of(meta, "genres", int(c)))
                                     for c in args.caps.split(",")]
    rows = []
    for name, diversity in settings:
        row = {"setting": name, "max_per_genre": None if diversity is None else diversity.max_per_value,
               **measure(recommender, users, held, diversity, genres, args.repeats)}
        if rows:
            row["paired"] = bootstrap(row["_per_user"], rows[0]["_per_user"], name, "no cap")
        rows.append(row)
        print(f"  {name}: HR@10 {row['hr@10']:.4f}, {row['ms_per_user']:.3f} ms per user", file=sys.stderr,
              flush=True)
    for row in rows:
        del row["_per_user"]
    written = results.write(args.json, "diversity", sys.argv[1:] if argv is None else argv, {
        "data": label(args), "model": args.model, "users": len(users), "items": len(recommender.items),
        "rows": rows, **({"note": args.note} if args.note else {})})
    print(markdown(written))


def markdown(result: dict) -> str:
    """The table of a results file: each setting's ranking, variety and cost beside the uncapped top 10's."""
    rows = []
    for r in result["rows"]:
        paired = r.get("paired")
        rows.append([r["setting"], f"{r['hr@10']:.4f} ± {r['hr@10_se']:.4f}", f"{r['ndcg@10']:.4f}",
                     results.interval(paired["hr"]) if paired else "", results.interval(paired["ndcg"]) if paired else "",
                     f"{r['coverage']:.3f}", f"{r['intra_list_diversity']:.3f}", f"{r['ms_per_user']:.3f}"])
    return "\n\n".join([
        results.provenance(result),
        f"Top 10 for each of {result['users']:,} users of {result['data']} ({result['model']}, "
        f"{result['items']:,} items), held-out latest item; differences against no cap with their 95% interval "
        "(paired bootstrap):",
        results.table(["setting", "HR@10 ± se", "NDCG@10", "HR@10 change", "NDCG@10 change", "coverage",
                       "intra-list diversity", "ms per user"], rows, "lrrrrrrr")])


if __name__ == "__main__":
    main()
