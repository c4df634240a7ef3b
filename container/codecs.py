"""Bodies in and out of `/invocations`: dispatch tables keyed by MIME type.

A body decodes to records, each a request object or the `BadRequest` that one line of it caused,
so that in JSON Lines (batch transform with SplitType=Line and MULTI_RECORD) one bad record yields one error
line instead of failing the whole batch. JSON is parsed strictly: NaN and Infinity, duplicate keys and
nesting deeper than Python's recursion limit are client errors, never a 500. Nothing is unpickled.

Memory stays bounded by the body, whatever it holds: JSON Lines records are parsed as they are read (a 100 MB
body of `{"user":1}` lines is 9.5M records, ~2.5 GB as a list of dicts), and answers are encoded chunk by
chunk as they are produced, so a batch transform's worker never holds a whole answer (elsewhere an answer is
built whole, for its Content-Length, within the endpoint's answer limit).
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from werkzeug.datastructures import MIMEAccept
from werkzeug.wrappers import Response
from werkzeug.http import parse_accept_header, parse_options_header

from ncf.vocab import MAX_ID_CHARS

from .errors import BadRequest, NotAcceptable, TooLarge, UnsupportedMediaType, error_answer

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"

#: Spellings clients use for the same types.
ALIASES = {JSON: JSON, "application/x-json": JSON, JSONLINES: JSONLINES, "application/x-jsonlines": JSONLINES,
           "application/jsonl": JSONLINES, "application/json-lines": JSONLINES, "application/x-ndjson": JSONLINES,
           CSV: CSV}

Record = dict | BadRequest  # or, for CSV, the body's `CsvRows`
#: Responses arrive in chunks (lists of response objects, in order) so that they can be sent as they come.
Chunks = Iterable[list[dict]]


def media_type(header: str | None, default: str = JSON) -> str:
    """`text/csv; charset=utf-8` -> `text/csv` (werkzeug parses the header); a missing header means `default`."""
    if not header or not header.strip():
        return default
    base = parse_options_header(header)[0].lower()
    if base not in ALIASES:
        raise UnsupportedMediaType(f"Content-Type {base!r} is not supported; use {JSON}, {JSONLINES} or {CSV}")
    return ALIASES[base]


def negotiate(accept: str | None, request_type: str) -> str:
    """The response type: werkzeug's best match of `Accept` (RFC 9110 quality values: `q=0` refuses a type,
    an invalid `q` drops its entry) among the supported types, the request's own first among equals, so
    `*/*` or no header means the request's own type."""
    if not accept or not accept.strip():
        return request_type
    offered = [request_type] + [t for t in (JSON, JSONLINES, CSV) if t != request_type] + [
        alias for alias, kind in ALIASES.items() if alias != kind]
    best = parse_accept_header(accept, MIMEAccept).best_match(offered)
    if best is None:
        raise NotAcceptable(f"Accept {accept!r} names no supported type; use {JSON}, {JSONLINES} or {CSV}")
    return ALIASES[best]


def answer_type(content_type: str | None, response_type: str) -> str:
    """The answer's Content-Type header: the request's media type as its Content-Type spelled it (lower case,
    parameters dropped) when the answer is of that type, else `response_type`; never with a `charset` that a
    request did not carry. SageMaker's data capture records each side under its header, and Model Monitor
    reads a capture only when both sides have one encoding, which the capture config's
    `CaptureContentTypeHeader` lists name: `text/csv` in, `text/csv; charset=utf-8` out, or
    `application/x-ndjson` in, `application/jsonlines` out, would be two (aws/sagemaker-python-sdk#2785)."""
    if content_type and content_type.strip():
        spelled = parse_options_header(content_type)[0].lower()
        if ALIASES.get(spelled) == response_type:
            return spelled
    return response_type


IDENTITY = "identity"
GZIP = "gzip"
#: Content-Encodings a body may arrive in: `identity` (none) and gzip, as HTTP names it (RFC 9110 8.4.1).
ENCODINGS = {IDENTITY: IDENTITY, GZIP: GZIP, "x-gzip": GZIP}


def content_encoding(header: str | None) -> str:
    """`IDENTITY` or `GZIP` from a Content-Encoding header, checked before the body is read: any other coding
    is a 415 naming it (a gzip body read as text answered "not UTF-8 (byte 1)")."""
    codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    codings = [ENCODINGS.get(c, c) for c in codings if c != IDENTITY]
    if not codings:
        return IDENTITY
    if codings != [GZIP]:
        raise UnsupportedMediaType(f"Content-Encoding {header.strip()!r} is not supported; send the body as is or "
                                   f"with Content-Encoding: {GZIP}")
    return GZIP


