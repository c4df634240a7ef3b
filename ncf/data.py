"""Reading interactions: CSV, TSV, MovieLens `::` and whitespace files, or Parquet; one file or a folder.

`read_interactions` is the one entry point; what a file is (`sniffing`) and which column holds what
(`columns`) are decided once, and two readers follow those decisions. `arrowread` (pyarrow, multithreaded)
reads every file it can be sure to read exactly as pandas would. It declines the rest: whitespace-separated
files, a header after blank lines, and any file with a problem, which `pandasread` then reads field by field
as strings, far more slowly, and which is where every error message comes from: a `DataError` naming the
file, the line (or Parquet row) and the column.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import arrowread, pandasread
from .columns import KNOWN_NAMES, ROLES, Columns, pick_roles
from .errors import DataError
from .sniffing import GZIP_MAGIC, PARQUET_MAGIC, TextLayout, is_header, magic_bytes, text_layout

__all__ = ["GZIP_MAGIC", "KNOWN_NAMES", "PARQUET_MAGIC", "ROLES", "Columns", "Interactions", "is_header",
           "read_file", "read_interactions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Interactions:
    """Raw interactions, one row per event, with the ids exactly as the data spelled them.

    Attributes:
        users, items: `[n]` int64 or unicode arrays of raw ids.
        ratings: `[n]` float32, or None when the data has no rating column.
        timestamps: `[n]` int64 or float64, or None: then row order stands for time.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)

    def select(self, mask: np.ndarray) -> "Interactions":
        return Interactions(
            self.users[mask],
            self.items[mask],
            None if self.ratings is None else self.ratings[mask],
            None if self.timestamps is None else self.timestamps[mask],
        )

    def with_min_rating(self, threshold: float | None) -> "Interactions":
        """Keep rows rated at least `threshold` (the positives); None keeps everything."""
        if threshold is None:
            return self
        if self.ratings is None:
            raise DataError(f"a minimum rating of {threshold} was asked for, but the data has no rating column")
        kept = self.select(self.ratings >= threshold)
        if len(kept) == 0:
            raise DataError(f"no interaction has a rating >= {threshold}")
        return kept

    @staticmethod
    def concat(parts: list["Interactions"]) -> "Interactions":
        if len(parts) == 1:
            return parts[0]

        def ids(name: str) -> np.ndarray:
            arrays = [getattr(p, name) for p in parts]
            if any(a.dtype.kind == "U" for a in arrays):  # one file with text ids makes every id text
                arrays = [a if a.dtype.kind == "U" else a.astype(f"U{_digits(a)}") for a in arrays]
            return np.concatenate(arrays)

        def optional(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            present = [a is not None for a in arrays]
            if not any(present):
                return None
            if not all(present):
                raise DataError(f"some files have a {name[:-1]} column and others do not")
            return np.concatenate(arrays)

        return Interactions(ids("users"), ids("items"), optional("ratings"), optional("timestamps"))


def _digits(ids: np.ndarray) -> int:
    """Characters of the longest integer id as text: `astype(str)` alone gives every one 21 (84 bytes)."""
    return max(len(str(ids.min())), len(str(ids.max()))) if ids.size else 1


def read_interactions(path: str | Path, columns: Columns = Columns()) -> Interactions:
    """Read one file, or every file under a folder (recursively, in name order, hidden files skipped).

    In a folder, files without rows (0 bytes, or a header alone) are skipped; at least one row must remain.

    >>> read_interactions("ml-latest-small/ratings.csv")   # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise DataError(f"{path}: folder holds no files")
        parts = []
        for f in files:
            part = read_file(f, columns, allow_empty=True)
            if part is None:
                log.info("skipping %s: no rows", f)
            else:
                parts.append(part)
        if not parts:
            raise DataError(f"{path}: none of its {len(files)} files holds a row")
        return Interactions.concat(parts)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    result = read_file(path, columns, allow_empty=False)
    assert result is not None
    return result


def read_file(path: Path, columns: Columns, *, allow_empty: bool, header: bool | None = None) -> Interactions | None:
    """One file; None when it holds no rows and `allow_empty` (a folder's empty file, a stream's blank part).

    `header` says whether a text file's first non-blank line is a header, where the caller knows (a stream's
    later parts: `ncf.streaming`); None sniffs it."""
    magic = magic_bytes(path, allow_empty=allow_empty)
    if magic is None:
        return None
    if magic == PARQUET_MAGIC:
        fast = _read_parquet_fast(path, columns)
        if fast is not None:
            return fast
        frame, where = pandasread.load_parquet(path, columns), pandasread.parquet_row
        has_header = True
    else:
        layout = text_layout(path, columns, "gzip" if magic[:2] == GZIP_MAGIC else None, header)
        fast = None if layout is None else _read_text_fast(path, columns, layout)
        if fast is not None:
            return fast
        frame, has_header = pandasread.load_text(path, columns, layout)
        where = pandasread.text_line(has_header)
    if len(frame) == 0:
        if allow_empty:
            return None
        raise DataError(f"{path}: has no rows" + (" (only a header)" if has_header else ""))
    return _from_arrays(pandasread.to_arrays(frame, path, where))


def _from_arrays(arrays: dict[str, np.ndarray] | None) -> Interactions | None:
    if arrays is None:
        return None
    return Interactions(arrays["user"], arrays["item"], arrays.get("rating"), arrays.get("timestamp"))


def _read_text_fast(path: Path, columns: Columns, layout: TextLayout) -> Interactions | None:
    """The file through `ncf.arrowread`, or None where `pandasread` must read it (see the module docstring).

    The header (or, without one, the first row) is parsed by pandas itself, so that both readers agree on the
    fields; pandas reads a header found after blank lines where pyarrow would count those lines, so such
    files are left to pandas.
    """
    if layout.sep == r"\s+" or layout.first_line != 0:  # pyarrow has no regular-expression delimiter
        return None
    try:
        names = list(pd.read_csv(path, nrows=0 if layout.has_header else 1, **layout.pandas_options()).columns)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError, EOFError):
        return None
    step = 2 if layout.sep == "::" else 1
    fields = list(range(0, len(names), step))
    if layout.has_header:
        try:
            picked = pick_roles([str(names[f]).strip() if step == 2 else names[f] for f in fields], path, columns)
        except DataError:  # raised again, by the same words, when pandas reads the file
            return None
    else:
        picked = {role: i for i, role in enumerate(ROLES[: len(fields)])}
    if len(picked) < 2:
        return None
    return _from_arrays(arrowread.read_csv(
        path, gzipped=layout.compression == "gzip", delimiter=":" if step == 2 else layout.sep,
        n_fields=len(names), skip_rows=1 if layout.has_header else 0,
        picked={role: fields[i] for role, i in picked.items()},
    ))


def _read_parquet_fast(path: Path, columns: Columns) -> Interactions | None:
    names = arrowread.parquet_columns(path)
    if names is None:
        return None
    try:
        picked = pick_roles(names, path, columns)
    except DataError:  # raised again, by the same words, when pandas reads the file
        return None
    return _from_arrays(arrowread.read_parquet(path, {role: names[i] for role, i in picked.items()}))
