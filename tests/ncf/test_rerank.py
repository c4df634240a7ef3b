"""Promotions and diversity (#32): shares of the k slots for items passing a promotion's own rule, and a cap
per metadata value, checked against a plain reference that walks every candidate in score order."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncf.errors import ConfigError
from ncf.filters import ItemFilter
from ncf.metadata import ItemMetadata
from ncf.rerank import Diversity, Pool, Promotion, assemble
from test_recommender import exact_recommender, item_filters, options_allow, reference_order, user_logits

N_ITEMS = 600  # above the capped shortlist of 200 at small k, so the pass past it is exercised


def metadata(seed: int, n_items: int = N_ITEMS) -> ItemMetadata:
    """A categorical `genres` column (some items with two genres, one rare genre, some missing) and a
    boolean `in_stock` column (some missing)."""
    rng = np.random.default_rng(seed)
    genres = np.array(["Comedy", "Drama", "Action", "Horror"])
    first = genres[rng.choice(4, n_items, p=[0.5, 0.3, 0.17, 0.03])]
    second = np.where(rng.random(n_items) < 0.3, "|" + genres[rng.integers(0, 4, n_items)], "")
    text = np.where(rng.random(n_items) < 0.1, "", np.char.add(first, second)).tolist()
    stock = np.where(rng.random(n_items) < 0.1, "", np.where(rng.random(n_items) < 0.5, "true", "FALSE")).tolist()
    return ItemMetadata.from_table(np.arange(n_items), [str(i) for i in range(n_items)],
                                   {"genres": text, "in_stock": stock}, n_items)


def values_of(meta: ItemMetadata, name: str, item: int) -> set[str]:
    """An item's values for the cap, read from the column's text as given: `A|B` is {A, B}, missing is {}."""
    text = meta.texts(name, [item])[0]
    if text is None:
        return set()
    column = meta.find(name)
    return {text.lower()} if column.kind == "boolean" else {p.strip() for p in text.split("|")}


def reference(k: int, main: list[int], promotions: list[tuple[str, int, list[int]]], cap) -> tuple[list, list]:
    """What the slots hold, order of placement aside: each promotion's items `(name, item)` in turn, then the
    rest, every list walked whole in score order, an item entering while `cap(item)` allows it."""
    taken, promoted = set(), []
    for name, slots, order in promotions:
        mine = []
        for item in order:
            if len(mine) == min(slots, k - len(promoted)):
                break
            if item not in taken and cap(item):
                taken.add(item)
                mine.append((name, item))
        promoted += mine
    others = []
    for item in main:
        if len(others) == k - len(promoted):
            break
        if item not in taken and cap(item):
            others.append(item)
    return promoted, others


def caps(meta: ItemMetadata | None, name: str, limit: int):
    counts: dict = {}

    def cap(item: int) -> bool:
        if meta is None:
            return True
        values = values_of(meta, name, item)
        if any(counts.get(v, 0) >= limit for v in values):
            return False
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        return True

    return cap


@pytest.mark.parametrize("percent, k, slots", [(25, 10, 3), (20, 10, 2), (15, 10, 2), (14, 10, 1), (1, 10, 1),
                                                (50, 5, 3), (100, 7, 7), (30, 1, 1)])
def test_a_promotion_takes_its_percent_of_the_slots_rounded_half_up_and_at_least_one(percent, k, slots):
    assert Promotion("p", percent, ItemFilter(3)).slots(k) == slots


@pytest.mark.parametrize("name, percent, rule, message", [
    ("", 10, ItemFilter(3), "needs a name"), ("p", 0, ItemFilter(3), "from 1 to 100, got 0"),
    ("p", 101, ItemFilter(3), "got 101"), ("p", 2.5, ItemFilter(3), "got 2.5"), ("p", True, ItemFilter(3), "got True"),
    ("p", 10, "GENRES = 'x'", "must be an ItemFilter, got str")])
def test_a_bad_promotion_is_refused_saying_what_is_wrong(name, percent, rule, message):
    with pytest.raises(ConfigError, match=message):
        Promotion(name, percent, rule)


def test_diversity_refuses_numeric_columns_missing_columns_and_caps_below_one():
    meta = ItemMetadata.from_table(np.arange(3), ["a", "b", "c"], {"price": ["1", "2.5", ""], "genre": ["x", "y", ""]}, 3)
    with pytest.raises(ConfigError, match="a numeric column cannot be capped per value"):
        Diversity.of(meta, "PRICE", 2)
    with pytest.raises(ConfigError, match="no such item metadata column; the columns are \\['price', 'genre'\\]"):
        Diversity.of(meta, "brand", 2)
    with pytest.raises(ConfigError, match="this model has no item metadata"):
        Diversity.of(None, "genre", 2)
    with pytest.raises(ConfigError, match="max_per_value must be an integer >= 1, got 0"):
        Diversity.of(meta, "Genre", 0)
    assert Diversity.of(meta, "GENRE", 1).column.name == "genre"


def test_a_pool_gives_its_shortlist_then_the_rest_in_the_same_order():
    scores = np.array([0.5, -np.inf, 0.9, 0.5, 0.1, 0.9, 0.3])
    assert [i for i, _ in Pool(scores, np.array([2, 5]), complete=False).walk(None)] == [2, 5, 0, 3, 6, 4]
    assert [i for i, _ in Pool(scores, np.array([2, 5]), complete=True).walk(None)] == [2, 5]


def test_a_capped_answer_goes_past_its_shortlist_only_when_it_must_and_may_come_back_short():
    meta = ItemMetadata.from_table(np.arange(6), list("abcdef"), {"g": ["x", "x", "x", "y", "", "x"]}, 6)
    scores = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    shortlist = Pool(scores, np.array([0, 1]), complete=False)
    indices, _, names = assemble(3, shortlist, [], Diversity(meta.find("g"), 1), None)
    assert indices.tolist() == [0, 3, 4] and names == [None] * 3  # y and the missing value come after the shortlist
    indices, values, _ = assemble(5, Pool(scores, np.arange(6), True), [], Diversity(meta.find("g"), 1), None)
    assert indices.tolist() == [0, 3, 4] and values.tolist() == [6.0, 3.0, 2.0]  # the caps allow no more


@st.composite
def promotion_lists(draw, n_items: int = N_ITEMS):
    count = draw(st.integers(0, 3))
    return [Promotion(f"promo {n}", draw(st.integers(1, 100)), draw(item_filters(n_items))) for n in range(count)]


@settings(max_examples=50, deadline=None)
@given(kind=st.sampled_from(["mf", "neumf"]), promotions=promotion_lists(), rule=st.none() | item_filters(N_ITEMS),
       k=st.integers(1, 40), exclude_seen=st.booleans(), exclude=st.lists(st.integers(0, N_ITEMS - 1), max_size=30),
       cap=st.none() | st.tuples(st.sampled_from(["genres", "in_stock"]), st.integers(1, 4)),
       meta_seed=st.integers(0, 3))
def test_promotions_and_caps_fill_the_slots_as_a_walk_over_every_candidate_in_score_order(
        kind, promotions, rule, k, exclude_seen, exclude, cap, meta_seed):
    rec = exact_recommender(kind, N_ITEMS)
    meta = metadata(meta_seed)
    diversity = Diversity.of(meta, cap[0], cap[1]) if cap else None
    exclude = rec.items.decode(np.array(exclude, dtype=np.int64))
    users = rec.users.decode(np.arange(len(rec.users))) + ["new"]
    got = rec.recommend_many(users, k, exclude_seen=exclude_seen, exclude=exclude, rule=rule,
                             promotions=promotions, diversity=diversity)
    for user, r in zip(users, got):
        u = int(rec.users.lookup([user])[0])
        seen = rec.artifact.seen.row(u) if u >= 0 else None
        if u >= 0:
            scores = user_logits(rec, u)
        else:
            scores = rec.artifact.popularity / max(rec.artifact.popularity.max(), 1)
        options = options_allow(rec, seen, exclude_seen, exclude)
        main = reference_order(scores, options & (rule.allowed(seen) if rule else True))
        shares = [(p.name, p.slots(k), reference_order(scores, options & p.rule.allowed(seen))) for p in promotions]
        promoted, others = reference(k, main, shares, caps(meta if cap else None, *(cap or ("", 0))))

        in_answer = list(zip(r.promoted or [None] * len(r.indices), r.indices))
        assert [i for name, i in in_answer if name is None] == others
        assert sorted(p for p in in_answer if p[0] is not None) == sorted(promoted)
        promoted_order = [i for name, i in in_answer if name is not None]
        assert promoted_order == sorted(promoted_order, key=lambda i: (-scores[i], i))  # sorted among themselves
        for name, i in in_answer:
            rule_of = {p.name: p.rule for p in promotions}.get(name, rule)
            assert options[i] and (rule_of is None or rule_of.allowed(seen)[i])
        assert r.promoted == (tuple(n for n, _ in in_answer) if promotions else ())
        assert r.fallback == (u < 0)
        if cap:
            counts: dict = {}
            for i in r.indices:
                for v in values_of(meta, cap[0], i):
                    counts[v] = counts.get(v, 0) + 1
            assert max(counts.values(), default=0) <= cap[1]


def test_promoted_positions_are_random_across_requests_but_fixed_for_one_request():
    rec = exact_recommender("mf", N_ITEMS)
    promotion = Promotion("summer", 30, ItemFilter(N_ITEMS, include=np.arange(N_ITEMS) % 3 == 0))
    users = rec.users.decode(np.arange(len(rec.users)))
    first = rec.recommend_many(users, 10, promotions=[promotion])
    again = rec.recommend_many(users, 10, promotions=[promotion])
    assert first == again and rec.recommend(users[5], 10, promotions=[promotion]) == first[5]
    patterns = {tuple(n is not None for n in r.promoted) for r in first}
    assert all(sum(p) == 3 for p in patterns) and len(patterns) > 3


def test_a_promotion_with_too_few_items_takes_what_there_is_and_the_rest_go_to_the_request():
    rec = exact_recommender("mf", N_ITEMS)
    two = np.zeros(N_ITEMS, dtype=bool)
    two[[11, 12]] = True
    user = rec.users.decode(np.array([3]))[0]
    got = rec.recommend(user, 10, exclude_seen=False, promotions=[Promotion("few", 50, ItemFilter(N_ITEMS, include=two))])
    assert len(got.items) == 10 and sorted(i for i, n in zip(got.indices, got.promoted) if n == "few") == [11, 12]


def test_promotions_add_up_to_at_most_k_taking_their_shares_in_order():
    rec = exact_recommender("mf", N_ITEMS)
    everything = ItemFilter(N_ITEMS)
    got = rec.recommend("new", 4, promotions=[Promotion("a", 75, everything), Promotion("b", 50, everything),
                                              Promotion("c", 10, everything)])
    assert sorted(got.promoted) == ["a", "a", "a", "b"]  # a takes its 3 of 4, b one of its 2, c none of its 1


def test_similar_items_and_fold_in_take_promotions_and_caps_too():
    rec = exact_recommender("neumf", N_ITEMS)
    meta = metadata(0)
    item = rec.items.decode(np.array([8]))[0]
    promotion = Promotion("stock", 20, ItemFilter(N_ITEMS, include=meta.find("in_stock").flags[:N_ITEMS] == 1))
    for r in (rec.similar_items(item, 10, promotions=[promotion], diversity=Diversity.of(meta, "genres", 2)),
              rec.recommend_from_items([item], 10, promotions=[promotion], diversity=Diversity.of(meta, "genres", 2))):
        assert r.promoted.count("stock") == 2 and len(r.items) == 10
        assert all(meta.find("in_stock").flags[i] == 1 for i, n in zip(r.indices, r.promoted) if n)
        genres = [g for i in r.indices for g in values_of(meta, "genres", i)]
        assert max(genres.count(g) for g in set(genres)) <= 2
