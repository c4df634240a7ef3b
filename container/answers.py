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
from ncf.filters import ItemFilter
from ncf.recommender import Recommendations, Recommender

from . import codecs
from .errors import BadRequest, as_http_error
from .requests import Options, Rank, Recommend, ScorePairs, Similar, entries, requests
from .rules import NO_RULES, RuleBook, Rules

#: Answer entries (items of item lists, scored pairs) per chunk: ~65k entries are ~3 MB of JSON and ~15 MB
#: of response objects, however large the request.
CHUNK_ENTRIES = 1 << 16
#: Bytes of JSON one answer entry takes, about (`{"itemId": 12345, "score": 0.98765432}, `): what an answer
#: repeats from its request (`echo_bytes`) counts towards `CHUNK_ENTRIES` as that many bytes an entry.
ENTRY_JSON_BYTES = 48


def _entries(items: list, scores: list, rules: Rules, book: RuleBook, indices=(), promoted=()) -> list[dict]:
    """An answer's items: ids as strings, as Personalize returns them, whatever the training data's ids
    were; `promotionName` on promoted items, `metadata` when the request asked for columns."""
    out = [{"itemId": item, "score": float(score)} for item, score in zip(map(str, items), scores)]
    for entry, name in zip(out, promoted):
        if name is not None:
            entry["promotionName"] = name
    if rules.columns:
        for entry, described in zip(out, book.describe(rules.columns, indices)):
            entry["metadata"] = described
    return out


def _item_list(r: Recommendations, rules: Rules, book: RuleBook) -> list[dict]:
    return _entries(r.items, r.scores, rules, book, r.indices, r.promoted)


def answer(recommender: Recommender, records: Iterable, options: Options,
           book: RuleBook | None = None) -> list[dict]:
    """One response object per record, in order; a record's client error becomes `{"error": ...}` there.
    `book`: the model's rules (`RuleBook`, built once per model); None: the model's alone, no named filters."""
    book = book or RuleBook(recommender.item_metadata, len(recommender.items))
    return _answer_parsed(recommender, book, list(requests(records, options)))


def answer_chunks(recommender: Recommender, records: Iterable, options: Options,
                  book: RuleBook | None = None) -> Iterator[list[dict]]:
    """`answer`, a chunk at a time: at most `recommender.block_users` records and about `CHUNK_ENTRIES`
    entries per chunk, so that memory holds one chunk whatever the request's size."""
    book = book or RuleBook(recommender.item_metadata, len(recommender.items))
    chunk: list = []
    size = 0
    n_items = len(recommender.items)
    for request in requests(records, options):
        chunk.append(request)
        # The echo too (fold-in items listed as ignored, up to ~3 MB a record): uncounted, a few dozen lines of
        # long unknown ids made one chunk many times `CHUNK_ENTRIES`' size, and a worker's memory grew with it.
        size += entries(request, n_items) + echo_bytes(request) // ENTRY_JSON_BYTES
        if len(chunk) >= recommender.block_users or size >= CHUNK_ENTRIES:
            yield _answer_parsed(recommender, book, chunk)
            chunk, size = [], 0
    if chunk:
        yield _answer_parsed(recommender, book, chunk)


def _answer_parsed(recommender: Recommender, book: RuleBook, parsed: list) -> list[dict]:
    responses: list[dict | None] = [None] * len(parsed)

    # Recommend records that share k, options and what decides their items (filter and its values,
    # promotions, diversity) are one `recommend_many`: one compile (cached), one mask per block of users.
    groups: dict[tuple, list[int]] = {}
    for n, request in enumerate(parsed):
        if isinstance(request, Recommend) and request.items is None:
            try:
                book.check_columns(request.rules.columns)
            except BadRequest as e:
                responses[n] = {"error": e.message}
                continue
            groups.setdefault((request.k, request.exclude_seen, request.exclude_seen_given, request.exclude,
                               request.rules.choice), []).append(n)
    for (k, _, _, exclude, _), rows in groups.items():
        try:
            rules = book.compile(parsed[rows[0]].rules)
            exclude_seen = seen_excluded(parsed[rows[0]], rules.rule)
        except BadRequest as e:
            for n in rows:
                responses[n] = {"error": e.message}
            continue
        users = [parsed[n].user for n in rows]
        for n, r in zip(rows, recommender.recommend_many(users, k, exclude_seen=exclude_seen, exclude=exclude,
                                                         rule=rules.rule, promotions=rules.promotions,
                                                         diversity=rules.diversity)):
            responses[n] = {"user": parsed[n].user, "itemList": _item_list(r, parsed[n].rules, book),
                            "fallback": r.fallback}

    for n, request in enumerate(parsed):
        if responses[n] is not None:
            continue
        try:
            responses[n] = _answer_one(recommender, book, request)
        except Exception as error:  # noqa: BLE001 - client errors become this record's error object
            http = as_http_error(error)
            if http is None:
                raise
            responses[n] = {"error": http.message}
    return responses  # type: ignore[return-value]


