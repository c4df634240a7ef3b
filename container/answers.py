"""What `/invocations` answers, in raw ids, for typed requests (`requests`):
- `ScorePairs` -> `{"predictions": [{"score", "like"}]}`, or `{"outputs": {"score", "like"}}` when columnar
- `Recommend` -> `{"itemList": [{"itemId", "score"}], "fallback": ...}`, shaped like Amazon Personalize's
  GetRecommendations; an unknown user gets popular items, `"fallback": true`; a fold-in (`items`) adds
  `"ignored"`, the given items the model does not know
- `Similar` -> `{"item": i, "itemList": [...]}`

Records are answered in chunks, in order (at most a block of users, at most `CHUNK_ENTRIES` answer entries),
so that an answer can be sent while the next chunk is computed and a worker holds one chunk at a time;
recommend records of a chunk that share their options are answered together, one matrix product per block of
users. A record's client error is its own `{"error": ...}`, in place.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii
from typing import Iterable, Iterator

import numpy as np

from ncf.errors import UnknownIdError
from ncf.recommender import Recommendations, Recommender

from . import codecs
from .errors import BadRequest, as_http_error
from .requests import Options, Recommend, ScorePairs, Similar, entries, requests

#: Answer entries (items of item lists, scored pairs) per chunk: ~65k entries are ~3 MB of JSON and ~15 MB
#: of response objects, however large the request.
CHUNK_ENTRIES = 1 << 16
#: Bytes of JSON one answer entry takes, about (`{"itemId": 12345, "score": 0.98765432}, `): what an answer
#: repeats from its request (`echo_bytes`) counts towards `CHUNK_ENTRIES` as that many bytes an entry.
ENTRY_JSON_BYTES = 48


def _item_list(r: Recommendations) -> list[dict]:
    return [{"itemId": item, "score": float(score)} for item, score in zip(r.items, r.scores)]


def answer(recommender: Recommender, records: Iterable, options: Options) -> list[dict]:
    """One response object per record, in order; a record's client error becomes `{"error": ...}` there."""
    return _answer_parsed(recommender, list(requests(records, options)))


def answer_chunks(recommender: Recommender, records: Iterable, options: Options) -> Iterator[list[dict]]:
    """`answer`, a chunk at a time: at most `recommender.block_users` records and about `CHUNK_ENTRIES`
    entries per chunk, so that memory holds one chunk whatever the request's size."""
    chunk: list = []
    size = 0
    n_items = len(recommender.items)
    for request in requests(records, options):
        chunk.append(request)
        # The echo too (fold-in items listed as ignored, up to ~3 MB a record): uncounted, 41 lines of 1,000
        # unknown long ids were one 61.9 MB chunk, and a worker's RSS rose by 218 MB.
        size += entries(request, n_items) + echo_bytes(request) // ENTRY_JSON_BYTES
        if len(chunk) >= recommender.block_users or size >= CHUNK_ENTRIES:
            yield _answer_parsed(recommender, chunk)
            chunk, size = [], 0
    if chunk:
        yield _answer_parsed(recommender, chunk)


def _answer_parsed(recommender: Recommender, parsed: list) -> list[dict]:
    responses: list[dict | None] = [None] * len(parsed)

    groups: dict[tuple, list[int]] = {}
    for n, request in enumerate(parsed):
        if isinstance(request, Recommend) and request.items is None:
            groups.setdefault((request.k, request.exclude_seen, request.exclude), []).append(n)
    for (k, exclude_seen, exclude), rows in groups.items():
        users = [parsed[n].user for n in rows]
        for n, r in zip(rows, recommender.recommend_many(users, k, exclude_seen=exclude_seen, exclude=exclude)):
            responses[n] = {"user": parsed[n].user, "itemList": _item_list(r), "fallback": r.fallback}

    for n, request in enumerate(parsed):
        if responses[n] is not None:
            continue
        try:
            responses[n] = _answer_one(recommender, request)
        except Exception as error:  # noqa: BLE001 - client errors become this record's error object
            http = as_http_error(error)
            if http is None:
                raise
            responses[n] = {"error": http.message}
    return responses  # type: ignore[return-value]


def _answer_one(recommender: Recommender, request) -> dict:
    if isinstance(request, BadRequest):
        raise request
    if isinstance(request, ScorePairs):
        return _score_pairs(recommender, request)
    if isinstance(request, Similar):
        return {"item": request.item, "itemList": _item_list(recommender.similar_items(request.item, request.k))}
    if isinstance(request, Recommend):
        r = recommender.recommend_from_items(list(request.items), request.k, user=request.user,
                                             exclude_seen=request.exclude_seen, exclude=request.exclude)
        return {**({"user": request.user} if request.user is not None else {}), "itemList": _item_list(r),
                "fallback": r.fallback, "ignored": list(r.ignored)}
    raise AssertionError(type(request))


