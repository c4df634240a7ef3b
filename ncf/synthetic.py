"""Synthetic implicit feedback with planted structure, at any size up to ml-25m's and beyond, from a seed.

MovieLens may not be shipped and ml-25m is too big for tests, yet scale work needs data that is big, skewed
like real data and learnable. `generate` runs the planted process (`ncf.planted`: topics, power-law
popularity, drifting taste) over chunks of users; a collaborative model beats popularity on the result, and
does not once every draw ignores the topics (`noise=1`), which tests/ncf/test_synthetic.py checks.
Timestamps strictly increase per user with the time of each draw.

Raw ids are sparse and shuffled (a random subset of `[1, id_spread * n]`), or strings, so code cannot mistake
ids for indices. Interactions are made in chunks of about `CHUNK` rows, so memory holds the result and one
chunk's temporaries.

Cost: the result holds 20 bytes per interaction (`int32` user and item indices, `float32` rating, `int64`
timestamp); a chunk's temporaries add ~140 bytes per chunk row.

    >>> data = generate(SyntheticSpec(interactions=100_000, users=1_000, items=800, seed=0))  # doctest: +SKIP
    >>> data.write_parquet("r.parquet"); data.interactions()                                  # doctest: +SKIP

From a shell: `python -m ncf.synthetic --interactions 23000000 --users 161916 --items 59000 --out r25m.csv`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import Interactions
from .errors import ConfigError, NCFError
from .planted import SyntheticSpec, draw_chunk, draw_ratings, plant, raw_ids, user_activity

__all__ = ["SyntheticData", "SyntheticSpec", "file_format", "generate", "main"]

#: Interactions generated per chunk: bounds the temporaries (~140 bytes a row, ~0.3 GB) while keeping chunks few.
CHUNK = 1 << 21
#: Rows per batch when writing: ~2M rows of four columns is ~50 MB of Arrow buffers.
WRITE_BATCH = 1 << 21
#: Timestamps span 2000-01-01 .. 2020-01-01 (Unix seconds), like MovieLens' recent decades.
TIME_START, TIME_END = 946_684_800, 1_577_836_800


@dataclass(frozen=True)
class SyntheticData:
    """Generated interactions, rows grouped by user and in time order within a user.

    Attributes:
        user, item: `[n]` int32 indices into `user_ids` / `item_ids`.
        rating: `[n]` float32 half stars in [0.5, 5].
        timestamp: `[n]` int64 Unix seconds, strictly increasing within each user.
        user_ids, item_ids: `[users]`, `[items]` raw ids (int64, or unicode with `string_ids`), distinct.
        spec: what was asked.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    spec: SyntheticSpec

    def __len__(self) -> int:
        return len(self.user)

    def interactions(self) -> Interactions:
        """The raw-id view the rest of the library reads (materialises `[n]` raw-id arrays: 16 bytes a row)."""
        return Interactions(self.user_ids[self.user], self.item_ids[self.item], self.rating, self.timestamp)

    def write(self, path: str | Path) -> Path:
        """Write by the name's ending: `.csv`, `.csv.gz` or `.parquet`."""
        path = Path(path)
        if file_format(path) == "parquet":
            self.write_parquet(path)
        else:
            self.write_csv(path)
        return path

    def write_csv(self, path: str | Path) -> None:
        """MovieLens' `userId,movieId,rating,timestamp` with a header; gzip when the name ends in `.gz`."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        path = Path(path)
        gzip = path.name.lower().endswith(".gz")
        # Ids are digits or `u123`, so nothing needs quotes: unquoted, like MovieLens' own files (the header is
        # written here because pyarrow before 16 always quotes it).
        options = pacsv.WriteOptions(include_header=False, batch_size=1 << 16, quoting_style="none")
        with (pa.CompressedOutputStream(str(path), "gzip") if gzip else pa.OSFile(str(path), "wb")) as sink:
            sink.write(",".join(_schema(self).names).encode() + b"\n")
            with pacsv.CSVWriter(sink, _schema(self), write_options=options) as writer:
                for batch in self._batches():
                    writer.write_batch(batch)

    def write_parquet(self, path: str | Path) -> None:
        """Same columns as the CSV, one row group per `WRITE_BATCH` rows, zstd-compressed."""
        import pyarrow.parquet as pq

        with pq.ParquetWriter(str(path), _schema(self), compression="zstd") as writer:
            for batch in self._batches():
                writer.write_batch(batch)

    def _batches(self):
        import pyarrow as pa

        schema = _schema(self)
        for start in range(0, len(self), WRITE_BATCH):
            rows = slice(start, start + WRITE_BATCH)
            yield pa.record_batch([
                pa.array(self.user_ids[self.user[rows]]), pa.array(self.item_ids[self.item[rows]]),
                pa.array(self.rating[rows]), pa.array(self.timestamp[rows]),
            ], schema=schema)


def file_format(path: Path) -> str:
    """"csv" (also `.csv.gz`) or "parquet", from the name's ending; anything else is a `ConfigError`."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    raise ConfigError(f"{path}: cannot tell the format; name it .csv, .csv.gz or .parquet")


