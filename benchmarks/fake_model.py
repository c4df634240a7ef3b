"""A model folder of any size with random weights, written without training: serving at scale, in seconds.

    .venv/bin/python -m benchmarks.fake_model /tmp/m25 --kind neumf            # ml-25m-sized, ~10 s
    .venv/bin/python -m benchmarks.fake_model /tmp/small --users 1000 --items 500 --interactions 20000
    .venv/bin/python -m benchmarks.fake_model /tmp/shop --metadata              # with item metadata

Serving's cost depends on the sizes (users, items, factors, layers, seen items per user), not on what the
weights learned, so a folder with random weights measures it as well as a trained one does. The folder is what
`ncf.artifacts.save` writes, weights named as `ncf.models.export_weights` names them, so `serve` loads it
unchanged. Seen items follow ml-25m's shape: lognormal user activity (median ~70, a long tail into the
thousands) and Zipf-like item popularity; the count of distinct pairs is within a few percent of
`interactions` (23M asked: 22.8M). Deterministic by `seed`. Peak memory ~30 bytes per interaction (23M: 0.7 GB).

With `metadata`, the folder also holds item metadata shaped like MovieLens' movies.csv plus a price
(`fake_item_metadata`), for what business rules cost (`benchmarks/filters.py`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ncf import artifacts
from ncf.metadata import ItemMetadata
from ncf.seen import SeenItems
from ncf.training import TrainConfig
from ncf.vocab import Vocabulary

#: ml-25m: 162,541 users rated 59,047 movies 25,000,095 times; the issue's synthetic shape rounds it.
ML25M = {"users": 161_916, "items": 59_000, "interactions": 23_000_000}
#: The widths a trained model has by default: what a speed figure should be of.
DEFAULTS = TrainConfig()


def fake_weights(kind: str, users: int, items: int, factors: int = DEFAULTS.factors,
                 mlp_layers: tuple = DEFAULTS.mlp_layers,
                 rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Float32 arrays named like `models.export_weights` for `kind` ('mf', 'gmf', 'mlp' or 'neumf')."""
    rng = rng or np.random.default_rng(0)

    def normal(*shape, scale=0.1):
        return (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)

    if kind == "mf":
        return {"mf/user": normal(users, factors), "mf/item": normal(items, factors),
                "mf/user_bias": normal(users), "mf/item_bias": normal(items),
                "mf/bias": np.zeros((), dtype=np.float32)}
    weights: dict[str, np.ndarray] = {}
    head = 0
    if kind in ("neumf", "gmf"):
        weights["gmf/user"], weights["gmf/item"] = normal(users, factors), normal(items, factors)
        head += factors
    if kind in ("neumf", "mlp"):
        half = mlp_layers[0] // 2
        weights["mlp/user"], weights["mlp/item"] = normal(users, half), normal(items, half)
        width = mlp_layers[0]
        for n, size in enumerate(mlp_layers[1:]):
            weights[f"mlp/dense_{n}/kernel"] = normal(width, size, scale=1 / np.sqrt(width))
            weights[f"mlp/dense_{n}/bias"] = normal(size, scale=0.01)
            width = size
        head += width
    if not weights:
        raise ValueError(f"kind must be mf, gmf, mlp or neumf, got {kind!r}")
    weights["head/kernel"] = normal(head, 1, scale=1 / np.sqrt(head))
    weights["head/bias"] = np.zeros(1, dtype=np.float32)
    return weights