def decompressed(body: bytes, encoding: str, limit: int) -> bytes:
    """The body as sent, undone from its `content_encoding`: at most `limit` bytes once decompressed, a 413
    past it (found after inflating at most one byte more: a 6 MB body of gzip can hold 6 GB of newlines). A
    gzip stream that is corrupt or cut short is a 400; several members one after another are one body
    (RFC 1952), as `gzip -c a b` writes them."""
    if encoding == IDENTITY:
        return body
    parts, size, rest = [], 0, body
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # a gzip header and trailer around deflate
        try:
            while rest and not inflater.eof:
                part = inflater.decompress(rest, limit + 1 - size)  # so that one byte past the limit shows
                size += len(part)
                if size > limit:
                    raise TooLarge(f"body is over the {limit // (1024 * 1024)} MB limit once decompressed "
                                   f"(Content-Encoding: {encoding})")
                parts.append(part)
                rest = inflater.unconsumed_tail
        except zlib.error as e:
            raise BadRequest(f"body is not valid {encoding} ({e})") from None
        if not inflater.eof:
            raise BadRequest(f"body is not valid {encoding} (the stream is cut short)")
        rest = inflater.unused_data
    return b"".join(parts)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_json(text: str, where: str = "body") -> dict:
    try:
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise BadRequest(f"{where}: JSON nested too deeply") from None
    except ValueError as e:  # JSONDecodeError is a ValueError
        raise BadRequest(f"{where}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


#: UTF-8's byte-order mark. Windows tools (Excel's "CSV UTF-8", PowerShell) write it before the text; left in,
#: it became part of the first id (`\ufeffuser,item` read as a pair of unknown ids, not the header).
BOM = b"\xef\xbb\xbf"


def _text(body: bytes) -> str:
    """The body as text, less a leading byte-order mark (RFC 8259 lets a JSON parser ignore it; in CSV it is
    never part of an id)."""
    skip = len(BOM) if body.startswith(BOM) else 0
    try:
        return str(memoryview(body)[skip:], "utf-8")  # without a copy of the body
    except UnicodeDecodeError as e:
        raise BadRequest(f"body is not UTF-8 (byte {e.start + skip})") from None


def decode_json(body: bytes) -> list[Record]:
    return [parse_json(_text(body))]


class JsonLines:
    """The records of a JSON Lines body, one per line, parsed each time they are iterated.

    Holds only the text: a record is parsed when reached, and dropped once used, so a worker's memory is the
    body plus one chunk of records. A line that is not a JSON object is its own `BadRequest`, in place.
    `len` is the number of records: every line, less a last one that is blank (the newline ending the body).
    """

    def __init__(self, text: str):
        self._text = text
        count = text.count("\n") + 1
        if not text[text.rfind("\n") + 1:].strip():
            count -= 1  # the newline that ends the last record
        if count == 0:
            raise BadRequest("body holds no JSON Lines records")
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Record]:
        text, start = self._text, 0
        for number in range(1, self._count + 1):
            end = text.find("\n", start)
            line = text[start:] if end < 0 else text[start:end]
            start = end + 1
            try:
                if not line.strip():
                    raise BadRequest(f"line {number}: empty record")
                yield parse_json(line, f"line {number}")
            except BadRequest as e:
                yield e


def decode_jsonlines(body: bytes) -> JsonLines:
    return JsonLines(_text(body))


#: Rows in error whose reason an answer gives; past them, rows in error are counted and answered `error` alone,
#: so that a body of millions of bad rows (1 byte each: blank lines) costs a count, not a message per row.
MAX_ROW_ERRORS = 100


@dataclass(frozen=True)
class RowErrors:
    """Rows that cannot be scored: how many, and why for the first `MAX_ROW_ERRORS` of them.

    `first` maps a row's line in the body (1-based, the header line counted, as in the message) to
    `"line N: why"`, in line order."""

    count: int = 0
    first: dict[int, str] = field(default_factory=dict)

    def merged(self, other: "RowErrors") -> "RowErrors":
        """Both sets of rows: their counts added, the first `MAX_ROW_ERRORS` reasons of both by line."""
        lines = sorted({*self.first, *other.first})[:MAX_ROW_ERRORS]
        both = {**self.first, **other.first}
        return RowErrors(self.count + other.count, {line: both[line] for line in lines})


@dataclass(frozen=True)
class CsvRows:
    """The rows of a CSV body after an optional `user,item` first line, each answered in its place.

    Attributes:
        users, items: `[pairs]` the ids of the rows that are a pair (two fields, each an id of at most
            `MAX_ID_CHARS`), as text, stripped.
        rows: `[pairs]` int64, each pair's row (0-based, among the rows answered).
        lines: `[pairs]` int64, each pair's line in the body (1-based, the header counted; a quoted field
            may hold newlines, so a row's line is where it starts).
        count: rows in all, pairs and not.
        errors: the rows that are not a pair (blank, another number of fields, an id too long).
    """

    users: list
    items: list
    rows: np.ndarray
    lines: np.ndarray
    count: int
    errors: RowErrors


