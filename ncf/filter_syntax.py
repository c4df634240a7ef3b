"""The filter-expression language of Amazon Personalize, read: a LALR grammar (lark) whose tokens keep their
positions, the syntax tree `parse` builds from it, and `parse_values` for Personalize's `filterValues` (a flat
list of the grammar's STRING and NUMBER tokens, read by one regular expression).

Everything here needs no model: an expression that passes `parse` is well formed and asks nothing this image
cannot answer (a Users dataset, event types); `ncf.filters` checks it against the item metadata and compiles
it. Every error is a `FilterError` naming the column where it is, never a lark traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import lark

from .errors import ConfigError
from .metadata import NUMBER_PATTERN

#: Amazon Personalize's limits: an expression's length, filterValues' entries, a value's and a name's length.
MAX_EXPRESSION_CHARS = 2500
MAX_VALUES = 25
MAX_VALUE_CHARS = 1000
MAX_NAME_CHARS = 50
_PLACEHOLDER_NAME = re.compile(r"[A-Za-z0-9_]+")
#: What `Items.NAME` can spell: a column whose name is not one can be returned, never filtered on.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_WORD = "(?![A-Za-z0-9_])"  # a keyword ends where a name would go on: ANDY is a name, not AND then Y
_GRAMMAR = rf"""
start: expression (_PIPE expression)*
expression: ACTION NAME _WHERE condition (IF condition)?
?condition: conjunction (_OR conjunction)*
?conjunction: atom (_AND atom)*
?atom: field _IN _LPAR values _RPAR -> member
     | field NOT _IN _LPAR values _RPAR -> member
     | field COMPARATOR (NUMBER | PLACEHOLDER) -> compare
     | _LPAR condition _RPAR
field: NAME _DOT NAME
values: (STRING | PLACEHOLDER) (_COMMA (STRING | PLACEHOLDER))*
ACTION: /(include|exclude){_WORD}/i
_WHERE: /where{_WORD}/i
IF: /if{_WORD}/i
_OR: /or{_WORD}/i
_AND: /and{_WORD}/i
NOT: /not{_WORD}/i
_IN: /in{_WORD}/i
NAME: /{NAME.pattern}/
STRING: /"(?:[^"\\]|\\.)*"/s
PLACEHOLDER: /\$[A-Za-z0-9_]+/
NUMBER: /{NUMBER_PATTERN}/
COMPARATOR: "<=" | ">=" | "=" | "<" | ">"
_PIPE: "|"
_LPAR: "("
_RPAR: ")"
_DOT: "."
_COMMA: ","
%ignore /\s+/
"""
_TERMINALS = {"ACTION": "INCLUDE or EXCLUDE", "NAME": "a name", "_WHERE": "WHERE", "IF": None, "_AND": "AND",
              "_OR": "OR", "_IN": "IN", "NOT": "NOT IN", "COMPARATOR": "a comparison (=, <, <=, >, >=)",
              "STRING": 'a "quoted" value', "PLACEHOLDER": "a $PLACEHOLDER", "NUMBER": "a number",
              "_PIPE": "|", "_LPAR": "(", "_DOT": "a dot", "_COMMA": "a comma", "_RPAR": ")", "$END": "the end"}
ONLY_ALL = ('this model keeps no event types, so Interactions.EVENT_TYPE takes only "*" (every item the user '
            'interacted with)')
_NO_USERS = "this model has no Users dataset (it learns from interactions and item metadata only)"


@lru_cache(maxsize=None)
def _parser(grammar: str) -> lark.Lark:
    return lark.Lark(grammar, parser="lalr", propagate_positions=True)


class FilterError(ConfigError):
    """A filter expression or its filterValues that cannot be compiled; the message names the place (the
    1-based `column` of `source`, with an excerpt and a caret) and what was expected there."""

    def __init__(self, reason: str, text: str = "", pos: int | None = None, source: str = "filter expression"):
        self.reason, self.source = reason, source
        self.column = None if pos is None else pos + 1
        message = reason if pos is None else f"{source}, column {pos + 1}: {reason}\n{_excerpt(text, pos)}"
        super().__init__(message)


def _excerpt(text: str, pos: int, width: int = 36) -> str:
    start, end = max(0, pos - width), min(len(text), pos + width)
    line = "".join(c if c.isprintable() else " " for c in text[start:end])  # the caret stays under its column
    lead = "  ..." if start else "  "
    return f"{lead}{line}{'...' if end < len(text) else ''}\n{' ' * (len(lead) + pos - start)}^"


@dataclass(frozen=True)
class Value:
    """One entry of an IN list, or a comparison's operand: a literal or a `$PLACEHOLDER`."""

    text: str | None  # the literal, unescaped (None for a placeholder)
    placeholder: str | None
    pos: int


@dataclass(frozen=True)
class Condition:
    """`Dataset.FIELD IN (...)`, `NOT IN (...)` or `<op> operand` (op `IN`, `NOT IN`, `=`, `<`...)."""

    dataset: str  # "Items" or "Interactions"
    field: str
    op: str
    values: tuple[Value, ...]
    pos: int  # of the dataset's name
    field_pos: int
    op_pos: int