def fake_seen(users: int, items: int, interactions: int, rng: np.random.Generator) -> SeenItems:
    """`SeenItems` with lognormal activity per user (each at least 1) and Zipf-like item popularity."""
    activity = rng.lognormal(mean=0.0, sigma=1.2, size=users)
    # ~10% more draws than asked: repeated draws of popular items collapse, and ~9% do at ml-25m's shape.
    counts = np.maximum(1, np.round(activity / activity.sum() * interactions * 1.1)).astype(np.int64)
    counts = np.minimum(counts, items)
    popularity = 1.0 / (np.arange(items) + 10.0) ** 0.9
    popularity = rng.permutation(popularity / popularity.sum())  # popular items are not the first ids
    drawn = rng.choice(items, size=int(counts.sum()), p=popularity).astype(np.int64)
    keys = np.sort(np.repeat(np.arange(users, dtype=np.int64), counts) * items + drawn)
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]  # sort-based: np.unique (numpy 2.4) is ~60x slower
    indptr = np.zeros(users + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // items, minlength=users), out=indptr[1:])
    return SeenItems(indptr, (keys % items).astype(np.int32), items)


#: Genres of the synthetic metadata: as many as MovieLens' (its 19 and "(no genres listed)").
GENRES = tuple(f"Genre{g:02d}" for g in range(20))


def fake_item_metadata(items: int, rng: np.random.Generator, extra: int = 0) -> ItemMetadata:
    """Metadata for item indices `0..items-1` (ids `1..items`) and `extra` metadata-only rows after them (ids the
    model never trained on, as movies.csv lists movies nobody rated): GENRES, 1 to 3 of `GENRES` per item
    (multi-valued, `|` between them; the first genres the most common, Zipf-like, as Drama and Comedy are in
    MovieLens), PRICE (a number, lognormal, median ~12), TITLE (free text, `"Title 123 (1999)"`)."""
    rows = items + extra
    share = 1.0 / (np.arange(len(GENRES)) + 1.0) ** 0.8
    draws = rng.choice(len(GENRES), size=(rows, 3), p=share / share.sum())
    count = rng.integers(1, 4, rows)
    genres = ["|".join(dict.fromkeys(GENRES[g] for g in row[:n])) for row, n in zip(draws.tolist(), count.tolist())]
    price = [f"{p:.2f}" for p in rng.lognormal(2.5, 0.8, rows).tolist()]
    years = rng.integers(1920, 2020, rows).tolist()
    title = [f"Title {i + 1} ({y})" for i, y in enumerate(years)]
    index = np.concatenate([np.arange(items), np.full(extra, -1)])
    return ItemMetadata.from_table(index, [str(i + 1) for i in range(rows)],
                                   {"GENRES": genres, "PRICE": price, "TITLE": title}, items)


def fake_model(path: str | Path, kind: str = "neumf", users: int = ML25M["users"], items: int = ML25M["items"],
               interactions: int = ML25M["interactions"], seed: int = 0, factors: int = DEFAULTS.factors,
               mlp_layers: tuple = DEFAULTS.mlp_layers, metadata: bool = False, metadata_only: int = 0) -> Path:
    """Write a model folder of the given sizes with random weights (and `fake_item_metadata` when `metadata`,
    with `metadata_only` rows for items the model does not know); returns its path."""
    rng = np.random.default_rng(seed)
    seen = fake_seen(users, items, interactions, rng)
    artifact = artifacts.ModelArtifact(
        kind=kind, weights=fake_weights(kind, users, items, factors, tuple(mlp_layers), rng),
        users=Vocabulary(np.arange(1, users + 1, dtype=np.int64)),
        items=Vocabulary(np.arange(1, items + 1, dtype=np.int64)),
        seen=seen, popularity=np.bincount(seen.indices, minlength=items).astype(np.int64),
        metadata={"threshold": 0.5, "fake": True, "seed": seed, "factors": factors,
                  "mlp_layers": list(mlp_layers), "interactions": int(len(seen.indices))},
        item_metadata=fake_item_metadata(items, rng, metadata_only) if metadata else None,
    )
    return artifacts.save(path, artifact)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", type=Path)
    p.add_argument("--kind", default="neumf", choices=["mf", "gmf", "mlp", "neumf"])
    p.add_argument("--users", type=int, default=ML25M["users"])
    p.add_argument("--items", type=int, default=ML25M["items"])
    p.add_argument("--interactions", type=int, default=ML25M["interactions"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metadata", action="store_true", help="with item metadata: GENRES, PRICE, TITLE")
    args = p.parse_args(argv)
    start = time.monotonic()
    fake_model(args.path, args.kind, args.users, args.items, args.interactions, args.seed, metadata=args.metadata)
    print(f"{args.path}: {args.kind}, {args.users:,} users x {args.items:,} items, written in "
          f"{time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
