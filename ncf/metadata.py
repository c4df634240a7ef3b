"""Item metadata (Amazon Personalize's Items dataset), kept with the model so that serving can filter,
promote, diversify and describe items without the file it came from.

A column's kind is inferred from its values, as a Personalize schema would declare it:
- `numeric`: every value is a finite number (float64, NaN where missing): `=`, `<`, `>`... in filters;
- `boolean`: every value is `true` or `false` in any case: `IN ("True")` in filters;
- `text`: free text (titles, descriptions): more distinct values than half the rows that hold one, more
  distinct `|`-separated parts than that too (a multi-valued column draws its parts from a vocabulary,
  however many combinations it holds), and at least half of the values holding a space (codes and ids hold
  none). A value is one whole category, never split at `|`: `IN` matches the whole value;
- `categorical`: anything else; a value holds one or more categories separated by `|` (MovieLens' `genres`,
  Personalize's multi-valued fields), and `IN` matches an item when any of its categories is listed. A
  column given as a list (Parquet) is categorical whatever its values.
An empty value is missing, and a missing value matches no condition (neither `IN` nor `NOT IN`), as a NULL in
SQL. Every column also keeps its text as given, which answers return (`metadataColumns`).

Rows are aligned with the model's item vocabulary, row `i` describing item index `i`, so that a condition is
one vectorised pass that yields the mask top-k needs. Rows for ids the model never trained on (metadata-only
items) follow the model's items; they are kept (a later warm start may train on them) but no mask covers them.

On disk: one `.npz` of plain arrays (text as UTF-8 bytes and offsets, never pickled objects) with a JSON
header, so a model folder stays loadable by numpy alone.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import ArtifactError, ConfigError

#: Between the categories of one multi-valued value, as in Personalize's and MovieLens' files.
SEPARATOR = "|"
#: Every kind a model folder's metadata may declare. `text` came later: folders written before hold the first
#: three, and load as they did; a library older than `text` refuses a folder with one, naming the kind.
KINDS = ("categorical", "numeric", "boolean", "text")
#: The kinds whose values are categories (codes into `Column.categories`): `text` keeps each value whole.
CATEGORY_KINDS = ("categorical", "text")
FORMAT_VERSION = 1
#: A number as the filter language writes one (its NUMBER token): ASCII digits, an optional sign, fraction
#: and exponent. Python's `float` also reads `1_0`, `nan`, `inf` and other scripts' digits; none is a number here.
NUMBER_PATTERN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_NUMBER = re.compile(NUMBER_PATTERN)
_BOOLEANS = {"true": 1, "false": 0}


def number(text: str) -> float | None:
    """`text` (white space around it ignored) as a finite float when it is a number as `NUMBER_PATTERN` writes
    one, else None: `1e309` overflows to infinity, so it is None too."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if np.isfinite(value) else None


