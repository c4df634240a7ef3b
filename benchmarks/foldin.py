"""Fold-in against training: users the model never saw, folded in from their items, ranked like trained users.

    .venv/bin/python -m benchmarks.foldin --movielens ml-latest-small,ml-100k --models neumf,mf

For each data set and model kind (default hyperparameters): model A is trained on every user (each user's
latest interaction held out for test, LOO-99 candidates as everywhere here); model B on the same data less
10% of the users, drawn with `--seed` (`--folds` disjoint draws, each its own model B). Each held-out user is
folded into B (`ncf.foldin`) from all their interactions but the latest, or from their latest 1, 3, 10 and 30
of them, and their latest interaction is ranked against the same 99 candidates A ranked it against. Printed:
HR@10 and NDCG@10 of the folded-in users next to the same users trained in (A), and popularity (B's counts);
the target is folded-in >= 90% of trained-in.

Known users (every user of A, `"user"` given, their history the items A trained on): their latest 1, 3 and
10 items before the held-out one folded in on top of their trained rows, the held-out item ranked as above
(target: >= their own trained-in HR@10 and NDCG@10; the differences with a paired bootstrap); and, with `--recent N` (3 by default, 0 skips it), a
model C trained on the same data less each user's latest N items before the held-out one, those N folded in
on top of C's user ("since training"), next to A (which trained on them) and to C's user alone. Then how
much of a user's top 10 (A's, seen items excluded) one click keeps: on their own top-1 (target: >= 0.9 of
the other 9 on average) and on a random unseen item (drawn with `--seed`), and how far the click on the
top-1 moves their parameters (all user rows as one vector, as a multiple of its trained norm).

Then the latency of a fold-in request of 30 items (top 10) through the real server (gunicorn, one worker,
one connection, keep-alive) on B's model, for a new user and for a known one (B's users, 30 of their own
items): p50 / p99, with the server's own settings (`FoldInConfig`'s defaults). Several `--config`s compare
fold-in settings on the same trained models. The result is written, stamped, to
`benchmarks/results/foldin.json` (`--json` to change).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.datasets import add_cache_argument, movielens  # noqa: E402
from benchmarks.paired import bootstrap, rank_metrics  # noqa: E402
from benchmarks import results  # noqa: E402
from ncf.data import Interactions, read_interactions  # noqa: E402
from ncf.dataset import prepare  # noqa: E402
from ncf.evaluation import Candidates, draw_candidates  # noqa: E402
from ncf.foldin import FoldInConfig  # noqa: E402

GIVEN = (1, 3, 10, 30, None)  # None: all but the latest
KNOWN = (1, 3, 10)  # a known user's latest items folded in on top of their trained rows


def histories(raw: Interactions, users: np.ndarray, held_out: dict) -> dict:
    """Raw user id -> their distinct raw items oldest first (by timestamp, then file order), the held-out
    (test) item removed."""
    rows = np.flatnonzero(np.isin(raw.users, users))
    order = rows[np.lexsort((rows, raw.timestamps[rows], raw.users[rows]))] if raw.timestamps is not None else rows
    out: dict = {}
    for user, item in zip(raw.users[order].tolist(), raw.items[order].tolist()):
        if item == held_out[user]:
            continue
        items = out.setdefault(user, [])
        if item in items:
            items.remove(item)  # a repeated interaction counts at its latest time
        items.append(item)
    return out


def fold_in_scores(recommender, raw_candidates: np.ndarray, given: list, user: int | None = None) -> np.ndarray:
    """`[100]` logits of one folded-in user for their raw candidate items (-inf where the model does not know
    one): a new user, or known `user` (an index) on top of their trained rows, their seen items as history
    (as `Recommender.recommend_from_items` solves)."""
    index = recommender.items.lookup(list(given))
    seen = None if user is None else recommender.artifact.seen.row(user).astype(np.int64)
    side = recommender.fold_in.solve(index[index >= 0], user, excluded=seen, history=seen)
    items = recommender.items.lookup(list(raw_candidates))
    out = np.full(len(items), -np.inf)
    known = items >= 0
    out[known] = recommender.scorer.pairs_of(side, items[known])
    return out


def keeps(recommender, users: np.ndarray, seed: int) -> dict:
    """How much of each user's top 10 one click keeps, users by index (known to `recommender`): `own` on their
    top-1 (the share of the other 9 still in the new top 10), `random` on a random unseen item (the share of
    the top 10 less that item), and `moved`: after the click on the top-1, `|theta - start| / |start|` over
    all the user's rows as one vector. `[users]` each."""
    rng = np.random.default_rng(seed)
    fold, out = recommender.fold_in, {"own": [], "random": [], "moved": []}
    for user, raw_user in zip(users.tolist(), recommender.users.decode(users)):
        top = recommender.recommend(raw_user, k=10).items
        seen = recommender.artifact.seen.row(user).astype(np.int64)
        unseen = np.setdiff1d(np.arange(len(recommender.items)), seen)
        clicked = recommender.items.decode(rng.choice(unseen, 1))[0]
        for key, item in (("own", top[0]), ("random", clicked)):
            rest = set(top) - {item}
            after = recommender.recommend_from_items([item], k=10, user=raw_user).items
            out[key].append(len(rest & set(after)) / len(rest))
        start = fold.start(user)
        theta = fold.fit(recommender.items.lookup([top[0]]), user, excluded=seen, history=seen)
        out["moved"].append(float(np.linalg.norm(fold._flat(theta) - fold._flat(start))
                                  / np.linalg.norm(fold._flat(start))))
    return {key: np.asarray(values) for key, values in out.items()}