def _schema(data: SyntheticData):
    import pyarrow as pa

    ids = pa.string() if data.user_ids.dtype.kind == "U" else pa.int64()
    return pa.schema([("userId", ids), ("movieId", ids), ("rating", pa.float32()), ("timestamp", pa.int64())])


def generate(spec: SyntheticSpec) -> SyntheticData:
    """Interactions as described in the module docstring; the same spec gives the same data."""
    setup, *chunk_seeds = np.random.SeedSequence(spec.seed).spawn(1 + _chunk_count(spec))
    rng = np.random.default_rng(setup)
    counts = user_activity(spec, rng)
    planted = plant(spec, rng)
    user_ids = raw_ids(spec.users, spec.id_spread, rng, "u" if spec.string_ids else None)
    item_ids = raw_ids(spec.items, spec.id_spread, rng, "m" if spec.string_ids else None)
    # History span: lognormal around a month (most MovieLens users rate in a few sessions), at most half the range.
    span = np.minimum(np.exp(rng.normal(np.log(30 * 86_400), 2.0, spec.users)), (TIME_END - TIME_START) / 2)
    start = TIME_START + rng.random(spec.users) * (TIME_END - TIME_START - span - counts)
    span, start = span.astype(np.int64), start.astype(np.int64)
    user_bias = rng.normal(0.0, 0.45, spec.users)
    item_bias = rng.normal(0.0, 0.35, spec.items)

    n = int(counts.sum())
    user = np.empty(n, np.int32)
    item = np.empty(n, np.int32)
    rating = np.empty(n, np.float32)
    timestamp = np.empty(n, np.int64)
    ends = np.cumsum(counts)
    bounds = np.r_[0, np.searchsorted(ends, np.arange(CHUNK, n, CHUNK), side="right"), spec.users]
    chunks = list(pairwise(np.unique(bounds)))
    assert len(chunks) <= len(chunk_seeds)
    for (lo, hi), seed in zip(chunks, chunk_seeds):
        crng = np.random.default_rng(seed)
        u, i, t = draw_chunk(spec, planted, counts, lo, hi, crng)
        rows = slice(int(ends[lo - 1]) if lo else 0, int(ends[hi - 1]))
        first = np.r_[0, np.cumsum(counts[lo:hi])[:-1]]
        rank = np.arange(len(u)) - np.repeat(first, counts[lo:hi])
        user[rows], item[rows] = u, i
        timestamp[rows] = start[u] + (t * span[u]).astype(np.int64) + rank
        rating[rows] = draw_ratings(u, i, planted, user_bias, item_bias, crng)
    return SyntheticData(user, item, rating, timestamp, user_ids, item_ids, spec)


def _chunk_count(spec: SyntheticSpec) -> int:
    """Chunks are whole users cut at multiples of CHUNK rows, so there are at most this many (a seed each)."""
    return spec.interactions // CHUNK + 2


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ncf.synthetic --interactions N --users U --items I --seed S --out FILE`; prints what it wrote."""
    p = argparse.ArgumentParser(prog="python -m ncf.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("--interactions", type=int, default=SyntheticSpec.interactions)
    p.add_argument("--users", type=int, default=SyntheticSpec.users)
    p.add_argument("--items", type=int, default=SyntheticSpec.items)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--topics", type=int, help="planted topics (default: sqrt(items) / 2, within 4..200)")
    p.add_argument("--string-ids", action="store_true", help="raw ids as text (u123, m456)")
    p.add_argument("--out", type=Path, required=True, help="a .csv, .csv.gz or .parquet file")
    args = p.parse_args(argv)
    try:
        file_format(args.out)  # refused before generating, not after
        spec = SyntheticSpec(interactions=args.interactions, users=args.users, items=args.items, seed=args.seed,
                             topics=args.topics, string_ids=args.string_ids)
        began = time.perf_counter()
        data = generate(spec)
        generated = time.perf_counter()
        data.write(args.out)
        written = time.perf_counter()
    except NCFError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    size = args.out.stat().st_size
    users, items = (np.count_nonzero(np.bincount(index)) for index in (data.user, data.item))
    print(f"wrote {args.out}: {len(data):,} interactions, {users:,} users, {items:,} items, {size / 1e6:,.1f} MB; "
          f"generated in {generated - began:.1f} s, written in {written - generated:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
