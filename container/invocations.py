"""What `/invocations` answers: score pairs, recommend for a user, similar items; in raw ids.

Requests are recognised by their fields:
- `{"instances": [{"user": u, "item": i}, ...]}` (TF Serving's row format) -> `{"predictions": [{"score", "like"}]}`
- `{"inputs": {"user": [...], "item": [...]}}` (TF Serving's columnar format) -> `{"outputs": {"score", "like"}}`
- `{"user": u, "k": 10, "exclude_seen": true, "exclude": [...]}` -> `{"itemList": [{"itemId", "score"}], ...}`,
  shaped like Amazon Personalize's GetRecommendations; an unknown user gets popular items, `"fallback": true`
- `{"item": i, "k": 10}` -> `{"itemList": [...]}`: nearest items by learned embedding
- `{"items": [i, ...], "k": 10}`, optionally with `"user": u` -> `{"itemList": [...], "ignored": [...], ...}`:
  recommendations from the items someone just interacted with, folded in (`ncf.foldin`); a known user starts
  from their trained vectors

Every request is validated into a typed one first, so a bad field is a 400 naming it. Records are answered
in chunks, in order (at most a block of users, at most `CHUNK_ENTRIES` answer entries), so that an answer can
be sent while the next chunk is computed and a worker holds one chunk at a time; recommend records of a chunk
that share their options are answered together, one matrix product per block of users.

Before any of that, `Limits.check` estimates what the request will cost from `Costs` measured on the model at
load, and refuses (413, saying the limit and how much fits) a request that would take more than its share of
the timeout, or whose answer would not fit a real-time response: refused up front rather than killed midway.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from json.encoder import encode_basestring_ascii
from typing import Any, Iterable, Iterator

import numpy as np

from ncf.errors import UnknownIdError
from ncf.foldin import FoldInConfig
from ncf.recommender import Recommendations, Recommender
from ncf.spelling import SPELLINGS, spelled_bool
from ncf.vocab import MAX_ID_CHARS, integer_text

from . import codecs
from .errors import BadRequest, TooLarge, as_http_error
from .serve_config import WORK_SHARE, ServeConfig

log = logging.getLogger("container.invocations")

MAX_K = 1000
MAX_EXCLUDE = 10_000
#: The most items a fold-in request may give (`ncf.foldin.FoldInConfig.max_items`).
MAX_FOLD_IN = FoldInConfig.max_items
#: Answer entries (items of item lists, scored pairs) per chunk: ~65k entries are ~3 MB of JSON and ~15 MB
#: of response objects, however large the request.
CHUNK_ENTRIES = 1 << 16
#: Bytes of JSON one answer entry takes, about (`{"itemId": 12345, "score": 0.98765432}, `): what an answer
#: repeats from its request (`echo_bytes`) counts towards `CHUNK_ENTRIES` as that many bytes an entry.
ENTRY_JSON_BYTES = 48
#: The smallest record that costs a whole top-k: the worst case per byte of a batch payload.
SMALLEST_RECORD = b'{"user":1}\n'
#: The smallest fold-in record: one item, and the fold-in's fixed cost (its steps) whatever the count.
SMALLEST_FOLD_IN = b'{"items":[1]}\n'
MB = 1024 * 1024


@dataclass(frozen=True)
class Options:
    """Per-request defaults: the model's, overridden by `X-Amzn-SageMaker-Custom-Attributes`
    (`k=20,threshold=0.7,exclude_seen=false`), overridden by the request's own fields."""

    k: int = 10
    threshold: float = 0.5
    exclude_seen: bool = True

    def with_attributes(self, header: str | None) -> "Options":
        if not header:
            return self
        values: dict[str, Any] = {}
        for part in header.replace(";", ",").split(","):
            if not part.strip():
                continue
            key, sep, raw = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in ("k", "threshold", "exclude_seen"):
                continue  # custom attributes may carry other systems' keys: ignore what is not ours
            values[key] = _option(key, raw.strip(), "X-Amzn-SageMaker-Custom-Attributes")
        return replace(self, **values)


