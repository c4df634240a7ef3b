"""`costs.Costs`: the cost model a request is estimated by, measured on the model at start-up, and what
it admits at the extremes of a request's shape (1,000 fold-in items, k=1000, 10,000 excluded ids)."""

import json

import pytest

from benchmarks.fake_model import fake_model
from container import codecs
from container.answers import CHUNK_ENTRIES, answer_chunks
from container.costs import Costs
from container.requests import MAX_EXCLUDE, MAX_FOLD_IN, MAX_K, Options, parse
from ncf.recommender import Recommender
from ncf.vocab import MAX_ID_CHARS


@pytest.fixture(scope="module")
def neumf(tmp_path_factory):
    """A NeuMF of the default widths with more items than a fold-in may give: per item, its MLP dominates."""
    folder = tmp_path_factory.mktemp("opt_ml") / "model"
    fake_model(folder, "neumf", users=300, items=MAX_FOLD_IN + 200, interactions=20_000, seed=0)
    return Recommender.load(folder)


@pytest.fixture(scope="module")
def costs(neumf):
    return Costs.measure(neumf)


def fold_in(items: int, k: int = 1, exclude: int = 0) -> dict:
    return {"user": 7, "items": list(range(1, items + 1)), "k": k, "exclude": list(range(1, exclude + 1))}


def test_a_fold_in_costs_something_per_item_however_the_timing_falls(costs):
    # Before: a 1-item and a 32-item solve were timed once each, cold, and the per-item cost clamped to 0
    assert costs.fold_in_item_s > 0
    # the floor: the largest fold-in is never costed below twice the smallest
    assert costs.fold_in_item_s * MAX_FOLD_IN >= costs.fold_in_s + costs.fold_in_user_s


def test_the_estimate_grows_with_every_dimension_of_a_request(costs):
    def seconds(record):
        return costs.seconds(parse(record, Options()))

    assert seconds(fold_in(MAX_FOLD_IN)) >= 2 * seconds(fold_in(1))
    assert seconds(fold_in(1, k=MAX_K)) > seconds(fold_in(1))
    assert seconds(fold_in(1, exclude=MAX_EXCLUDE)) > seconds(fold_in(1))
    assert seconds({"user": 7, "exclude": list(range(1, MAX_EXCLUDE + 1))}) > seconds({"user": 7})


def test_the_costliest_payload_per_byte_counts_the_largest_fold_in_too(costs):
    per_byte, record = costs.worst_per_byte
    for candidate in (fold_in(1), fold_in(MAX_FOLD_IN), {"items": [1] * MAX_FOLD_IN, "k": MAX_K}):
        line = json.dumps(candidate, separators=(",", ":")).encode() + b"\n"
        assert costs.seconds(parse(candidate, Options(k=MAX_K))) / len(line) <= per_byte * 1.000001, candidate


def test_a_batch_answer_is_cut_into_chunks_counting_what_it_echoes(neumf):
    # 41 fold-in lines of 1,000 unknown long ids: each answer lists them all as ignored. Before, the echo was not
    # counted, so all 41 answers (10.6 MB of JSON here, 61.9 MB with non-ASCII ids) were one chunk, built whole.
    ids = [f"{n:0{MAX_ID_CHARS}d}" for n in range(MAX_FOLD_IN)]
    body = "".join(json.dumps({"items": ids, "k": 1}) + "\n" for _ in range(41)).encode()
    chunks = [codecs.ENCODERS[codecs.JSONLINES]([chunk], len(chunk)) for chunk in
              answer_chunks(neumf, codecs.decode_jsonlines(body), Options())]
    sizes = [sum(len(piece) for piece in pieces) for pieces in map(list, chunks)]
    assert sum(sizes) > 41 * MAX_FOLD_IN * MAX_ID_CHARS  # every line answered, its ids echoed
    assert max(sizes) <= CHUNK_ENTRIES * 64 + 2 * MAX_FOLD_IN * (MAX_ID_CHARS + 4), sizes


# ---------------------------------------------------------------------------------------------- rules

def rules_costs(**fields):
    """Costs as if measured, with round binary fractions so that the sums below are exact."""
    from container.costs import Costs

    base = dict(line_s=0.0, user_s=1.0, similar_s=1.0, entry_s=2.0 ** -10, pair_s=0.0, n_items=400,
                record_bytes=64, entry_bytes=32, filter_s=2.0 ** -4, compile_char_s=2.0 ** -8, promotion_s=2.0 ** -3,
                diversity_entry_s=2.0 ** -6, diversity_all_s=4.0, column_entry_s=2.0 ** -9, rank_s=0.5,
                rank_item_s=2.0 ** -7, named_chars=16, column_bytes={"TITLE": 40, "GENRES": 24})
    return Costs(**{**base, **fields})


