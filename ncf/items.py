"""Reading an items table (Amazon Personalize's Items dataset, MovieLens' `movies.csv`) into `ItemMetadata`.

A table is CSV (any delimiter `ncf.data` sniffs, gzip'd or not, a UTF-8 byte-order mark dropped) or Parquet,
one file or a folder of parts, with a header. One column holds the item id, found case-insensitively by the
names the interactions reader knows (`movieId`, `item_id`, ... which covers Personalize's `ITEM_ID`); every
other column is metadata, read as text, its name kept as written (`ncf.metadata` infers its kind and matches
names in any case). Ids follow the interactions' rule (`ncf.vocab.integer_ids`): "31" here is item 31 there.

pyarrow parses a delimited file on every core; a file it cannot parse (a row of the wrong length, bytes that
are not UTF-8, a header after blank lines, `::` or whitespace separators) is read again by Python's `csv`
module, which names the line. Every problem is a `DataError` naming the file and, for a row, its 1-based line
(a Parquet file's row): so is a checked rule broken by a file pyarrow read, whose lines are then counted by the
same Python reader (only on that error). Reading is once per job, and a small share of it even for ml-25m's
62k movies, kinds inferred and categories indexed (`ncf.metadata`) included.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .data import KNOWN_NAMES
from .sniffing import GZIP_MAGIC, PARQUET_MAGIC, magic_bytes
from .errors import DataError
from .filter_syntax import NAME
from .metadata import ItemMetadata
from .vocab import MAX_ID_CHARS, Vocabulary, integer_ids

log = logging.getLogger(__name__)

#: The id column's names, compared case-insensitively: the interactions' item names (`item_id` is Personalize's
#: `ITEM_ID` in any case).
ID_NAMES = KNOWN_NAMES["item"]
#: Metadata columns a table may hold: every column is kept in the model folder and indexed for filters.
MAX_COLUMNS = 100
#: Characters a value may hold: a description, a URL or a list of categories, not a document.
MAX_VALUE_CHARS = 20_000


@dataclass(frozen=True)
class ItemTable:
    """An items table as read and checked: distinct ids and every metadata column, as text.

    Attributes:
        source: the file or folder, for messages.
        ids: `[n]` unicode, stripped, distinct, none empty.
        columns: {name as written: `[n]` values as text, "" where missing}, in the file's order.
        lists: the columns a Parquet file gave as lists (values joined by `|`): multi-valued by declaration,
            never read as text.
    """

    source: str
    ids: np.ndarray
    columns: dict[str, list[str]]
    lists: frozenset[str] = frozenset()

    def metadata(self, items: Vocabulary) -> ItemMetadata:
        """Aligned with a model's item vocabulary: row i describes item index i; ids it does not hold follow as
        metadata-only rows."""
        return ItemMetadata.from_table(item_rows(self.ids, items), self.ids.tolist(), self.columns, len(items),
                                       self.lists)


def read_item_metadata(path: str | Path, items: Vocabulary) -> ItemMetadata:
    """The items table at `path` aligned with `items`, logged in one line: rows, columns and their kinds (why
    a column is text, when one is), metadata-only rows (ids the interactions lack: kept, not scored) and
    trained items without a row. A column whose name a filter expression cannot spell (`Items.NAME` takes
    letters, digits and `_`, not first a digit) is kept, for answers and diversity caps, and named in a
    WARNING: refusing it would stop a job over a column nobody may filter on."""
    table = read_items(path)
    rows = item_rows(table.ids, items)
    metadata = ItemMetadata.from_table(rows, table.ids.tolist(), table.columns, len(items), table.lists)
    described = int((rows >= 0).sum())
    text = (" (text: mostly distinct values, most holding a space; each kept whole, never split at |)"
            if any(c.kind == "text" for c in metadata.columns) else "")
    log.info("items: %s rows from %s; columns %s%s; %s metadata-only (ids not in the interactions: kept, not "
             "scored); %s of %s trained items have no row", f"{len(table.ids):,}", table.source,
             metadata.describe(), text, f"{len(metadata.extra_ids):,}", f"{len(items) - described:,}",
             f"{len(items):,}")
    unnamed = [name for name in table.columns if not NAME.fullmatch(name)]
    if unnamed:
        log.warning("items: column(s) %s cannot be named in a filter expression (Items.NAME takes letters, digits "
                    "and _, not first a digit): they can be returned (metadataColumns) and capped (diversity), "
                    "never filtered on; rename them in the items table to filter on them",
                    ", ".join(map(repr, unnamed)))
    return metadata


def item_rows(ids: np.ndarray, items: Vocabulary) -> np.ndarray:
    """`[n]` int64: the model item index of each id given as text, -1 where the model does not hold it, by the
    interactions' rule: in an integer vocabulary "31" is item 31 and "031" no item; in a text one, the text."""
    ids = np.asarray(ids, dtype=str)
    if len(ids) == 0 or len(items) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    if items.is_integer:
        numbers = integer_ids(ids)
        # some ids are text, which no integer item is: the vocabulary's own rule per id, once per table
        return items.lookup_array(numbers) if numbers is not None else items.lookup(ids.tolist())
    fits = np.char.str_len(ids) <= items.ids.dtype.itemsize // 4  # a longer id would be cut to another
    index = items.lookup_array(np.where(fits, ids, "").astype(items.ids.dtype))
    return np.where(fits, index, -1)