def _score_pairs(recommender: Recommender, request: ScorePairs) -> dict:
    """`{"predictions": [...]}` or `{"outputs": {"score": [...], "like": [...]}}` for the pairs. JSON: an
    unknown id is the request's 400. CSV: each row that could not be scored has a null score, and the answer
    says why under `"errors"` (by line, 1-based as in the message; the first `codecs.MAX_ROW_ERRORS` rows)
    and how many rows are in error (`"error_count"`). Python touches only the rows it describes."""
    users, items = _lookup(recommender, request.users, request.items)
    known = (users >= 0) & (items >= 0)
    if request.csv is None and not known.all():
        kind, index, ids = ("user", users, request.users) if (users < 0).any() else ("item", items, request.items)
        raise UnknownIdError(kind, [ids[r] for r in np.flatnonzero(index < 0).tolist()])
    scores = _scores(recommender, users[known], items[known])
    if request.csv is None:
        values, likes = np.round(scores, 7).tolist(), (scores >= request.threshold).tolist()
        if not request.columnar:
            return {"predictions": [{"score": v, "like": like} for v, like in zip(values, likes)]}
        return {"outputs": {"score": values, "like": likes}}
    at = request.csv.rows[known]
    values = np.full(request.csv.count, None, dtype=object)
    likes = np.full(request.csv.count, None, dtype=object)
    values[at], likes[at] = np.round(scores, 7), scores >= request.threshold
    answer: dict = {"outputs": {"score": values.tolist(), "like": likes.tolist()}}
    errors = request.csv.errors.merged(_unknown_ids(request, users, np.flatnonzero(~known)))
    if errors.count:
        answer["errors"] = {str(line): why for line, why in errors.first.items()}
        answer["error_count"] = errors.count
    return answer


def _lookup(recommender: Recommender, users: list, items: list) -> tuple[np.ndarray, np.ndarray]:
    """Indices `[n]` (-1: unknown) of the pairs' ids, in slices of `CHUNK_ENTRIES`: a lookup's temporaries
    are ~1 KB a pair with string ids."""
    n = len(users)
    user_index, item_index = np.empty(n, np.int64), np.empty(n, np.int64)
    for s in range(0, n, CHUNK_ENTRIES):
        user_index[s:s + CHUNK_ENTRIES] = recommender.users.lookup(users[s:s + CHUNK_ENTRIES])
        item_index[s:s + CHUNK_ENTRIES] = recommender.items.lookup(items[s:s + CHUNK_ENTRIES])
    return user_index, item_index


def _scores(recommender: Recommender, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Scores `[n]` of known pairs, in slices of `CHUNK_ENTRIES` (the network's activations per slice)."""
    out = np.empty(len(users))
    for s in range(0, len(users), CHUNK_ENTRIES):
        out[s:s + CHUNK_ENTRIES] = recommender.score_indices(users[s:s + CHUNK_ENTRIES], items[s:s + CHUNK_ENTRIES])
    return out


def _unknown_ids(request: ScorePairs, users: np.ndarray, unknown: np.ndarray) -> codecs.RowErrors:
    """The CSV pairs `unknown` (positions among the pairs) as rows in error, the first ones described."""
    first = {}
    for p in unknown[:codecs.MAX_ROW_ERRORS].tolist():
        what, value = ("user", request.users[p]) if users[p] < 0 else ("item", request.items[p])
        line = int(request.csv.lines[p])
        first[line] = f"line {line}: unknown {what} id: {value!r}"
    return codecs.RowErrors(len(unknown), first)


def _json_bytes(value) -> int:
    """Bytes of an id or a message as the answer's JSON writes it: ASCII, so `é` is `\\u00e9` (6 bytes) and an
    emoji a surrogate pair (12); the C encoder json.dumps itself uses."""
    return len(encode_basestring_ascii(value)) if isinstance(value, str) else len(str(value))


#: Bytes around one CSV row's reason in an answer: its key and separators in JSON (`"1234567": "...", `), or
#: `error: ` and a newline in CSV, and the answer's `"error_count": n` once.
ROW_ERROR_FRAME = 40
#: The most bytes one character of an id takes in an error's message: `repr` keeps an emoji as it is and JSON
#: writes it as a surrogate pair, `\ud83d\ude00`.
ECHO_CHAR_BYTES = 12


def echo_bytes(request) -> int:
    """Bytes of an answer that repeat what its request sent, at most: an error's message (which may quote a
    value), the user or item it answers for (an unknown user's id is not among the ids `record_bytes` knows),
    the fold-in items it may list as ignored, a CSV body's described rows in error. Python runs per record
    and per described row, and per pair only in C (`map(len, ...)`)."""
    if isinstance(request, BadRequest):
        return _json_bytes(request.message)
    if isinstance(request, Recommend):
        given = sum(_json_bytes(i) + 2 for i in request.items) if request.items else 0
        return (_json_bytes(request.user) if request.user is not None else 0) + given
    if isinstance(request, Similar):
        return _json_bytes(request.item)
    if isinstance(request, ScorePairs) and request.csv is not None:
        rows = request.csv
        described = sum(_json_bytes(why) + ROW_ERROR_FRAME for why in rows.errors.first.values())
        longest = max(max(map(len, rows.users), default=0), max(map(len, rows.items), default=0))
        unknown = len('line 12345678901: unknown user id: ""') + ECHO_CHAR_BYTES * longest + ROW_ERROR_FRAME
        return ROW_ERROR_FRAME + described + min(codecs.MAX_ROW_ERRORS, len(rows.users)) * unknown
    return 0

