"""Bodies in and out of `/invocations`: dispatch tables keyed by MIME type.

A body decodes to a list of records, each a request object or the `BadRequest` that one line of it caused,
so that in JSON Lines (batch transform with SplitType=Line and MULTI_RECORD) one bad record yields one error
line instead of failing the whole batch. JSON is parsed strictly: NaN and Infinity, duplicate keys and
nesting deeper than Python's recursion limit are client errors, never a 500. Nothing is unpickled.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Callable

from .errors import BadRequest, NotAcceptable, UnsupportedMediaType

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"

#: Spellings clients use for the same types.
ALIASES = {JSON: JSON, "application/x-json": JSON, JSONLINES: JSONLINES, "application/x-jsonlines": JSONLINES,
           "application/jsonl": JSONLINES, "application/json-lines": JSONLINES, "application/x-ndjson": JSONLINES,
           CSV: CSV}

Record = dict | BadRequest


def media_type(header: str | None, default: str = JSON) -> str:
    """`text/csv; charset=utf-8` -> `text/csv`; a missing header means `default`."""
    if not header or not header.strip():
        return default
    base = header.split(";", 1)[0].strip().lower()
    if base not in ALIASES:
        raise UnsupportedMediaType(f"Content-Type {base!r} is not supported; use {JSON}, {JSONLINES} or {CSV}")
    return ALIASES[base]


def negotiate(accept: str | None, request_type: str) -> str:
    """The response type: the best supported type in `Accept`; `*/*` or no header means the request's own."""
    if not accept or not accept.strip():
        return request_type
    ranked = []
    for position, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        quality = 1.0
        for param in fields[1:]:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        ranked.append((-quality, position, fields[0].lower()))
    for negative_quality, _, kind in sorted(ranked):
        if negative_quality == 0:
            continue
        if kind == "*/*":
            return request_type
        if kind == "application/*":
            return JSON if request_type == CSV else request_type
        if kind == "text/*":
            return CSV
        if kind in ALIASES:
            return ALIASES[kind]
    raise NotAcceptable(f"Accept {accept!r} names no supported type; use {JSON}, {JSONLINES} or {CSV}")


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


def decode_jsonlines(body: bytes) -> list[Record]:
    lines = _text(body).split("\n")
    if lines and lines[-1].strip() == "":
        lines.pop()  # the newline that ends the last record
    if not lines:
        raise BadRequest("body holds no JSON Lines records")
    records: list[Record] = []
    for number, line in enumerate(lines, start=1):
        try:
            if not line.strip():
                raise BadRequest(f"line {number}: empty record")
            records.append(parse_json(line, f"line {number}"))
        except BadRequest as e:
            records.append(e)
    return records


def decode_csv(body: bytes) -> list[Record]:
    """Rows of `user,item` (an optional `user,item` header) -> one pair-scoring request."""
    try:
        rows = [row for row in csv.reader(io.StringIO(_text(body), newline="")) if row and any(c.strip() for c in row)]
    except csv.Error as e:  # NUL bytes, a lone carriage return inside a field, ...
        raise BadRequest(f"not valid CSV ({e})") from None
    if rows and [c.strip().lower() for c in rows[0]] == ["user", "item"]:
        rows = rows[1:]
    if not rows:
        raise BadRequest("CSV body holds no rows; send user,item per line")
    for number, row in enumerate(rows, start=1):
        if len(row) != 2:
            raise BadRequest(f"CSV row {number}: expected 2 fields (user,item), got {len(row)}")
    return [{"inputs": {"user": [r[0].strip() for r in rows], "item": [r[1].strip() for r in rows]}}]


DECODERS: dict[str, Callable[[bytes], list[Record]]] = {JSON: decode_json, JSONLINES: decode_jsonlines,
                                                          CSV: decode_csv}


def encode_json(responses: list[dict]) -> str:
    return json.dumps(responses[0]) if len(responses) == 1 else json.dumps({"responses": responses})


def encode_jsonlines(responses: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in responses)


def _csv_lines(response: dict) -> list[str]:
    if "error" in response:
        return [f"error: {response['error']}"]
    if "predictions" in response:
        return [repr(p["score"]) for p in response["predictions"]]
    if "outputs" in response:
        return [repr(s) for s in response["outputs"]["score"]]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([entry["itemId"] for entry in response["itemList"]])
    return [buffer.getvalue()]


def encode_csv(responses: list[dict]) -> str:
    """Scores one per line (in the order of the pairs); recommendations one request per line."""
    return "".join(line + "\n" for r in responses for line in _csv_lines(r))


ENCODERS: dict[str, Callable[[list[dict]], str]] = {JSON: encode_json, JSONLINES: encode_jsonlines, CSV: encode_csv}
