"""Training speed of the AWS blog sample's recipe beside ours, measured in one run on the same data.

    .venv/bin/python -m benchmarks.aws_reference --movielens ml-latest-small \
        --plot quality_vs_time.png

The reference is written here from the blog's description (none of its code is used): raw ids as one-hot
vectors built per batch in a Python generator (width = number of distinct ids, so larger raw ids become
all-zero rows, the sample's identity loss), four Dense(32, relu) layers as "embeddings", a GMF product, an
MLP 64-32-16-8 with dropout 0.25, Dense(1, sigmoid), Adam 1e-3, batch 256, and 5 negatives per positive drawn
once by a Python loop with rejection. It trains for whole epochs (10 by default, ~30 s each here) and is
ranked after each on the same validation candidates our training ranks every epoch (each user's latest
training interaction against 99 negatives), so the curves share one axis: validation HR@10 against cumulative
training seconds. Ours: the default configuration (NeuMF, 64 factors, MLP 64-32-16), also at a 4x batch, the
wider NeuMF the defaults had before (128, 128-64-32), MF at its tuned 128 factors, the paper's model
(factors 8, layers 64-32-16-8, 4 negatives), and that model with 4x and 16x larger batches and scaled
learning rates. Every run's final model is also scored at 0.5 on the balanced test set (each user's latest
interaction with one sampled unseen item): the reference's own sigmoid, our calibrated probability. The
result, every curve included, is written, stamped, to `benchmarks/results/aws-reference.json` (`--json` to
change).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.datasets import add_arguments, label, ratings_path  # noqa: E402
from benchmarks import results  # noqa: E402
from ncf.data import read_interactions  # noqa: E402
from ncf.dataset import prepare  # noqa: E402
from ncf.evaluation import draw_candidates, evaluate_candidates  # noqa: E402
from ncf.sampling import NegativeSampler, epoch_chunks  # noqa: E402


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


def one_hot_batches(raw_users, raw_items, labels, n_users, n_items, batch: int = 256):
    """The sample's generator: one-hot rows built per batch by a Python loop; ids past the width stay zero."""
    for start in range(0, len(raw_users), batch):
        sl = slice(start, start + batch)
        u = np.zeros((len(raw_users[sl]), n_users), np.float32)
        i = np.zeros((len(raw_users[sl]), n_items), np.float32)
        for row, (a, b) in enumerate(zip(raw_users[sl], raw_items[sl])):  # the sample's per-row loop
            if a < n_users:
                u[row, a] = 1.0
            if b < n_items:
                i[row, b] = 1.0
        yield ((u, i), labels[sl]) if labels is not None else (u, i)


def reference_curve(data, negatives: int, epochs: int, validation, test) -> tuple[list[dict], dict]:
    """Trains the reference for whole epochs on its once-drawn negatives; validation HR/NDCG@10 after each,
    and the final model's test metrics (its sigmoid at 0.5 is the blog's like/dislike)."""
    ref_u, ref_i, ref_y = reference_negatives(data.train.user, data.train.item, data.n_items, negatives)
    perm = np.random.default_rng(0).permutation(len(ref_y))
    raw_u, raw_i, y = data.users.ids[ref_u[perm]], data.items.ids[ref_i[perm]], ref_y[perm]
    model = reference_model(data.n_users, data.n_items)

    def score(users, items):
        out = [model.predict_on_batch(x) for x in one_hot_batches(data.users.ids[users], data.items.ids[items], None,
                                                                   data.n_users, data.n_items, batch=4096)]
        return np.concatenate(out).ravel().astype(np.float64)

    curve, seconds = [], 0.0
    steps = -(-len(y) // 256)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.fit(one_hot_batches(raw_u, raw_i, y, data.n_users, data.n_items), steps_per_epoch=steps, epochs=1,
                  verbose=0, shuffle=False)
        took = time.perf_counter() - t0
        seconds += took
        metrics = evaluate_candidates(score, validation)
        curve.append({"epoch": epoch, "seconds": seconds, "samples_per_s": len(y) / took, **metrics})
        print(f"  reference epoch {epoch}: {json.dumps(curve[-1])}", file=sys.stderr, flush=True)
    return curve, evaluate_candidates(score, test)


def our_curve(data, config, test) -> tuple[list[dict], dict]:
    from ncf.training import fit, keras_scorer

    curve, seconds = [], 0.0

    def record(entry):
        nonlocal seconds
        seconds += entry.seconds
        curve.append({"stage": entry.stage, "epoch": entry.epoch, "seconds": seconds,
                      "samples_per_s": entry.samples_per_second, **entry.validation})

    result = fit(data, replace(config, refit=False), on_epoch=record)  # a refit has no validation to draw a curve on
    return curve, evaluate_candidates(keras_scorer(result.model, result.calibration), test)


def later_rate(curve: list[dict]) -> float:
    """Samples/s over the final model's epochs 2+ (epoch 1 includes tracing and compiling). A pretraining
    stage (`pretrain=auto` starts the default NeuMF from an MF on this data) counts in the curve's seconds,
    not in the rate: the rate is the model's own, as `TrainResult.throughput` counts it."""
    if not curve:
        return float("nan")
    final = [c for c in curve if c.get("stage") == curve[-1].get("stage")]
    later = final[1:] or final
    return float(np.mean([c["samples_per_s"] for c in later]))


