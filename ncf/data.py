"""Reading interactions: CSV, TSV, MovieLens `::` and whitespace files, or Parquet; one file or a folder.

Files are recognised by their bytes, not their names (SageMaker channels often hold files without
extensions): gzip by its magic number, Parquet by `PAR1`, and for text the delimiter and the presence of a
header are sniffed from the first line. Columns are found by the names configured in `Columns`, else by the
names MovieLens and common exports use; a file without a header is read by position
(user, item[, rating[, timestamp]]), which is how MovieLens' `u.data` and `ratings.dat` are laid out.

Ids are read as text so that `007` stays `007`; a column whose every id is a canonical integer becomes int64.
Every problem is a `DataError` naming the file, the line (or Parquet row) and the column: a user should never
have to read a pandas traceback to learn that line 5,012 has an empty item id.

Two readers share these rules. `ncf.arrowread` (pyarrow, multithreaded: 23M rows in ~5 s at 1.2 GB peak) reads
every file it can be sure to read exactly as pandas would. It declines the rest: whitespace-separated files, a
header after blank lines, and any file with a problem, which pandas then reads field by field as strings (the
same 23M rows: ~70 s, 5.5 GB) and which is where every error message comes from.
"""

from __future__ import annotations

import gzip
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import arrowread
from .arrowread import MAX_TIMESTAMP
from .errors import DataError
from .vocab import MAX_ID_CHARS, integer_ids

log = logging.getLogger(__name__)

ROLES = ("user", "item", "rating", "timestamp")

#: Column names recognised without configuration, compared case-insensitively.
KNOWN_NAMES = {
    "user": ("userId", "user_id", "user", "uid", "customer_id", "visitor_id"),
    "item": ("movieId", "movie_id", "itemId", "item_id", "item", "iid", "product_id"),
    "rating": ("rating", "score", "event_value"),
    "timestamp": ("timestamp", "time", "ts", "event_time", "unix_timestamp"),
}

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
_MAX_ERRORS_SHOWN = 3


@dataclass(frozen=True)
class Columns:
    """Which column holds what; `None` means "find it by a known name (or by position without a header)".

    `rating` and `timestamp` are optional in the data; when named here they must be present.
    """

    user: str | None = None
    item: str | None = None
    rating: str | None = None
    timestamp: str | None = None

    def configured(self) -> dict[str, str]:
        return {role: getattr(self, role) for role in ROLES if getattr(self, role) is not None}


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
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from e
    if not magic:
        if allow_empty:
            return None
        raise DataError(f"{path}: file is empty")
    if magic == PARQUET_MAGIC:
        fast = _read_parquet_fast(path, columns)
        if fast is not None:
            return fast
        frame, where = _rename_roles(_load_parquet(path), path, columns), _parquet_row
        has_header = True
    else:
        layout = _text_layout(path, columns, "gzip" if magic[:2] == GZIP_MAGIC else None, header)
        fast = None if layout is None else _read_text_fast(path, columns, layout)
        if fast is not None:
            return fast
        frame, has_header = _load_text(path, columns, layout)
        where = _text_line(has_header)
    if len(frame) == 0:
        if allow_empty:
            return None
        raise DataError(f"{path}: has no rows" + (" (only a header)" if has_header else ""))
    return _to_interactions(frame, path, where)


def _from_arrays(arrays: dict[str, np.ndarray] | None) -> Interactions | None:
    if arrays is None:
        return None
    return Interactions(arrays["user"], arrays["item"], arrays.get("rating"), arrays.get("timestamp"))


def _open_text(path: Path, compression: str | None) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if compression == "gzip" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def _check_text(path: Path, compression: str | None) -> None:
    """Refuse what is not UTF-8 text before pandas reads it as garbage rows."""
    try:
        with (gzip.open(path, "rb") if compression == "gzip" else open(path, "rb")) as f:
            head = f.read(8192)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot be decompressed ({e})") from e
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: text is UTF-16; save it as UTF-8")
    if b"\x00" in head:
        raise DataError(f"{path}: binary data, not delimited text or Parquet")


def _first_line(path: Path, compression: str | None) -> tuple[str, int]:
    """The first line that is not blank, and its 0-based line number."""
    _check_text(path, compression)
    try:
        with _open_text(path, compression) as f:
            for number, line in enumerate(f):
                if line.strip():
                    return line.strip("\r\n"), number
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot be decompressed ({e})") from e
    return "", 0


def _sniff_separator(line: str) -> str:
    if "::" in line:
        return "::"
    for sep in ("\t", ",", ";", "|"):
        if sep in line:
            return sep
    return r"\s+"


def _split(line: str, sep: str) -> list[str]:
    fields = line.split() if sep == r"\s+" else line.split(sep)
    return [f.strip().strip('"').strip("'") for f in fields]


