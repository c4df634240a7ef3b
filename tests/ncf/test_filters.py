"""Compiled filters: what each operator, placeholder and `|` lets through over item metadata, errors against
the metadata at their column, the cache, and compiled filters against a brute-force evaluator over random
metadata and expressions. (Reading expressions: test_filter_syntax.py.)"""

import operator
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncf.filters import (MAX_EXPRESSION_CHARS, FilterCache, FilterError, ItemFilter, check, compile, parse,
                         parse_values)
from ncf.metadata import ItemMetadata

# Six movies in MovieLens' shape; item 4 has no metadata at all; "x" is a metadata-only row after them.
MOVIES = {
    "GENRES": ["Comedy|Drama", "Drama", "Horror", "Comedy", "", "Comedy"],
    "YEAR": ["1995", "2001", "1980", "2010", "", "1999"],
    "KIDS": ["true", "false", "FALSE", "True", "", "true"],
    "TITLE": ["Toy Story (1995)", "Amélie (2001)", "The Shining (1980)", "Up (2010)", "", "Extra (1999)"],
}
N = 5


@pytest.fixture(scope="module")
def movies():
    return ItemMetadata.from_table(np.array([0, 1, 2, 3, 4, -1]), ["a", "b", "c", "d", "e", "x"], MOVIES, N)


def passes(expression, metadata, values=None, seen=None):
    """The item indices the filter lets through."""
    return np.flatnonzero(compile(expression, metadata, N, values).allowed(seen)).tolist()


def error(expression, metadata=None, values=None) -> FilterError:
    with pytest.raises(FilterError) as caught:
        compile(expression, metadata, N, values)
    return caught.value


def column_of(expression, fragment):
    """The 1-based column of `fragment`'s first occurrence in `expression`."""
    return expression.index(fragment) + 1


# The language


def test_include_keeps_only_the_items_that_match_and_exclude_removes_them(movies):
    assert passes('INCLUDE ItemID WHERE Items.GENRES IN ("Comedy")', movies) == [0, 3]
    assert passes('EXCLUDE ItemID WHERE Items.GENRES IN ("Comedy", "Drama")', movies) == [2, 4]


def test_in_matches_an_item_when_any_of_its_categories_is_listed_exactly(movies):
    assert passes('INCLUDE ItemID WHERE Items.GENRES IN ("Drama")', movies) == [0, 1]
    assert passes('INCLUDE ItemID WHERE Items.GENRES IN ("drama", "Comedy|Drama")', movies) == []


def test_not_in_is_the_items_that_have_a_value_and_none_of_the_listed_ones(movies):
    assert passes('INCLUDE ItemID WHERE Items.GENRES NOT IN ("Comedy")', movies) == [1, 2]


def test_a_missing_value_matches_neither_in_nor_not_in(movies):
    for condition in ('Items.GENRES IN ("Comedy")', 'Items.GENRES NOT IN ("Comedy")', "Items.YEAR < 3000",
                      'Items.KIDS IN ("true", "false")', 'Items.KIDS NOT IN ("true")', "Items.YEAR >= 0"):
        assert 4 not in passes(f"INCLUDE ItemID WHERE {condition}", movies), condition
        assert 4 in passes(f"EXCLUDE ItemID WHERE {condition}", movies), condition


@pytest.mark.parametrize("op, expected", [("=", [0]), ("<", [2]), ("<=", [0, 2]), (">", [1, 3]), (">=", [0, 1, 3])])
def test_numeric_columns_compare_with_each_operator(movies, op, expected):
    assert passes(f"INCLUDE ItemID WHERE Items.YEAR {op} 1995", movies) == expected


def test_numbers_may_be_signed_decimal_or_in_exponent_form(movies):
    assert passes("INCLUDE ItemID WHERE Items.YEAR > 1.9955e3", movies) == [1, 3]
    assert passes("INCLUDE ItemID WHERE Items.YEAR > -5 AND Items.YEAR < +1990.5", movies) == [2]


def test_in_on_a_numeric_column_compares_values_as_numbers(movies):
    assert passes('INCLUDE ItemID WHERE Items.YEAR IN ("1995.0", "2010")', movies) == [0, 3]


