"""Training speed of the AWS blog sample's recipe beside ours, measured in one run on the same data.

    .venv/bin/python benchmarks/aws_reference.py --ratings ../shared/data/ml-latest-small/ratings.csv

The reference is written here from the blog's description (none of its code is used): raw ids as one-hot
vectors built per batch in a Python generator (width = number of distinct ids, so larger raw ids become
all-zero rows, the sample's identity loss), four Dense(32, relu) layers as "embeddings", a GMF product, an
MLP 64-32-16-8 with dropout 0.25, Dense(1, sigmoid), Adam 1e-3, batch 256, and 5 negatives per positive drawn
once by a Python loop with rejection. One of its epochs takes minutes here, so it is timed over a bounded
number of steps. Ours: the default configuration and the paper's (factors 8, layers 64-32-16-8), whole epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ncf.data import read_interactions  # noqa: E402
from ncf.dataset import prepare  # noqa: E402
from ncf.sampling import NegativeSampler, epoch_examples  # noqa: E402


def reference_negatives(users: np.ndarray, items: np.ndarray, n_items: int, n_neg: int, seed: int = 0):
    """The sample's way: a Python loop per positive, rejection against a per-user set."""
    rng = np.random.default_rng(seed)
    seen: dict[int, set] = {}
    for u, i in zip(users.tolist(), items.tolist()):
        seen.setdefault(u, set()).add(i)
    out_u, out_i, out_y = [], [], []
    for u, i in zip(users.tolist(), items.tolist()):
        out_u.append(u), out_i.append(i), out_y.append(1.0)
        for _ in range(n_neg):
            j = int(rng.integers(n_items))
            while j in seen[u]:
                j = int(rng.integers(n_items))
            out_u.append(u), out_i.append(j), out_y.append(0.0)
    return np.array(out_u), np.array(out_i), np.array(out_y, np.float32)


def reference_model(n_users: int, n_items: int):
    import keras
    from keras import layers

    user = keras.Input((n_users,), name="user_onehot")
    item = keras.Input((n_items,), name="item_onehot")
    gmf_u, gmf_i = layers.Dense(32, activation="relu")(user), layers.Dense(32, activation="relu")(item)
    mlp_u, mlp_i = layers.Dense(32, activation="relu")(user), layers.Dense(32, activation="relu")(item)
    gmf = layers.Multiply()([gmf_u, gmf_i])
    x = layers.Concatenate()([mlp_u, mlp_i])
    for width in (32, 16, 8):
        x = layers.Dropout(0.25)(layers.Dense(width, activation="relu")(x))
    out = layers.Dense(1, activation="sigmoid")(layers.Concatenate()([gmf, x]))
    model = keras.Model([user, item], out)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    return model


def reference_throughput(raw_users, raw_items, labels, n_users, n_items, steps: int) -> float:
    """Samples/s of the one-hot generator feeding the reference model, over `steps` batches of 256."""
    def batches():
        for start in range(0, len(labels), 256):
            sl = slice(start, start + 256)
            u = np.zeros((len(labels[sl]), n_users), np.float32)
            i = np.zeros((len(labels[sl]), n_items), np.float32)
            for row, (a, b) in enumerate(zip(raw_users[sl], raw_items[sl])):  # the sample's per-row loop
                if a < n_users:
                    u[row, a] = 1.0
                if b < n_items:
                    i[row, b] = 1.0
            yield (u, i), labels[sl]

    model = reference_model(n_users, n_items)
    model.fit(batches(), steps_per_epoch=5, epochs=1, verbose=0, shuffle=False)  # build and trace untimed
    start = time.perf_counter()
    model.fit(batches(), steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return steps * 256 / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratings", required=True)
    p.add_argument("--steps", type=int, default=300, help="reference batches timed")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    from ncf.training import TrainConfig, fit

    data = prepare(read_interactions(args.ratings), test_k=1, validation_k=0)
    raw_users = data.users.ids[data.train.user]
    raw_items = data.items.ids[data.train.item]
    results = {}

    t0 = time.perf_counter()
    ref_u, ref_i, ref_y = reference_negatives(data.train.user, data.train.item, data.n_items, 5)
    results["reference negative sampling, s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    epoch_examples(data.train.user, data.train.item, NegativeSampler(data.train_seen), 5, np.random.default_rng(0))
    results["our negative sampling, s"] = time.perf_counter() - t0
    lost = float(np.mean(data.items.ids >= data.n_items))
    results["items whose raw id falls outside the reference's one-hot width"] = lost

    perm = np.random.default_rng(0).permutation(len(ref_y))
    ref_raw_u = data.users.ids[ref_u[perm]]
    ref_raw_i = data.items.ids[ref_i[perm]]
    results["reference samples/s"] = reference_throughput(ref_raw_u, ref_raw_i, ref_y[perm], data.n_users,
                                                          data.n_items, args.steps)
    for name, config in (("default", TrainConfig(epochs=6, patience=0)),
                         ("paper (factors 8, 64-32-16-8)", TrainConfig(epochs=6, patience=0, factors=8,
                                                                       mlp_layers=(64, 32, 16, 8)))):
        history = fit(data, config, on_epoch=lambda e: None).history[1:]  # epoch 1 includes tracing
        results[f"ours {name} samples/s"] = sum(e.samples for e in history) / sum(e.seconds for e in history)

    ref = results["reference samples/s"]
    print(f"\nTraining speed on {Path(args.ratings).name} ({len(data.train):,} training positives)\n")
    print("| figure | value |\n|---|---:|")
    print(f"| reference recipe, samples/s ({args.steps} batches of 256) | {ref:,.0f} |")
    for name in ("default", "paper (factors 8, 64-32-16-8)"):
        ours = results[f"ours {name} samples/s"]
        print(f"| ours, {name}, samples/s (epochs 2-6) | {ours:,.0f} ({ours / ref:.0f}x) |")
    print(f"| reference negative sampling (Python loop, 5 per positive), s | "
          f"{results['reference negative sampling, s']:.2f} |")
    print(f"| our negative sampling (same data), s | {results['our negative sampling, s']:.3f} "
          f"({results['reference negative sampling, s'] / results['our negative sampling, s']:.0f}x) |")
    print(f"| items whose raw id is past the reference's one-hot width | {lost:.1%} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