@dataclass(frozen=True)
class _TextLayout:
    """What the first non-blank line tells about a text file; both readers follow it."""

    compression: str | None
    sep: str             # "::", one character, or r"\s+"
    has_header: bool
    first_line: int      # 0-based number of the first non-blank line

    def pandas_options(self) -> dict:
        # '::' (MovieLens 1M/10M) would need pandas' slow Python engine; splitting on ':' and keeping every
        # other field reads the same data with the C parser (ids containing ':' cannot be told apart anyway).
        return dict(
            sep=":" if self.sep == "::" else self.sep, header=0 if self.has_header else None, dtype=str,
            compression=self.compression, engine="c", skipinitialspace=True, keep_default_na=False,
            na_values=[""], encoding="utf-8", encoding_errors="replace", quotechar='"',
        )


def is_header(line: str, columns: Columns) -> bool:
    """Whether a text file's first non-blank line names columns (a configured name or a known one)."""
    configured = {name.lower() for name in columns.configured().values()}
    known = {n.lower() for names in KNOWN_NAMES.values() for n in names}
    return any(f.lower() in configured or f.lower() in known for f in _split(line, _sniff_separator(line)))


def _text_layout(path: Path, columns: Columns, compression: str | None,
                 header: bool | None = None) -> _TextLayout | None:
    """None when the file holds no non-blank line."""
    first, number = _first_line(path, compression)
    if not first:
        return None
    sep = _sniff_separator(first)
    fields = _split(first, sep)
    has_header = is_header(first, columns) if header is None else header
    if not has_header and columns.configured():
        raise DataError(
            f"{path}: line 1 is not a header with the configured columns "
            f"{sorted(columns.configured().values())} (it reads {first[:120]!r})"
        )
    if not has_header and len(fields) < 2:
        raise DataError(f"{path}: line 1 has one field ({first[:120]!r}); need at least user and item columns")
    return _TextLayout(compression, sep, has_header, number)


def _read_text_fast(path: Path, columns: Columns, layout: _TextLayout) -> Interactions | None:
    """The file through `ncf.arrowread`, or None where pandas must read it (see the module docstring).

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
            picked = _pick_roles([str(names[f]).strip() if step == 2 else names[f] for f in fields], path, columns)
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
        picked = _pick_roles(names, path, columns)
    except DataError:  # raised again, by the same words, when pandas reads the file
        return None
    return _from_arrays(arrowread.read_parquet(path, {role: names[i] for role, i in picked.items()}))


def _load_text(path: Path, columns: Columns, layout: _TextLayout | None) -> tuple[pd.DataFrame, bool]:
    """The pandas reader: returns the frame with columns renamed to roles, and whether the file has a header."""
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


def _load_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises many types for a damaged file; all mean the same to a user
        raise DataError(f"{path}: not a readable Parquet file ({e})") from e
    return frame


def _rename_roles(frame: pd.DataFrame, path: Path, columns: Columns) -> pd.DataFrame:
    picked = _pick_roles(list(frame.columns), path, columns)
    return frame.iloc[:, list(picked.values())].set_axis(list(picked), axis=1)


def _pick_roles(names: list, path: Path, columns: Columns) -> dict[str, int]:
    """{role: index into `names`} by the configured names, else the known ones, compared case-insensitively."""
    by_lower = {str(c).strip().lower(): i for i, c in enumerate(names)}
    picked: dict[str, int] = {}
    for role in ROLES:
        wanted = getattr(columns, role)
        if wanted is not None:
            if wanted.lower() not in by_lower:
                raise DataError(
                    f"{path}: missing {role} column {wanted!r}; the file has columns {list(map(str, names))}"
                )
            picked[role] = by_lower[wanted.lower()]
            continue
        found = [by_lower[n.lower()] for n in KNOWN_NAMES[role] if n.lower() in by_lower]
        if found:
            picked[role] = found[0]
        elif role in ("user", "item"):
            raise DataError(
                f"{path}: no {role} column: the file has columns {list(map(str, names))}; "
                f"name it one of {list(KNOWN_NAMES[role])} or configure the {role} column's name"
            )
    return picked


def _pandas_reason(e: Exception) -> str:
    text = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return text.replace("Error tokenizing data. C error: ", "")


def _text_line(has_header: bool):
    def where(path: Path, row: int) -> str:
        return f"{path}: line {_line_of_row(path, row, has_header)}"
    return where


def _parquet_row(path: Path, row: int) -> str:
    return f"{path}: row {row + 1}"


def _line_of_row(path: Path, row: int, has_header: bool) -> int:
    """1-based line number of data row `row`, skipping blank lines as pandas does. Only runs on errors."""
    with open(path, "rb") as f:
        compression = "gzip" if f.read(2) == GZIP_MAGIC else None
    target = row + (1 if has_header else 0)
    seen = -1
    with _open_text(path, compression) as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                seen += 1
                if seen == target:
                    return number
    return target + 1


def _to_interactions(frame: pd.DataFrame, path: Path, where) -> Interactions:
    n = len(frame)
    users = _ids(frame["user"], "user", path, where)
    items = _ids(frame["item"], "item", path, where)
    ratings = None
    if "rating" in frame.columns:
        ratings = _numbers(frame["rating"], "rating", path, where).astype(np.float32)
    timestamps = None
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
    assert len(users) == n
    return Interactions(users, items, ratings, timestamps)


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