def _option(key: str, value: Any, where: str) -> Any:
    if key == "k":
        if isinstance(value, str) and integer_text(value.strip()) is not None:
            value = integer_text(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_K:
            raise BadRequest(f"{where}: k must be an integer from 1 to {MAX_K}, got {value!r}")
        return value
    if key == "threshold":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise BadRequest(f"{where}: threshold must be a number from 0 to 1, got {value!r}")
        return float(value)
    if key == "exclude_seen":
        flag = spelled_bool(value) if isinstance(value, (bool, int, str)) else None
        if flag is None:
            raise BadRequest(f"{where}: exclude_seen must be a boolean ({SPELLINGS}), got {value!r}")
        return flag
    raise AssertionError(key)


def _id(value: Any, what: str) -> Any:
    """An id as sent, checked for type and length here, once; what it names is the vocabulary's question
    (`Vocabulary.lookup`: exact text or an exact int64, anything else unknown)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRequest(f"{what} must be a string or an integer, got {type(value).__name__}")
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise BadRequest(f"{what} is {len(value):,} characters long; ids have at most {MAX_ID_CHARS}")
    return value


def _check_fields(record: dict, allowed: set[str], kind: str) -> None:
    unknown = sorted(set(record) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown} in a {kind} request; allowed: {sorted(allowed)}")


@dataclass(frozen=True)
class ScorePairs:
    users: list
    items: list
    threshold: float
    columnar: bool
    #: CSV: the body's rows (`users` and `items` are its pairs), each answered in its place, a row that is not
    #: a pair or names an unknown id as an error there. Otherwise one unknown id is the whole request's 400.
    csv: codecs.CsvRows | None = None

    @property
    def answers(self) -> int:
        """Rows the answer has: every row of a CSV body, else every pair."""
        return self.csv.count if self.csv is not None else len(self.users)


@dataclass(frozen=True)
class Recommend:
    """`items` None: the user's trained recommendations; a tuple: folded in from those items, for `user`
    (None when anonymous)."""

    user: Any
    k: int
    exclude_seen: bool
    exclude: tuple
    items: tuple | None = None


@dataclass(frozen=True)
class Similar:
    item: Any
    k: int


def parse(record: dict, options: Options) -> ScorePairs | Recommend | Similar:
    if "instances" in record or "inputs" in record:
        _check_fields(record, {"instances", "inputs", "threshold"}, "scoring")
        threshold = _option("threshold", record.get("threshold", options.threshold), "threshold")
        if "instances" in record and "inputs" in record:
            raise BadRequest("give either 'instances' or 'inputs', not both")
        if "instances" in record:
            rows = record["instances"]
            if not isinstance(rows, list) or not rows:
                raise BadRequest("'instances' must be a non-empty list of {\"user\": ..., \"item\": ...}")
            users, items = [], []
            for n, row in enumerate(rows):
                if not isinstance(row, dict) or set(row) != {"user", "item"}:
                    raise BadRequest(f"instances[{n}] must be an object with exactly 'user' and 'item'")
                users.append(_id(row["user"], f"instances[{n}].user"))
                items.append(_id(row["item"], f"instances[{n}].item"))
            return ScorePairs(users, items, threshold, columnar=False)
        columns = record["inputs"]
        if not isinstance(columns, dict) or set(columns) != {"user", "item"}:
            raise BadRequest("'inputs' must be an object with exactly 'user' and 'item' lists")
        users, items = columns["user"], columns["item"]
        if not isinstance(users, list) or not isinstance(items, list) or not users or len(users) != len(items):
            raise BadRequest(f"'inputs.user' and 'inputs.item' must be non-empty lists of the same length")
        return ScorePairs([_id(u, f"inputs.user[{n}]") for n, u in enumerate(users)],
                          [_id(i, f"inputs.item[{n}]") for n, i in enumerate(items)], threshold, columnar=True)
    if ("user" in record or "items" in record) and "item" not in record:
        _check_fields(record, {"user", "items", "k", "exclude_seen", "exclude"}, "recommend")
        exclude = record.get("exclude", [])
        if not isinstance(exclude, list) or len(exclude) > MAX_EXCLUDE:
            raise BadRequest(f"'exclude' must be a list of at most {MAX_EXCLUDE} item ids")
        given = record.get("items")
        if "items" in record and (not isinstance(given, list) or len(given) > MAX_FOLD_IN):
            raise BadRequest(f"'items' must be a list of at most {MAX_FOLD_IN} item ids (what the user interacted "
                             f"with, most recent last), got {len(given) if isinstance(given, list) else given!r}")
        return Recommend(
            user=_id(record["user"], "user") if "user" in record else None,
            k=_option("k", record.get("k", options.k), "k"),
            exclude_seen=_option("exclude_seen", record.get("exclude_seen", options.exclude_seen), "exclude_seen"),
            exclude=tuple(_id(i, f"exclude[{n}]") for n, i in enumerate(exclude)),
            items=None if given is None else tuple(_id(i, f"items[{n}]") for n, i in enumerate(given)),
        )
    if "item" in record and "user" not in record and "items" not in record:
        _check_fields(record, {"item", "k"}, "similar-items")
        return Similar(item=_id(record["item"], "item"), k=_option("k", record.get("k", options.k), "k"))
    raise BadRequest("a request needs 'instances' or 'inputs' (score pairs), 'user' or 'items' (recommend) or "
                     "'item' (similar items), and not 'item' with 'user' or 'items'")


def _item_list(r: Recommendations) -> list[dict]:
    return [{"itemId": item, "score": float(score)} for item, score in zip(r.items, r.scores)]


def requests(records: Iterable, options: Options) -> Iterator[ScorePairs | Recommend | Similar | BadRequest]:
    """Each record as a typed request, or as the `BadRequest` it is, in order."""
    for record in records:
        if isinstance(record, BadRequest):
            yield record
            continue
        if isinstance(record, codecs.CsvRows):
            yield ScorePairs(record.users, record.items, options.threshold, columnar=True, csv=record)
            continue
        try:
            yield parse(record, options)
        except BadRequest as e:
            yield e


def entries(request, n_items: int) -> int:
    """Answer entries a request makes: items of its item list, or pairs scored."""
    if isinstance(request, (Recommend, Similar)):
        return min(request.k, n_items)
    if isinstance(request, ScorePairs):
        return request.answers
    return 0


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


# ---------------------------------------------------------------------------------------------- limits

def _longest_json(vocab) -> int:
    """Characters of the longest id of a vocabulary as JSON writes it."""
    if len(vocab) == 0:
        return 2
    if vocab.is_integer:
        return max(len(str(int(vocab.ids.min()))), len(str(int(vocab.ids.max()))))
    return max(len(json.dumps(i)) for i in vocab.ids.tolist())


def _unknown(vocab) -> Any:
    """An id that `vocab` does not hold."""
    if vocab.is_integer:
        return int(vocab.ids.max()) + 1 if len(vocab) and int(vocab.ids.max()) < 2**62 else -(2**62)
    return "~" + (max(vocab.ids.tolist(), key=len) if len(vocab) else "") + "~"


def _one_core():
    """Time as a worker runs: one BLAS thread (gunicorn.conf.py's post_fork sets the same)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(1)


@dataclass(frozen=True)
class Costs:
    """What answering costs on this model and machine, measured once at load, on one core.

    A request's estimated seconds are, per record, `line_s` (parsing it: once to check, once to answer) plus
    `user_s + entry_s * min(k, n_items)` for a recommend record (score every item, mask, top-k, then build and
    encode `k` entries), or `fold_in_s + fold_in_item_s * items + entry_s * min(k, n_items)` when it folds
    items in (plus `fold_in_user_s` when it names a user), plus `exclude_s` per excluded id; `similar_s + entry_s * k` for a similar-items record,
    `pair_s` per scored pair.
    Every recommend record is costed as a known user (an unknown one gets the cheaper popular items), and
    every fold-in that names a user as the known user with the most history (the fold-in's prior), giving only
    known items, each counted even when repeated: the estimate errs high.

    A fold-in is timed whole (parse, `Recommender.recommend_from_items`, encode), after a warm-up, at 1 item,
    32 and the most a request may give (`MAX_FOLD_IN`, or every item), as a fixed cost (1 item: `fold_in_s`
    anonymous, `fold_in_user_s` more for the user) and the steepest per-item slope of the two larger sizes,
    never below the 1-item cost / `MAX_FOLD_IN` (so the largest fold-in is costed at twice the smallest at
    least): its cost per item comes from the fold-in's own
    code as it is today, not from constants. Timed once, cold, at 1 and 32 items, the slope had come out
    negative and was clamped to 0: 1,000-item fold-ins were estimated 8.5x too cheap and a request the
    estimate admitted had its worker killed at the timeout. Bytes: `record_bytes` per response (its frame, the longest user id) plus
    `entry_bytes` per entry (the longest item id, the longest float), plus what the answer echoes from the
    request (`echo_bytes`).

    On ml-25m-sized models (59,000 items, factors 128, layers (128, 64, 32)), one core of a 2-core VM shared
    with other jobs: `user_s` 1.0-3.4 ms for MF, 8.5-37 ms for NeuMF (the VM's load moves it 4x), `entry_s`
    1.3-5 us; measuring takes ~0.25 s for NeuMF (16 users, 16 items, 1,024 pairs), plus the fold-ins': a
    1,000-item fold-in of an ml-25m-sized NeuMF is 0.17-0.28 s, timed once (the smaller sizes three times).
    """

    line_s: float
    user_s: float
    similar_s: float
    entry_s: float
    pair_s: float
    n_items: int
    record_bytes: int
    entry_bytes: int
    fold_in_s: float = 0.0
    fold_in_item_s: float = 0.0
    exclude_s: float = 0.0
    fold_in_user_s: float = 0.0

    @classmethod
    def measure(cls, recommender: Recommender, sample: int = 16) -> "Costs":
        """Times the path a request takes (decode, parse, answer, encode) on `sample` users and items."""
        n_users, n_items = len(recommender.users), len(recommender.items)
        users = (recommender.users.decode(np.linspace(0, n_users - 1, min(sample, n_users)).round().astype(int))
                 if n_users else ["?"] * sample)
        items = recommender.items.decode(np.linspace(0, n_items - 1, min(sample, n_items)).round().astype(int))
        lines = codecs.decode_jsonlines("".join(json.dumps({"user": u}) + "\n" for u in users).encode())

        def whole(records: list[dict], options: Options, repeat: int = 1) -> float:
            """Median seconds to check (parse) and answer `records` sent as JSON Lines, over `repeat` runs."""
            body = "".join(json.dumps(r) + "\n" for r in records).encode()
            runs = []
            for _ in range(repeat):
                start = time.perf_counter()
                lines = codecs.decode_jsonlines(body)
                for _ in requests(lines, options):  # `Limits.check`'s pass
                    pass
                timed(lines, options)
                runs.append(time.perf_counter() - start)
            return float(np.median(runs))

        def timed(records, options: Options) -> tuple[float, int]:
            """Seconds to answer and encode `records`, and the entries made."""
            start = time.perf_counter()
            made = 0
            for chunk in answer_chunks(recommender, records, options):
                "".join(codecs.ENCODERS[codecs.JSONLINES]([chunk], len(chunk)))
                made += sum(len(r.get("itemList", r.get("outputs", {}).get("score", ()))) for r in chunk)
            return time.perf_counter() - start, made

        with _one_core():
            timed(list(lines)[:2], Options(k=MAX_K))  # first calls: allocations, caches
            start = time.perf_counter()
            for _ in requests(lines, Options()):
                pass
            line_s = (time.perf_counter() - start) / len(users)
            # Per entry, on unknown users (popular items, no scoring), so that no scoring noise is in it.
            strangers = [{"user": _unknown(recommender.users)}] * len(users)
            few, few_entries = timed(strangers, Options(k=1))
            many, many_entries = timed(strangers, Options(k=MAX_K))
            entry_s = max(many - few, 0.0) / max(many_entries - few_entries, 1)
            seconds, made = timed(lines, Options(k=1))
            user_s = max(seconds - entry_s * made, 0.0) / len(users)
            similar_s = 0.0
            if items:
                seconds, made = timed([{"item": i} for i in items], Options(k=1))
                similar_s = max(seconds - entry_s * made, 0.0) / len(items)
            fold_in_s = fold_in_user_s = fold_in_item_s = exclude_s = 0.0
            if n_items:
                # The known user with the most history (the fold-in's prior costs most), or anonymous.
                who = ({"user": recommender.users.decode([int(np.argmax(recommender.artifact.seen.counts()))])[0]}
                       if n_users else {})
                ids = recommender.items.decode(np.arange(min(MAX_FOLD_IN, n_items)))
                sizes = sorted({1, min(32, len(ids)), len(ids)})
                fold = {n: [{**who, "items": ids[:n], "k": 1}] for n in sizes}
                for n in sizes[:2]:  # warm-up: first calls allocate, fill caches
                    whole(fold[n], Options())
                took = {n: whole(fold[n], Options(), repeat=1 if n == sizes[-1] and n > 32 else 3) for n in sizes}
                fold_in_s = whole([{"items": ids[:1], "k": 1}], Options(), repeat=3)  # anonymous: no prior
                fold_in_user_s = max(took[1] - fold_in_s, 0.0)
                slopes = [(took[n] - took[1]) / (n - 1) for n in sizes[1:]]
                fold_in_item_s = max([*slopes, took[1] / MAX_FOLD_IN])
                excluded = recommender.items.decode(np.arange(MAX_EXCLUDE) % n_items)
                plain = whole([{**who, "k": 1}], Options(), repeat=3)
                exclude_s = max(whole([{**who, "k": 1, "exclude": excluded}], Options(), repeat=3) - plain,
                                0.0) / MAX_EXCLUDE
                exclude_s = max(exclude_s, MIN_ID_S)
            pair_s = 0.0
            if n_users and n_items:  # as CSV sends them: ids as text, the slower lookup
                csv = "".join(f"{u},{i}\n" for u, i in zip(users * 64, items * 1024)).encode()
                start = time.perf_counter()
                _, made = timed(codecs.decode_csv(csv), Options())
                pair_s = (time.perf_counter() - start) / max(made, 1)
        return cls(line_s=line_s, user_s=user_s, similar_s=similar_s, entry_s=entry_s, pair_s=pair_s,
                   n_items=n_items, fold_in_s=fold_in_s, fold_in_item_s=fold_in_item_s, exclude_s=exclude_s,
                   fold_in_user_s=fold_in_user_s,
                   record_bytes=len('{"user": , "itemList": [], "fallback": false}\n')
                   + _longest_json(recommender.users),
                   entry_bytes=max(len('{"itemId": , "score": }, ') + _longest_json(recommender.items),
                                   len('{"score": , "like": false}, ')) + 24)

    def seconds(self, request) -> float:
        if isinstance(request, Recommend):
            work = (self.user_s if request.items is None else self.fold_in_s + self.fold_in_item_s * len(request.items)
                    + (self.fold_in_user_s if request.user is not None else 0.0))
            return (self.line_s + work + self.exclude_s * len(request.exclude)
                    + self.entry_s * min(request.k, self.n_items))
        if isinstance(request, Similar):
            return self.line_s + self.similar_s + self.entry_s * min(request.k, self.n_items)
        if isinstance(request, ScorePairs):
            return self.line_s + self.pair_s * request.answers
        return self.line_s

    def answer_bytes(self, request) -> int:
        """Bytes of a request's answer but its `echo_bytes`."""
        return self.record_bytes + self.entry_bytes * entries(request, self.n_items)

    @property
    def worst_per_byte(self) -> tuple[float, bytes]:
        """The most estimated work per byte of payload and the record that does it, all asking for `MAX_K`
        items: `SMALLEST_RECORD`, `SMALLEST_FOLD_IN` (a fold-in of one item), or the largest fold-in and
        exclusion lists in the fewest bytes (one-digit ids, repeated). The estimate is linear in the lists'
        lengths, so the worst per byte is at one end of each."""
        options = Options(k=MAX_K)
        return max((self.seconds(parse(json.loads(line), options)) / len(line), line) for line in WORST_LINES)


#: The least a request's id costs, parsed and looked up: the floor of `Costs.exclude_s`.
MIN_ID_S = 1e-7
#: The records whose estimated work per byte may be the most (`Costs.worst_per_byte`).
WORST_LINES = (SMALLEST_RECORD, SMALLEST_FOLD_IN,
               b'{"items":[' + b",".join([b"1"] * MAX_FOLD_IN) + b']}\n',
               b'{"user":1,"exclude":[' + b",".join([b"1"] * MAX_EXCLUDE) + b']}\n')


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


@dataclass(frozen=True)
class Limits:
    """What one request may ask of this server, from the model's `Costs` and the `ServeConfig`.

    Attributes:
        budget_s: the most estimated work a request may take (`ServeConfig.work_budget_s`), a share of
            `deadline_s`, the seconds a request may last.
        answer_bytes: the largest answer (real time: 6 MB), or None (batch: answers stream to S3).
        payload_mb: the `MaxPayloadInMB` to advertise. Batch mode: the most MB of the costliest lines per byte
            (`Costs.worst_per_byte`: `WORST_LINES`) at `MAX_K`
            that fit the budget, at least 1 (the API's smallest), at most the body limit and 100 /
            MaxConcurrentTransforms (the API's rule for their product). Real time: the body limit (only a
            batch transform reads it).
        fits: whether a batch payload of that size fits the budget (False only when even 1 MB does not).
    """

    costs: Costs
    budget_s: float
    deadline_s: int
    answer_bytes: int | None
    payload_mb: int
    fits: bool

    @classmethod
    def derive(cls, costs: Costs, config: ServeConfig) -> "Limits":
        per_mb = MB * costs.worst_per_byte[0]
        fit = int(config.work_budget_s // per_mb) if per_mb > 0 else config.max_payload_mb
        payload = max(1, min(fit, config.max_payload_mb, 100 // config.max_concurrent_transforms))
        return cls(costs=costs, budget_s=config.work_budget_s, deadline_s=config.deadline_s,
                   answer_bytes=config.max_answer_bytes,
                   payload_mb=payload if config.batch else config.max_payload_mb,
                   fits=payload * per_mb <= config.work_budget_s)

    def describe(self) -> str:
        """One log line: the budget, the measured costs and, in batch mode, the advertised payload."""
        text = (f"a request may take {self.budget_s:g} s of estimated work (of the {self.deadline_s} s it may "
                f"last); a known user costs {self.costs.user_s * 1e3:.2f} ms + {self.costs.entry_s * 1e6:.2f} us "
                f"per item returned")
        if self.answer_bytes is not None:
            return f"{text}; answers up to {self.answer_bytes / MB:g} MB"
        per_byte, record = self.costs.worst_per_byte
        worst = MB // len(record) * self.payload_mb
        return (f"{text}; MaxPayloadInMB {self.payload_mb}: {worst:,} records of {record!r} at "
                f"k={MAX_K} would take about {worst * len(record) * per_byte:.0f} s")

    def check(self, records, options: Options) -> None:
        """Raises `TooLarge` if answering `records` would take more than `budget_s` or make an answer larger
        than `answer_bytes`. Stops reading at the first record over a limit, so a huge body is refused fast."""
        seconds, size, echoed, fitted = 0.0, 0, 0, 0
        total = len(records)
        for request in requests(records, options):
            seconds += self.costs.seconds(request)
            if seconds > self.budget_s:
                raise self._too_slow(request, fitted, total)
            if self.answer_bytes is not None:  # batch answers have no limit: their echo is not counted
                echoed += echo_bytes(request)
                size += self.costs.answer_bytes(request)
                if size + echoed > self.answer_bytes:
                    if fitted == 0 and isinstance(request, ScorePairs):  # one body of pairs or CSV rows
                        raise self._too_many_rows(request, size + echoed)
                    raise self._too_big(total, echoed * total // (fitted + 1))
            fitted += 1

    def _too_slow(self, request, fitted: int, total: int) -> TooLarge:
        limit = (f"the {self.budget_s:g} s of work one request may take ({WORK_SHARE:.0%} of the {self.deadline_s} s "
                 f"it may last, so that none is cut off midway)")
        if fitted == 0 and isinstance(request, ScorePairs) and self.costs.pair_s > 0:
            pairs = int(self.budget_s / self.costs.pair_s)
            what = "rows" if request.csv is not None else "pairs"
            return TooLarge(f"{request.answers:,} {what} would take more than {limit}: send at most "
                            f"{pairs:,} {what} per request", limit_s=self.budget_s, max_pairs=pairs)
        return TooLarge(f"{total:,} records would take more than {limit}: the first {fitted:,} fit; send at "
                        f"most {fitted:,} records like these per request", limit_s=self.budget_s,
                        max_records=fitted)

    def _too_many_rows(self, request: "ScorePairs", size: int) -> TooLarge:
        """One request of pairs or CSV rows whose answer, of `size` bytes, would pass the real-time limit: how
        many rows fit, at the bytes a row of this request costs."""
        what = "rows" if request.csv is not None else "pairs"
        most = int(self.answer_bytes * request.answers // max(size, 1))
        return TooLarge(f"{request.answers:,} {what} would make an answer larger than the "
                        f"{self.answer_bytes / MB:g} MB a real-time response may carry: send at most {most:,} {what} "
                        f"like these per request, or use a batch transform", limit_bytes=self.answer_bytes,
                        max_pairs=most)

    def _too_big(self, total: int, echoed: int) -> TooLarge:
        """`echoed`: the bytes the whole request's answer would repeat from it (`echo_bytes`), estimated from
        the records read so far."""
        room = max(self.answer_bytes - total * self.costs.record_bytes - echoed, 0)
        most = room // self.costs.entry_bytes
        echo = (f", about {echoed:,} bytes of it repeating what the request sent (ids, fold-in items, error "
                f"messages, as JSON writes them: 6 bytes for an 'é', 12 for an emoji)"
                if echoed * 10 >= self.answer_bytes else "")
        return TooLarge(f"the answer would be larger than the {self.answer_bytes / MB:g} MB a real-time response "
                        f"may carry{echo}: ask for at most {most:,} entries (the sum of k over recommend and "
                        f"similar-item records, plus pairs scored) in a request of {total:,} records, or use a "
                        f"batch transform", limit_bytes=self.answer_bytes, max_entries=most)
