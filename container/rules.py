"""Business rules in a request, in Amazon Personalize's names: `filter` / `filterName` with `filterValues`,
`promotions`, `diversity` and `metadataColumns` (docs/serving.md#business-rules, docs/filters.md).

Two steps, because what a request may say is known before the model is asked anything, and what it means is
not: `parse_rules` checks a record's fields into a frozen, hashable `Rules` (so records with the same rules
can be answered together, and a 400 names the field), and `RuleBook.compile` turns one into what
`ncf.recommender.Recommender` takes (`ItemFilter`, `Promotion`, `Diversity`), against the model's item
metadata, through one `ncf.filters.FilterCache` per loaded model: an expression is parsed and its masks
built once, then each request costs a dictionary look-up.

Filters given at deploy time (`filterName`) come from the `NCF_FILTERS` environment variable and from
`filters.json` in the model folder, each a JSON object `{name: expression}` (the environment wins on a
shared name); both are parsed and checked against the metadata at start, so a broken one makes `/ping`
answer 503 saying why, as a broken model does, instead of failing requests one by one.
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ncf.errors import ConfigError
from ncf.filters import FilterCache, ItemFilter, check
from ncf.metadata import ItemMetadata
from ncf.rerank import Diversity, Promotion

from .errors import BadRequest

#: The fields of a filter: an inline expression or a deploy-time filter's name, and its placeholders' values.
FILTER_FIELDS = frozenset({"filter", "filterName", "filterValues"})
#: Every rule field a recommend, fold-in or similar-items request takes.
RULE_FIELDS = FILTER_FIELDS | {"promotions", "diversity", "metadataColumns"}
#: The rule fields a ranking (`inputList`) takes, as Personalize's GetPersonalizedRanking does.
RANKING_RULE_FIELDS = FILTER_FIELDS | {"metadataColumns"}
PROMOTION_FIELDS = frozenset({"name", "percentPromotedItems", "filterExpression", "filterName", "filterValues"})
MAX_PROMOTIONS = 4
#: Personalize's pattern and length for a promotion's name: an answer echoes it on every promoted item.
PROMOTION_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_]*")
MAX_PROMOTION_NAME = 63
#: Personalize's limit on metadataColumns.
MAX_COLUMNS = 10
#: The file of deploy-time filters in the model folder.
FILTERS_FILE = "filters.json"


@dataclass(frozen=True)
class FilterSpec:
    """A filter as a request gives it: `expression` inline or `name` of a deploy-time filter, with
    `filterValues` as given (name, raw text) pairs. `where` names the request's field for errors."""

    where: str
    expression: str | None = None
    name: str | None = None
    values: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class PromotionSpec:
    name: str
    percent: int
    filter: FilterSpec


@dataclass(frozen=True)
class DiversitySpec:
    column: str
    max_per_value: int


@dataclass(frozen=True)
class Rules:
    """A request's business rules, unchecked against the model. `columns`: the metadata columns each item of
    the answer carries (names as given)."""

    filter: FilterSpec | None = None
    promotions: tuple[PromotionSpec, ...] = ()
    diversity: DiversitySpec | None = None
    columns: tuple[str, ...] = ()

    @property
    def choice(self) -> tuple:
        """What decides which items come back (not how they are described): records sharing it share a mask."""
        return self.filter, self.promotions, self.diversity

    def filters(self) -> list[FilterSpec]:
        return ([self.filter] if self.filter else []) + [p.filter for p in self.promotions]


NO_RULES = Rules()