def read_items(path: str | Path) -> ItemTable:
    """One file, or every file under a folder (recursively, in name order, hidden and empty files skipped),
    whose parts must name the same columns."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        parts = [part for part in (_read_part(f, allow_empty=True) for f in files) if part is not None]
        if not parts:
            raise DataError(f"{path}: no file in it holds an item row" if files else f"{path}: folder holds no files")
    elif path.exists():
        parts = [_read_part(path, allow_empty=False)]
    else:
        raise DataError(f"{path}: no such file or folder")
    first = parts[0]
    for part in parts[1:]:
        if [n.lower() for n in part.names] != [n.lower() for n in first.names]:
            if sorted(n.lower() for n in part.names) != sorted(n.lower() for n in first.names):
                raise DataError(f"{part.path}: columns {part.names} besides the id are not {first.path}'s "
                               f"{first.names}: the parts of a table name the same columns")
            order = {n.lower(): i for i, n in enumerate(part.names)}
            part.values = [part.values[order[n.lower()]] for n in first.names]  # the first part's order
    ids = np.concatenate([p.ids for p in parts]) if len(parts) > 1 else first.ids
    _check_distinct(ids, parts)
    columns = {name: [v for p in parts for v in p.values[c]] for c, name in enumerate(first.names)}
    listed = {n.lower() for p in parts for n in p.lists}
    return ItemTable(str(path), ids, columns, frozenset(n for n in first.names if n.lower() in listed))


@dataclass
class _Part:
    """One file's rows: its ids, its metadata columns' values (in `names`' order), and `where(rows)`: each
    row's place in the file, for messages."""

    path: Path
    names: list[str]
    ids: np.ndarray
    values: list[list[str]]
    where: Callable[[np.ndarray], list[str]]
    lists: tuple[str, ...] = ()  # the columns a Parquet file gave as lists


def _read_part(path: Path, *, allow_empty: bool) -> _Part | None:
    magic = magic_bytes(path, allow_empty=allow_empty)
    if magic is None:
        return None
    lists: tuple[str, ...] = ()
    if magic == PARQUET_MAGIC:
        names, columns, where, lists = _parquet(path)
    else:
        names, columns, where = _text(path, gzipped=magic[:2] == GZIP_MAGIC)
    if columns is None:
        if allow_empty:
            return None
        raise DataError(f"{path}: has no rows (only a header)" if names else f"{path}: holds no line of text")
    part = _checked(path, names, columns, where)
    part.lists = tuple(n for n in part.names if n in lists)
    return part


def _checked(path: Path, names: list[str], columns: list[list[str]], where) -> _Part:
    """The id column picked and every rule of the module docstring checked, in file order of the rows."""
    lowered = [n.lower() for n in names]
    blank = [n + 1 for n, name in enumerate(names) if not name]
    if blank:
        raise DataError(f"{path}: column {blank[0]} of the header has no name (columns {names})")
    for n, name in enumerate(lowered):
        if name in lowered[:n]:
            other = names[lowered.index(name)]
            raise DataError(f"{path}: columns {other!r} and {names[n]!r} have the same name in another case; "
                            "column names match in any case, so they must differ by more")
    found = [lowered.index(n.lower()) for n in ID_NAMES if n.lower() in lowered]
    if not found:
        raise DataError(f"{path}: no item id column: the file has columns {names}; name it one of "
                        f"{list(ID_NAMES)} (Personalize's ITEM_ID too: case does not matter)")
    if len(names) - 1 > MAX_COLUMNS:
        raise DataError(f"{path}: {len(names) - 1} metadata columns besides the id; at most {MAX_COLUMNS}")
    key = found[0]
    ids = np.array([v.strip() for v in columns[key]], dtype=str) if columns[key] else np.zeros(0, dtype=str)
    lengths = np.char.str_len(ids)
    for bad, reason in ((lengths == 0, "is empty"), (lengths > MAX_ID_CHARS, f"is longer than {MAX_ID_CHARS} "
                                                                               "characters")):
        rows = np.flatnonzero(bad)
        if rows.size:
            raise DataError(f"{where(rows[:1])[0]}: item id {reason}"
                            + (f" (and {rows.size - 1:,} more rows like it)" if rows.size > 1 else ""))
    values = [column for n, column in enumerate(columns) if n != key]
    kept = [name for n, name in enumerate(names) if n != key]
    for name, column in zip(kept, values):
        longest = max(map(len, column), default=0)
        if longest > MAX_VALUE_CHARS:
            row = next(r for r, v in enumerate(column) if len(v) > MAX_VALUE_CHARS)
            raise DataError(f"{where(np.array([row]))[0]}: {name} holds {len(column[row]):,} characters; a value "
                            f"holds at most {MAX_VALUE_CHARS:,}")
    return _Part(path, kept, ids, values, where)


def _check_distinct(ids: np.ndarray, parts: list[_Part]) -> None:
    """Each id once: the first repeat (in sorted order) is reported with both of its places."""
    if len(ids) < 2:
        return
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if not repeated.size:
        return
    first, second = sorted((int(order[repeated[0]]), int(order[repeated[0] + 1])))
    starts = np.cumsum([0] + [len(p.ids) for p in parts])

    def place(row: int) -> str:
        n = int(np.searchsorted(starts, row, side="right")) - 1
        return parts[n].where(np.array([row - starts[n]]))[0]

    more = f" ({repeated.size - 1:,} more ids repeat)" if repeated.size > 1 else ""
    raise DataError(f"{place(first)} and {place(second)}: item id {str(ids[first])!r} appears twice; a table holds "
                    f"one row per item{more}")


# ----------------------------------------------------------------------------------------------- Parquet

def _parquet(path: Path):
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from e
    index = {c for c in (table.schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
    names = [name for name in table.column_names if name not in index]
    lists = tuple(f.name for f in table.schema if pa.types.is_list(f.type) or pa.types.is_large_list(f.type))
    if len(table) == 0:
        return names, None, None, lists
    columns = [_text_of(table.column(name), name, path) for name in names]

    def where(rows: np.ndarray) -> list[str]:
        return [f"{path}: row {int(r) + 1}" for r in rows]

    return names, columns, where, lists


def _text_of(column: pa.ChunkedArray, name: str, path: Path) -> list[str]:
    """A Parquet column as text: numbers and booleans as pyarrow writes them, a list's values joined by `|`
    (Personalize's multi-valued fields), null as missing."""
    kind = column.type
    try:
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            column = pc.binary_join(pc.cast(column, pa.list_(pa.string())), "|")
        elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            column = pc.cast(column, pa.string())
    except pa.ArrowException as e:
        raise DataError(f"{path}: column {name!r} of type {kind} cannot be read as text ({e})") from e
    return pc.fill_null(column, "").to_pylist()


# ----------------------------------------------------------------------------------------------- text

def _text(path: Path, *, gzipped: bool):
    """(header names, columns or None for no rows, where) of a delimited file."""
    first, number = _first_line(path, gzipped)
    if first is None:
        return [], None, None
    sep = _separator(first)
    names = [n.strip() for n in _fields(first, sep)]
    fast = _pyarrow(path, gzipped, sep, len(names)) if number == 0 and sep not in ("::", " ") else None
    if fast is not None:
        columns = fast if len(fast[0]) else None
        return names, columns, lambda rows: _places(path, gzipped, sep, len(names), rows)
    columns, lines = _python(path, gzipped, sep, len(names))
    return names, columns if lines else None, lambda rows: [f"{path}: line {lines[int(r)]}" for r in rows]


def _open(path: Path, gzipped: bool) -> io.TextIOWrapper:
    raw = gzip.open(path, "rb") if gzipped else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")


def _first_line(path: Path, gzipped: bool) -> tuple[str | None, int]:
    """The first line that is not blank and its 0-based number; refuses UTF-16 and binary data."""
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            head = f.read(8192)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise DataError(f"{path}: text is UTF-16; save it as UTF-8")
        if b"\x00" in head:
            raise DataError(f"{path}: binary data, not delimited text or Parquet")
        with _open(path, gzipped) as f:
            for number, line in enumerate(f):
                if line.strip():
                    return line.strip("\r\n"), number
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot be decompressed ({e})") from e
    return None, 0


def _separator(line: str) -> str:
    """As `ncf.data` sniffs it; a comma before a `|` (MovieLens' `genres`) is the delimiter."""
    if "::" in line:
        return "::"
    for sep in ("\t", ",", ";", "|"):
        if sep in line:
            return sep
    return " "


def _fields(line: str, sep: str) -> list[str]:
    if sep == "::":
        return line.split("::")
    if sep == " ":
        return line.split()
    return next(csv.reader([line], delimiter=sep))


def _pyarrow(path: Path, gzipped: bool, sep: str, n_fields: int) -> list[list[str]] | None:
    """Every field as text, the header skipped; None where pyarrow cannot parse the file (the Python reader
    then names the line)."""
    names = [f"f{i}" for i in range(n_fields)]
    try:
        with pa.input_stream(str(path), compression="gzip" if gzipped else None) as source:
            table = pacsv.read_csv(source, read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
                                   parse_options=pacsv.ParseOptions(delimiter=sep, quote_char='"', double_quote=True,
                                                                    newlines_in_values=True, ignore_empty_lines=True),
                                   convert_options=pacsv.ConvertOptions(
                                       column_types={n: pa.string() for n in names}, null_values=[],
                                       strings_can_be_null=False, check_utf8=True))
    except (pa.ArrowException, OSError, EOFError) as e:
        log.info("%s: reading with Python's csv, not pyarrow (%s)", path, str(e).strip()[:200])
        return None
    return [pc.utf8_trim_whitespace(table.column(n)).to_pylist() for n in names]


def _records(path: Path, gzipped: bool, sep: str):
    """(first line, fields) of every non-blank record after the header, as Python's csv splits them."""
    with _open(path, gzipped) as f:
        if len(sep) == 1 and sep != " ":
            reader = csv.reader(f, delimiter=sep, quotechar='"', doublequote=True)
            header, end = False, 0
            for fields in reader:
                start, end = end + 1, reader.line_num
                if not header:
                    header = bool("".join(fields).strip())
                elif fields:  # only an empty line is skipped, as pyarrow skips it
                    yield start, fields
            return
        header = False
        for number, line in enumerate(f, start=1):
            if line.strip():
                if header:
                    yield number, _fields(line.strip("\r\n"), sep)
                header = True


def _python(path: Path, gzipped: bool, sep: str, n_fields: int) -> tuple[list[list[str]], list[int]]:
    """Every field as text and each row's 1-based line; a row of another length or with bytes that are not
    UTF-8 is a `DataError` naming its line."""
    columns: list[list[str]] = [[] for _ in range(n_fields)]
    lines = []
    try:
        for line, fields in _records(path, gzipped, sep):
            if len(fields) != n_fields:
                raise DataError(f"{path}: line {line}: {len(fields)} fields, the header has {n_fields}")
            for column, value in zip(columns, fields):
                if "\ufffd" in value:
                    raise DataError(f"{path}: line {line}: not UTF-8 text (save the file as UTF-8)")
                column.append(value.strip())
            lines.append(line)
    except csv.Error as e:
        raise DataError(f"{path}: not readable as delimited text ({e})") from e
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot be decompressed ({e})") from e
    return columns, lines


def _places(path: Path, gzipped: bool, sep: str, n_fields: int, rows: np.ndarray) -> list[str]:
    """The lines of rows that pyarrow read, counted by the Python reader: only on an error."""
    _, lines = _python(path, gzipped, sep, n_fields)
    return [f"{path}: line {lines[int(r)]}" for r in rows]