def latency(model_dir: Path, bodies: list[dict], requests: int = 300) -> tuple[float, float]:
    """p50 / p99 ms of fold-in requests (`bodies` in turn, `"k": 10`) through gunicorn, one worker, one
    connection."""
    from benchmarks.server import Server

    base = model_dir.parent
    server = Server(base, None, workers=1)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        times = []
        for n in range(requests + 20):
            body = json.dumps({**bodies[n % len(bodies)], "k": 10})
            t0 = time.perf_counter()
            connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"fold-in answered {response.status}")
            if n >= 20:  # warm-up excluded
                times.append((time.perf_counter() - t0) * 1000)
        connection.close()
    finally:
        server.stop()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99) - 1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--movielens", default="ml-latest-small,ml-100k", help="comma-separated MovieLens sets")
    add_cache_argument(p)
    p.add_argument("--models", default="neumf,mf")
    p.add_argument("--folds", type=int, default=1, help="disjoint 10%% draws of held-out users")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="fold-in settings to compare on the same models (FoldInConfig fields; default: its defaults)")
    p.add_argument("--recent", type=int, default=3,
                   help="known users' latest items left out of model C, folded in on top of it (0: no model C)")
    p.add_argument("--skip-new", action="store_true", help="only the known users (no model B, no latency)")
    p.add_argument("--skip-latency", action="store_true")
    results.add_argument(p, "foldin")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from ncf import artifacts
    from ncf.recommender import Recommender
    from ncf.training import TrainConfig, fit, keras_logits, to_artifact

    configs = {}
    for text in args.config or ["default:"]:
        label, _, settings = text.partition(":")
        pairs = [pair.split("=", 1) for pair in settings.split(",") if pair]
        configs[label] = replace(FoldInConfig(), **{k: type(getattr(FoldInConfig(), k))(v) for k, v in pairs})
    rows, known_rows, keep_rows, latencies = [], [], [], {}
    for name in args.movielens.split(","):
        raw = read_interactions(movielens(name, args))
        full = prepare(raw, test_k=1, validation_k=1)
        candidates = draw_candidates(full.test, full.seen, 99, seed=0)
        draws = np.random.default_rng(args.seed).permutation(full.n_users)
        all_raw_users = full.users.decode(candidates.users)
        all_raw_cands = np.asarray(full.items.decode(candidates.items.ravel())).reshape(-1, 100)
        all_history = histories(raw, np.asarray(all_raw_users), dict(zip(all_raw_users, all_raw_cands[:, 0].tolist())))
        data_c = None
        if args.recent:  # each user's latest `recent` items before the held-out one out of the data
            latest = {(u, i) for u, items in all_history.items() for i in items[-args.recent:]}
            data_c = prepare(raw.select(np.array([pair not in latest for pair in zip(raw.users.tolist(),
                                                                                     raw.items.tolist())])),
                             test_k=1, validation_k=1)
        for kind in args.models.split(","):
            config = TrainConfig(model=kind, seed=args.seed)
            result_a = fit(full, config, on_epoch=lambda e: None)
            # The history a known user brings: what A trained on (the held-out item is not in it).
            recommender_a = Recommender(replace(to_artifact(result_a, full), seen=full.seen_before_test()))
            recommender_c = None
            if data_c is not None:
                recommender_c = Recommender(replace(to_artifact(fit(data_c, config, on_epoch=lambda e: None), data_c),
                                                    seen=data_c.seen_before_test()))
            known = known_users(recommender_a, recommender_c, candidates, all_raw_cands, all_history, configs, args)
            for label, (cases, kept) in known.items():
                known_rows += [(name, kind, label, *case) for case in cases]
                keep_rows.append((name, kind, label, len(kept["own"]), kept["own"].mean(), kept["own"].min(),
                                  kept["random"].mean(), kept["moved"].mean()))
            print(f"  {name} {kind}: known users done", file=sys.stderr, flush=True)
            if args.skip_new:
                continue
            logits_a = keras_logits(result_a.model)
            folded = {(label, n): ([], []) for label in configs for n in GIVEN}
            trained_in, popular = ([], []), ([], [])
            for fold in range(args.folds):
                held = draws[fold * full.n_users // 10:(fold + 1) * full.n_users // 10]
                rows_h = np.flatnonzero(np.isin(candidates.users, held))
                cands = Candidates(candidates.users[rows_h], candidates.items[rows_h])
                scores_a = logits_a(np.repeat(cands.users, 100), cands.items.ravel()).reshape(-1, 100)
                for part, values in zip(trained_in, rank_metrics(scores_a)):
                    part.append(values)
                raw_users = full.users.decode(cands.users)
                raw_cands = np.asarray(full.items.decode(cands.items.ravel())).reshape(-1, 100)
                rest = prepare(raw.select(~np.isin(raw.users, raw_users)), test_k=1, validation_k=1)
                recommender_b = Recommender(to_artifact(fit(rest, config, on_epoch=lambda e: None), rest))
                pop = recommender_b.artifact.popularity.astype(float)
                index = recommender_b.items.lookup(list(raw_cands.ravel())).reshape(-1, 100)
                for part, values in zip(popular, rank_metrics(np.where(index >= 0, pop[np.maximum(index, 0)],
                                                                       -np.inf))):
                    part.append(values)
                history = {u: all_history[u] for u in raw_users}
                for label, fold_config in configs.items():
                    recommender_b.fold_in.config = fold_config
                    for n in GIVEN:
                        scores = np.stack([fold_in_scores(recommender_b, raw_cands[r],
                                                          history[u] if n is None else history[u][-n:])
                                           for r, u in enumerate(raw_users)])
                        for part, values in zip(folded[(label, n)], rank_metrics(scores)):
                            part.append(values)
                recommender_b.fold_in.config = next(iter(configs.values()))
                if fold == 0 and not args.skip_latency:
                    with tempfile.TemporaryDirectory() as tmp:
                        folder = Path(tmp) / "model"
                        artifacts.save(folder, recommender_b.artifact)
                        b_users = np.linspace(0, len(recommender_b.users) - 1, 100).round().astype(int)
                        latencies[(name, kind)] = (
                            latency(folder, [{"items": h[-30:]} for h in history.values()]),
                            latency(folder, [{"user": user, "items": list(recommender_b.items.decode(
                                recommender_b.artifact.seen.row(u)[-30:]))}
                                for u, user in zip(b_users, recommender_b.users.decode(b_users))]))
            hr_a, ndcg_a = (np.concatenate(part).mean() for part in trained_in)
            hr_p, ndcg_p = (np.concatenate(part).mean() for part in popular)
            users = sum(len(part) for part in trained_in[0])
            for label in configs:
                for n in GIVEN:
                    hr, ndcg = (np.concatenate(part).mean() for part in folded[(label, n)])
                    rows.append((name, kind, label, users, "all but the latest" if n is None else f"latest {n}",
                                 hr, ndcg, hr_a, ndcg_a, hr_p, ndcg_p))
            print(f"  {name} {kind}: trained-in {hr_a:.4f}, all-but-latest folded in "
                  f"{rows[-1][5]:.4f}", file=sys.stderr, flush=True)

    new_keys = ("data", "model", "fold_in", "users", "given", "hr@10", "ndcg@10", "trained_hr@10", "trained_ndcg@10",
                "popularity_hr@10", "popularity_ndcg@10")
    known_keys = ("data", "model", "fold_in", "users", "case", "hr@10", "ndcg@10", "trained_hr@10",
                  "trained_ndcg@10")
    keep_keys = ("data", "model", "fold_in", "users", "own_kept", "own_kept_worst", "random_kept", "moved")
    result = results.write(args.json, "foldin", sys.argv[1:] if argv is None else argv, {
        "configs": {label: asdict(config) for label, config in configs.items()},
        "new_users": [dict(zip(new_keys, row)) for row in rows],
        "known_users": [{**dict(zip(known_keys, row)), "hr_diff": row[-1]["hr"], "ndcg_diff": row[-1]["ndcg"]}
                        for row in known_rows],
        "keeps": [dict(zip(keep_keys, row)) for row in keep_rows],
        "latency": [{"data": name, "model": kind, "new_p50_ms": p50, "new_p99_ms": p99, "known_p50_ms": k50,
                     "known_p99_ms": k99} for (name, kind), ((p50, p99), (k50, k99)) in latencies.items()]})
    print(markdown(result))


def _sign(diff: list[float]) -> str:
    """`+` when a paired difference's 95% interval is above zero, `-` below, `=` across it."""
    return "+" if diff[1] > 0 else "-" if diff[2] < 0 else "="


def markdown(result: dict) -> str:
    """docs/benchmarks.md's tables of a results file, each part the run measured: new users' HR@10 folded in as a
    share of the same users' trained in, by the items folded in; known users' HR@10 / NDCG@10 by case; what one
    click keeps of a top 10, with the latency. Every figure behind them is in the file."""
    several = len(result.get("configs", {})) > 1

    def who(row: dict) -> tuple:
        return row["data"], f"{row['model']} ({row['fold_in']})" if several else row["model"]

    def grouped(rows: list[dict]) -> dict:
        out: dict = {}
        for r in rows:
            out.setdefault(who(r), []).append(r)
        return out

    parts = [results.provenance(result)]
    if result.get("new_users"):
        groups = grouped(result["new_users"])
        givens = list(dict.fromkeys(r["given"] for r in result["new_users"]))
        rows = [[*key, *(f"{r['hr@10'] / r['trained_hr@10']:.2f}" for r in g), f"{g[0]['trained_hr@10']:.4f}",
                 f"{g[0]['popularity_hr@10']:.4f}"] for key, g in groups.items()]
        parts += ["New users (model B), HR@10 folded in / trained in (model A), by the items folded in:",
                  results.table(["data", "model", *givens, "trained in", "popularity"], rows,
                                "ll" + "r" * (len(givens) + 2))]
    if result.get("known_users"):
        groups = grouped(result["known_users"])
        cases = list(dict.fromkeys(r["case"] for r in result["known_users"]))
        rows = [[*key, f"{g[0]['trained_hr@10']:.4f} / {g[0]['trained_ndcg@10']:.4f}",
                 *(f"{r['hr@10']:.4f} / {r['ndcg@10']:.4f} {_sign(r['hr_diff'])}{_sign(r['ndcg_diff'])}" for r in g)]
                for key, g in groups.items()]
        parts += ["Known users, HR@10 / NDCG@10, each against trained in (+ better, - worse, = within noise):",
                  results.table(["data", "model", "trained in (A)", *cases], rows)]
    keeps = {who(r): r for r in result.get("keeps", [])}
    latency = {who({**r, "fold_in": next(iter(result.get("configs", {"": 0})))}): r for r in result.get("latency", [])}
    if keeps or latency:
        known_too = any("known_p50_ms" in r for r in latency.values())
        rows = []
        for key in dict.fromkeys([*keeps, *latency]):
            k, t = keeps.get(key), latency.get(key)
            rows.append([*key, *([f"{k['own_kept']:.3f} / {k['own_kept_worst']:.2f}", f"{k['random_kept']:.3f}",
                                  f"{k['moved']:.3f}"] if keeps else []),
                         *([f"{t['new_p50_ms']:.1f} / {t['new_p99_ms']:.1f}"] if t else ["–"]),
                         *([f"{t['known_p50_ms']:.1f} / {t['known_p99_ms']:.1f}"] if t and known_too else [])])
        parts += [("One click on a known user (model A): the share of the rest of their top 10 kept, and how far a "
                   "click on their own top-1 moves their rows (x norm); " if keeps else "") +
                  "30 items folded in through gunicorn (1 worker, 1 connection), p50 / p99 ms:",
                  results.table(["data", "model", *(["own top-1 kept, mean / worst", "a random item kept",
                                                     "moved"] if keeps else []), "new user ms",
                                 *(["known user ms"] if known_too else [])], rows, "llrrrrr")]
    return "\n\n".join(parts)


def known_users(recommender_a, recommender_c, candidates: Candidates, raw_cands: np.ndarray, history: dict,
                configs: dict, args) -> dict:
    """Per fold-in setting: the known-user cases as `(users, case, HR@10, NDCG@10, trained-in HR@10,
    trained-in NDCG@10, paired bootstrap of the differences)` rows, and `keeps` on A. `recommender_c` (or
    None): model C, trained without each user's latest `args.recent` items before the held-out one."""
    raw_users = recommender_a.users.decode(candidates.users)
    scores_a = recommender_a.scorer.pairs(np.repeat(candidates.users, 100), candidates.items.ravel())
    trained = rank_metrics(scores_a.reshape(-1, 100))
    users_c = None if recommender_c is None else recommender_c.users.lookup(list(raw_users))
    out = {}
    for label, fold_config in configs.items():
        recommender_a.fold_in.config = replace(fold_config, negatives=recommender_a.fold_in.config.negatives)
        cases = []
        for n in KNOWN:
            scores = np.stack([fold_in_scores(recommender_a, raw_cands[r], history[u][-n:], user)
                               for r, (u, user) in enumerate(zip(raw_users, candidates.users.tolist()))])
            cases.append((f"latest {n} on top", *rank_metrics(scores)))
        if recommender_c is not None:
            recommender_c.fold_in.config = replace(fold_config, negatives=recommender_c.fold_in.config.negatives)
            for case, given in ((f"model C alone (latest {args.recent} never seen)", lambda u: []),
                                (f"latest {args.recent} since training (C)", lambda u: history[u][-args.recent:])):
                scores = np.stack([fold_in_scores(recommender_c, raw_cands[r], given(u), int(user))
                                   for r, (u, user) in enumerate(zip(raw_users, users_c))])
                cases.append((case, *rank_metrics(scores)))
        out[label] = ([(len(raw_users), case, hr.mean(), ndcg.mean(), trained[0].mean(), trained[1].mean(),
                        bootstrap((hr, ndcg), trained, case, "trained in")) for case, hr, ndcg in cases],
                      keeps(recommender_a, candidates.users, args.seed))
    return out


if __name__ == "__main__":
    main()
