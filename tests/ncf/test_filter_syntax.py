"""Reading filter expressions and filterValues: Personalize's syntax, the rules that need no model, and
errors that say where they are and what was expected there."""

import re

import lark
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncf.errors import ConfigError
from ncf.filter_syntax import MAX_EXPRESSION_CHARS, FilterError, parse, parse_values
from ncf.metadata import NUMBER_PATTERN


def error(expression) -> FilterError:
    with pytest.raises(FilterError) as caught:
        parse(expression)
    return caught.value


def column_of(expression, fragment):
    """The 1-based column of `fragment`'s first occurrence in `expression`."""
    return expression.index(fragment) + 1


def test_placeholders_are_listed_once_each_in_order_of_first_use():
    text = "INCLUDE ItemID WHERE Items.A IN ($B, $a) AND Items.C > $B | EXCLUDE ItemID WHERE Items.D IN ($Z)"
    assert parse(text).placeholders == ("B", "a", "Z")


def test_keywords_and_dataset_names_are_read_in_any_case():
    expression = parse('include itemid where ITEMS.genres in ("a") aNd (items.YEAR > 3 Or Items.X NOT in ("b")) '
                       '| Exclude ItemId Where interactions.event_type IN ("*")')
    assert [(c.action, c.dataset) for c in expression.clauses] == [("INCLUDE", "Items"), ("EXCLUDE", "Interactions")]
    assert expression.clauses[0].condition.op == "AND" and expression.clauses[0].condition.parts[1].op == "OR"


def test_string_literals_escape_quotes_and_backslashes():
    expression = parse(r'EXCLUDE ItemID WHERE Items.TITLE IN ("say \"hi\"", "a\\b", "c:\d")')
    assert [v.text for v in expression.clauses[0].condition.values] == ['say "hi"', "a\\b", "c:\\d"]


def test_a_keyword_is_a_whole_word():
    text = 'INCLUDE ItemID WHERE Items.GENRES IN ("Comedy") ANDY'
    assert error(text).column == column_of(text, "ANDY")


# filterValues


def test_filter_values_are_quoted_comma_separated_strings_and_numbers_may_go_unquoted():
    raw = {"A": r'"Comedy", "say \"hi\"" ,"back\\slash"', "B": "20, -1.5", "C": '""'}
    assert parse_values(raw) == {"A": ("Comedy", 'say "hi"', "back\\slash"), "B": ("20", "-1.5"), "C": ("",)}
    assert parse_values(None) == {} and parse_values({}) == {}


@given(st.dictionaries(st.from_regex(r"[A-Za-z0-9_]{1,50}", fullmatch=True),
                       st.lists(st.text(max_size=20), min_size=1, max_size=8), max_size=25))
def test_any_values_written_in_filter_values_form_read_back_as_themselves(values):
    raw = {name: ", ".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in listed)
           for name, listed in values.items()}
    raw = {name: text for name, text in raw.items() if len(text) <= 1000}
    assert parse_values(raw) == {name: tuple(values[name]) for name in raw}


# What lark read filterValues with before a regular expression did (the expression's STRING and NUMBER): the
# reference the scanner is held to, value for value and column for column.
_REFERENCE = lark.Lark(rf"""
start: (STRING | NUMBER) ("," (STRING | NUMBER))*
STRING: /"(?:[^"\\]|\\.)*"/s
NUMBER: /{NUMBER_PATTERN}/
%ignore /\s+/
""", parser="lalr")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet='"\\, 1e.+-a_\u0661\n', max_size=14))
def test_filter_values_are_read_as_the_grammars_tokens_would_be(text):
    try:
        tree = _REFERENCE.parse(text)
    except lark.exceptions.UnexpectedInput as e:
        if text.strip():
            at = (len(text.rstrip()) if isinstance(e, lark.exceptions.UnexpectedToken) and e.token.type == "$END"
                  else e.pos_in_stream if isinstance(e, lark.exceptions.UnexpectedCharacters) else e.token.start_pos)
            with pytest.raises(FilterError, match="filterValues\\['A'\\], column") as caught:
                parse_values({"A": text})
            assert caught.value.column == at + 1
        return
    assert parse_values({"A": text})["A"] == tuple(
        re.sub(r'\\([\\"])', r"\1", t[1:-1]) if t.type == "STRING" else str(t) for t in tree.children)


@pytest.mark.parametrize("raw, said, column", [
    (["GENRE"], "not list", None),
    ({f"P{n}": "1" for n in range(26)}, "26 entries; the limit is 25", None),
    ({"GEN RE": '"a"'}, "'GEN RE' is not a placeholder name", None),
    ({"$GENRE": '"a"'}, "without the $", None),
    ({"G" * 51: '"a"'}, "at most 50", None),
    ({"GENRE": ["Comedy"]}, "not list", None),
    ({"GENRE": '"a",' * 250 + '"b"'}, "1,003 characters long; the limit is 1,000", None),
    ({"GENRE": "  "}, "empty: give at least one value, or leave GENRE out", None),
    ({"GENRE": "Comedy"}, 'found \'C\' (text goes in double quotes: "\\"Comedy\\"")', 1),
    ({"GENRE": '"Comedy",'}, "expected a \"quoted\" value or a number, found the end", 10),
    ({"GENRE": '"Comedy" "Drama"'}, "expected a comma or the end", 10),
    ({"GENRE": '"Comedy'}, "never closed", 1),
])
def test_malformed_filter_values_say_which_entry_and_where(raw, said, column):
    with pytest.raises(FilterError) as caught:
        parse_values(raw)
    assert said in str(caught.value) and caught.value.column == column
    if column is not None:
        assert "filterValues['GENRE'], column" in str(caught.value)