def first_reaching(curve: list[dict], hr: float) -> dict | None:
    return next((c for c in curve if c["hr@10"] >= hr), None)


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, curve in curves.items():
        ax.plot([c["seconds"] for c in curve], [c["hr@10"] for c in curve], marker="o", markersize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("cumulative training seconds (log scale; evaluation not counted)")
    ax.set_ylabel("validation HR@10 (LOO-99)")
    ax.set_title("Quality against training time, ml-latest-small, 2-core CPU")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--reference-epochs", type=int, default=10)
    p.add_argument("--plot", type=Path, help="write the quality-against-time PNG here")
    results.add_argument(p, "aws-reference")
    args = p.parse_args(argv)
    from ncf.training import TrainConfig

    data = prepare(read_interactions(ratings_path(args)), test_k=1, validation_k=1)
    validation = draw_candidates(data.validation, data.seen, 99, seed=0)  # what fit() ranks every epoch
    test = draw_candidates(data.test, data.seen, 99, seed=0)
    preparation = {}
    t0 = time.perf_counter()
    reference_negatives(data.train.user, data.train.item, data.n_items, 5)
    preparation["reference_negative_sampling_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in epoch_chunks(data.train.user, data.train.item, NegativeSampler(data.train_seen), 5,
                          np.random.default_rng(0)):
        pass
    preparation["our_negative_sampling_s"] = time.perf_counter() - t0
    preparation["items_past_one_hot_width"] = float(np.mean(data.items.ids >= data.n_items))

    curves, tests = {}, {}
    name = f"reference (AWS recipe, {args.reference_epochs} epochs)"
    curves[name], tests[name] = reference_curve(data, 5, args.reference_epochs, validation, test)
    paper = dict(model="neumf", factors=8, mlp_layers=(64, 32, 16, 8), negatives=4)  # He et al.'s settings
    ours = {"ours, default (NeuMF 64, 64-32-16)": TrainConfig(),
            "ours, default, batch 16384, lr 0.008": TrainConfig(batch_size=16384, learning_rate=8e-3),
            "ours, NeuMF 128, 128-64-32": TrainConfig(factors=128, mlp_layers=(128, 64, 32)),
            "ours, MF (128 factors)": TrainConfig(model="mf", factors=128),
            "ours, paper (factors 8, 64-32-16-8)": TrainConfig(**paper),
            "ours, paper, batch 16384, lr 0.008": TrainConfig(**paper, batch_size=16384, learning_rate=8e-3),
            "ours, paper, batch 65536, lr 0.016": TrainConfig(**paper, batch_size=65536, learning_rate=1.6e-2)}
    for name, config in ours.items():
        curves[name], tests[name] = our_curve(data, config, test)

    reference = curves[next(iter(curves))]
    ref_rate, ref_final = later_rate(reference), reference[-1]
    rows = []
    for name, curve in curves.items():
        reached = first_reaching(curve, ref_final["hr@10"])
        rows.append({"run": name, "samples_per_s": later_rate(curve), "vs_reference": later_rate(curve) / ref_rate,
                     "best_val_hr@10": max(c["hr@10"] for c in curve),
                     "reached": {"seconds": reached["seconds"], "epoch": reached["epoch"]} if reached else None,
                     "test_accuracy@0.5": tests[name].get("accuracy@0.5", float("nan"))})
    if args.plot:
        plot(curves, args.plot)
    result = results.write(args.json, "aws_reference", sys.argv[1:] if argv is None else argv, {
        "data": label(args), "training_positives": len(data.train), "rows": rows, "preparation": preparation,
        "curves": curves, "test": tests})
    print(markdown(result))


def markdown(result: dict) -> str:
    """docs/benchmarks.md's table of a results file: each run's training speed and time to the reference's final
    validation HR@10; then the data preparation (which may carry a stamp of its own, from another run)."""
    def reached(row: dict) -> str:
        r = row["reached"]
        return f"{r['seconds']:.1f} (epoch {r['epoch']})" if r else "not reached"

    runs = [[r["run"], f"{r['samples_per_s']:,.0f}", f"{r['vs_reference']:.0f}x", f"{r['best_val_hr@10']:.4f}",
             reached(r), f"{r['test_accuracy@0.5']:.3f}"] for r in result["rows"]]
    prep = result["preparation"]
    ref, ours = prep["reference_negative_sampling_s"], prep["our_negative_sampling_s"]
    other = f" ({results.provenance(prep).removesuffix('.')})" if "stamp" in prep else ""  # another run's
    return "\n\n".join([
        results.provenance(result),
        results.table(["run", "samples/s (model's epochs 2+)", "vs reference", "best val HR@10",
                       "seconds to the reference's final HR@10", "test acc@0.5 (balanced)"], runs, "lrrrrr"),
        f"Data preparation{other}: the recipe's negative sampling (a Python loop, 5 per positive) {ref:.2f} s, ours "
        f"{ours:.3f} s ({ref / ours:.0f}x); {prep['items_past_one_hot_width']:.1%} of the items have a raw id past "
        "the recipe's one-hot width."])


if __name__ == "__main__":
    main()
