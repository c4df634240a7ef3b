"""The fast path of `ncf.data`: CSV parsed by pyarrow on every core, Parquet read by the columns needed, ids
turned into numpy arrays without a Python object per row.

`ncf.data` makes every decision (delimiter, header, which column holds what), and `ncf.pandasread` is the
exact reader that names the file, line and column of every problem. These functions only read, and they
*decline* (return None, logging why) whenever they cannot be sure to produce exactly what the exact reader
would: any pyarrow parse or conversion error (a ragged row, a number that is not one, invalid UTF-8), an empty
id, an id holding a quote, a missing or non-finite number, a negative timestamp, a column type they do not know.
`ncf.data` then reads the file again with the exact reader, which raises the precise `DataError`. So a valid
file costs one fast read and a broken one a fast attempt plus the slow read. The two readers' time and memory
on ml-25m's size are in docs/benchmarks.md (Scale); per row this path keeps the result and the parsed table's
column being converted, no Python object.
At the peak the parsed table is held whole (ids as text, ~9 bytes each; numbers as float64); each column's
arrow buffers are released as soon as it is converted, and each conversion is written chunk by chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .vocab import INT64_DIGITS, MAX_ID_CHARS, integer_ids

#: Timestamps are int64 once read (both readers): a larger number (1e30) would wrap to a negative one and
#: become the user's earliest interaction. Nanoseconds since 1970 fit until 2262.
MAX_TIMESTAMP = 2 ** 63

log = logging.getLogger(__name__)

#: Bytes of CSV per parse task, above pyarrow's 1 MB default: the default cost the same CPU on a large file but
#: a higher peak of memory.
_BLOCK_BYTES = 4 << 20
_ID_ROLES = ("user", "item")

Arrays = dict[str, np.ndarray]


class _Declined(Exception):
    """The data is not something this path reads exactly as the pandas path would; the message says why."""


def read_csv(path: Path, *, gzipped: bool, delimiter: str, n_fields: int, skip_rows: int,
             picked: dict[str, int]) -> Arrays | None:
    """Read the fields at `picked` ({role: 0-based field}) of a delimited file; None when declined.

    Args:
        delimiter: one character (`::` files are read with ':' and every other field, as pandas reads them).
        n_fields: fields on every row; a row with more or fewer is a parse error, hence declined.
        skip_rows: 1 to skip a header on the file's first line, else 0.
    """
    names = [f"f{i}" for i in range(n_fields)]
    wanted = {role: names[i] for role, i in picked.items()}
    options = dict(
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip_rows, block_size=_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"', double_quote=True, escape_char=False,
                                         newlines_in_values=True, ignore_empty_lines=True),
        convert_options=pacsv.ConvertOptions(
            include_columns=list(wanted.values()),
            column_types={name: pa.string() if role in _ID_ROLES else pa.float64() for role, name in wanted.items()},
            null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False, check_utf8=True),
    )
    try:
        with pa.input_stream(str(path), compression="gzip" if gzipped else None) as source:
            table = pacsv.read_csv(source, **options)
        columns = {role: table.column(name) for role, name in wanted.items()}
        del table  # each column's buffers are freed as soon as it is converted
        return _convert(columns, text=True)
    except (_Declined, pa.ArrowException, OSError, EOFError) as e:
        return _declined(path, e)


def parquet_columns(path: Path) -> list[str] | None:
    """The column names pandas would show for this Parquet file (its stored index left out); None when declined."""
    try:
        schema = pq.read_schema(path)
        index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
        names = [name for name in schema.names if name not in index]
        if len(set(names)) != len(names):
            raise _Declined("duplicate column names")
        return names
    except (_Declined, pa.ArrowException, OSError, ValueError) as e:
        return _declined(path, e)


def read_parquet(path: Path, picked: dict[str, str]) -> Arrays | None:
    """Read only the columns at `picked` ({role: column name}); None when declined."""
    try:
        table = pq.read_table(path, columns=list(picked.values()), use_threads=True)
        columns = {role: table.column(name) for role, name in picked.items()}
        del table
        return _convert(columns, text=False)
    except (_Declined, pa.ArrowException, OSError, ValueError) as e:
        return _declined(path, e)


def _declined(path: Path, reason: Exception) -> None:
    log.info("%s: reading with pandas, not pyarrow (%s)", path, str(reason).strip()[:200] or type(reason).__name__)
    return None


def _convert(columns: dict[str, pa.ChunkedArray], *, text: bool) -> Arrays:
    """Apply `ncf.data`'s rules to each column, dropping each one's arrow buffers once converted."""
    if len(next(iter(columns.values()))) == 0:
        raise _Declined("no rows")
    pa.default_memory_pool().release_unused()  # the reader's buffers, kept by the allocator for arrow's next use
    out = {}
    for role in list(columns):
        column = columns.pop(role)
        if column.null_count:
            raise _Declined(f"missing {role} values")
        if role in _ID_ROLES:
            out[role] = _ids(column, role, text=text)
        elif role == "rating":
            out[role] = _filled(_numbers(column, role), len(column), np.float32)
        else:
            integral = True
            for values in _numbers(column, role):  # checked first, so that the result is written only once
                if np.any(values < 0):
                    raise _Declined("a negative timestamp")
                if values.dtype.kind == "f" and np.any(values >= MAX_TIMESTAMP):
                    raise _Declined("a timestamp too large for int64")
                integral = integral and (values.dtype.kind == "i" or bool(np.all(values == np.floor(values))))
            out[role] = _filled(_numbers(column, role), len(column), np.int64 if integral else np.float64)
        del column
        pa.default_memory_pool().release_unused()
    return out


def _ids(column: pa.ChunkedArray, role: str, *, text: bool) -> np.ndarray:
    kind = column.type
    if _is_int64_safe(kind):
        return _filled(_int64(column), len(column), np.int64)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise _Declined(f"{role} ids of type {kind}")
    if all(_canonical_integers(chunk) for chunk in column.chunks):  # the common case, without a copy
        return _filled(_int64(column), len(column), np.int64)
    column = pc.utf8_trim_whitespace(column)
    if not pc.all(pc.greater(pc.binary_length(column), 0)).as_py():
        raise _Declined(f"an empty {role} id")
    if pc.max(pc.utf8_length(column)).as_py() > MAX_ID_CHARS or pc.any(
            pc.match_substring(column, "\ufffd")).as_py():
        raise _Declined(f"a {role} id too long or not UTF-8")
    # pandas skips the spaces before a quoted field ( `1, "a"` reads a); pyarrow keeps them and the quotes.
    if text and pc.any(pc.match_substring(column, '"')).as_py():
        raise _Declined(f"a {role} id holding a quote")
    ids = _unicode(column)
    integers = integer_ids(ids)  # integers once trimmed (" 7"), or of 19 digits: `vocab`'s one rule
    return ids if integers is None else integers


def _int64(column: pa.ChunkedArray) -> Iterator[np.ndarray]:
    for chunk in column.chunks:
        yield pc.cast(chunk, pa.int64()).to_numpy()


def _numbers(column: pa.ChunkedArray, role: str) -> Iterator[np.ndarray]:
    """Each chunk as int64 (integer columns, which pandas keeps as they are) or finite float64."""
    kind = column.type
    if _is_int64_safe(kind):
        yield from _int64(column)
        return
    if not pa.types.is_floating(kind):
        raise _Declined(f"{role} values of type {kind}")
    for chunk in column.chunks:
        values = pc.cast(chunk, pa.float64()).to_numpy()
        if not np.all(np.isfinite(values)):
            raise _Declined(f"a {role} that is not a finite number")
        yield values


def _is_int64_safe(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) and kind != pa.uint64()


def _filled(chunks: Iterable[np.ndarray], n: int, dtype) -> np.ndarray:
    """`[n]` array of `dtype` written chunk by chunk: only one chunk's conversion is ever extra memory."""
    out = np.empty(n, dtype)
    start = 0
    for values in chunks:
        out[start:start + len(values)] = values
        start += len(values)
    return out