def test_each_rule_adds_what_it_costs_to_a_records_estimate():
    costs = rules_costs()
    expression = 'INCLUDE ItemID WHERE Items.GENRES IN ("Comedy")'
    chars = len(expression)

    def extra(rules: dict, k: int = 10, compiled=None) -> float:
        return costs.seconds(parse({"user": 1, "k": k, **rules}, Options()), compiled) - costs.seconds(
            parse({"user": 1, "k": k}, Options()))

    assert extra({"filter": expression}) == 2.0 ** -4 + chars * 2.0 ** -8  # applied, and compiled
    compiled: set = set()
    assert extra({"filter": expression}, compiled=compiled) == 2.0 ** -4 + chars * 2.0 ** -8
    assert extra({"filter": expression}, compiled=compiled) == 2.0 ** -4  # the same request compiles it once
    assert extra({"filterName": "any"}) == 2.0 ** -4 + 16 * 2.0 ** -8  # the longest deploy-time filter
    promotions = [{"name": n, "percentPromotedItems": 10, "filterName": "any"} for n in "ab"]
    assert extra({"promotions": promotions}) == 2 * (2.0 ** -3 + 2.0 ** -4 + 16 * 2.0 ** -8)
    assert extra({"diversity": {"column": "GENRES", "maxPerValue": 10}}) == 10 * 2.0 ** -6  # a cap that cannot bind
    assert extra({"diversity": {"column": "GENRES", "maxPerValue": 9}}) == 4.0  # one that can: the whole catalogue
    assert extra({"metadataColumns": ["TITLE", "GENRES"]}, k=20) == 2 * 20 * 2.0 ** -9
    rank = costs.seconds(parse({"user": 1, "inputList": list(range(8))}, Options()))
    assert rank == 0.5 + 8 * (2.0 ** -7 + 2.0 ** -10)


def test_an_expression_is_costed_per_character_per_condition_and_per_character_of_its_values():
    costs = rules_costs(condition_s=2.0 ** -6, value_char_s=2.0 ** -12, named_conditions=3)
    expression = 'INCLUDE ItemID WHERE Items.GENRES IN ("a.b") OR Items.PRICE > 2.5'  # 3 dots outside strings

    def extra(rules: dict) -> float:
        return costs.seconds(parse({"user": 1, **rules}, Options())) - costs.seconds(parse({"user": 1}, Options()))

    assert extra({"filter": expression}) == 2.0 ** -4 + len(expression) * 2.0 ** -8 + 3 * 2.0 ** -6
    values = {"G": '"x","y"', "LONG": "1," * 499 + "1"}
    assert extra({"filter": expression, "filterValues": values}) == extra({"filter": expression}) + (
        1 + 7 + 4 + 999) * 2.0 ** -12
    assert extra({"filterName": "any"}) == 2.0 ** -4 + 16 * 2.0 ** -8 + 3 * 2.0 ** -6


@pytest.fixture(scope="module")
def shop_costs(shop):
    return Costs.measure(shop)


def fastest_compile(metadata, expression: str, values: dict | None = None) -> float:
    """The least seconds of 3 to parse and compile `expression` with `values` from a new cache."""
    import time

    from ncf.filters import FilterCache

    runs = []
    for _ in range(3):
        start = time.perf_counter()
        FilterCache(metadata, metadata.n_items).get(expression, values)
        runs.append(time.perf_counter() - start)
    return min(runs)


@pytest.mark.parametrize("expression, values", [
    # 145 conditions: calibrated on one-condition expressions, the estimate was a tenth of this
    ("INCLUDE ItemID WHERE " + " OR ".join(f"Items.PRICE>{n % 10}" for n in range(145)), None),
    ("INCLUDE ItemID WHERE " + " OR ".join('Items.GENRES NOT IN ("Drama")' for _ in range(75)), None),
    ('INCLUDE ItemID WHERE Items.GENRES IN (' + ",".join(['"Comedy"'] * 270) + ")", None),
    # 25 x 1,000 characters of values: not counted at all before
    ("INCLUDE ItemID WHERE Items.GENRES IN (" + ", ".join(f"$A{n}" for n in range(25)) + ")",
     {f"A{n}": f"{n}," + ",".join(["1"] * 499) for n in range(25)}),
    ("INCLUDE ItemID WHERE Items.GENRES IN ($G)", {"G": ",".join(['"Drama"'] * 124)}),
    ("INCLUDE ItemID WHERE Items.PRICE IN ($P) OR Items.PRICE < $Q",
     {"P": ",".join(f"{n}.5" for n in range(180)), "Q": "3"}),
], ids=["numeric conditions", "NOT IN conditions", "IN list", "25 placeholders", "repeated value", "numbers"])
def test_a_filters_compile_is_estimated_at_what_it_takes_whatever_its_shape(shop, shop_costs, expression, values):
    assert len(expression) <= 2500
    request = parse({"user": 1, "filter": expression, **({"filterValues": values} if values else {})}, Options())
    estimate = shop_costs.seconds(request) - shop_costs.seconds(parse({"user": 1}, Options())) - shop_costs.filter_s
    assert estimate >= 0.5 * fastest_compile(shop.item_metadata, expression, values), estimate


