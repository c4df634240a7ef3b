"""Small synthetic implicit-feedback data with structure a model can learn (MovieLens may not be shipped).

Users and items get latent vectors in a few clusters; each user picks items with probability growing with
affinity and popularity, at increasing timestamps, so later picks are predictable from earlier ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def ratings_frame(n_users: int = 120, n_items: int = 200, per_user: tuple[int, int] = (15, 40),
                  seed: int = 0, string_ids: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    clusters = 8
    user_cluster = rng.integers(0, clusters, n_users)
    item_cluster = rng.integers(0, clusters, n_items)
    popularity = rng.zipf(2.0, n_items).clip(max=10).astype(float)
    rows = []
    for u in range(n_users):
        affinity = np.where(item_cluster == user_cluster[u], 40.0, 1.0) * popularity
        p = affinity / affinity.sum()
        count = int(rng.integers(per_user[0], per_user[1] + 1))
        items = rng.choice(n_items, size=count, replace=False, p=p)
        times = 1_000_000_000 + np.sort(rng.integers(0, 10_000_000, count))
        ratings = rng.integers(1, 11, count) / 2
        rows.append(pd.DataFrame({"user": u, "item": items, "rating": ratings, "timestamp": times}))
    frame = pd.concat(rows, ignore_index=True)
    # Raw ids deliberately sparse and large, as MovieLens' are (movieId up to 193,609).
    frame["user"] = frame["user"] * 7 + 3
    frame["item"] = frame["item"] * 1009 + 17
    if string_ids:
        frame["user"] = "u" + frame["user"].astype(str)
        frame["item"] = "item-" + frame["item"].astype(str)
    return frame.rename(columns={"user": "userId", "item": "movieId"})