def _string_buffers(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets `[n + 1]` from 0, UTF-8 bytes) of a string chunk, as views of its arrow buffers."""
    offset_type = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(chunk.buffers()[1], offset_type, count=len(chunk) + 1,
                            offset=chunk.offset * np.dtype(offset_type).itemsize)
    data = chunk.buffers()[2]
    data = np.frombuffer(data, np.uint8)[offsets[0]:offsets[-1]] if data is not None else np.zeros(0, np.uint8)
    return offsets - offsets[0], data


def _canonical_integers(chunk: pa.Array) -> bool:
    """Whether every string is an integer id of at most 18 digits by `vocab.INTEGER_PATTERN` (which no such
    id can overflow), tested on the bytes (faster than the regex); the rest go to `integer_ids`."""
    if len(chunk) == 0:
        return True
    offsets, data = _string_buffers(chunk)
    starts, lengths = offsets[:-1], np.diff(offsets)
    if lengths.min() < 1:
        return False
    negative = data[starts] == ord("-")
    digits = lengths - negative
    if digits.min() < 1 or digits.max() > INT64_DIGITS - 1:  # 19 digits may pass int64: `integer_ids` decides
        return False
    # Every byte is a digit but one leading '-' per negative id, no id of 2+ digits starts with 0, no '-0'.
    if np.count_nonzero((data - ord("0")) > 9) != np.count_nonzero(negative):
        return False
    first = data[starts + negative]
    # "-0" is not how any integer is written: such an id stays text, like "007"
    return not np.any(((first - ord("0")) > 9) | ((first == ord("0")) & ((digits > 1) | negative)))


def _unicode(column: pa.ChunkedArray) -> np.ndarray:
    """`[n]` numpy unicode of the width of the longest id, as pandas' `to_numpy(dtype=str)` gives.

    ASCII ids are copied byte by byte into an `[n, width]` uint8 matrix, one arrow chunk at a time (8 bytes of
    index per id byte of one chunk), then viewed as bytes and widened to unicode: no Python string per id.
    """
    if not pc.all(pc.string_is_ascii(column)).as_py():
        return column.to_numpy(zero_copy_only=False).astype(str)  # one Python str per id, as pandas did
    width = pc.max(pc.binary_length(column)).as_py()
    out = np.zeros(len(column) * width, np.uint8)
    start = 0
    for chunk in column.chunks:
        offsets, data = _string_buffers(chunk)
        # Byte j of the chunk goes to row start + r, column j - offsets[r]: row r's bytes move by one shift.
        shift = np.arange(start, start + len(chunk), dtype=np.int64) * width - offsets[:-1]
        out[np.repeat(shift, np.diff(offsets)) + np.arange(data.size)] = data
        start += len(chunk)
    return out.view(f"S{width}").astype(f"U{width}")
