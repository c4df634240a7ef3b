"""Filters in Amazon Personalize's filter-expression language, compiled once into item masks.

    INCLUDE ItemID WHERE Items.GENRES IN ($GENRE) AND Items.YEAR >= 1990 | EXCLUDE ItemID WHERE
        Interactions.EVENT_TYPE IN ("*")

`ncf.filter_syntax` parses an expression (its names are re-exported here); `compile` checks it against the
model's item metadata and turns it into an `ItemFilter` of `[n_items]` masks, one vectorised `Column.isin` /
`Column.compare` per condition; `FilterCache` keeps both per expression and per `filterValues`, since serving
sees the same few filters again and again. docs/filters.md is the language's reference.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping, NoReturn, Sequence

import numpy as np

from .errors import ConfigError
from .filter_syntax import (MAX_EXPRESSION_CHARS, MAX_VALUE_CHARS, MAX_VALUES, ONLY_ALL, Clause, Condition,
                            Expression, FilterError, Junction, Value, atoms, parse, parse_values, values_of)
from .metadata import ItemMetadata, number

__all__ = ["MAX_EXPRESSION_CHARS", "MAX_VALUES", "MAX_VALUE_CHARS", "Clause", "Condition", "Expression",
           "FilterCache", "FilterError", "ItemFilter", "Junction", "Value", "check", "compile", "parse",
           "parse_values"]


@dataclass(frozen=True)
class ItemFilter:
    """What a compiled filter lets through, as Personalize combines expressions joined by `|`: the items of
    every INCLUDE expression together (all items when there is none), less the items of every EXCLUDE one.
    The Items parts are masks fixed at compile time; the Interactions parts (`EVENT_TYPE IN ("*")`) depend on
    the user, so they stay flags until `allowed` is given that user's seen items.

    Attributes:
        include: `[n_items]` bool, the items INCLUDE expressions over Items let through; None when no such
            expression.
        include_seen: an INCLUDE expression over the user's interactions (their seen items are let through).
        exclude: `[n_items]` bool, the items EXCLUDE expressions over Items remove; None when none.
        exclude_seen: an EXCLUDE expression over the user's interactions (their seen items are removed).
    """

    n_items: int
    include: np.ndarray | None = None
    include_seen: bool = False
    exclude: np.ndarray | None = None
    exclude_seen: bool = False

    @property
    def per_user(self) -> bool:
        """Whether what passes depends on the user's seen items."""
        return self.include_seen or self.exclude_seen

    def allowed(self, seen: np.ndarray | None = None) -> np.ndarray:
        """`[n_items]` bool: the items that pass for a user whose seen item indices are `seen` (None or empty
        for someone the model does not know)."""
        seen = np.zeros(0, np.int64) if seen is None else np.asarray(seen, np.int64)
        if self.include is None and not self.include_seen:
            mask = np.ones(self.n_items, dtype=bool)
        else:
            mask = self.include.copy() if self.include is not None else np.zeros(self.n_items, dtype=bool)
            if self.include_seen:
                mask[seen] = True
        if self.exclude is not None:
            mask &= ~self.exclude
        if self.exclude_seen:
            mask[seen] = False
        return mask

    def static(self) -> np.ndarray | None:
        """For a filter that does not depend on the user (`per_user` False): the mask of items that pass, or
        None when every item passes."""
        if self.per_user:
            raise ValueError("this filter depends on the user's seen items: use allowed(seen)")
        if self.include is None and self.exclude is None:
            return None
        return self.allowed()


def check(expression: Expression | str, metadata: ItemMetadata | None) -> Expression:
    """Every rule `compile` enforces that needs no filterValues: columns, kinds, literals. For filters given
    at deploy time, so that a bad one stops the start rather than a request."""
    parsed = expression if isinstance(expression, Expression) else parse(expression)
    for clause in parsed.clauses:
        if clause.dataset == "Items":
            _mask(clause.condition, _Context(parsed.text, metadata, None, {}))
    return parsed