@dataclass(frozen=True)
class Strings:
    """Texts packed as UTF-8 bytes and offsets: two plain arrays whatever the texts' lengths."""

    data: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len(texts) + 1

    @classmethod
    def pack(cls, texts: Iterable[str]) -> "Strings":
        encoded = [t.encode("utf-8") for t in texts]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, rows: Iterable[int]) -> list[str]:
        raw = self.data.tobytes() if len(self.data) < 1 << 16 else None
        out = []
        for r in rows:
            a, b = int(self.offsets[r]), int(self.offsets[r + 1])
            chunk = raw[a:b] if raw is not None else self.data[a:b].tobytes()
            out.append(chunk.decode("utf-8"))
        return out

    def all(self) -> list[str]:
        raw = self.data.tobytes()
        bounds = self.offsets.tolist()
        return [raw[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass
class Column:
    """One metadata column over every row (model items first, then metadata-only items); masks cover the
    model's `n_items` items only."""

    name: str
    kind: str
    n_items: int
    text: Strings
    numbers: np.ndarray | None = None  # numeric: float64, NaN where missing
    flags: np.ndarray | None = None  # boolean: int8, 1 / 0, -1 where missing
    categories: Strings | None = None  # categorical, text: the distinct categories, sorted
    indptr: np.ndarray | None = None  # categorical, text: row r's categories are codes[indptr[r]:indptr[r + 1]]
    codes: np.ndarray | None = None
    _by_code: tuple | None = field(default=None, repr=False)  # (indptr, rows): the rows of each category
    _category_index: dict | None = field(default=None, repr=False)

    def present(self) -> np.ndarray:
        """`[n_items]` True where the item has a value."""
        return np.diff(self.text.offsets[:self.n_items + 1]) > 0

    def isin(self, values: Sequence[str]) -> np.ndarray:
        """`[n_items]` True where the item's value (any of its categories) is one of `values`, compared as this
        column's kind reads them: categories (a text column's whole values) exactly, booleans by
        `true`/`false`, numbers by value. Raises `ConfigError` for a value the kind cannot read (`"maybe"` for
        a boolean column, `"nan"` or `"1_0"` for a numeric one)."""
        if self.kind in CATEGORY_KINDS:
            mask = np.zeros(self.n_items, dtype=bool)
            indptr, rows = self._inverted()
            for value in dict.fromkeys(values):  # a value repeated costs its items once
                code = self._category_index.get(value)
                if code is not None:
                    mask[rows[indptr[code]:indptr[code + 1]]] = True
            return mask
        if self.kind == "boolean":
            wanted = set()
            for value in values:
                flag = _BOOLEANS.get(value.strip().lower())
                if flag is None:
                    raise ConfigError(f"{self.name} is a boolean column: {value!r} is neither true nor false")
                wanted.add(flag)
            return np.isin(self.flags[:self.n_items], list(wanted))
        numbers = []
        for value in values:
            read = number(value)
            if read is None:
                raise ConfigError(f"{self.name} is a numeric column: {value!r} is not a number as filters "
                                  f"write them (ASCII digits, an optional sign, fraction and exponent, finite: "
                                  f"12, -1.5, 2e3)")
            numbers.append(read)
        # By binary search in the listed numbers: np.isin sorts the whole column once they pass a few dozen
        wanted = np.unique(np.array(numbers, dtype=np.float64))
        if len(wanted) == 0:
            return np.zeros(self.n_items, dtype=bool)
        x = self.numbers[:self.n_items]
        at = np.minimum(np.searchsorted(wanted, x), len(wanted) - 1)
        return wanted[at] == x  # NaN (missing) equals nothing

    def compare(self, op: str, number: float) -> np.ndarray:
        """`[n_items]` True where the item's number `op` `number` (`=`, `<`, `<=`, `>`, `>=`); missing is False."""
        if self.kind != "numeric":
            raise ConfigError(f"{self.name} is a {self.kind} column: compare it with IN or NOT IN, not {op}")
        x = self.numbers[:self.n_items]
        with np.errstate(invalid="ignore"):
            return {"=": np.equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
                    ">=": np.greater_equal}[op](x, number)

    def _inverted(self) -> tuple[np.ndarray, np.ndarray]:
        """Category code -> the model items holding it, built once: a condition's mask then costs what it
        matches, not a pass over every (item, category) entry."""
        if self._by_code is None:
            rows = np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))
            keep = rows < self.n_items
            codes, rows = self.codes[keep], rows[keep]
            order = np.argsort(codes, kind="stable")
            counts = np.bincount(codes, minlength=len(self.categories))
            indptr = np.zeros(len(self.categories) + 1, dtype=np.int64)
            np.cumsum(counts, out=indptr[1:])
            self._by_code = (indptr, rows[order])
        return self._by_code

    def __post_init__(self):
        if self.kind in CATEGORY_KINDS and self._category_index is None:
            self._category_index = {c: n for n, c in enumerate(self.categories.all())}