@dataclass(frozen=True)
class Junction:
    op: str  # "AND" or "OR"
    parts: tuple


@dataclass(frozen=True)
class Clause:
    """One expression between `|`: INCLUDE or EXCLUDE the items where `condition` holds."""

    action: str  # "INCLUDE" or "EXCLUDE"
    dataset: str
    condition: Condition | Junction
    pos: int


@dataclass(frozen=True)
class Expression:
    """A parsed filter: its clauses in order and the names of its placeholders (without `$`, as written)."""

    text: str
    clauses: tuple[Clause, ...]
    placeholders: tuple[str, ...]


def parse(expression: str) -> Expression:
    """The expression's syntax and every rule that needs no metadata (datasets, ItemID, event types, one
    dataset per expression); raises `FilterError` naming the column."""
    if not isinstance(expression, str):
        raise FilterError(f"a filter expression is text, not {type(expression).__name__}")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise FilterError(f"the filter expression is {len(expression):,} characters long; the limit is "
                          f"{MAX_EXPRESSION_CHARS:,} (Amazon Personalize's)")
    if not expression.strip():
        raise FilterError('the filter expression is empty; write one such as INCLUDE ItemID WHERE '
                          'Items.GENRES IN ("Comedy")')
    tree = _syntax(_parser(_GRAMMAR), expression, "filter expression")
    clauses = tuple(_clause(node, expression) for node in tree.children)
    names = [v.placeholder for c in clauses for v in values_of(c.condition) if v.placeholder]
    return Expression(expression, clauses, tuple(dict.fromkeys(names)))


def _syntax(parser: lark.Lark, text: str, source: str) -> lark.Tree:
    """lark's parse, its exceptions told as what was found where and what could have been there."""
    try:
        return parser.parse(text)
    except lark.exceptions.UnexpectedCharacters as e:
        pos, expected = e.pos_in_stream, e.allowed
        found = "a string that is never closed (a \" is missing)" if text[pos] == '"' else repr(text[pos])
    except lark.exceptions.UnexpectedToken as e:
        expected = e.accepts or e.expected  # accepts: past LALR's default reductions, every token that fits
        if e.token.type == "$END":
            pos, found = len(text.rstrip()), "the end"
        else:
            token = str(e.token)
            pos, found = e.token.start_pos, repr(token if len(token) <= 40 else token[:37] + "...")
    except lark.exceptions.LarkError as e:  # none other is known to reach here; still never a traceback
        raise FilterError(f"{source} could not be read ({type(e).__name__})") from None
    wanted = [w for k, w in _TERMINALS.items() if k in expected and w] or ["something else"]  # IF is never right
    listed = ", ".join(wanted[:-1]) + " or " + wanted[-1] if len(wanted) > 1 else wanted[0]
    raise FilterError(f"expected {listed}, found {found}", text, pos, source)


def _unquote(token: str) -> str:
    """A string literal's text: `\\"` is a quote, `\\\\` a backslash, any other backslash itself."""
    return re.sub(r'\\([\\"])', r"\1", token[1:-1])


def _clause(node: lark.Tree, text: str) -> Clause:
    action, target, condition, *rest = node.children
    if target.lower() != "itemid":
        why = "this model recommends items" if target.lower() in ("actionid", "userid") else "expected ItemID"
        raise FilterError(f"{why}: write {action.upper()} ItemID WHERE ...", text, target.start_pos)
    if rest:
        raise FilterError(f"IF tests CurrentUser, and {_NO_USERS}", text, rest[0].start_pos)
    tree = _condition(condition, text)
    first = next(atoms(tree))
    for atom in atoms(tree):
        if atom.dataset != first.dataset:
            raise FilterError(f"{first.dataset} and {atom.dataset} conditions cannot be mixed in one expression "
                              f"(Amazon Personalize's rule): join two expressions with |, e.g. INCLUDE ItemID "
                              f"WHERE Items... | EXCLUDE ItemID WHERE Interactions...", text, atom.pos)
    return Clause(action.upper(), first.dataset, tree, action.start_pos)