def _answer_one(recommender: Recommender, book: RuleBook, request) -> dict:
    if isinstance(request, BadRequest):
        raise request
    if isinstance(request, ScorePairs):
        return _score_pairs(recommender, request)
    book.check_columns(request.rules.columns)
    rules = book.compile(request.rules)
    chosen = dict(rule=rules.rule, promotions=rules.promotions, diversity=rules.diversity)
    if isinstance(request, Similar):
        r = recommender.similar_items(request.item, request.k, **chosen)
        return {"item": str(request.item), "itemList": _item_list(r, request.rules, book)}
    if isinstance(request, Recommend):
        r = recommender.recommend_from_items(list(request.items), request.k, user=request.user,
                                             exclude_seen=seen_excluded(request, rules.rule), exclude=request.exclude,
                                             **chosen)
        return {**({"user": request.user} if request.user is not None else {}),
                "itemList": _item_list(r, request.rules, book), "fallback": r.fallback,
                "ignored": list(map(str, r.ignored))}
    if isinstance(request, Rank):
        r = recommender.rank(request.user, list(request.items), rule=rules.rule)
        ranked = _entries(r.items, r.scores, request.rules, book, r.indices)
        if rules.rule is None:  # Personalize appends items not in training, scored 0; a filter cannot vouch for them
            ranked += _entries(r.unknown, [0.0] * len(r.unknown), request.rules, book, book.extra_rows(r.unknown))
        return {"user": request.user, "personalizedRanking": ranked,
                "unknown": list(map(str, r.unknown)), "filtered": r.filtered, "fallback": r.fallback}
    raise AssertionError(type(request))


def seen_excluded(request: Recommend, rule: ItemFilter | None) -> bool:
    """Whether a recommend request's answer leaves out the user's seen items. A filter that INCLUDEs them
    (`Interactions.EVENT_TYPE IN ("*")`: recommend among what they had) overrides the default, which would
    leave it nothing; a request that itself asked for `exclude_seen` true contradicts it: a 400."""
    if rule is None or not rule.include_seen:
        return request.exclude_seen
    if request.exclude_seen and request.exclude_seen_given:
        raise BadRequest("exclude_seen is true and the filter INCLUDEs the user's interactions "
                         "(Interactions.EVENT_TYPE IN (\"*\")): the two contradict; leave exclude_seen out (or set "
                         "it false) to recommend among the seen items, or drop that INCLUDE expression")
    return False


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


#: Bytes of a rule's error message besides what it quotes from the request (`echo_bytes`): its wording, an
#: excerpt with a caret. What it quotes from the model (its columns, its named filters) is `Costs`'s.
RULE_ERROR_FRAME = 512


def _rules_echo(rules: Rules, k: int, model_bytes: int, verdict: str | None = None) -> int:
    """What rules may repeat: an error quoting the request's expressions, names and values (and, up to
    `model_bytes`, the model's columns or filter names), or each promoted item's `promotionName`. `verdict`
    (`rule_verdict`): the error the rules get, "" when they pass; None when not known, so the worst."""
    if rules is NO_RULES:
        return 0
    named = max((_json_bytes(p.name) for p in rules.promotions), default=0)
    promoted = k * (named + len(', "promotionName": ')) if rules.promotions else 0
    if verdict is not None:
        return _json_bytes(verdict) if verdict else promoted
    quoted = sum(_json_bytes(c) for c in rules.columns)
    for f in rules.filters():
        quoted += _json_bytes(f.expression or f.name)
        quoted += sum(_json_bytes(n) + _json_bytes(v) + 4 for n, v in f.values or ())
    if rules.diversity is not None:
        quoted += _json_bytes(rules.diversity.column)
    return max(quoted + RULE_ERROR_FRAME + model_bytes, promoted)


def rule_verdict(book: RuleBook, request) -> str:
    """The error a request's rules get in its answer, "" when they can be answered: they are compiled (the
    book's cache keeps them for the answer), so that an answer's size need not assume each record's rules
    fail with the longest message they could."""
    try:
        book.check_columns(request.rules.columns)
        compiled = book.compile(request.rules)
        if isinstance(request, Recommend):
            seen_excluded(request, compiled.rule)
    except BadRequest as e:
        return e.message
    return ""


def echo_bytes(request, model_bytes: int = 0, verdict: str | None = None) -> int:
    """Bytes of an answer that repeat what its request sent, at most: an error's message (which may quote a
    value), the user or item it answers for (an unknown user's id is not among the ids `record_bytes` knows),
    the fold-in items it may list as ignored (a ranking's unknown items), what its rules may repeat
    (`model_bytes`: the most a rule's error quotes from the model; `verdict`: the rules' own, when known), a
    CSV body's described rows in error. Python runs per record and per described row, and per pair only in C
    (`map(len, ...)`)."""
    if isinstance(request, BadRequest):
        return _json_bytes(request.message)
    if isinstance(request, Recommend):
        given = sum(_json_bytes(str(i)) + 2 for i in request.items) if request.items else 0
        return ((_json_bytes(request.user) if request.user is not None else 0) + given
                + _rules_echo(request.rules, request.k, model_bytes, verdict))
    if isinstance(request, Similar):
        return _json_bytes(str(request.item)) + _rules_echo(request.rules, request.k, model_bytes, verdict)
    if isinstance(request, Rank):  # an unknown item is listed in `unknown` and, appended, in the ranking
        return (_json_bytes(request.user) + 2 * sum(_json_bytes(str(i)) + 2 for i in request.items)
                + _rules_echo(request.rules, 0, model_bytes, verdict))
    if isinstance(request, ScorePairs) and request.csv is not None:
        rows = request.csv
        described = sum(_json_bytes(why) + ROW_ERROR_FRAME for why in rows.errors.first.values())
        longest = max(max(map(len, rows.users), default=0), max(map(len, rows.items), default=0))
        unknown = len('line 12345678901: unknown user id: ""') + ECHO_CHAR_BYTES * longest + ROW_ERROR_FRAME
        return ROW_ERROR_FRAME + described + min(codecs.MAX_ROW_ERRORS, len(rows.users)) * unknown
    return 0