@dataclass
class ItemMetadata:
    """Columns of item metadata aligned with a model's items (`n_items` rows) plus `extra_ids`, the ids of
    metadata-only rows after them."""

    n_items: int
    extra_ids: list[str]
    columns: list[Column]

    def __post_init__(self):
        self._by_name = {c.name.upper(): c for c in self.columns}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def find(self, name: str) -> Column | None:
        """The column called `name`, in any case (`GENRES`, `genres`), else None."""
        return self._by_name.get(name.upper())

    def texts(self, name: str, rows: Sequence[int]) -> list[str | None]:
        """The values of column `name` for `rows` (model item indices, then metadata-only rows), as given; None
        where missing."""
        column = self.find(name)
        if column is None:
            raise ConfigError(f"no item metadata column {name!r}; the columns are {self.names}")
        return [t if t else None for t in column.text.get(rows)]

    @classmethod
    def from_table(cls, index: np.ndarray, ids: Sequence[str], columns: dict[str, Sequence[str]],
                   n_items: int, lists: Iterable[str] = ()) -> "ItemMetadata":
        """Metadata from rows of text: `index[r]` is row `r`'s model item index (-1 for an id the model does
        not know), `ids[r]` its id as given, `columns[name][r]` its value ("" when missing). Ids are distinct
        (the reader's check); kinds are inferred here. `lists`: the columns given as lists (their values
        joined by `|`), never read as text."""
        index = np.asarray(index, dtype=np.int64)
        known = index >= 0
        if len(np.unique(index[known])) != int(known.sum()):
            raise ConfigError("two metadata rows describe the same item")
        extra = np.flatnonzero(~known)
        position = index.copy()
        position[extra] = n_items + np.arange(len(extra))
        order = np.full(n_items + len(extra), -1, dtype=np.int64)  # final row -> source row, -1: no row
        order[position] = np.arange(len(index))
        lists = set(lists)
        return cls(n_items=n_items, extra_ids=[ids[r] for r in extra.tolist()],
                   columns=[_column(name, values, order, n_items, name in lists) for name, values in columns.items()])

    def save(self, file: str | Path) -> None:
        arrays = {}
        header = {"version": FORMAT_VERSION, "n_items": self.n_items, "columns": []}
        extra = Strings.pack(self.extra_ids)
        arrays["extra_ids/data"], arrays["extra_ids/offsets"] = extra.data, extra.offsets
        for n, c in enumerate(self.columns):
            header["columns"].append({"name": c.name, "kind": c.kind})
            arrays[f"{n}/text/data"], arrays[f"{n}/text/offsets"] = c.text.data, c.text.offsets
            if c.kind == "numeric":
                arrays[f"{n}/numbers"] = c.numbers
            elif c.kind == "boolean":
                arrays[f"{n}/flags"] = c.flags
            else:
                arrays[f"{n}/categories/data"] = c.categories.data
                arrays[f"{n}/categories/offsets"] = c.categories.offsets
                arrays[f"{n}/indptr"], arrays[f"{n}/codes"] = c.indptr, c.codes
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez(file, **arrays)

    def rows(self, item_ids: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
        """Every row that holds a value, as text: its id (`item_ids[i]` for model item `i`, else its extra id)
        and its value in each column ("" where missing). What a model over other items rebuilds its metadata
        from (a warm start's new vocabulary); a model item without any value had no row, and gets none."""
        if len(item_ids) != self.n_items:
            raise ConfigError(f"{len(item_ids):,} item ids for metadata of {self.n_items:,} items")
        ids = list(item_ids) + list(self.extra_ids)
        texts = {c.name: c.text.all() for c in self.columns}
        held = np.zeros(len(ids), dtype=bool)
        for c in self.columns:
            held |= np.diff(c.text.offsets) > 0
        keep = np.flatnonzero(held).tolist()
        return [ids[r] for r in keep], {name: [values[r] for r in keep] for name, values in texts.items()}

    def describe(self) -> str:
        """The columns and their kinds, for a log line: `title: text, year: numeric`."""
        return ", ".join(f"{c.name}: {c.kind}" for c in self.columns) or "none"

    @classmethod
    def load(cls, file: str | Path, n_items: int) -> "ItemMetadata":
        """The metadata saved in `file`, checked against a model of `n_items` items.

        >>> metadata.save("items.npz"); ItemMetadata.load("items.npz", metadata.n_items)   # doctest: +SKIP
        """
        try:
            with np.load(file, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise ArtifactError(f"{file}: item metadata is damaged ({type(e).__name__}: {e})") from e
        return cls.from_arrays(arrays, n_items, str(file))

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], n_items: int, file: str) -> "ItemMetadata":
        """The metadata from the arrays `save` wrote (read by the caller: `ncf.artifacts` reads a model
        folder's arrays with its own checks), checked so that a file that loads cannot fail a request later:
        every offset inside its bytes and on a character's first byte, every category code in range."""
        try:
            header = json.loads(a["header"].tobytes().decode("utf-8"))
            if not isinstance(header, dict) or header.get("version") != FORMAT_VERSION:
                raise ArtifactError(f"{file}: item metadata of format "
                                    f"{header.get('version') if isinstance(header, dict) else None!r}, this "
                                    f"library reads {FORMAT_VERSION}")
            if header["n_items"] != n_items:
                raise ArtifactError(f"{file}: item metadata for {header['n_items']:,} items, the model has "
                                    f"{n_items:,}")
            extra = _strings(a, "extra_ids", file).all()
            rows = n_items + len(extra)
            columns, names = [], set()
            for n, spec in enumerate(header["columns"]):
                name, kind = str(spec["name"]), spec["kind"]
                if kind not in KINDS:
                    raise ArtifactError(f"{file}: column {name!r} has an unknown kind {kind!r}")
                if name.upper() in names:
                    raise ArtifactError(f"{file}: column {name!r} appears twice")
                names.add(name.upper())
                text = _strings(a, f"{n}/text", file)
                parts = {}
                if kind == "numeric":
                    parts["numbers"] = _floats(a[f"{n}/numbers"], rows, name, file)
                elif kind == "boolean":
                    flags = a[f"{n}/flags"]
                    if flags.shape != (rows,) or flags.dtype.kind not in "iu" or not np.isin(flags, (-1, 0, 1)).all():
                        raise ArtifactError(f"{file}: column {name!r}'s flags are not {rows:,} of -1, 0, 1")
                    parts["flags"] = flags.astype(np.int8)
                else:
                    parts["categories"] = _strings(a, f"{n}/categories", file)
                    indptr, codes = a[f"{n}/indptr"], a[f"{n}/codes"]
                    if (indptr.shape != (rows + 1,) or indptr.dtype.kind not in "iu" or codes.ndim != 1
                            or codes.dtype.kind not in "iu" or indptr[0] != 0 or indptr[-1] != len(codes)
                            or np.any(np.diff(indptr.astype(np.int64)) < 0) or (len(codes) and (
                                codes.min() < 0 or codes.max() >= len(parts["categories"])))):
                        raise ArtifactError(f"{file}: column {name!r}'s categories do not fit its rows")
                    parts["indptr"], parts["codes"] = indptr.astype(np.int64), codes.astype(np.int32)
                if len(text) != rows:
                    raise ArtifactError(f"{file}: column {name!r} does not have {rows:,} rows")
                columns.append(Column(name, kind, n_items, text, **parts))
        except (KeyError, TypeError, ValueError, UnicodeDecodeError, AttributeError) as e:
            raise ArtifactError(f"{file}: item metadata is damaged ({type(e).__name__}: {e})") from e
        return cls(n_items=n_items, extra_ids=extra, columns=columns)