def _condition(node, text: str) -> Condition | Junction:
    if node.data in ("condition", "conjunction"):
        return Junction("OR" if node.data == "condition" else "AND",
                        tuple(_condition(child, text) for child in node.children))
    field_node, *rest = node.children
    dataset, field = field_node.children
    name = {"items": "Items", "interactions": "Interactions"}.get(dataset.lower())
    if name is None:
        users = dataset.lower() in ("users", "currentuser")
        raise FilterError(_NO_USERS if users else f"unknown dataset {str(dataset)!r}: expected Items or "
                          "Interactions", text, dataset.start_pos)
    if node.data == "compare":  # field COMPARATOR operand
        op, operand = rest
        op_name, op_pos, values = str(op), op.start_pos, (_value(operand),)
    else:  # field [NOT] values: IN itself is not kept
        negated = len(rest) == 2
        op_name, op_pos = ("NOT IN", rest[0].start_pos) if negated else ("IN", field.end_pos)
        values = tuple(_value(v) for v in rest[-1].children)
    condition = Condition(name, str(field), op_name, values, dataset.start_pos, field.start_pos, op_pos)
    if name == "Interactions":
        if condition.field.upper() != "EVENT_TYPE":
            raise FilterError(f"Interactions has no field {condition.field} here: {ONLY_ALL}", text, field.start_pos)
        if condition.op != "IN":
            why = ("NOT IN is not taken" if condition.op == "NOT IN" else f"{condition.op} compares numbers")
            raise FilterError(f"{why}: {ONLY_ALL}; flip INCLUDE / EXCLUDE to reverse it", text, condition.op_pos)
        for v in values:
            if v.text is not None and v.text != "*":
                raise FilterError(f"event type {v.text!r}: {ONLY_ALL}", text, v.pos)
    return condition


def _value(token: lark.Token) -> Value:
    if token.type == "PLACEHOLDER":
        return Value(None, token[1:], token.start_pos)
    return Value(_unquote(token) if token.type == "STRING" else str(token), None, token.start_pos)


def atoms(tree):
    """The conditions of a tree, left to right."""
    if isinstance(tree, Junction):
        for part in tree.parts:
            yield from atoms(part)
    else:
        yield tree


def values_of(tree):
    """The values of a tree's conditions, left to right."""
    return (v for atom in atoms(tree) for v in atom.values)


def parse_values(raw: Mapping | None) -> dict[str, tuple[str, ...]]:
    """Personalize's `filterValues` (`{"GENRE": "\\"Comedy\\",\\"Drama\\""}`: each a string of quoted,
    comma-separated values; numbers may go unquoted) as the values of each placeholder."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise FilterError(f"filterValues is an object of placeholder names to values, not {type(raw).__name__}")
    if len(raw) > MAX_VALUES:
        raise FilterError(f"filterValues has {len(raw)} entries; the limit is {MAX_VALUES}")
    parsed = {}
    for name, text in raw.items():
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not _PLACEHOLDER_NAME.fullmatch(name):
            raise FilterError(f"filterValues name {name!r} is not a placeholder name: letters, digits and _, at "
                              f"most {MAX_NAME_CHARS}, without the $")
        source = f"filterValues[{name!r}]"
        if not isinstance(text, str):
            raise FilterError(f'{source} is a string of quoted, comma-separated values such as "\\"Comedy\\"", '
                              f"not {type(text).__name__}")
        if len(text) > MAX_VALUE_CHARS:
            raise FilterError(f"{source} is {len(text):,} characters long; the limit is {MAX_VALUE_CHARS:,}")
        if not text.strip():
            raise FilterError(f"{source} is empty: give at least one value, or leave {name} out")
        parsed[name] = _values(text, source)
    return parsed


# filterValues are a flat list, read by one regular expression in C: lark's LALR parser goes token by token in
# Python, and the largest list a request may send (`MAX_VALUES` of `MAX_VALUE_CHARS`) held a worker for a
# sizeable fraction of a second (commit d127a97).
_STRING = r'"(?:[^"\\]|\\.)*"'
_TOKEN = re.compile(rf"{_STRING}|{NUMBER_PATTERN}", re.S)
_LIST = re.compile(rf"\s*(?:{_STRING}|{NUMBER_PATTERN})(?:\s*,\s*(?:{_STRING}|{NUMBER_PATTERN}))*\s*", re.S)
_HINT = ' (text goes in double quotes: "\\"Comedy\\"")'


def _values(text: str, source: str) -> tuple[str, ...]:
    """The values of one filterValues string: `"quoted"` or a number, separated by commas, white space
    around them ignored, exactly the tokens the expression grammar's STRING and NUMBER read."""
    if _LIST.fullmatch(text):
        return tuple(_unquote(t) if t[0] == '"' else t for t in _TOKEN.findall(text))
    pos, value_next = 0, True  # only on an error: walk the tokens to the first that does not fit
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            found, pos = "the end", len(text.rstrip())
            break
        token = _TOKEN.match(text, pos) if value_next else None
        if value_next and token is None or not value_next and text[pos] != ",":
            other = _TOKEN.match(text, pos) or (text[pos] == "," and ",")
            if other:  # a whole token, in the wrong place
                word = other if isinstance(other, str) else other.group()
                found = repr(word if len(word) <= 40 else word[:37] + "...")
            elif text[pos] == '"':
                found = 'a string that is never closed (a " is missing)'
            else:
                found = repr(text[pos]) + (_HINT if text[pos].isalpha() else "")
            break
        pos, value_next = (token.end(), False) if value_next else (pos + 1, True)
    expected = 'a "quoted" value or a number' if value_next else "a comma or the end"
    raise FilterError(f"expected {expected}, found {found}", text, pos, source)