def _filter(record: Mapping, where: str, expression_field: str) -> FilterSpec | None:
    """The filter of `record` (the request, or one promotion) from `expression_field` or `filterName`, with
    `filterValues`; None when it names none. A field given as null is an error: read as absent, a
    `"filter": null` would answer unfiltered what its sender meant to filter."""
    expression, name, values = record.get(expression_field), record.get("filterName"), record.get("filterValues")
    place = f"{where}." if where else ""
    instead = {expression_field: "out for no filter, or give a filter expression",
               "filterName": "out for no filter, or give the name of a filter given at deploy time",
               "filterValues": "out when no placeholder needs a value, or give an object of placeholder names to "
                               "values"}
    for key, what in instead.items():
        if key in record and record[key] is None:
            raise BadRequest(f"'{place}{key}' is null: leave the field {what}")
    if expression is not None and name is not None:
        raise BadRequest(f"give either '{place}{expression_field}' or '{place}filterName', not both")
    if expression is not None and not isinstance(expression, str):
        raise BadRequest(f"'{place}{expression_field}' must be a filter expression (a string), got "
                         f"{type(expression).__name__}")
    if name is not None and (not isinstance(name, str) or not name):
        raise BadRequest(f"'{place}filterName' must be the name of a filter given at deploy time, got {name!r}")
    if values is not None:
        if expression is None and name is None:
            raise BadRequest(f"'{place}filterValues' is given without a filter to fill in ('{place}"
                             f"{expression_field}' or '{place}filterName')")
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise BadRequest(f"'{place}filterValues' must be an object of placeholder names to strings of quoted, "
                             f"comma-separated values, such as {{\"GENRE\": \"\\\"Comedy\\\",\\\"Drama\\\"\"}}")
        values = tuple(sorted(values.items()))
    if expression is None and name is None:
        return None
    field = f"{place}{expression_field}" if expression is not None else f"{place}filterName {name!r}"
    return FilterSpec(field, expression, name, values)