def test_booleans_match_true_or_false_in_any_case(movies):
    assert passes('INCLUDE ItemID WHERE Items.KIDS IN ("TRUE")', movies) == [0, 3]
    assert passes('INCLUDE ItemID WHERE Items.KIDS NOT IN ("true")', movies) == [1, 2]


def test_and_binds_tighter_than_or_and_parentheses_regroup(movies):
    loose = 'INCLUDE ItemID WHERE Items.GENRES IN ("Horror") OR Items.GENRES IN ("Comedy") AND Items.YEAR > 2000'
    grouped = 'INCLUDE ItemID WHERE (Items.GENRES IN ("Horror") OR Items.GENRES IN ("Comedy")) AND Items.YEAR > 2000'
    assert passes(loose, movies) == [2, 3]
    assert passes(grouped, movies) == [3]


def test_keywords_and_dataset_names_are_case_insensitive_and_so_are_column_names(movies):
    assert passes('include itemid where ITEMS.genres in ("Comedy") aNd items.Year > 2000', movies) == [3]


def test_expressions_joined_by_a_pipe_include_the_union_less_every_exclusion(movies):
    both = ('INCLUDE ItemID WHERE Items.GENRES IN ("Horror") | INCLUDE ItemID WHERE Items.YEAR > 2005 | '
            'EXCLUDE ItemID WHERE Items.KIDS IN ("true")')
    assert passes(both, movies) == [2]
    two_exclusions = "EXCLUDE ItemID WHERE Items.YEAR < 1990 | EXCLUDE ItemID WHERE Items.YEAR > 2005"
    assert passes(two_exclusions, movies) == [0, 1, 4]


def test_interactions_all_event_types_are_the_users_seen_items(movies):
    assert passes('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', movies, seen=[1, 3]) == [0, 2, 4]
    assert passes('INCLUDE ItemID WHERE interactions.event_type IN ("*")', movies, seen=[1, 3]) == [1, 3]
    assert passes('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', movies, seen=None) == []


def test_interactions_rules_join_items_rules_with_a_pipe(movies):
    text = 'INCLUDE ItemID WHERE Items.GENRES IN ("Comedy") | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")'
    assert compile(text, movies, N).per_user
    assert passes(text, movies, seen=[0]) == [3]


def test_interactions_rules_need_no_item_metadata():
    assert passes('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', None, seen=[2]) == [0, 1, 3, 4]


def test_a_filter_that_does_not_depend_on_the_user_is_one_static_mask(movies):
    items = compile('EXCLUDE ItemID WHERE Items.GENRES IN ("Comedy")', movies, N)
    assert not items.per_user and items.static().tolist() == [False, True, True, False, True]


def test_compiled_masks_cover_the_models_items_only_and_are_read_only(movies):
    compiled = compile('INCLUDE ItemID WHERE Items.GENRES IN ("Comedy")', movies, N)
    assert compiled.include.shape == (N,)
    with pytest.raises(ValueError):
        compiled.include[0] = False


# Placeholders and filterValues


def test_placeholders_take_their_values_from_filter_values(movies):
    text = "INCLUDE ItemID WHERE Items.GENRES IN ($GENRE) AND Items.YEAR > $YEAR"
    assert parse(text).placeholders == ("GENRE", "YEAR")
    values = parse_values({"GENRE": '"Comedy","Drama"', "YEAR": "1996"})
    assert values == {"GENRE": ("Comedy", "Drama"), "YEAR": ("1996",)}
    assert passes(text, movies, values) == [1, 3]


def test_an_in_list_mixes_literals_and_placeholders(movies):
    assert passes('INCLUDE ItemID WHERE Items.GENRES IN ("Horror", $G)', movies, {"G": ("Drama",)}) == [0, 1, 2]


def test_placeholder_names_are_case_sensitive(movies):
    text = "INCLUDE ItemID WHERE Items.GENRES IN ($GENRE)"
    e = error(text, movies, {"genre": ("Comedy",)})
    assert "genre" in str(e) and "$GENRE" in str(e) and "case-sensitive" in str(e)


def test_an_include_expression_needs_a_value_for_each_placeholder(movies):
    text = "INCLUDE ItemID WHERE Items.GENRES IN ($GENRE) AND Items.YEAR > $YEAR"
    e = error(text, movies, {"GENRE": ("Comedy",)})
    assert "no YEAR" in str(e) and e.column == column_of(text, "$YEAR")