def _strings(a: dict[str, np.ndarray], key: str, file: str) -> Strings:
    """`Strings` from `key/data` and `key/offsets`, checked: offsets run from 0 to the end of the bytes without
    going back, each on the first byte of a UTF-8 character, and the bytes are UTF-8."""
    data, offsets = a[f"{key}/data"], a[f"{key}/offsets"]
    if (data.dtype != np.uint8 or data.ndim != 1 or offsets.ndim != 1 or offsets.dtype.kind not in "iu"
            or len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(data)
            or np.any(np.diff(offsets.astype(np.int64)) < 0)):
        raise ArtifactError(f"{file}: {key} is not text with its offsets")
    inside = offsets[:-1][offsets[:-1] < len(data)]
    if np.any((data[inside] & 0xC0) == 0x80):  # a continuation byte: an offset splits a character
        raise ArtifactError(f"{file}: {key} has an offset inside a character")
    data.tobytes().decode("utf-8")  # UnicodeDecodeError: damaged
    return Strings(data, offsets.astype(np.int64))


def _floats(numbers: np.ndarray, rows: int, name: str, file: str) -> np.ndarray:
    if numbers.shape != (rows,) or numbers.dtype.kind != "f" or np.isinf(numbers).any():
        raise ArtifactError(f"{file}: column {name!r}'s numbers are not {rows:,} finite floats or NaN")
    return numbers.astype(np.float64, copy=False)