def test_many_conditions_over_a_large_catalogue_are_estimated_at_what_they_take():
    """Each condition is a pass over the items: on a million, 145 of them cost ten times what their characters
    did when costed per character of a one-condition expression."""
    import numpy as np

    from container.rule_costs import measure_compiles
    from container.rules import RuleBook
    from ncf.metadata import Column, ItemMetadata, Strings

    n = 1_000_000
    prices = np.random.default_rng(0).uniform(0, 100, n).round(1)
    text = Strings(np.zeros(0, np.uint8), np.zeros(n + 1, np.int64))  # the texts play no part in a comparison
    metadata = ItemMetadata(n, [], [Column("PRICE", "numeric", n, text, numbers=prices)])
    costs = rules_costs(**measure_compiles(RuleBook(metadata, n)))
    for expression, values in [
            ("INCLUDE ItemID WHERE " + " OR ".join(f"Items.PRICE>{i % 10}" for i in range(145)), None),
            ("INCLUDE ItemID WHERE Items.PRICE IN ($P)", {"P": ",".join(f"{i}.5" for i in range(180))})]:
        request = parse({"user": 1, "filter": expression, **({"filterValues": values} if values else {})}, Options())
        estimate = costs.seconds(request) - costs.seconds(parse({"user": 1}, Options())) - costs.filter_s
        real = fastest_compile(metadata, expression, values)
        assert estimate >= 0.5 * real, (expression[:60], estimate, real)


def test_an_answers_bytes_count_the_metadata_columns_it_carries():
    costs = rules_costs()
    plain = costs.answer_bytes(parse({"user": 1, "k": 20}, Options()))
    described = costs.answer_bytes(parse({"user": 1, "k": 20, "metadataColumns": ["TITLE", "GENRES"]}, Options()))
    assert described - plain == 20 * (16 + 40 + 24)  # `, "metadata": {}` and each column's longest value


def test_the_costs_of_rules_are_measured_on_the_models_own_metadata(shop):
    costs = Costs.measure(shop)
    assert costs.compile_char_s > 0 and costs.rank_item_s > 0
    assert min(costs.filter_s, costs.promotion_s, costs.diversity_entry_s, costs.diversity_all_s,
               costs.column_entry_s, costs.rank_s) >= 0
    # TITLE's longest value, "Café 199", is 13 bytes of JSON ("Caf\u00e9 199"), with its key and separators
    assert costs.column_bytes["TITLE"] == len("TITLE") + 6 + len(json.dumps(f"Caf\u00e9 {len(shop.items) - 1}"))
    per_byte, _ = costs.worst_per_byte
    for line in costs.rule_lines:  # the diversity line among them: the model has cappable columns
        assert costs.seconds(parse(json.loads(line), Options(k=MAX_K))) / len(line) <= per_byte
    assert any(b'"diversity"' in line for line in costs.rule_lines)
    assert not any(b'"diversity"' in line for line in Costs.measure(neumf_plain(shop)).rule_lines)


def neumf_plain(shop):
    """The same recommender without its item metadata."""
    import dataclasses

    return Recommender(dataclasses.replace(shop.artifact, item_metadata=None))


# ---------------------------------------------------------------------------------------------- answer size

def realtime_limits(**fields) -> "Limits":
    """A real-time endpoint's limits over `rules_costs`: work never binds, the 6 MB answer does."""
    from container.limits import Limits

    costs = rules_costs(user_s=2.0 ** -30, filter_s=2.0 ** -30, rule_error_bytes=40, **fields)
    return Limits(costs=costs, budget_s=30.0, deadline_s=60, answer_bytes=6 * 1024 * 1024, payload_mb=6, fits=True)


def lines(record: dict, count: int) -> list:
    return codecs.decode_jsonlines((json.dumps(record) + "\n").encode() * count)


def test_records_sharing_a_valid_filter_repeat_nothing_in_the_answer(shop):
    from container.errors import TooLarge
    from container.rules import RuleBook

    user = shop.users.decode([0])[0]
    records = lines({"user": user, "k": 1, "filter": "EXCLUDE ItemID WHERE Items.PRICE > 50"}, 10_000)
    limits, book = realtime_limits(), RuleBook(shop.item_metadata, len(shop.items))
    limits.check(records, Options(), book)  # before: each record counted as failing, 413 "at most 0 entries"
    with pytest.raises(TooLarge):  # without the book, each is still counted as failing: the worst it could be
        limits.check(records, Options())
    # a rule that fails is counted at the error its answer carries
    bad = lines({"user": user, "k": 1, "filter": f"EXCLUDE ItemID WHERE Items.{'P' * 2000} > 50"}, 3_000)
    with pytest.raises(TooLarge) as caught:
        limits.check(bad, Options(), book)
    assert 2_000 <= caught.value.details["max_records"] < 3_000 and "max_entries" not in caught.value.details
    assert "even with no entries" in caught.value.message and "send at most" in caught.value.message


def test_an_answer_too_large_never_advises_asking_for_0_entries():
    from container.errors import TooLarge

    limits = realtime_limits()
    records = lines({"user": "é" * 200, "k": 1}, 6_000)  # each id echoed as 1,200 bytes of JSON: no room left
    with pytest.raises(TooLarge) as caught:
        limits.check(records, Options())
    assert caught.value.details.get("max_entries", 1) > 0, caught.value.message
    assert 0 < caught.value.details["max_records"] < 6_000