def test_an_exclude_condition_whose_placeholder_has_no_value_is_left_out(movies):
    text = "EXCLUDE ItemID WHERE Items.GENRES IN ($GENRE) AND Items.YEAR > $YEAR"
    assert passes(text, movies, {"YEAR": ("2000",)}) == [0, 2, 4]
    assert passes(text.replace("AND", "OR"), movies, {"GENRE": ("Horror",)}) == [0, 1, 3, 4]


def test_an_exclude_expression_left_with_no_condition_excludes_nothing(movies):
    text = 'INCLUDE ItemID WHERE Items.YEAR > 1990 | EXCLUDE ItemID WHERE Items.GENRES IN ($G) OR Items.KIDS IN ($K)'
    assert passes(text, movies) == [0, 1, 3]
    assert passes("EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($EVENT)", movies, seen=[0]) == [0, 1, 2, 3, 4]
    assert compile("EXCLUDE ItemID WHERE Items.YEAR < $Y", movies, N).static() is None


def test_an_interactions_placeholder_takes_only_all_event_types(movies):
    text = "EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($EVENT)"
    assert passes(text, movies, parse_values({"EVENT": '"*"'}), seen=[0]) == [1, 2, 3, 4]
    e = error(text, movies, parse_values({"EVENT": '"click"'}))
    assert "no event types" in str(e) and e.column == column_of(text, "$EVENT")


def test_a_comparison_takes_exactly_one_number(movies):
    text = "INCLUDE ItemID WHERE Items.YEAR < $YEAR"
    for bad, said in [(("1990", "2000"), "exactly one value; $YEAR has 2"), (("soon",), "not a finite number"),
                      (("nan",), "not a finite number")]:
        e = error(text, movies, {"YEAR": bad})
        assert said in str(e) and e.column == column_of(text, "$YEAR")
    e = error("INCLUDE ItemID WHERE Items.YEAR < 1e999", movies)
    assert "not a finite number" in str(e) and e.column == column_of("INCLUDE ItemID WHERE Items.YEAR < 1e999", "1e")


@pytest.mark.parametrize("value", ["nan", "1e309", "1_0", "١٢", "inf"])
def test_numbers_anywhere_are_what_the_grammars_number_token_reads_and_finite(movies, value):
    for op in ("IN", "NOT IN"):  # NOT IN ("nan") once let every item with a year through
        text = f'INCLUDE ItemID WHERE Items.YEAR {op} ("1995", "{value}")'
        e = error(text, movies)
        assert f"{value!r} is not a number" in str(e) and e.column == column_of(text, f'"{value}"')
    for expression in ("INCLUDE ItemID WHERE Items.YEAR IN ($Y)", "INCLUDE ItemID WHERE Items.YEAR < $Y"):
        e = error(expression, movies, parse_values({"Y": f'"{value}"'}))
        assert repr(value) in str(e) and "number" in str(e) and e.column == column_of(expression, "$Y")
    if value in ("1_0", "١٢"):  # unquoted, these are no NUMBER token at all
        with pytest.raises(FilterError, match="filterValues\\['Y'\\], column"):
            parse_values({"Y": value})
        with pytest.raises(FilterError, match="expected"):  # 1 then a stray _0; no digit at all
            parse(f"INCLUDE ItemID WHERE Items.YEAR < {value}")


# Errors against the metadata name their column


@pytest.mark.parametrize("text, at, said", [
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a")', "GENRE", "unknown column Items.GENRE; the columns are GENRES, "
                                                            "YEAR, KIDS, TITLE"),
    ("INCLUDE ItemID WHERE Items.GENRES > 3", ">", "GENRES is a categorical column: compare it with IN or NOT IN, "
                                                    "not >"),
    ("INCLUDE ItemID WHERE Items.KIDS = 1", "=", "KIDS is a boolean column"),
    ('INCLUDE ItemID WHERE Items.KIDS IN ("true", "maybe")', '"maybe"', "'maybe' is neither true nor false"),
    ('INCLUDE ItemID WHERE Items.YEAR NOT IN ("1995", "soon")', '"soon"', "'soon' is not a number"),
    ('INCLUDE ItemID WHERE Items.GENRES IN ("a") | EXCLUDE ItemID WHERE Items.YEAR IN ("x")', '"x"', "not a number"),
])
def test_an_error_against_the_metadata_names_the_column_of_what_is_wrong(movies, text, at, said):
    e = error(text, movies)
    assert said in str(e) and e.column == column_of(text, at)