def _column(name: str, values: Sequence[str], order: np.ndarray, n_items: int, listed: bool = False) -> Column:
    """A column from its values in source-row order, laid out by `order` (final row -> source row, -1 where
    an item has no metadata row), with its kind inferred (`listed`: given as a list, so never text)."""
    texts = [values[r].strip() if r >= 0 else "" for r in order.tolist()]
    text = Strings.pack(texts)
    given = [t for t in texts if t]
    if given:
        numbers = _numbers(texts)
        if numbers is not None:
            return Column(name, "numeric", n_items, text, numbers=numbers)
        if all(t.lower() in _BOOLEANS for t in given):
            flags = np.array([_BOOLEANS.get(t.lower(), -1) for t in texts], dtype=np.int8)
            return Column(name, "boolean", n_items, text, flags=flags)
    split = [[p.strip() for p in t.split(SEPARATOR) if p.strip()] if t else [] for t in texts]
    categories = sorted({p for parts in split for p in parts})
    kind = "text" if not listed and _is_text(given, len(categories)) else "categorical"
    if kind == "text":  # one category per value, the whole of it
        split = [[t] if t else [] for t in texts]
        categories = sorted(set(given))
    code = {c: n for n, c in enumerate(categories)}
    indptr = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(parts) for parts in split], out=indptr[1:])
    codes = np.array([code[p] for parts in split for p in parts], dtype=np.int32)
    return Column(name, kind, n_items, text, categories=Strings.pack(categories), indptr=indptr, codes=codes)


def _is_text(given: list[str], n_parts: int) -> bool:
    """Free text rather than categories (the module docstring's rule): mostly distinct values, whole and split
    at `|`, and mostly holding a space."""
    half = len(given) / 2
    return (len(set(given)) > half and n_parts > half
            and sum(1 for t in given if " " in t) >= half)


_NUMBERS = re.compile(rf"(?:{NUMBER_PATTERN})?(?:\n(?:{NUMBER_PATTERN})?)*")


def _numbers(texts: list[str]) -> np.ndarray | None:
    """float64 of every text (NaN for the empty ones) when each non-empty one is a finite number as filters
    write numbers (`NUMBER_PATTERN`: not `1_0`, `nan` or other scripts' digits, which numpy reads), else None."""
    if not _NUMBERS.fullmatch("\n".join(texts)):  # one pass in C; a value holding a newline fails astype below
        return None
    raw = np.array([t if t else "nan" for t in texts])
    try:
        numbers = raw.astype(np.float64)
    except ValueError:
        return None
    given = np.array([bool(t) for t in texts])
    return numbers if np.isfinite(numbers[given]).all() else None