def compile(expression: Expression | str, metadata: ItemMetadata | None, n_items: int,
            values: Mapping[str, Sequence[str]] | None = None) -> ItemFilter:
    """The `ItemFilter` of `expression` with its placeholders' `values` (as `parse_values` gives them). An
    INCLUDE expression needs a value for each placeholder; in an EXCLUDE one, a condition with a placeholder
    that has none is left out (Personalize's rule). Masks are read-only: caches share them."""
    parsed = expression if isinstance(expression, Expression) else parse(expression)
    values = dict(values or {})
    for name, given in values.items():
        if isinstance(given, str) or not all(isinstance(v, str) for v in given):
            raise FilterError(f"the values of ${name} are a sequence of strings (parse filterValues with "
                              f"parse_values), not {given!r}")
    unused = sorted(set(values) - set(parsed.placeholders))
    if unused:
        has = ", ".join(f"${p}" for p in parsed.placeholders) or "none"
        raise FilterError(f"filterValues gives {', '.join(unused)}, which the filter expression does not use "
                          f"(its placeholders: {has}; names are case-sensitive)")
    if metadata is not None and metadata.n_items != n_items:
        raise ConfigError(f"item metadata for {metadata.n_items:,} items, the model has {n_items:,}")
    context = _Context(parsed.text, metadata, n_items, values)
    masks = {"INCLUDE": [], "EXCLUDE": []}
    seen = {"INCLUDE": False, "EXCLUDE": False}
    for clause in parsed.clauses:
        if clause.action == "INCLUDE":
            missing = next((v for v in values_of(clause.condition) if v.placeholder and v.placeholder not in values),
                           None)
            if missing is not None:
                raise FilterError(f"INCLUDE expressions need a value for each placeholder: filterValues has no "
                                  f"{missing.placeholder}", parsed.text, missing.pos)
        if clause.dataset == "Interactions":
            seen[clause.action] |= _interactions(clause.condition, context)
        else:
            mask = _mask(clause.condition, context)
            if mask is not None:
                masks[clause.action].append(mask)
    include, exclude = (_union(masks[a]) for a in ("INCLUDE", "EXCLUDE"))
    return ItemFilter(n_items, include, seen["INCLUDE"], exclude, seen["EXCLUDE"])


def _union(masks: list[np.ndarray]) -> np.ndarray | None:
    if not masks:
        return None
    out = masks[0]
    for mask in masks[1:]:
        out = out | mask
    out.flags.writeable = False
    return out


@dataclass
class _Context:
    text: str
    metadata: ItemMetadata | None
    n_items: int | None  # None: check only, no mask is computed
    values: dict

    def given(self, value: Value) -> tuple[str, ...] | None:
        """A literal as itself; a placeholder's values, None when it has none."""
        return (value.text,) if value.placeholder is None else self.values.get(value.placeholder)

    def fail(self, reason: str, pos: int) -> NoReturn:
        raise FilterError(reason, self.text, pos)


def _interactions(tree, context: _Context) -> bool:
    """Whether the condition stands (every condition here is "the user's items"), False when every one of
    them was left out for a placeholder without a value."""
    kept = False
    for atom in atoms(tree):
        for v in atom.values:
            given = context.given(v)
            if given is not None and any(g != "*" for g in given):
                context.fail(f"${v.placeholder} is {list(given)}: {ONLY_ALL}", v.pos)
        kept |= all(context.given(v) is not None for v in atom.values)
    return kept


