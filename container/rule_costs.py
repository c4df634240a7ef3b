"""What business rules cost on this model: the rule fields of `costs.Costs`, timed at start through the path a
request takes, and `conditions`, what an estimate counts in an expression without parsing it.

A filter's compile is costed in three parts, each calibrated on the shape that makes it dearest, on the model's
own items, one after the other so that each shape is estimated at no less than it took: per character of its
expression (lark parses token by token; conditions over the user's interactions build no mask, so they time
the parser alone, and an `IN` list of one-character strings is the most tokens per character), per condition
(a mask is a pass over the items: as many of the shortest conditions as fit the length limit, less their
characters' share; an `IN` list's values then raise the cost per character if they cost more), and per
character of its filterValues (a list of one-digit numbers is the most values per character; the columns'
commonest categories, the most items they select).
Calibrated on one-condition expressions alone, expressions of many conditions were estimated several times
too cheap, and a batch of them held a worker past its timeout.
"""

from __future__ import annotations

import json
import re
import time

import numpy as np

from ncf.filter_syntax import MAX_EXPRESSION_CHARS, MAX_VALUE_CHARS, NAME
from ncf.filters import FilterCache
from ncf.metadata import CATEGORY_KINDS

from .requests import MAX_INPUT_LIST, MAX_K, Options
from .rules import MAX_PROMOTIONS, RuleBook

#: A filter every model can compile (it needs no item metadata), and the costliest to apply: an INCLUDE over
#: the user's interactions masks a block's whole `[users, n_items]`.
SEEN_FILTER = 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")'
#: A promotion's filter every model can compile: its items are those the user has not seen, so it promotes.
PROMOTED_FILTER = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")'
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def conditions(expression: str) -> int:
    """The most conditions `expression` holds, without parsing it: each names its field as `Dataset.FIELD`, so
    they are at most its dots outside quoted strings (a decimal point counts one more: the estimate errs
    high). One pass in C, where parsing would cost what the estimate is for."""
    return _STRINGS.sub("", expression).count(".")


def _fields(book: RuleBook) -> list[tuple[str, str, str]]:
    """(field, the shortest condition over it that visits every item, a literal its `IN` takes) for the user's
    interactions (first) and, per kind, the first metadata column an expression can name."""
    out = [("Interactions.EVENT_TYPE", 'Interactions.EVENT_TYPE IN ("*")', '"*"')]
    kinds = set()
    for column in book.metadata.columns if book.metadata is not None else []:
        kind = "category" if column.kind in CATEGORY_KINDS else column.kind
        if kind in kinds or not NAME.fullmatch(column.name):
            continue
        kinds.add(kind)
        literal = {"numeric": '"1"', "boolean": '"true"'}.get(column.kind, '"~"')
        field = f"Items.{column.name}"
        out.append((field, f"{field}>0" if column.kind == "numeric" else f"{field} NOT IN ({literal})", literal))
    return out