# Errors name their column


@pytest.mark.parametrize("text, at, said", [
    ("SELECT * FROM items", "SELECT", "expected INCLUDE or EXCLUDE, found 'SELECT'"),
    ('INCLUDE ItemID Items.GENRES IN ("a")', "Items", "expected WHERE"),
    ("INCLUDE ItemID WHERE", None, "expected a name or (, found the end"),
    ('INCLUDE ItemID WHERE Items.GENRES ("a")', "(", "expected IN, NOT IN or a comparison (=, <, <=, >, >=)"),
    ("INCLUDE ItemID WHERE Items.YEAR != 3", "!", "found '!'"),
    ("INCLUDE ItemID WHERE Items.YEAR IN (1995)", "1995", 'expected a "quoted" value or a $PLACEHOLDER'),
    ('INCLUDE ItemID WHERE Items.GENRES IN ()', ")", 'expected a "quoted" value or a $PLACEHOLDER, found \')\''),
    ('INCLUDE ItemID WHERE Items.GENRES IN ("a"', None, "expected a comma or ), found the end"),
    ('INCLUDE ItemID WHERE (Items.GENRES IN ("a")', None, "expected ), found the end"),
    ('INCLUDE ItemID WHERE Items.GENRES IN ("a") Extra', "Extra", "expected AND, OR, | or the end, found 'Extra'"),
    ('INCLUDE ItemID WHERE Items.GENRES IN ("a) | EXCLUDE', '"a', "a string that is never closed"),
    ('INCLUDE ItemID WHERE Items.GENRES IN ("a") |', None, "expected INCLUDE or EXCLUDE, found the end"),
    ("INCLUDE ItemID WHERE Items.YEAR < $", "$", "found '$'"),
])
def test_a_syntax_error_names_its_column_what_was_expected_and_what_was_found(text, at, said):
    e = error(text)
    assert said in str(e)
    assert e.column == (column_of(text, at) if at else len(text) + 1)
    excerpt, caret = str(e).splitlines()[1:]
    under = caret.index("^")
    assert excerpt[under] == text[e.column - 1] if e.column <= len(text) else under == len(excerpt)


def test_an_error_far_into_a_long_expression_shows_an_excerpt_around_it():
    text = "INCLUDE ItemID WHERE " + " OR ".join(f"Items.YEAR = {y}" for y in range(1900, 1960)) + " OR Items.YEAR ! 3"
    e = error(text)
    first, excerpt, caret = str(e).splitlines()
    assert first.startswith(f"filter expression, column {text.index('!') + 1}: ")
    assert excerpt.startswith("  ...") and len(excerpt) < 90 and excerpt[caret.index("^")] == "!"


def test_tabs_and_newlines_keep_the_caret_under_its_column():
    text = 'INCLUDE ItemID\n\tWHERE Users.GENRE IN ("a")'
    e = error(text)
    assert e.column == column_of(text, "Users")
    assert str(e).splitlines()[2].index("^") == e.column - 1 + 2


@pytest.mark.parametrize("text, at, said", [
    ('INCLUDE UserID WHERE Items.GENRES IN ("a")', "UserID", "this model recommends items"),
    ('INCLUDE ActionID WHERE Items.GENRES IN ("a")', "ActionID", "this model recommends items"),
    ('INCLUDE Item WHERE Items.GENRES IN ("a")', "Item ", "expected ItemID"),
    ('INCLUDE ItemID WHERE Users.AGE > 3', "Users", "this model has no Users dataset"),
    ('INCLUDE ItemID WHERE Items.YEAR > 3 IF CurrentUser.AGE > 18', "IF", "IF tests CurrentUser, and this model "
                                                                           "has no Users dataset"),
    ('INCLUDE ItemID WHERE CurrentUser.AGE > 18', "CurrentUser", "no Users dataset"),
    ('INCLUDE ItemID WHERE Item.GENRES IN ("a")', "Item.", "unknown dataset 'Item': expected Items or Interactions"),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")', '"click"', "event type 'click': this "
                                                                                      "model keeps no event types"),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE NOT IN ("*")', "NOT", "NOT IN is not taken"),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE > 3', ">", "takes only \"*\""),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_VALUE IN ("*")', "EVENT_VALUE", "Interactions has no field EVENT_VALUE"),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*") AND Items.YEAR > 3', "Items", "Interactions and Items "
                                                                                          "conditions cannot be mixed"),
    ('EXCLUDE ItemID WHERE Items.YEAR > 3 OR (Interactions.EVENT_TYPE IN ("*"))', "Interactions", "join two "
                                                                                                  "expressions with |"),
])
def test_an_error_of_meaning_that_needs_no_metadata_is_found_by_parse_at_its_column(text, at, said):
    e = error(text)
    assert said in str(e) and e.column == column_of(text, at)


def test_an_expression_longer_than_personalize_allows_says_its_length():
    text = 'INCLUDE ItemID WHERE Items.GENRES IN ("' + "a" * MAX_EXPRESSION_CHARS + '")'
    with pytest.raises(FilterError, match="2,541 characters long; the limit is 2,500"):
        parse(text)


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_an_empty_expression_says_so_and_shows_one(text):
    with pytest.raises(FilterError, match="the filter expression is empty; write one such as INCLUDE"):
        parse(text)


def test_a_filter_error_is_a_config_error():
    assert isinstance(error("INCLUDE"), ConfigError)