def test_a_model_without_item_metadata_says_so_at_the_items_condition():
    text = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*") | INCLUDE ItemID WHERE Items.GENRES IN ("a")'
    e = error(text, None)
    assert "trained without an items channel" in str(e) and e.column == column_of(text, "Items.")


def test_a_bad_value_given_through_a_placeholder_names_the_placeholder(movies):
    text = "INCLUDE ItemID WHERE Items.KIDS IN ($KIDS)"
    e = error(text, movies, parse_values({"KIDS": '"true", "maybe"'}))
    assert "$KIDS is ['true', 'maybe']" in str(e) and e.column == column_of(text, "$KIDS")


def test_values_that_are_not_parsed_filter_values_are_refused(movies):
    with pytest.raises(FilterError, match="sequence of strings"):
        compile("INCLUDE ItemID WHERE Items.GENRES IN ($G)", movies, N, {"G": "Comedy"})


def test_the_deepest_nesting_the_length_allows_compiles(movies):
    depth, condition = 0, 'Items.GENRES IN ("Comedy")'
    while len(condition) < MAX_EXPRESSION_CHARS - 60:  # alternate levels that change nothing
        condition = f"(Items.YEAR < 0 OR {condition})" if depth % 2 else f"(Items.YEAR > 0 AND {condition})"
        depth += 1
    assert depth > 100
    assert passes(f"INCLUDE ItemID WHERE {condition}", movies) == [0, 3]


def test_check_finds_every_error_that_needs_no_values_before_a_request_does(movies):
    assert check("INCLUDE ItemID WHERE Items.GENRES IN ($G) AND Items.YEAR > $Y", movies).placeholders == ("G", "Y")
    text = "INCLUDE ItemID WHERE Items.GENRES IN ($G) OR Items.YEAR IN ($Y, \"x\")"
    with pytest.raises(FilterError, match="not a number") as caught:
        check(text, movies)
    assert caught.value.column == column_of(text, '"x"')
    with pytest.raises(FilterError, match="unknown column Items.PRICE"):
        check("EXCLUDE ItemID WHERE Items.PRICE < $P", movies)


# The cache


def test_the_cache_compiles_an_expression_and_its_values_once(movies):
    cache = FilterCache(movies, N)
    text = "INCLUDE ItemID WHERE Items.GENRES IN ($G)"
    comedy = cache.get(text, {"G": '"Comedy"'})
    assert cache.get(text, {"G": '"Comedy"'}) is comedy
    assert np.flatnonzero(cache.get(text, {"G": '"Drama"'}).allowed()).tolist() == [0, 1]
    assert cache.get('EXCLUDE ItemID WHERE Items.GENRES IN ("a")', None) is cache.get(
        'EXCLUDE ItemID WHERE Items.GENRES IN ("a")', {})


def test_the_cache_forgets_the_least_recently_used_filter_past_its_size(movies):
    cache = FilterCache(movies, N, size=2)
    texts = [f"INCLUDE ItemID WHERE Items.YEAR > {y}" for y in (1990, 2000, 2005)]
    first, second = cache.get(texts[0]), cache.get(texts[1])
    assert cache.get(texts[0]) is first  # now the most recent
    cache.get(texts[2])
    assert cache.get(texts[0]) is first and cache.get(texts[1]) is not second


def test_the_cache_raises_the_same_errors_and_keeps_none(movies):
    cache = FilterCache(movies, N)
    for _ in range(2):
        with pytest.raises(FilterError, match="no G"):
            cache.get("INCLUDE ItemID WHERE Items.GENRES IN ($G)", {})
        with pytest.raises(FilterError, match="filterValues\\['G'\\], column 1"):
            cache.get("INCLUDE ItemID WHERE Items.GENRES IN ($G)", {"G": "Comedy"})
        with pytest.raises(FilterError, match="is a string of quoted, comma-separated values"):
            cache.get("INCLUDE ItemID WHERE Items.GENRES IN ($G)", {"G": ["Comedy"]})
        with pytest.raises(FilterError, match="a filter expression is text, not dict"):
            cache.get({"INCLUDE": "ItemID"}, None)