def _repeated(head: str, part: str, joint: str, tail: str, limit: int) -> tuple[str, int]:
    """`head` + `part` joined by `joint` as often as fits `limit` characters with `tail`, and how often."""
    count = max(1, (limit - len(head) - len(tail) + len(joint)) // (len(part) + len(joint)))
    return head + joint.join([part] * count) + tail, count


def _compile_s(book: RuleBook, expression: str, values: dict | None = None) -> float:
    """Median seconds to parse and compile `expression` with `values` in a new cache (nothing reused), over 3
    runs. Every shape here compiles on any model (a `ConfigError` is this module's mistake, and says so)."""
    runs = []
    for _ in range(3):
        cache = FilterCache(book.metadata, book.n_items)
        start = time.perf_counter()
        cache.get(expression, values)
        runs.append(time.perf_counter() - start)
    return float(np.median(runs))


def _value_lists(book: RuleBook, field: str, literal: str) -> list[str]:
    """filterValues strings of `MAX_VALUE_CHARS` for `field`: the most values per character (one-digit numbers,
    or `literal` repeated where numbers are refused); for a numeric column the most distinct numbers (each
    one more step of the binary search over every item), and for a column of categories its commonest ones,
    the most items selected."""
    dense = literal if field.startswith("Interactions.") or literal == '"true"' else "1"
    lists = [_repeated("", dense, ",", "", MAX_VALUE_CHARS)[0]]
    column = book.metadata.find(field.split(".", 1)[1]) if field.startswith("Items.") else None
    if column is not None and column.kind == "numeric":
        lists.append(",".join(map(str, range(MAX_VALUE_CHARS)))[:MAX_VALUE_CHARS].rsplit(",", 1)[0])
    if column is not None and column.kind in CATEGORY_KINDS and len(column.categories):
        counts = np.bincount(column.codes, minlength=len(column.categories))
        names = column.categories.get(np.argsort(-counts, kind="stable")[:MAX_VALUE_CHARS // 3].tolist())
        quoted, size = [], -1
        for name in names:
            text = json.dumps(name, ensure_ascii=False)
            if size + 1 + len(text) > MAX_VALUE_CHARS:
                break
            quoted.append(text)
            size += 1 + len(text)
        if quoted:
            lists.append(",".join(quoted))
    return lists


def measure_compiles(book: RuleBook) -> dict:
    """`compile_char_s`, `condition_s` and `value_char_s` (the module docstring's shapes and order), each the
    dearest over the fields of `_fields`."""
    shapes = []
    for field, condition, literal in _fields(book):
        shapes.append((field, literal, f"INCLUDE ItemID WHERE {condition}",
                       _repeated(f"INCLUDE ItemID WHERE {field} IN (", literal, ",", ")", MAX_EXPRESSION_CHARS)[0],
                       _repeated("INCLUDE ItemID WHERE ", condition, " OR ", "", MAX_EXPRESSION_CHARS)[0]))
    timed = {e: _compile_s(book, e) for shape in shapes for e in shape[2:]}
    parse_s = max(timed[e] / len(e) for e in shapes[0][2:])  # the user's interactions: no mask at all
    condition_s = max([0.0] + [(timed[many] - parse_s * len(many)) / conditions(many)
                               for *_, many in shapes[1:]])
    char_s = max([parse_s] + [(timed[e] - condition_s * conditions(e)) / len(e)
                              for shape in shapes[1:] for e in shape[2:4]])
    value_s = 0.0
    for field, literal, *_ in shapes:
        placeholder = f"INCLUDE ItemID WHERE {field} IN ($V)"
        own = char_s * len(placeholder) + condition_s
        for values in _value_lists(book, field, literal):
            value_s = max(value_s, (_compile_s(book, placeholder, {"V": values}) - own) / (len(values) + 1))
    return {"compile_char_s": char_s, "condition_s": condition_s, "value_char_s": value_s}


def measure_rules(recommender, book: RuleBook, users: list, whole) -> dict:
    """The rules' costs (`Costs`' fields), each timed through `whole` (the request's whole path) on a few of
    `users` against the same records without the rule; compiles by `measure_compiles`."""
    few = users[:2]
    one, most = Options(k=1), Options(k=MAX_K)

    def per_record(fields: dict, options: Options, baseline: float, repeat: int = 3, divide: int = 1) -> float:
        took = whole([{"user": u, **fields} for u in few], options, repeat)
        return max(took - baseline, 0.0) / len(few) / divide

    plain, plain_most = (whole([{"user": u} for u in few], options, 3) for options in (one, most))
    expressions = [SEEN_FILTER] + [f"INCLUDE ItemID WHERE {condition}" for _, condition, _ in _fields(book)[1:2]]
    costs = {"filter_s": max(per_record({"filter": e}, one, plain) for e in expressions)}  # cached by then
    costs.update(measure_compiles(book))
    promoted = [{"name": "p", "percentPromotedItems": 50, "filterExpression": PROMOTED_FILTER}]
    costs["promotion_s"] = per_record({"promotions": promoted}, most, plain_most)
    n_entries = min(MAX_K, book.n_items)
    capped = cappable(book)
    if capped:
        cap = {"column": capped[0].name, "maxPerValue": MAX_K}
        costs["diversity_entry_s"] = per_record({"diversity": cap}, most, plain_most, divide=n_entries)
        costs["diversity_all_s"] = per_record({"diversity": {**cap, "maxPerValue": 1}}, most, plain, repeat=1)
    if book.metadata is not None and book.metadata.columns:
        columns = book.metadata.names[:10]
        costs["column_entry_s"] = per_record({"metadataColumns": columns}, most, plain_most,
                                             divide=n_entries * len(columns))
    ids = recommender.items.decode(np.arange(min(MAX_INPUT_LIST, book.n_items)))
    first = whole([{"user": u, "inputList": ids[:1]} for u in few], one, 3) / len(few)
    every = whole([{"user": u, "inputList": ids} for u in few], one, 3) / len(few)
    costs["rank_s"] = first
    costs["rank_item_s"] = max(every - first, 0.0) / max(len(ids) - 1, 1)
    return costs


def cappable(book: RuleBook) -> list:
    """The metadata columns a diversity cap takes (categorical, text, boolean), the most values per item
    first."""
    columns = [c for c in (book.metadata.columns if book.metadata is not None else [])
               if c.kind in ("categorical", "text", "boolean")]
    return sorted(columns, key=lambda c: -(len(c.codes) if c.codes is not None else len(c.flags)))


def rule_lines(book: RuleBook) -> tuple[bytes, ...]:
    """The records with rules that may cost the most per byte on this model: the longest ranking of one-digit
    ids, the most promotions in the fewest bytes, and the tightest cap over the shortest cappable column's
    name; through the shortest deploy-time filter's name too, when there are some."""
    def line(record: dict) -> bytes:
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"

    names = "abcdefghijklmnopqrstuvwxyz"[:MAX_PROMOTIONS]
    lines = [line({"user": 1, "inputList": [1] * MAX_INPUT_LIST}),
             line({"user": 1, "promotions": [{"name": n, "percentPromotedItems": 1, "filterExpression": PROMOTED_FILTER}
                                             for n in names]})]
    if book.named:
        shortest = min(book.named, key=len)
        lines.append(line({"user": 1, "filterName": shortest}))
        lines.append(line({"user": 1, "promotions": [{"name": n, "percentPromotedItems": 1, "filterName": shortest}
                                                     for n in names]}))
    capped = cappable(book)
    if capped:
        column = min((c.name for c in capped), key=len)
        lines.append(line({"user": 1, "diversity": {"column": column, "maxPerValue": 1}}))
    return tuple(lines)
