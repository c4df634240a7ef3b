"""Interactions from a byte stream that can be read only once, such as a SageMaker Pipe-mode FIFO.

`ncf.data` reads files: it sniffs the first line, reads fast with pyarrow, and where that declines reads again
with pandas to name the line of a problem. A stream cannot be read twice, and staging it whole as one file
needs free disk as large as the data, which is what Pipe mode exists to avoid. So delimited text is cut at line
ends into parts of about `part_bytes`; each part is written to one temporary file (after the stream's header
line, when it has one), read by `ncf.data` like any file, and deleted. The disk holds one part, memory the rows
parsed so far (about 28 bytes a row for integer ids) plus one part's parse. Problems are reported with the
stream's own line numbers.

SageMaker concatenates every object of a Pipe-mode channel into the one stream, so a CSV split into files
that each start with the header repeats it midway: a line identical to the stream's header is such a file
boundary and is read as a blank line (skipped, line numbers unchanged). Gzip is inflated as it arrives,
several members one after another (concatenated .gz objects). Parquet keeps its index at the end of the file,
so a Parquet stream is staged whole and read as a file; it needs disk as large as the Parquet file only.
"""

from __future__ import annotations

import gzip
import io
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from . import data
from .data import Columns, Interactions
from .errors import DataError

#: Bytes of text per part: one part on disk, and its parse in memory (~50 bytes a row at the peak).
PART_BYTES = 64 << 20


def read_interactions_stream(stream: BinaryIO, name: str, columns: Columns = Columns(), *,
                             part_bytes: int = PART_BYTES, workdir: str | Path | None = None) -> Interactions:
    """Read `stream` to its end; `name` stands for it in messages, `workdir` holds the one temporary part."""
    head = _read_up_to(stream, 4)
    if not head:
        raise DataError(f"{name}: file is empty")
    source: BinaryIO = io.BufferedReader(_Rewound(head, stream), buffer_size=1 << 20)
    with tempfile.TemporaryDirectory(prefix="ncf-stream-", dir=workdir) as tmp:
        part = Path(tmp) / "part"
        if head == data.PARQUET_MAGIC:
            _write(part, name, lambda f: shutil.copyfileobj(source, f, 1 << 20), "the Parquet file (it is "
                   "staged whole: Parquet is read from its end; as CSV it would stream)")
            return _named(lambda: data.read_file(part, columns, allow_empty=False), part, name, 0)
        if head[:2] == data.GZIP_MAGIC:
            source = gzip.GzipFile(fileobj=source, mode="rb")
        return _read_text(source, part, name, columns, part_bytes, head[:2] == data.GZIP_MAGIC)


def _read_text(source: BinaryIO, part: Path, name: str, columns: Columns, part_bytes: int,
               gzipped: bool) -> Interactions:
    parts: list[Interactions] = []
    header: bytes | None = None  # the first non-blank line, without its "\n"; b"" when it is data
    line = 1  # the stream's line number of the next chunk's first line
    for chunk in _chunks(source, name, part_bytes, gzipped):
        prefix, decided = b"", header
        if header is None:
            header = _first_line(chunk)
            if header is not None and not data.is_header(header.decode("utf-8", "replace").strip("\r\n"), columns):
                header = b""
            elif header:
                start = chunk.index(header) + len(header)  # the header line itself stays where it is
                chunk = chunk[:start] + _blank_repeats(chunk[start:], header)
        elif header:
            prefix = header + b"\n"
            chunk = _blank_repeats(chunk, header)
        _write(part, name, lambda f: (f.write(prefix), f.write(chunk)), f"a {len(chunk) / 2**20:,.0f} MiB part")
        offset = line - 1 - (1 if prefix else 0)
        # Once the stream's first line has told, every later part is read as it said (a part of a headerless
        # stream may start with an id such as "item" that would pass for a column name).
        said = None if decided is None else bool(decided)
        got = _named(lambda: data.read_file(part, columns, allow_empty=True, header=said), part, name, offset)
        if got is not None:
            parts.append(got)
        line += chunk.count(b"\n")
    if not parts:
        raise DataError(f"{name}: has no rows" + (" (only a header)" if header else ""))
    return Interactions.concat(parts)


def _chunks(source: BinaryIO, name: str, part_bytes: int, gzipped: bool) -> Iterator[bytes]:
    """The stream's text in pieces of about `part_bytes` that end at a line end (the last one may not)."""
    carry = b""
    while True:
        try:
            block = source.read(part_bytes)
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{name}: cannot be {'decompressed' if gzipped else 'read'} ({e})") from e
        if not block:
            if carry:
                yield carry
            return
        text = carry + block if carry else block
        cut = text.rfind(b"\n") + 1
        if cut == 0:
            if len(text) > part_bytes:
                raise DataError(f"{name}: no line end in {len(text):,} bytes: not delimited text (Pipe mode "
                                "must deliver the files as they are, without RecordIO wrapping)")
            carry = text
            continue
        carry = text[cut:]
        yield text[:cut]


def _first_line(chunk: bytes) -> bytes | None:
    """The first line holding more than white space, without its "\\n"; None when there is none."""
    start = 0
    while start < len(chunk):
        end = chunk.find(b"\n", start)
        end = len(chunk) if end < 0 else end
        if chunk[start:end].strip():
            return chunk[start:end]
        start = end + 1
    return None


def _blank_repeats(chunk: bytes, header: bytes) -> bytes:
    """`chunk` with every line equal to `header` emptied (it starts a concatenated file), line ends kept; the
    header ending in CRLF or LF alike, since concatenated files need not share their line ends."""
    bare = header.rstrip(b"\r")
    for line in (bare + b"\n", bare + b"\r\n"):
        if chunk.startswith(line):
            chunk = b"\n" + chunk[len(line):]
        framed = b"\n" + line
        while framed in chunk:  # twice for back-to-back repeats: replace() does not see overlapping matches
            chunk = chunk.replace(framed, b"\n\n")
    return chunk


def _write(part: Path, name: str, fill, what: str) -> None:
    try:
        with open(part, "wb") as f:
            fill(f)
    except OSError as e:  # a full disk, above all
        raise DataError(f"{name}: {what} could not be written to {part.parent} ({e.strerror or e}); that much "
                        "free disk is needed there") from e


def _named(read, part: Path, name: str, offset: int):
    """`read()`, with the temporary part's path in any message replaced by the stream's name and line."""
    try:
        return read()
    except DataError as e:
        where = re.escape(str(part))
        text = re.sub(where + r": line (\d+)", lambda m: f"{name}: line {int(m.group(1)) + offset}", str(e))
        # pandas' own words ("Expected 3 fields in line 17, saw 4") count the part's lines too
        text = re.sub(r"\bin line (\d+)", lambda m: f"in line {int(m.group(1)) + offset}", text)
        text = re.sub(where, name, text)
        raise DataError(text) from e


def _read_up_to(stream: BinaryIO, n: int) -> bytes:
    head = b""
    while len(head) < n:
        more = stream.read(n - len(head))
        if not more:
            break
        head += more
    return head


class _Rewound(io.RawIOBase):
    """`stream` with the bytes already read from it (`head`) put back in front."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        got = self._stream.read(len(buffer))
        buffer[:len(got)] = got
        return len(got)
