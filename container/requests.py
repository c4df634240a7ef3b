"""The request schema of `/invocations`: every record validated into a typed request, so a bad field is a 400
naming it.

Requests are recognised by their fields:
- `{"instances": [{"user": u, "item": i}, ...]}` (TF Serving's row format) -> `ScorePairs`
- `{"inputs": {"user": [...], "item": [...]}}` (TF Serving's columnar format) -> `ScorePairs`, `columnar`
- `{"user": u, "k": 10, "exclude_seen": true, "exclude": [...]}` -> `Recommend` (Amazon Personalize's
  GetRecommendations)
- `{"item": i, "k": 10}` -> `Similar`: nearest items by learned embedding
- `{"items": [i, ...], "k": 10}`, optionally with `"user": u` -> `Recommend` with `items`: a fold-in
- `{"user": u, "inputList": [i, ...]}` -> `Rank`: the given items best first (Personalize's
  GetPersonalizedRanking)
- a CSV body's rows -> one `ScorePairs` with its `csv` rows

Recommend, fold-in, similar-items and ranking requests may carry business rules in Personalize's names
(`filter`, `filterName`, `filterValues`, `promotions`, `diversity`, `metadataColumns`), checked here into
`rules.Rules` (ranking takes the filter and metadataColumns only, as Personalize's does).

`Options` are the defaults a record's missing fields take: the model's, then the request's custom attributes.
What each request answers is `answers`'; what it may cost, `limits`'.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator

from ncf.foldin import FoldInConfig
from ncf.spelling import SPELLINGS, spelled_bool
from ncf.vocab import MAX_ID_CHARS, integer_text

from . import codecs
from .errors import BadRequest
from .rules import NO_RULES, RANKING_RULE_FIELDS, RULE_FIELDS, Rules, parse_rules

MAX_K = 1000
MAX_EXCLUDE = 10_000
#: The most items a fold-in request may give (`ncf.foldin.FoldInConfig.max_items`).
MAX_FOLD_IN = FoldInConfig.max_items
#: The most items a ranking request may give (Personalize's inputList takes 500).
MAX_INPUT_LIST = 500


@dataclass(frozen=True)
class Options:
    """Per-request defaults: the model's, overridden by `X-Amzn-SageMaker-Custom-Attributes`
    (`k=20,threshold=0.7,exclude_seen=false`), overridden by the request's own fields. `exclude_seen_given`:
    the custom attributes set `exclude_seen` (a request's choice, not the default a filter may override)."""

    k: int = 10
    threshold: float = 0.5
    exclude_seen: bool = True
    exclude_seen_given: bool = False

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
        if "exclude_seen" in values:
            values["exclude_seen_given"] = True
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
    (None when anonymous). `exclude_seen_given`: the request chose `exclude_seen` (its field or its custom
    attributes) rather than taking the default, which a filter that INCLUDEs the seen items overrides."""

    user: Any
    k: int
    exclude_seen: bool
    exclude: tuple
    items: tuple | None = None
    rules: Rules = NO_RULES
    exclude_seen_given: bool = False


@dataclass(frozen=True)
class Similar:
    item: Any
    k: int
    rules: Rules = NO_RULES


@dataclass(frozen=True)
class Rank:
    """`items` (Personalize's inputList) for `user`, best first."""

    user: Any
    items: tuple
    rules: Rules = NO_RULES


def parse(record: dict, options: Options) -> ScorePairs | Recommend | Similar | Rank:
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
    if "inputList" in record:
        _check_fields(record, {"user", "inputList"} | RANKING_RULE_FIELDS, "ranking")
        given = record["inputList"]
        if "user" not in record:
            raise BadRequest("a ranking request ('inputList') needs 'user': whom the items are ranked for")
        if not isinstance(given, list) or not 1 <= len(given) <= MAX_INPUT_LIST:
            got = f"{len(given)} ids" if isinstance(given, list) else repr(given)
            raise BadRequest(f"'inputList' must be a list of 1 to {MAX_INPUT_LIST} item ids, got {got}")
        return Rank(user=_id(record["user"], "user"),
                    items=tuple(_id(i, f"inputList[{n}]") for n, i in enumerate(given)), rules=parse_rules(record))
    if ("user" in record or "items" in record) and "item" not in record:
        _check_fields(record, {"user", "items", "k", "exclude_seen", "exclude"} | RULE_FIELDS, "recommend")
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
            rules=parse_rules(record),
            exclude_seen_given="exclude_seen" in record or options.exclude_seen_given,
        )
    if "item" in record and "user" not in record and "items" not in record:
        _check_fields(record, {"item", "k"} | RULE_FIELDS, "similar-items")
        return Similar(item=_id(record["item"], "item"), k=_option("k", record.get("k", options.k), "k"),
                       rules=parse_rules(record))
    raise BadRequest("a request needs 'instances' or 'inputs' (score pairs), 'user' or 'items' (recommend), "
                     "'item' (similar items) or 'user' with 'inputList' (ranking), and not 'item' with 'user' or "
                     "'items'")


def requests(records: Iterable, options: Options) -> Iterator[ScorePairs | Recommend | Similar | Rank | BadRequest]:
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
    """Answer entries a request makes: items of its item list (of a ranking: every item given, at most), or
    pairs scored."""
    if isinstance(request, (Recommend, Similar)):
        return min(request.k, n_items)
    if isinstance(request, Rank):
        return len(request.items)
    if isinstance(request, ScorePairs):
        return request.answers
    return 0

