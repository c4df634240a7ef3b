"""What an interactions file is, from its bytes and its first line: gzip or not, Parquet or text, which
delimiter, and whether a header comes first.

SageMaker channels often hold files without extensions, so names say nothing: gzip is known by its magic
number, Parquet by `PAR1`, and for text the delimiter and the presence of a header are sniffed from the
first non-blank line (`TextLayout`). Both readers follow one layout, so they cannot disagree on a file.
Text that is not UTF-8 is refused here, before a reader would turn it into garbage rows.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

from .columns import KNOWN_NAMES, Columns
from .errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"


def magic_bytes(path: Path, *, allow_empty: bool) -> bytes | None:
    """A file's first four bytes, which tell Parquet and gzip from text; None for an empty file when
    `allow_empty` (a folder's empty part), else a `DataError` naming the file."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from e
    if not magic:
        if allow_empty:
            return None
        raise DataError(f"{path}: file is empty")
    return magic


def open_text(path: Path, compression: str | None) -> io.TextIOBase:
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
        with open_text(path, compression) as f:
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
class TextLayout:
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


def text_layout(path: Path, columns: Columns, compression: str | None,
                header: bool | None = None) -> TextLayout | None:
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
    return TextLayout(compression, sep, has_header, number)
