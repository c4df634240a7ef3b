"""What `/invocations` answers: score pairs, recommend for a user, similar items; in raw ids.

Requests are recognised by their fields:
- `{"instances": [{"user": u, "item": i}, ...]}` (TF Serving's row format) -> `{"predictions": [{"score", "like"}]}`
- `{"inputs": {"user": [...], "item": [...]}}` (TF Serving's columnar format) -> `{"outputs": {"score", "like"}}`
- `{"user": u, "k": 10, "exclude_seen": true, "exclude": [...]}` -> `{"itemList": [{"itemId", "score"}], ...}`,
  shaped like Amazon Personalize's GetRecommendations; an unknown user gets popular items, `"fallback": true`
- `{"item": i, "k": 10}` -> `{"itemList": [...]}`: nearest items by learned embedding

Every request is validated into a typed one first, so a bad field is a 400 naming it. Recommend requests of
a batch that share their options are answered together, one matrix product per block of users.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ncf.recommender import Recommendations, Recommender

from .errors import BadRequest, as_http_error

MAX_K = 1000
MAX_EXCLUDE = 10_000


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
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
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
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise BadRequest(f"{where}: exclude_seen must be true or false, got {value!r}")
        return value
    raise AssertionError(key)


def _id(value: Any, what: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRequest(f"{what} must be a string or an integer, got {type(value).__name__}")
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


@dataclass(frozen=True)
class Recommend:
    user: Any
    k: int
    exclude_seen: bool
    exclude: tuple


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
    if "user" in record and "item" not in record:
        _check_fields(record, {"user", "k", "exclude_seen", "exclude"}, "recommend")
        exclude = record.get("exclude", [])
        if not isinstance(exclude, list) or len(exclude) > MAX_EXCLUDE:
            raise BadRequest(f"'exclude' must be a list of at most {MAX_EXCLUDE} item ids")
        return Recommend(
            user=_id(record["user"], "user"),
            k=_option("k", record.get("k", options.k), "k"),
            exclude_seen=_option("exclude_seen", record.get("exclude_seen", options.exclude_seen), "exclude_seen"),
            exclude=tuple(_id(i, f"exclude[{n}]") for n, i in enumerate(exclude)),
        )
    if "item" in record and "user" not in record:
        _check_fields(record, {"item", "k"}, "similar-items")
        return Similar(item=_id(record["item"], "item"), k=_option("k", record.get("k", options.k), "k"))
    raise BadRequest("a request needs 'instances' or 'inputs' (score pairs), 'user' (recommend) or 'item' "
                     "(similar items), and not both 'user' and 'item'")


def _item_list(r: Recommendations) -> list[dict]:
    return [{"itemId": item, "score": float(score)} for item, score in zip(r.items, r.scores)]


def answer(recommender: Recommender, records: list, options: Options) -> list[dict]:
    """One response object per record, in order; a record's client error becomes `{"error": ...}` there."""
    parsed: list = []
    for record in records:
        try:
            parsed.append(record if isinstance(record, BadRequest) else parse(record, options))
        except BadRequest as e:
            parsed.append(e)
    responses: list[dict | None] = [None] * len(parsed)

    groups: dict[tuple, list[int]] = {}
    for n, request in enumerate(parsed):
        if isinstance(request, Recommend):
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
        scores = recommender.score(request.users, request.items)
        likes = (scores >= request.threshold).tolist()
        values = np.round(scores, 7).tolist()
        if request.columnar:
            return {"outputs": {"score": values, "like": likes}}
        return {"predictions": [{"score": s, "like": like} for s, like in zip(values, likes)]}
    if isinstance(request, Similar):
        return {"item": request.item, "itemList": _item_list(recommender.similar_items(request.item, request.k))}
    raise AssertionError(type(request))