def test_threads_sharing_a_cache_each_get_their_own_filter(movies):
    cache = FilterCache(movies, N, size=3)
    years = [1970, 1990, 1996, 2000, 2005, 2020]
    expected = {y: [i for i in range(N) if MOVIES["YEAR"][i] and float(MOVIES["YEAR"][i]) > y] for y in years}
    wrong = []

    def hammer(offset):
        for n in range(300):
            y = years[(n + offset) % len(years)]
            got = np.flatnonzero(cache.get("INCLUDE ItemID WHERE Items.YEAR > $Y", {"Y": str(y)}).allowed())
            if got.tolist() != expected[y]:
                wrong.append((y, got.tolist()))

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


# Against a brute-force evaluator

CATEGORIES = ["Comedy", "Drama", "Horror", "Sci-Fi"]
PLACEHOLDERS = {"GENRES": "G", "KIDS": "K", "PRICE": "N"}  # an IN placeholder per column; "X" for comparisons
OPERATORS = {"=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@st.composite
def tables(draw):
    """A few items' GENRES (multi-valued, some missing), PRICE (numbers, some missing), KIDS (booleans,
    some missing); each column keeps one value at least, so that its kind is what it was drawn as."""
    n = draw(st.integers(1, 9))
    genres = draw(st.lists(st.lists(st.sampled_from(CATEGORIES), max_size=3, unique=True), min_size=n, max_size=n))
    price = draw(st.lists(st.one_of(st.none(), st.sampled_from([0, 1, 2.5, 3, 10])), min_size=n, max_size=n))
    kids = draw(st.lists(st.sampled_from([None, "true", "false", "True", "FALSE"]), min_size=n, max_size=n))
    price[0] = 1 if price[0] is None else price[0]
    kids[0] = kids[0] or "true"
    return {"GENRES": ["|".join(g) for g in genres], "PRICE": ["" if p is None else str(p) for p in price],
            "KIDS": [k or "" for k in kids]}


def membership(draw, column):
    """(text, spec) of an IN or NOT IN condition over `column`."""
    pool = {"GENRES": CATEGORIES + ["Western"], "KIDS": ["true", "false", "TRUE"], "PRICE": ["1", "2.5", "3.0", "7"]}
    listed = draw(st.lists(st.one_of(st.sampled_from(pool[column]), st.just(None)), min_size=1, max_size=3))
    negated = draw(st.booleans())
    shown = ", ".join(f'"{v}"' if v is not None else f"${PLACEHOLDERS[column]}" for v in listed)
    dataset = draw(st.sampled_from(["Items", "items", "ITEMS"]))
    return (f"{dataset}.{column} {'NOT IN' if negated else 'IN'} ({shown})",
            ("in", column, negated, [v for v in listed if v is not None], PLACEHOLDERS[column] if None in listed
             else None))


def joined(draw, kind, parts):
    """AND or OR of (text, spec, kind) parts: parentheses where precedence needs them, and some where not."""
    word = kind.upper() if draw(st.booleans()) else kind.lower()
    texts = [f"({text})" if inner in ("and", "or") and not (kind == "or" and inner == "and") or draw(st.booleans())
             else text for text, _, inner in parts]
    return f" {word} ".join(texts), (kind, [spec for _, spec, _ in parts]), kind


@st.composite
def item_conditions(draw, depth=0):
    kind = draw(st.sampled_from(["in", "compare", "and", "or"] if depth < 3 else ["in", "compare"]))
    if kind == "in":
        return *membership(draw, draw(st.sampled_from(["GENRES", "KIDS", "PRICE"]))), kind
    if kind == "compare":
        op = draw(st.sampled_from(["=", "<", "<=", ">", ">="]))
        number = draw(st.one_of(st.sampled_from([0, 1, 2.5, 3, 10]), st.none()))
        return (f"Items.PRICE {op} {'$X' if number is None else number}",
                ("compare", op, number, "X" if number is None else None), kind)
    return joined(draw, kind, draw(st.lists(item_conditions(depth + 1), min_size=2, max_size=3)))


@st.composite
def interaction_conditions(draw, depth=0):
    kind = draw(st.sampled_from(["atom", "and", "or"] if depth < 2 else ["atom"]))
    if kind == "atom":
        placeholder = draw(st.booleans())
        every = '"*"'
        return (f"Interactions.EVENT_TYPE IN ({'$E' if placeholder else every})",
                ("seen", "E" if placeholder else None), kind)
    return joined(draw, kind, draw(st.lists(interaction_conditions(depth + 1), min_size=2, max_size=3)))


@st.composite
def filters(draw):
    table = draw(tables())
    n = len(table["GENRES"])
    clauses = []
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["INCLUDE", "EXCLUDE"]))
        text, spec, _ = draw(interaction_conditions() if draw(st.integers(0, 3)) == 0 else item_conditions())
        clauses.append((f"{action} ItemID WHERE {text}", action, spec))
    values = {"G": ("Drama", "Western"), "K": ("false",), "N": ("2.5", "10"), "X": ("2.5",), "E": ("*",)}
    given = {name: v for name, v in values.items() if draw(st.integers(0, 3))}  # 3 in 4 given
    seen = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n))
    return table, clauses, given, seen


