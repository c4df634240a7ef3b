"""Bodies in and out of `/invocations`: dispatch tables keyed by MIME type.

A body decodes to records, each a request object or the `BadRequest` that one line of it caused,
so that in JSON Lines (batch transform with SplitType=Line and MULTI_RECORD) one bad record yields one error
line instead of failing the whole batch. JSON is parsed strictly: NaN and Infinity, duplicate keys and
nesting deeper than Python's recursion limit are client errors, never a 500. Nothing is unpickled.

Memory stays bounded by the body, whatever it holds: JSON Lines records are parsed as they are read (a 100 MB
body of `{"user":1}` lines is 9.5M records, ~2.5 GB as a list of dicts), and answers are encoded chunk by
chunk as they are produced, so a worker never holds a whole batch's answer.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header, parse_options_header

from ncf.vocab import MAX_ID_CHARS

from .errors import BadRequest, NotAcceptable, UnsupportedMediaType

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


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"body is not UTF-8 (byte {e.start})") from None


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


@dataclass(frozen=True)
class CsvRows:
    """The pairs of a CSV body, one per row after an optional `user,item` first line; `errors` maps the rows
    that are not a pair (blank, or another number of fields) to why, so that each is answered in its place."""

    users: list
    items: list
    lines: list[int]
    errors: dict[int, str]


def decode_csv(body: bytes) -> list[CsvRows]:
    """Rows of `user,item` -> one pair-scoring request whose answer has a line per row, in order: the same
    rule as JSON Lines (a bad row answers an error in its place; the newline ending the body is not a row)."""
    users: list = []
    items: list = []
    lines: list[int] = []
    errors: dict[int, str] = {}
    reader = csv.reader(io.StringIO(_text(body), newline=""))
    line = 1
    try:
        for row in reader:
            if line == 1 and [c.strip().lower() for c in row] == ["user", "item"]:
                line = reader.line_num + 1
                continue
            if len(row) != 2:
                errors[len(users)] = (f"line {line}: empty row" if not any(c.strip() for c in row) else
                                      f"line {line}: expected 2 fields (user,item), got {len(row)}")
                row = [None, None]
            elif max(len(row[0]), len(row[1])) > MAX_ID_CHARS:
                errors[len(users)] = f"line {line}: an id is longer than {MAX_ID_CHARS} characters"
                row = [None, None]
            users.append(row[0].strip() if row[0] is not None else None)
            items.append(row[1].strip() if row[1] is not None else None)
            lines.append(line)
            line = reader.line_num + 1
    except csv.Error as e:  # NUL bytes, a lone carriage return inside a field, ...
        raise BadRequest(f"not valid CSV ({e})") from None
    if not users:
        raise BadRequest("CSV body holds no rows; send user,item per line")
    return [CsvRows(users, items, lines, errors)]


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
        errors = response.get("errors", {})
        return [repr(s) if s is not None else f"error: {errors[str(n)]}"
                for n, s in enumerate(response["outputs"]["score"])]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([entry["itemId"] for entry in response["itemList"]])
    return [buffer.getvalue()]


def encode_csv(chunks: Chunks, count: int) -> Iterator[str]:
    """Scores one per line (in the order of the pairs); recommendations one request per line."""
    for chunk in chunks:
        yield "".join(line + "\n" for r in chunk for line in _csv_lines(r))


#: `encode(chunks, count)` -> pieces of the body, in order; `count` is the number of responses in all.
ENCODERS: dict[str, Callable[[Chunks, int], Iterator[str]]] = {JSON: encode_json, JSONLINES: encode_jsonlines,
                                                               CSV: encode_csv}