def _promotions(raw: Any) -> tuple[PromotionSpec, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_PROMOTIONS:
        raise BadRequest(f"'promotions' must be a list of 1 to {MAX_PROMOTIONS} promotions, each an object of "
                         "'name', 'percentPromotedItems', 'filterExpression' or 'filterName', and 'filterValues'")
    out, names = [], set()
    for n, p in enumerate(raw):
        where = f"promotions[{n}]"
        if not isinstance(p, dict):
            raise BadRequest(f"'{where}' must be an object, got {type(p).__name__}")
        unknown = sorted(set(p) - PROMOTION_FIELDS)
        if unknown:
            raise BadRequest(f"unknown field(s) {unknown} in '{where}'; allowed: {sorted(PROMOTION_FIELDS)}")
        name, percent = p.get("name"), p.get("percentPromotedItems")
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_PROMOTION_NAME \
                or not PROMOTION_NAME.fullmatch(name):
            shown = repr(name if not isinstance(name, str) or len(name) <= 80 else name[:77] + "...")
            raise BadRequest(f"'{where}.name' must be 1 to {MAX_PROMOTION_NAME} letters, digits, - and _, starting "
                             f"with a letter or digit (Personalize's rule), got {shown}")
        if name in names:
            raise BadRequest(f"'{where}.name' {name!r} is the name of an earlier promotion; each needs its own")
        names.add(name)
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
            raise BadRequest(f"'{where}.percentPromotedItems' must be an integer from 1 to 100, got {percent!r}")
        spec = _filter(p, where, "filterExpression")
        if spec is None:
            raise BadRequest(f"'{where}' needs 'filterExpression' or 'filterName': the filter its items pass")
        out.append(PromotionSpec(name, percent, spec))
    return tuple(out)


def _diversity(raw: Any) -> DiversitySpec:
    if not isinstance(raw, dict) or set(raw) != {"column", "maxPerValue"}:
        raise BadRequest("'diversity' must be an object with exactly 'column' (an item metadata column) and "
                         "'maxPerValue' (the most items of one value in the answer)")
    column, most = raw["column"], raw["maxPerValue"]
    if not isinstance(column, str) or not column:
        raise BadRequest(f"'diversity.column' must be the name of an item metadata column, got {column!r}")
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        raise BadRequest(f"'diversity.maxPerValue' must be an integer >= 1, got {most!r}")
    return DiversitySpec(column, most)


def _columns(raw: Any) -> tuple[str, ...]:
    """Personalize's `{"ITEMS": [...]}`, or the list alone."""
    if isinstance(raw, dict):
        if set(raw) != {"ITEMS"}:
            raise BadRequest(f"'metadataColumns' as an object has one key, ITEMS (Personalize's form), got "
                             f"{sorted(raw)}")
        raw = raw["ITEMS"]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_COLUMNS or not all(
            isinstance(c, str) and c for c in raw):
        raise BadRequest(f"'metadataColumns' must be a list of 1 to {MAX_COLUMNS} item metadata column names, or "
                         f"{{\"ITEMS\": [...]}}, got {raw!r}")
    return tuple(dict.fromkeys(raw))


def parse_rules(record: Mapping) -> Rules:
    """The rule fields of a checked record (its other fields are the caller's); `NO_RULES` when none."""
    if not RULE_FIELDS & record.keys():
        return NO_RULES
    return Rules(
        filter=_filter(record, "", "filter"),
        promotions=_promotions(record["promotions"]) if "promotions" in record else (),
        diversity=_diversity(record["diversity"]) if "diversity" in record else None,
        columns=_columns(record["metadataColumns"]) if "metadataColumns" in record else (),
    )


def named_filters(environment_text: str, model_dir: Path) -> dict[str, str]:
    """The deploy-time filters: `filters.json` of the model folder, then `NCF_FILTERS` over it. Raises
    `ConfigError` naming the source of a malformed one."""
    named: dict[str, str] = {}
    file = Path(model_dir) / FILTERS_FILE
    if file.is_symlink() or file.exists():
        if not stat.S_ISREG(file.lstat().st_mode):  # a FIFO would block the start; a link, leave the folder
            raise ConfigError(f"{file} is not a regular file")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{file}: cannot be read ({e})") from None
        named.update(_named(text, str(file)))
    if environment_text.strip():
        named.update(_named(environment_text, "NCF_FILTERS"))
    return named


class _Pairs(list):
    """A JSON object's (name, value) pairs as written: a name given twice is kept twice, to be refused."""


def _named(text: str, source: str) -> dict[str, str]:
    example = '{"comedies": "INCLUDE ItemID WHERE Items.GENRES IN (\\"Comedy\\")"}'
    try:
        value = json.loads(text, object_pairs_hook=_Pairs)
    except ValueError as e:
        raise ConfigError(f"{source} is not valid JSON ({e})") from None
    if not isinstance(value, _Pairs):
        raise ConfigError(f"{source} must be a JSON object of filter names to filter expressions, {example}")
    named: dict[str, str] = {}
    for name, expression in value:
        if not name:
            raise ConfigError(f"{source}: a filter has an empty name (\"\"); give each a name requests can use "
                              f"as filterName, {example}")
        if name in named:
            raise ConfigError(f"{source}: filter {name!r} is given twice; each name once (which one did you mean?)")
        if not isinstance(expression, str):
            what = "an object" if isinstance(expression, _Pairs) else type(expression).__name__
            raise ConfigError(f"{source}: filter {name!r} must be a filter expression (a string), not {what}")
        named[name] = expression
    return named


@dataclass(frozen=True)
class Compiled:
    """What `Recommender` takes for one `Rules`."""

    rule: ItemFilter | None
    promotions: tuple[Promotion, ...]
    diversity: Diversity | None


class RuleBook:
    """A loaded model's rules: its item metadata (None without), its deploy-time filters and one
    `FilterCache`. Built once per model; `compile` is what every request with rules goes through."""

    def __init__(self, metadata: ItemMetadata | None, n_items: int, named: Mapping[str, str] | None = None):
        self.metadata, self.n_items = metadata, n_items
        self.named = dict(named or {})
        self.cache = FilterCache(metadata, n_items)
        for name, expression in self.named.items():  # at start: a broken deploy-time filter stops it here
            try:
                check(expression, metadata)
            except ConfigError as e:
                raise ConfigError(f"deploy-time filter {name!r}: {e}") from None
        self._column_bytes: dict[str, int] = {}
        self._extra_rows: dict[str, int] | None = None

    @classmethod
    def load(cls, recommender, environment_text: str, model_dir: Path) -> "RuleBook":
        return cls(recommender.item_metadata, len(recommender.items), named_filters(environment_text, model_dir))

    def item_filter(self, spec: FilterSpec | None) -> ItemFilter | None:
        if spec is None:
            return None
        expression = spec.expression
        if expression is None:
            expression = self.named.get(spec.name)
            if expression is None:
                given = ", ".join(repr(n) for n in sorted(self.named)) or "none (NCF_FILTERS and filters.json)"
                raise BadRequest(f"{spec.where}: no filter of that name was given at deploy time; there are {given}")
        try:
            return self.cache.get(expression, dict(spec.values) if spec.values else None)
        except ConfigError as e:
            raise BadRequest(f"{spec.where}: {e}") from None

    def compile(self, rules: Rules) -> Compiled:
        """Raises `BadRequest` naming the field at fault."""
        promotions = tuple(Promotion(p.name, p.percent, self.item_filter(p.filter)) for p in rules.promotions)
        diversity = None
        if rules.diversity is not None:
            try:
                diversity = Diversity.of(self.metadata, rules.diversity.column, rules.diversity.max_per_value)
            except ConfigError as e:
                raise BadRequest(f"diversity: {e}") from None
        return Compiled(self.item_filter(rules.filter), promotions, diversity)

    def check_columns(self, columns: Sequence[str]) -> None:
        """Raises `BadRequest` for a metadataColumns entry the model cannot answer."""
        if not columns:
            return
        if self.metadata is None:
            raise BadRequest("metadataColumns: this model was trained without an items channel, so it has no item "
                             "metadata to return")
        for n, name in enumerate(columns):
            if self.metadata.find(name) is None:
                raise BadRequest(f"metadataColumns[{n}]: no item metadata column {name!r}; the columns are "
                                 f"{', '.join(self.metadata.names)}")

    def describe(self, columns: Sequence[str], indices: Sequence[int]) -> list[dict[str, str]]:
        """Per item of `indices` (metadata rows: model indices, then metadata-only rows; -1 for none),
        `{column in lower case: its text}`, as Personalize returns metadata; a missing value is left out
        (Personalize's metadata is a map of strings)."""
        rows = [r for r in indices if r >= 0]
        texts = [(name.lower(), iter(self.metadata.texts(name, rows))) for name in columns]
        out = []
        for r in indices:
            values = [(key, next(it)) for key, it in texts] if r >= 0 else []
            out.append({key: value for key, value in values if value is not None})
        return out

    def extra_rows(self, ids: Sequence) -> list[int]:
        """The metadata-only row of each id (one the model never trained on, as its text), -1 where none."""
        if self.metadata is None:
            return [-1] * len(ids)
        if self._extra_rows is None:
            self._extra_rows = {i: self.n_items + n for n, i in enumerate(self.metadata.extra_ids)}
        return [self._extra_rows.get(str(i), -1) for i in ids]

    def column_bytes(self, name: str) -> int:
        """The most bytes one item's value of column `name` takes in an answer's JSON (its key, quotes and
        separators too); 0 for a column the model does not have."""
        key = name.upper()
        if key not in self._column_bytes:
            column = self.metadata.find(name) if self.metadata is not None else None
            self._column_bytes[key] = 0 if column is None else \
                len(name) + 6 + _longest_json_text(column.text.data, column.text.offsets[:self.n_items + 1])
        return self._column_bytes[key]


def _json_weights() -> np.ndarray:
    """Bytes of JSON (ASCII escapes, as `json.dumps` writes) per byte of UTF-8: a character's lead byte
    carries its escape (`\\u00e9`: 6; a surrogate pair: 12), continuation bytes nothing; control characters
    count 6 (some escape in 2)."""
    weights = np.ones(256, dtype=np.int64)
    weights[:0x20] = 6
    weights[[ord('"'), ord("\\")]] = 2
    weights[0x80:0xC0] = 0
    weights[0xC0:0xF0] = 6
    weights[0xF0:] = 12
    return weights


_WEIGHTS = _json_weights()


def _longest_json_text(data: np.ndarray, offsets: np.ndarray) -> int:
    """The longest JSON string, quotes included, among texts packed as UTF-8 `data` and `offsets`."""
    if len(offsets) < 2:
        return 2
    total = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(_WEIGHTS[data], out=total[1:])
    return 2 + int(np.max(total[offsets[1:]] - total[offsets[:-1]]))
