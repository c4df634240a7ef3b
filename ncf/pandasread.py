"""The exact reader of `ncf.data`: pandas reads every field as text, and each value is checked and typed here.

It reads what `arrowread` declines (whitespace-separated files, a header after blank lines) and every file
with a problem, and it is where every error message comes from: a `DataError` naming the file, the line (or
Parquet row), the column and what is wrong, for the first few rows with that problem. A user should never
have to read a pandas traceback to learn that line 5,012 has an empty item id. It is far slower than
`arrowread`, which is why it reads only what the fast path cannot be sure of.

Ids are read as text so that `007` stays `007`; a column whose every id is a canonical integer becomes int64.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from .arrowread import MAX_TIMESTAMP
from .columns import ROLES, Columns, pick_roles
from .errors import DataError
from .sniffing import GZIP_MAGIC, TextLayout, open_text
from .vocab import MAX_ID_CHARS, integer_ids

_MAX_ERRORS_SHOWN = 3


def load_text(path: Path, columns: Columns, layout: TextLayout | None) -> tuple[pd.DataFrame, bool]:
    """The frame with columns renamed to roles, and whether the file has a header."""
    if layout is None:
        return pd.DataFrame(), False
    try:
        frame = pd.read_csv(path, **layout.pandas_options())
    except pd.errors.EmptyDataError:
        return pd.DataFrame(), layout.has_header
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(f"{path}: not readable as delimited text ({_pandas_reason(e)})") from e
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot be decompressed ({e})") from e
    if layout.sep == "::":
        frame = frame.iloc[:, ::2]
        if layout.has_header:
            frame.columns = [str(c).strip() for c in frame.columns]
    if not layout.has_header:
        frame.columns = list(ROLES[: frame.shape[1]]) + [f"extra_{i}" for i in range(frame.shape[1] - 4)]
        return frame[[c for c in frame.columns if c in ROLES]], False
    return _rename_roles(frame, path, columns), True


def load_parquet(path: Path, columns: Columns) -> pd.DataFrame:
    """The frame with columns renamed to roles."""
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises many types for a damaged file; all mean the same to a user
        raise DataError(f"{path}: not a readable Parquet file ({e})") from e
    return _rename_roles(frame, path, columns)


def _rename_roles(frame: pd.DataFrame, path: Path, columns: Columns) -> pd.DataFrame:
    picked = pick_roles(list(frame.columns), path, columns)
    return frame.iloc[:, list(picked.values())].set_axis(list(picked), axis=1)


def _pandas_reason(e: Exception) -> str:
    text = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return text.replace("Error tokenizing data. C error: ", "")


def text_line(has_header: bool):
    """`where(path, row)` for a text file: the line a data row is on, as an error names it."""
    def where(path: Path, row: int) -> str:
        return f"{path}: line {_line_of_row(path, row, has_header)}"
    return where


def parquet_row(path: Path, row: int) -> str:
    return f"{path}: row {row + 1}"


def _line_of_row(path: Path, row: int, has_header: bool) -> int:
    """1-based line number of data row `row`, skipping blank lines as pandas does. Only runs on errors."""
    with open(path, "rb") as f:
        compression = "gzip" if f.read(2) == GZIP_MAGIC else None
    target = row + (1 if has_header else 0)
    seen = -1
    with open_text(path, compression) as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                seen += 1
                if seen == target:
                    return number
    return target + 1


def to_arrays(frame: pd.DataFrame, path: Path, where) -> dict[str, np.ndarray]:
    """{role: array} of a frame with role columns, every value checked; `where(path, row)` names a row."""
    n = len(frame)
    arrays = {"user": _ids(frame["user"], "user", path, where), "item": _ids(frame["item"], "item", path, where)}
    if "rating" in frame.columns:
        arrays["rating"] = _numbers(frame["rating"], "rating", path, where).astype(np.float32)
    if "timestamp" in frame.columns:
        timestamps = _numbers(frame["timestamp"], "timestamp", path, where)
        negative = np.flatnonzero(timestamps < 0)
        if negative.size:
            _fail(path, where, negative, "timestamp", lambda r: f"is negative ({timestamps[r]:g})")
        huge = np.flatnonzero(timestamps >= MAX_TIMESTAMP)
        if huge.size:
            _fail(path, where, huge, "timestamp",
                  lambda r: f"is too large ({timestamps[r]:g}; at most {MAX_TIMESTAMP - 1:,}, int64 nanoseconds)")
        if timestamps.dtype.kind == "f" and np.all(timestamps == np.floor(timestamps)):
            timestamps = timestamps.astype(np.int64)
        arrays["timestamp"] = timestamps
    assert len(arrays["user"]) == n
    return arrays


def _ids(column: pd.Series, role: str, path: Path, where) -> np.ndarray:
    if column.dtype.kind in "iu" and not column.hasnans:  # nullable Int64 with gaps: "id is empty" below
        return column.to_numpy(np.int64)
    if column.dtype.kind == "f":
        column = column.astype("string").str.removesuffix(".0")
    if column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) == "mixed":
        # Parquet list or struct cells (one id per row, not several); text and numbers never get here
        nested = np.flatnonzero(column.map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray))).to_numpy())
        if nested.size:
            _fail(path, where, nested, role, lambda r: f"id is a {type(column.iat[r]).__name__}, not one value")
    text = column.astype("string").str.strip()
    missing = np.flatnonzero(text.isna().to_numpy() | (text.fillna("") == "").to_numpy())
    if missing.size:
        _fail(path, where, missing, role, lambda r: "id is empty")
    long = np.flatnonzero((text.str.len() > MAX_ID_CHARS).to_numpy())
    if long.size:
        _fail(path, where, long, role, lambda r: f"id is {len(text.iat[r]):,} characters long (at most "
                                                 f"{MAX_ID_CHARS})")
    # Text is decoded with errors replaced, so that the line can be named here: two ids that differ only in
    # bytes that are not UTF-8 would otherwise merge into one.
    garbled = np.flatnonzero(text.str.contains("\ufffd", regex=False).to_numpy())
    if garbled.size:
        _fail(path, where, garbled, role, lambda r: "id is not UTF-8 text (save the file as UTF-8)")
    # Integers only when every id is one by `vocab`'s rule ("7", "-3"), so "007" and "7" stay two ids.
    ids = text.to_numpy(dtype=str)
    integers = integer_ids(ids)
    return ids if integers is None else integers


def _numbers(column: pd.Series, role: str, path: Path, where) -> np.ndarray:
    if column.dtype.kind in "iuf":
        values = column.to_numpy()
        bad_mask = ~np.isfinite(values.astype(np.float64))
    else:
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad_mask = ~np.isfinite(values)
    bad = np.flatnonzero(bad_mask)
    if bad.size:
        raw = column.to_numpy()

        def reason(r: int) -> str:
            v = raw[r]
            if v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip()):
                return "is missing"
            return f"{str(v)[:40]!r} is not a finite number"

        _fail(path, where, bad, role, reason)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    return values.astype(np.float64)


def _fail(path: Path, where, rows: np.ndarray, role: str, reason) -> None:
    shown = "; ".join(f"{where(path, int(r))}: {role} {reason(int(r))}" for r in rows[:_MAX_ERRORS_SHOWN])
    more = f" (and {rows.size - _MAX_ERRORS_SHOWN} more rows like it)" if rows.size > _MAX_ERRORS_SHOWN else ""
    raise DataError(shown + more)
