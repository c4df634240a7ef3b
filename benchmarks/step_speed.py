"""Training-step speed alone: samples/s of `ncf.loop`'s compiled step for named configurations on the
tables of a ratings file, alternated in one run (the machine is shared; ratios are what to read).

    .venv/bin/python -m benchmarks.step_speed --ratings /tmp/ncf-scale/synthetic-1000000-161916x59000.csv \
        --config default --config mf128:model=mf,factors=128 --rounds 2
    .venv/bin/python -m benchmarks.step_speed --ratings ~/.cache/ncf/movielens/ml-latest-small/ratings.csv \
        --config default --config b16k:batch_size=16384,learning_rate=0.004 --row-wise --floor

No sampling, evaluation or export: 2M examples drawn from the file's positives (a user and an item as the
data has them; 89% of items replaced by uniform ones, as negatives would be) go through `epoch_trainer`
twice per round, the faster pass counted. What a job adds on top shows in `benchmarks/scale.py`; this is the
part that depends on the model's widths and the tables' sizes. `--row-wise` runs each config again with
every table updated row by row (`LazyAdam(whole_rows=0)`), `--floor` with no update at all: the compiled
forward and backward passes alone, the most samples/s any optimiser could reach with that model and batch.
`--bf16` runs each (and its floor, with `--floor`) again under Keras' `mixed_bfloat16` policy: the layers
compute in bfloat16 (this CPU has AMX for it), the weights and the loss stay float32. The result is written,
stamped, to `benchmarks/results/step-speed.json` (`--json` to change).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.ab import parse_config  # noqa: E402
from benchmarks import results  # noqa: E402
from ncf.data import read_interactions  # noqa: E402
from ncf.defaults import resolved  # noqa: E402
from ncf.vocab import Vocabulary  # noqa: E402

EXAMPLES = 1 << 21


def examples(ratings: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    data = read_interactions(ratings)
    users, items = Vocabulary.fit(data.users), Vocabulary.fit(data.items)
    u, i = users.encode(data.users), items.encode(data.items)
    pick = rng.integers(0, len(u), EXAMPLES)
    negative = rng.random(EXAMPLES) >= 1 / 9
    item = np.where(negative, rng.integers(0, len(items), EXAMPLES), i[pick])
    return (u[pick].astype(np.int32), item.astype(np.int32), (~negative).astype(np.float32), len(users),
            len(items))


class NoUpdate:
    """An optimiser that only sums its gradients into one number, so the compiled step keeps the forward and
    backward passes (XLA drops what nothing reads) and updates nothing: the floor under any optimiser."""

    def __init__(self):
        import tensorflow as tf

        self.sink = tf.Variable(0.0, trainable=False)

    def apply_gradients(self, pairs) -> None:
        import tensorflow as tf

        values = [g.values if isinstance(g, tf.IndexedSlices) else g for g, _ in pairs if g is not None]
        self.sink.assign_add(tf.add_n([tf.reduce_sum(v) for v in values]))


def samples_per_s(config, n_users: int, n_items: int, users, items, labels, variant: str = "") -> float:
    """The faster of two passes over the examples. `variant` "rows": `LazyAdam` updates every table row by
    row, as it did before small tables were updated whole (`ncf/optimizers.py`); "no update": `NoUpdate`;
    a leading "bf16": under `mixed_bfloat16` (float32 again afterwards)."""
    import keras

    config = resolved(config, len(labels) // (1 + config.negatives))[0]  # batch_size=auto: the job's choice
    bf16, variant = variant.startswith("bf16"), variant.removeprefix("bf16").strip()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if bf16 else "float32")
    try:
        return _best_of_two(config, n_users, n_items, users, items, labels, variant)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _best_of_two(config, n_users: int, n_items: int, users, items, labels, variant: str) -> float:
    import tensorflow as tf

    from ncf.loop import build, epoch_trainer, make_optimizer

    class Tables:
        pass

    Tables.n_users, Tables.n_items = n_users, n_items
    strategy = tf.distribute.get_strategy()
    model = build(Tables, config, strategy)
    optimizer = NoUpdate() if variant == "no update" else make_optimizer(model, config, strategy)
    if variant == "rows":
        if not hasattr(optimizer, "whole_rows"):
            raise SystemExit(f"--row-wise: {config.optimizer} has no row-wise update to compare (lazy_adam has)")
        optimizer.whole_rows = 0
    train = epoch_trainer(model, optimizer, strategy, config.batch_size)
    train(users[:1 << 18], items[:1 << 18], labels[:1 << 18], None)  # compile
    best = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        train(users, items, labels, None)
        best = max(best, len(labels) / (time.perf_counter() - t0))
    return best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratings", type=Path, required=True)
    p.add_argument("--config", action="append", required=True, metavar="NAME:KEY=VALUE,...")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--row-wise", action="store_true",
                   help="also run each config with every embedding table updated row by row (NAME/rows)")
    p.add_argument("--floor", action="store_true",
                   help="also run each config's forward and backward passes without any update (NAME/no update)")
    p.add_argument("--bf16", action="store_true",
                   help="also run each config (and its floor) with the layers in bfloat16 (NAME/bf16...)")
    results.add_argument(p, "step-speed")
    args = p.parse_args(argv)
    from ncf.training import TrainConfig

    configs = {}
    for name, overrides in (parse_config(text) for text in args.config):
        configs[name] = (overrides, "")
        for variant, wanted in (("rows", args.row_wise), ("no update", args.floor), ("bf16", args.bf16),
                                ("bf16 no update", args.bf16 and args.floor)):
            if wanted:
                configs[f"{name}/{variant}"] = (overrides, variant)
    users, items, labels, n_users, n_items = examples(args.ratings, np.random.default_rng(0))
    rates: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, (overrides, variant) in configs.items():
            rates[name].append(samples_per_s(replace(TrainConfig(), **overrides), n_users, n_items, users, items,
                                             labels, variant))
            print(f"  {name}: {rates[name][-1]:,.0f}", file=sys.stderr, flush=True)
    result = results.write(args.json, "step_speed", sys.argv[1:] if argv is None else argv, {
        "data": f"{args.ratings.parent.name}/{args.ratings.name}", "users": n_users, "items": n_items, "rounds": rates})
    print(markdown(result))


def markdown(result: dict) -> str:
    """docs/benchmarks.md's table of a results file: each config's samples/s per round, its best, and that best
    against the first config's."""
    rates = result["rounds"]
    first = max(next(iter(rates.values())))
    rows = [[name, ", ".join(f"{v:,.0f}" for v in values), f"{max(values):,.0f}", f"{max(values) / first:.2f}"]
            for name, values in rates.items()]
    return "\n\n".join([
        results.provenance(result),
        results.table([f"config ({result['data']}, {result['users']:,} x {result['items']:,} tables)",
                       "samples/s per round", "best", f"vs {next(iter(rates))}"], rows, "llrr")])


if __name__ == "__main__":
    main()