def placeholders_in(spec):
    if spec[0] in ("and", "or"):
        return {p for part in spec[1] for p in placeholders_in(part)}
    return {spec[-1]} - {None}


def reference(spec, row, seen_item, values):
    """True / False for one item, None where the condition is left out for a placeholder without a value."""
    kind = spec[0]
    if kind in ("and", "or"):
        kept = [r for r in (reference(p, row, seen_item, values) for p in spec[1]) if r is not None]
        return None if not kept else (all(kept) if kind == "and" else any(kept))
    if spec[-1] is not None and spec[-1] not in values:
        return None
    if kind == "seen":
        return seen_item
    if kind == "compare":
        _, op, number, placeholder = spec
        number = float(values[placeholder][0]) if placeholder else number
        return row["PRICE"] != "" and OPERATORS[op](float(row["PRICE"]), number)
    _, column, negated, literals, placeholder = spec
    listed = literals + list(values[placeholder] if placeholder else [])
    text = row[column]
    if text == "":
        return False
    if column == "GENRES":
        hit = any(g in listed for g in text.split("|"))
    elif column == "KIDS":
        hit = text.lower() in [v.lower() for v in listed]
    else:
        hit = float(text) in [float(v) for v in listed]
    return not hit if negated else hit


def quoted(values):
    return ",".join(v if v[0].isdigit() and len(values) == 1 else f'"{v}"' for v in values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filters())
def test_a_compiled_filter_lets_through_exactly_what_a_brute_force_evaluation_does(case):
    table, clauses, given_values, seen = case
    n = len(table["GENRES"])
    metadata = ItemMetadata.from_table(np.arange(n), [str(i) for i in range(n)], table, n)
    text = " | ".join(c[0] for c in clauses)
    used = {p for c in clauses for p in placeholders_in(c[2])}
    raw = {name: quoted(v) for name, v in given_values.items() if name in used}
    values = parse_values(raw)
    missing = [p for c in clauses if c[1] == "INCLUDE" for p in placeholders_in(c[2]) if p not in values]
    if missing:
        with pytest.raises(FilterError, match="INCLUDE expressions need a value for each placeholder"):
            FilterCache(metadata, n).get(text, raw)
        return
    expected = []
    for i in range(n):
        row = {column: table[column][i] for column in table}
        verdicts = {action: [reference(spec, row, i in seen, values) for _, a, spec in clauses if a == action]
                    for action in ("INCLUDE", "EXCLUDE")}
        included = not verdicts["INCLUDE"] or any(verdicts["INCLUDE"])
        if included and not any(v is True for v in verdicts["EXCLUDE"]):
            expected.append(i)
    compiled = FilterCache(metadata, n).get(text, raw)
    assert isinstance(compiled, ItemFilter)
    assert np.flatnonzero(compiled.allowed(np.array(seen, dtype=np.int64))).tolist() == expected, text