def _mask(tree, context: _Context) -> np.ndarray | None:
    """`[n_items]` where the Items condition holds; None where it was left out (a placeholder without a
    value), which AND and OR skip."""
    if isinstance(tree, Junction):  # folded as its parts come: one mask held, not one per condition
        op, out = np.logical_and if tree.op == "AND" else np.logical_or, None
        for part in tree.parts:
            mask = _mask(part, context)
            if mask is not None and out is not None:
                op(out, mask, out=out)
            elif mask is not None:
                out = mask.copy()
        return out
    if context.metadata is None:
        context.fail("this model was trained without an items channel, so it has no Items to filter on",
                     tree.pos)
    column = context.metadata.find(tree.field)
    if column is None:
        context.fail(f"unknown column Items.{tree.field}; the columns are {', '.join(context.metadata.names)}",
                     tree.field_pos)
    if tree.op not in ("IN", "NOT IN"):
        if column.kind != "numeric":
            context.fail(f"{column.name} is a {column.kind} column: compare it with IN or NOT IN, not "
                         f"{tree.op}", tree.op_pos)
        (operand,) = tree.values
        given = context.given(operand)
        if given is None:
            return None
        number = _number(given, operand, context)
        return None if context.n_items is None else column.compare(tree.op, number)
    wanted = [context.given(v) for v in tree.values]
    try:
        mask = column.isin([g for w in wanted if w is not None for g in w])
    except ConfigError:
        for v, given in zip(tree.values, wanted):  # the one at fault, for its position: on errors only
            try:
                column.isin(list(given or ()))
            except ConfigError as e:
                context.fail(f"${v.placeholder} is {list(given)}: {e}" if v.placeholder else str(e), v.pos)
        raise
    if any(w is None for w in wanted) or context.n_items is None:
        return None
    return column.present() & ~mask if tree.op == "NOT IN" else mask


def _number(given: tuple[str, ...], operand: Value, context: _Context) -> float:
    where = f"${operand.placeholder}" if operand.placeholder else "the operand"
    if len(given) != 1:
        context.fail(f"a comparison takes exactly one value; {where} has {len(given)}", operand.pos)
    read = number(given[0])  # the grammar's NUMBER, finite: a placeholder's value is held to it too
    if read is None:
        context.fail(f"{where} is {given[0]!r}, not a finite number (digits, an optional sign, fraction and "
                     f"exponent, such as 12, -1.5 or 2e3)", operand.pos)
    return read


class FilterCache:
    """Compiled filters by (expression, filterValues as sent), the parsed expressions by their text: a request
    repeats a filter its endpoint has seen, and a hit then costs a look-up, no parsing at all. Bounded (least
    recently used go first), so at most `size` x 2 x `n_items` bytes of masks. Nothing inside awaits, so a
    gevent worker's greenlets never interleave in it; a lock keeps real threads apart, and a miss compiles
    outside it (two threads may compile one filter twice, and keep either)."""

    def __init__(self, metadata: ItemMetadata | None, n_items: int, size: int = 256):
        if size < 1:
            raise ConfigError(f"a filter cache holds at least 1 filter, not {size}")
        self.metadata, self.n_items, self.size = metadata, n_items, size
        self._parsed: OrderedDict[str, Expression] = OrderedDict()
        self._compiled: OrderedDict[tuple, ItemFilter] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, expression: str, raw_values: Mapping | None = None) -> ItemFilter:
        """The filter of `expression` with `raw_values` in Personalize's filterValues form."""
        if not isinstance(expression, str):
            parse(expression)  # raises: a filter expression is text (and only text is a key here)
        if raw_values is not None and not (isinstance(raw_values, Mapping) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in raw_values.items())):
            parse_values(raw_values)  # raises: only a mapping of strings to strings is filterValues
        key = (expression, tuple(sorted((raw_values or {}).items())))
        with self._lock:
            found = _lookup(self._compiled, key)
            parsed = _lookup(self._parsed, expression) if found is None else None
        if found is not None:
            return found
        if parsed is None:
            parsed = parse(expression)
            with self._lock:
                _store(self._parsed, expression, parsed, self.size)
        found = compile(parsed, self.metadata, self.n_items, parse_values(raw_values))
        with self._lock:
            return _store(self._compiled, key, found, self.size)


def _lookup(cache: OrderedDict, key):
    found = cache.get(key)
    if found is not None:
        cache.move_to_end(key)
    return found


def _store(cache: OrderedDict, key, value, size: int):
    cache[key] = value
    if len(cache) > size:
        cache.popitem(last=False)
    return value