def _row_error(fields: list[str], line: int) -> str:
    if len(fields) == 2:
        return f"line {line}: an id is longer than {MAX_ID_CHARS} characters"
    if not any(f.strip() for f in fields):
        return f"line {line}: empty row"
    return f"line {line}: expected 2 fields (user,item), got {len(fields)}"


def decode_csv(body: bytes) -> list[CsvRows]:
    """Rows of `user,item` -> one pair-scoring request whose answer has a line per row, in order: the same
    rule as JSON Lines (a bad row answers an error in its place; the newline ending the body is not a row).

    Per row, a pair costs its two ids and 16 bytes of position; a row in error only a count (past
    `MAX_ROW_ERRORS`), so memory grows with the pairs, not with the rows."""
    users: list = []
    items: list = []
    rows, lines = array("q"), array("q")
    first: dict[int, str] = {}
    bad = 0
    reader = csv.reader(io.StringIO(_text(body), newline=""))
    count, line = 0, 1
    try:
        for fields in reader:
            if len(fields) == 2 and len(fields[0]) <= MAX_ID_CHARS and len(fields[1]) <= MAX_ID_CHARS:
                user, item = fields[0].strip(), fields[1].strip()
                if line == 1 and user.lower() == "user" and item.lower() == "item":
                    line = reader.line_num + 1
                    continue
                users.append(user)
                items.append(item)
                rows.append(count)
                lines.append(line)
            else:
                bad += 1
                if len(first) < MAX_ROW_ERRORS:
                    first[line] = _row_error(fields, line)
            count += 1
            line = reader.line_num + 1
    except csv.Error as e:  # NUL bytes, a lone carriage return inside a field, ...
        raise BadRequest(f"not valid CSV (line {reader.line_num}: {e})") from None
    if not count:
        raise BadRequest("CSV body holds no rows; send user,item per line")
    return [CsvRows(users, items, np.frombuffer(rows, np.int64), np.frombuffer(lines, np.int64), count,
                    RowErrors(bad, first))]


#: `decode(body)` -> the records: a list, or `JsonLines` (sized, parsed as iterated).
DECODERS: dict[str, Callable[[bytes], list[Record] | JsonLines]] = {JSON: decode_json, JSONLINES: decode_jsonlines,
                                                                     CSV: decode_csv}


def encode_json(chunks: Chunks, count: int) -> Iterator[str]:
    """One response as itself; several (`count` > 1) as `{"responses": [...]}`, written chunk by chunk."""
    if count == 1:
        yield from (json.dumps(r) for chunk in chunks for r in chunk)
        return
    yield '{"responses": ['
    separator = ""
    for chunk in chunks:
        if chunk:
            yield separator + ", ".join(json.dumps(r) for r in chunk)
            separator = ", "
    yield "]}"


def encode_jsonlines(chunks: Chunks, count: int) -> Iterator[str]:
    for chunk in chunks:
        yield "".join(json.dumps(r) + "\n" for r in chunk)


def _csv_lines(response: dict) -> list[str]:
    if "error" in response:
        return [f"error: {response['error']}"]
    if "predictions" in response:
        return [repr(p["score"]) for p in response["predictions"]]
    if "outputs" in response:
        return _score_lines(response["outputs"]["score"], response.get("errors", {}))
    buffer = io.StringIO()
    listed = response["itemList"] if "itemList" in response else response["personalizedRanking"]
    csv.writer(buffer, lineterminator="").writerow([entry["itemId"] for entry in listed])
    return [buffer.getvalue()]


def _score_lines(scores: list, errors: dict[str, str]) -> list[str]:
    """A line per row: its score, or `error: why` for the rows in error (null scores) whose reasons the
    answer gives, in line order, and `error` alone for those past them. numpy's loops, not Python's."""
    lines = np.array(scores, dtype=object)
    missing = np.equal(lines, None)
    lines[~missing] = list(map(repr, lines[~missing]))
    missing = np.flatnonzero(missing)
    described = min(len(errors), len(missing))
    lines[missing[:described]] = [f"error: {why}" for why in list(errors.values())[:described]]
    lines[missing[described:]] = "error"
    return lines.tolist()


def encode_csv(chunks: Chunks, count: int) -> Iterator[str]:
    """Scores one per line (in the order of the pairs); recommendations and rankings one request per line."""
    for chunk in chunks:
        yield "".join("\n".join(_csv_lines(r)) + "\n" for r in chunk)  # no string per line made twice


#: `encode(chunks, count)` -> pieces of the body, in order; `count` is the number of responses in all.
ENCODERS: dict[str, Callable[[Chunks, int], Iterator[str]]] = {JSON: encode_json, JSONLINES: encode_jsonlines,
                                                               CSV: encode_csv}


def json_response(body: dict, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer that is not a model's (pings, the multi-model routes, errors), with its content type."""
    return Response(json.dumps(body), status=status, headers=headers, mimetype=JSON)


def error_response(error: Exception, where: str) -> Response:
    """What both applications answer an error raised by a route with (`errors.error_answer`, as JSON)."""
    return json_response(*error_answer(error, where))
