import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncf import artifacts
from ncf.errors import ConfigError, UnknownIdError
from ncf.filters import ItemFilter
from ncf.inference import NumpyScorer
from ncf.models import export_weights
from ncf.recommender import Recommender
from ncf.training import keras_scorer, to_artifact


@pytest.fixture(scope="module")
def recommenders(trained, dataset):
    return {kind: Recommender(to_artifact(result, dataset)) for kind, result in trained.items()}


@pytest.mark.parametrize("kind", ["neumf", "gmf", "mlp", "mf"])
def test_numpy_scores_match_keras_to_1e_5_with_the_same_calibration(trained, dataset, kind):
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, dataset.n_users, 3000), rng.integers(0, dataset.n_items, 3000)
    expected = keras_scorer(trained[kind].model, trained[kind].calibration)(users, items)
    got = Recommender(to_artifact(trained[kind], dataset)).score(dataset.users.decode(users),
                                                                    dataset.items.decode(items))
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("blocks", ["all users in one block", "two users a block", "slices of a row"])
@pytest.mark.parametrize("kind", ["neumf", "mlp", "mf"])
def test_scoring_every_item_at_once_matches_scoring_pairs(trained, dataset, kind, blocks, monkeypatch):
    block_pairs = {"all users in one block": 3 * dataset.n_items, "two users a block": 2 * dataset.n_items,
                   "slices of a row": 7}[blocks]
    monkeypatch.setattr("ncf.inference.BLOCK_PAIRS", block_pairs)
    scorer = NumpyScorer(kind, export_weights(trained[kind].model))
    users = np.array([0, 5, 7])
    all_items = scorer.all_items(users)
    pairs = scorer.pairs(np.repeat(users, dataset.n_items), np.tile(np.arange(dataset.n_items), 3))
    np.testing.assert_allclose(all_items.ravel(), pairs, atol=1e-5)


@pytest.mark.parametrize("mlp_layers", [(8, 4), (8, 6, 4), (8, 6, 4, 3)])  # 0, 1 and 2 layers after the first
@pytest.mark.parametrize("kind", ["neumf", "mlp"])
def test_every_item_at_once_matches_pairs_whatever_the_mlps_depth(kind, mlp_layers):
    from ncf.models import build_model

    rng = np.random.default_rng(3)
    model = build_model(kind, 6, 40, factors=5, mlp_layers=mlp_layers)
    weights = {name: rng.normal(0.0, 1.0, value.shape).astype(np.float32)  # biases too, so ReLUs cut both ways
               for name, value in export_weights(model).items()}
    scorer = NumpyScorer(kind, weights)
    users = np.arange(6)
    pairs = scorer.pairs(np.repeat(users, 40), np.tile(np.arange(40), 6))
    np.testing.assert_allclose(scorer.all_items(users).ravel(), pairs, rtol=1e-5, atol=1e-4)


def test_recommendations_exclude_seen_and_excluded_items_and_are_best_first(recommenders, dataset):
    rec = recommenders["neumf"]
    user = dataset.users.decode(np.array([0]))[0]
    seen = set(dataset.items.decode(dataset.seen.row(0)))
    first = rec.recommend(user, k=20)
    assert len(first.items) == 20 and not seen & set(first.items) and not first.fallback
    assert first.scores == sorted(first.scores, reverse=True)
    again = rec.recommend(user, k=5, exclude=first.items[:2])
    assert again.items == first.items[2:7]


def test_keeping_seen_items_can_return_them(recommenders, dataset):
    user = dataset.users.decode(np.array([0]))[0]
    everything = recommenders["mf"].recommend(user, k=dataset.n_items, exclude_seen=False)
    assert len(everything.items) == dataset.n_items


def test_k_larger_than_the_catalogue_returns_every_unseen_item(recommenders, dataset):
    user = dataset.users.decode(np.array([3]))[0]
    got = recommenders["gmf"].recommend(user, k=10_000)
    assert len(got.items) == dataset.n_items - len(dataset.seen.row(3))


def test_an_unknown_user_gets_popular_items_flagged_as_fallback(recommenders, dataset):
    got = recommenders["neumf"].recommend("somebody new", k=3)
    assert got.fallback
    order = np.argsort(-np.bincount(dataset.seen.indices, minlength=dataset.n_items), kind="stable")[:3]
    assert got.items == dataset.items.decode(order)
    assert got.scores[0] == 1.0


def test_many_users_at_once_give_the_same_answers_as_one_by_one(recommenders, dataset):
    rec = recommenders["mlp"]
    users = dataset.users.decode(np.arange(10)) + ["new"]
    together = rec.recommend_many(users, k=5)
    assert [r.items for r in together] == [rec.recommend(u, k=5).items for u in users]


def test_ids_may_arrive_as_text_or_numbers(recommenders, dataset):
    user, item = dataset.users.decode(np.array([1]))[0], dataset.items.decode(np.array([2]))[0]
    rec = recommenders["mf"]
    assert rec.score([user], [item]) == pytest.approx(rec.score([str(user)], [str(item)]))


def test_an_unknown_item_in_a_pair_is_an_error_naming_it(recommenders, dataset):
    user = dataset.users.decode(np.array([1]))[0]
    with pytest.raises(UnknownIdError, match="unknown item id: 'no-such-item'"):
        recommenders["neumf"].score([user], ["no-such-item"])
    with pytest.raises(ConfigError, match="pairs need one of each"):
        recommenders["neumf"].score([user], [])


def test_similar_items_are_nearest_by_embedding_and_never_the_item_itself(recommenders, dataset):
    rec = recommenders["neumf"]
    item = dataset.items.decode(np.array([4]))[0]
    got = rec.similar_items(item, k=5)
    assert item not in got.items and len(got.items) == 5
    assert got.scores == sorted(got.scores, reverse=True) and -1.0 <= got.scores[-1] <= got.scores[0] <= 1.0 + 1e-9
    with pytest.raises(UnknownIdError):
        rec.similar_items("no-such-item")
    with pytest.raises(ConfigError, match="k must be >= 1"):
        rec.similar_items(item, k=0)


def test_a_loaded_folder_answers_like_the_object_it_was_saved_from(tmp_path, trained, dataset, recommenders):
    artifacts.save(tmp_path, to_artifact(trained["gmf"], dataset))
    user = dataset.users.decode(np.array([2]))[0]
    assert Recommender.load(tmp_path).recommend(user, 7) == recommenders["gmf"].recommend(user, 7)


def test_serving_imports_no_tensorflow(tmp_path, trained, dataset):
    import subprocess
    import sys

    artifacts.save(tmp_path, to_artifact(trained["neumf"], dataset))
    code = (f"import sys; from ncf.recommender import Recommender; r = Recommender.load({str(tmp_path)!r}); "
            "r.recommend('x'); assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))


def _exact_recommender(kind: str, n_users: int = 30, n_items: int = 120, seed: int = 0) -> Recommender:
    """A model whose weights are small multiples of 1/4: every logit is exact in float32 whatever the order of
    summation (a block of users or one pair at a time), and equal scores are frequent, so the tie rule is
    what decides, not rounding."""
    from ncf.seen import SeenItems
    from ncf.vocab import Vocabulary

    rng = np.random.default_rng(seed)

    def quarters(*shape):
        return (rng.integers(-2, 3, shape) / 4).astype(np.float32)

    if kind == "mf":
        weights = {"mf/user": quarters(n_users, 4), "mf/item": quarters(n_items, 4),
                   "mf/user_bias": quarters(n_users), "mf/item_bias": quarters(n_items),
                   "mf/bias": np.zeros((), np.float32)}
    else:
        weights = {"gmf/user": quarters(n_users, 4), "gmf/item": quarters(n_items, 4),
                   "mlp/user": quarters(n_users, 4), "mlp/item": quarters(n_items, 4),
                   "mlp/dense_0/kernel": quarters(8, 4), "mlp/dense_0/bias": quarters(4),
                   "mlp/dense_1/kernel": quarters(4, 2), "mlp/dense_1/bias": quarters(2),
                   "head/kernel": quarters(6, 1), "head/bias": quarters(1)}
    pairs = rng.integers(0, [n_users, n_items], (n_users * 20, 2))
    seen = SeenItems.from_pairs(pairs[:, 0], pairs[:, 1], n_users, n_items)
    return Recommender(artifacts.ModelArtifact(
        kind=kind, weights=weights, users=Vocabulary(np.arange(n_users) * 3 + 1),
        items=Vocabulary(np.arange(n_items) * 7 + 2), seen=seen,
        popularity=np.bincount(seen.indices, minlength=n_items)))


def _one_user_reference(rec: Recommender, user, k: int, exclude_seen: bool, exclude: list) -> tuple[list, list]:
    """Top-k the plainest way: score every pair, drop masked items, sort by (score descending, index)."""
    n_items = len(rec.items)
    u = int(rec.users.lookup([user])[0])
    logits = rec.scorer.pairs(np.full(n_items, u), np.arange(n_items)).astype(np.float64)
    masked = set(rec.items.lookup(exclude).tolist())
    if exclude_seen:
        masked |= set(rec.artifact.seen.row(u).tolist())
    ranked = sorted((i for i in range(n_items) if i not in masked), key=lambda i: (-logits[i], i))[:k]
    return rec.items.decode(np.array(ranked, dtype=np.int64)), rec.calibration.probability(logits[ranked]).tolist()


@pytest.mark.parametrize("kind", ["mf", "neumf"])
@pytest.mark.parametrize("k, exclude_seen, exclude", [
    (1, True, []), (10, True, []), (10, False, []), (25, True, [2, 9, 16, 23]), (120, True, [2]), (500, False, []),
])
def test_many_users_at_once_match_a_plain_per_user_top_k_with_ties_by_item_order(kind, k, exclude_seen, exclude,
                                                                                 monkeypatch):
    import ncf.recommender

    monkeypatch.setattr(ncf.recommender, "BLOCK_SCORES", 7 * 120)  # blocks of 7 users: several blocks, a partial one
    rec = _exact_recommender(kind)
    users = rec.users.decode(np.arange(len(rec.users)))
    got = rec.recommend_many(users, k, exclude_seen=exclude_seen, exclude=exclude)
    assert rec.block_users == 7
    for user, r in zip(users, got):
        items, scores = _one_user_reference(rec, user, k, exclude_seen, exclude)
        assert (r.items, r.scores, r.fallback) == (items, scores, False)


def test_ties_at_the_kth_score_go_to_the_lower_item_index():
    from ncf.recommender import top_k_rows

    scores = np.array([[1.0, 3.0, 2.0, 3.0, 2.0, 2.0, -np.inf, np.nan],
                       [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                       [np.inf, -np.inf, 5.0, np.nan, -np.inf, -np.inf, -np.inf, -np.inf]], dtype=np.float32)
    top, counts = top_k_rows(scores, 4)
    assert top[0, :counts[0]].tolist() == [1, 3, 2, 4]
    assert top[1, :counts[1]].tolist() == [0, 1, 2, 3]
    assert top[2, :counts[2]].tolist() == [2]  # only finite scores are ever chosen


# Business rules (#32): a rule is applied before top-k, so every answer below equals a brute-force reference
# that scores every item one pair at a time, drops what the rule and the request's options drop, and sorts by
# (score descending, item index), the tie rule of `top_k_rows`.

_EXACT: dict = {}


def exact_recommender(kind: str = "neumf", n_items: int = 120) -> Recommender:
    """`_exact_recommender`, built once per shape (hypothesis calls the tests many times)."""
    if (kind, n_items) not in _EXACT:
        _EXACT[kind, n_items] = _exact_recommender(kind, n_items=n_items)
    return _EXACT[kind, n_items]


@st.composite
def item_filters(draw, n_items: int = 120):
    """Any ItemFilter: random include / exclude masks from none to all items, and either seen-item flag."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def mask():
        share = draw(st.sampled_from([None, 0.0, 0.03, 0.2, 0.7, 1.0]))
        return None if share is None else rng.random(n_items) < share

    return ItemFilter(n_items, include=mask(), include_seen=draw(st.booleans()), exclude=mask(),
                      exclude_seen=draw(st.booleans()))


def reference_order(scores: np.ndarray, allowed: np.ndarray) -> list[int]:
    """Every allowed item with a finite score, by (score descending, index)."""
    return sorted((i for i in np.flatnonzero(allowed).tolist() if np.isfinite(scores[i])),
                  key=lambda i: (-scores[i], i))


def user_logits(rec: Recommender, u: int) -> np.ndarray:
    n_items = len(rec.items)
    return rec.scorer.pairs(np.full(n_items, u), np.arange(n_items)).astype(np.float64)


def options_allow(rec: Recommender, seen, exclude_seen: bool, exclude) -> np.ndarray:
    """What the request's options let through, before any rule: not in `exclude`, not seen if asked."""
    allowed = np.ones(len(rec.items), dtype=bool)
    excluded = rec.items.lookup(list(exclude))
    allowed[excluded[excluded >= 0]] = False
    if exclude_seen and seen is not None:
        allowed[seen] = False
    return allowed


def reference_recommend(rec: Recommender, user, k: int, exclude_seen: bool, exclude, rule) -> tuple[list, list]:
    """A known user's top-k as indices and probabilities; an unknown user's popular items and shares."""
    u = int(rec.users.lookup([user])[0])
    seen = rec.artifact.seen.row(u) if u >= 0 else None
    allowed = options_allow(rec, seen, exclude_seen, exclude) & (rule.allowed(seen) if rule else True)
    if u < 0:
        share = rec.artifact.popularity / max(rec.artifact.popularity.max(), 1)
        top = reference_order(share, allowed)[:k]
        return top, share[top].tolist()
    logits = user_logits(rec, u)
    top = reference_order(logits, allowed)[:k]
    return top, rec.calibration.probability(logits[top]).tolist()


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["mf", "neumf"]), rule=st.none() | item_filters(), k=st.integers(1, 130),
       exclude_seen=st.booleans(), exclude=st.lists(st.integers(0, 119), max_size=6))
def test_recommend_many_with_any_rule_equals_a_brute_force_top_k_of_what_passes(kind, rule, k, exclude_seen,
                                                                              exclude):
    import ncf.recommender

    rec = exact_recommender(kind)
    exclude = rec.items.decode(np.array(exclude, dtype=np.int64))
    users = rec.users.decode(np.arange(len(rec.users))) + ["new", "another new one"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ncf.recommender, "BLOCK_SCORES", 7 * 120)  # several blocks of 7 users and a partial one
        got = rec.recommend_many(users, k, exclude_seen=exclude_seen, exclude=exclude, rule=rule)
    for user, r in zip(users, got):
        top, scores = reference_recommend(rec, user, k, exclude_seen, exclude, rule)
        assert (list(r.indices), r.scores) == (top, scores)
        assert r.items == rec.items.decode(np.array(top, dtype=np.int64))
        assert r.fallback == (user in ("new", "another new one")) and r.promoted == ()


def test_a_rule_applies_before_top_k_so_k_items_come_back_whenever_k_pass():
    rec = exact_recommender("mf")
    user = rec.users.decode(np.array([4]))[0]
    unfiltered = rec.recommend(user, 10)
    keep = np.zeros(len(rec.items), dtype=bool)
    keep[np.flatnonzero(~np.isin(np.arange(len(rec.items)), unfiltered.indices))[-15:]] = True  # none of the top 10
    keep[list(rec.artifact.seen.row(4))] = False
    got = rec.recommend(user, 10, rule=ItemFilter(len(rec.items), include=keep))
    assert len(got.items) == 10 and set(got.indices) <= set(np.flatnonzero(keep).tolist())
    assert len(rec.recommend(user, 20, rule=ItemFilter(len(rec.items), include=keep)).items) == int(keep.sum())


def test_a_rule_over_seen_items_includes_or_excludes_them_per_user():
    rec = exact_recommender("mf")
    users = rec.users.decode(np.array([0, 1]))
    only_seen = ItemFilter(len(rec.items), include_seen=True)
    got = rec.recommend_many(users, 500, exclude_seen=False, rule=only_seen)
    for u, r in enumerate(got):
        assert sorted(r.indices) == sorted(rec.artifact.seen.row(u).tolist())
    unseen = rec.recommend(users[0], 500, exclude_seen=False, rule=ItemFilter(len(rec.items), exclude_seen=True))
    assert len(unseen.items) == len(rec.items) - len(rec.artifact.seen.row(0))
    assert rec.recommend("new", 5, rule=only_seen).items == []  # someone unknown has seen nothing


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["mf", "neumf"]), rule=st.none() | item_filters(), k=st.integers(1, 130),
       given_items=st.lists(st.integers(-3, 119), max_size=5), user=st.sampled_from([None, 0, 7, -1]),
       exclude_seen=st.booleans(), exclude=st.lists(st.integers(0, 119), max_size=4))
def test_recommend_from_items_with_any_rule_equals_a_brute_force_top_k_of_the_folded_in_scores(
        kind, rule, k, given_items, user, exclude_seen, exclude):
    rec = exact_recommender(kind)
    items = [rec.items.decode(np.array([i]))[0] if i >= 0 else f"unknown-{i}" for i in given_items]
    raw_user = None if user is None else rec.users.decode(np.array([user]))[0] if user >= 0 else "new"
    exclude = rec.items.decode(np.array(exclude, dtype=np.int64))
    got = rec.recommend_from_items(items, k, user=raw_user, exclude_seen=exclude_seen, exclude=exclude, rule=rule)

    given = np.array([i for i in given_items if i >= 0], dtype=np.int64)
    seen = rec.artifact.seen.row(user).astype(np.int64) if user is not None and user >= 0 else None
    allowed = options_allow(rec, seen, exclude_seen, exclude) & (rule.allowed(seen) if rule else True)
    allowed[given] = False
    if seen is None and len(given) == 0:
        share = rec.artifact.popularity / max(rec.artifact.popularity.max(), 1)
        top = reference_order(share, allowed)[:k]
        expected = (top, share[top].tolist(), True)
    else:  # the fold-in's solve is its own tests' business; what is chosen from its scores is this test's
        empty = np.zeros(0, np.int64)
        side = rec.fold_in.solve(given, user if seen is not None else None,
                                 excluded=seen if seen is not None else empty, history=seen if seen is not None else empty)
        logits = rec.scorer.all_items_of(side)[0].astype(np.float64)
        top = reference_order(logits, allowed)[:k]
        expected = (top, rec.calibration.probability(logits[top]).tolist(), False)
    assert (list(got.indices), got.scores, got.fallback) == expected
    assert got.ignored == tuple(i for i in items if str(i).startswith("unknown"))


@settings(max_examples=40, deadline=None)
@given(rule=st.none() | item_filters(), k=st.integers(1, 130), item=st.integers(0, 119))
def test_similar_items_with_any_rule_equal_a_brute_force_top_k_by_cosine_without_seen_items(rule, k, item):
    rec = exact_recommender("neumf")
    vectors = rec.scorer.item_vectors()
    cosine = (vectors @ vectors[item]).astype(np.float64)
    allowed = rule.allowed(None) if rule else np.ones(len(rec.items), dtype=bool)
    allowed[item] = False
    got = rec.similar_items(rec.items.decode(np.array([item]))[0], k, rule=rule)
    top = reference_order(cosine, allowed)[:k]
    assert (list(got.indices), got.scores) == (top, cosine[top].tolist())


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["mf", "neumf"]), rule=st.none() | item_filters(), user=st.integers(-1, 29),
       listed=st.lists(st.integers(-4, 119), max_size=40))
def test_rank_orders_the_known_passing_items_of_a_list_once_each_like_a_brute_force_sort(kind, rule, user, listed):
    rec = exact_recommender(kind)
    raw_user = rec.users.decode(np.array([user]))[0] if user >= 0 else "new"
    items = [rec.items.decode(np.array([i]))[0] if i >= 0 else f"nope-{-i}" for i in listed]
    got = rec.rank(raw_user, items, rule=rule)

    distinct = list(dict.fromkeys(i for i in listed if i >= 0))
    seen = rec.artifact.seen.row(user) if user >= 0 else None
    passing = [i for i in distinct if rule is None or rule.allowed(seen)[i]]
    if user >= 0:
        scores = {i: float(rec.scorer.pairs(np.array([user]), np.array([i]))[0]) for i in passing}
    else:
        scores = {i: rec.artifact.popularity[i] / rec.artifact.popularity.max() for i in passing}
    order = sorted(passing, key=lambda i: (-scores[i], i))
    values = [scores[i] for i in order]
    assert list(got.indices) == order
    assert got.items == rec.items.decode(np.array(order, dtype=np.int64))
    assert got.scores == (rec.calibration.probability(np.array(values)).tolist() if user >= 0 else values)
    assert got.unknown == tuple(dict.fromkeys(i for i in items if str(i).startswith("nope")))
    assert (got.filtered, got.fallback) == (len(distinct) - len(passing), user < 0)


def test_rules_compiled_for_another_catalogue_are_refused_naming_both_sizes():
    rec = exact_recommender("mf")
    with pytest.raises(ConfigError, match="compiled for 7 items, this model has 120"):
        rec.recommend("new", 3, rule=ItemFilter(7))
    with pytest.raises(ConfigError, match="compiled for 7 items"):
        rec.rank("new", [], rule=ItemFilter(7))


# Two-stage top-k (#34): with a shortlist covering the catalogue, the first stage (exact product or an IVF index
# searching every list) drops nothing but what the rules drop, so every answer equals exact top-k's, rules,
# promotions and caps included: the second stage is the same model, and ties still go to the lower index.

_COVERING: dict = {}


def covering(kind: str, backend: str) -> Recommender:
    from dataclasses import replace

    from ncf.retrieval import Stage, build_index

    if (kind, backend) not in _COVERING:
        rec = exact_recommender(kind)
        stage = replace(Stage.of(rec.scorer), shortlist=len(rec.items))
        if backend == "ivf":
            index = build_index(stage.items)
            stage = replace(stage, backend="ivf", index=index, nprobe=index.nlist)
        _COVERING[kind, backend] = rec.with_retrieval(stage)
    return _COVERING[kind, backend]


def genres(n_items: int = 120):
    from ncf.metadata import ItemMetadata

    names = ["A", "B", "C", "A|B", "", "C|A"]
    return ItemMetadata.from_table(np.arange(n_items), [str(i) for i in range(n_items)],
                                   {"genres": [names[i % 6] for i in range(n_items)]}, n_items)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["mf", "neumf"]), backend=st.sampled_from(["numpy", "ivf"]),
       rule=st.none() | item_filters(), promotion=st.none() | item_filters(), cap=st.none() | st.integers(1, 3),
       k=st.integers(1, 130), exclude_seen=st.booleans(), exclude=st.lists(st.integers(0, 119), max_size=6))
def test_two_stage_covering_the_catalogue_answers_as_exact_top_k_with_any_rule_promotion_and_cap(
        kind, backend, rule, promotion, cap, k, exclude_seen, exclude):
    from ncf.rerank import Diversity, Promotion

    exact, two = exact_recommender(kind), covering(kind, backend)
    assert two.retrieval is not None and exact.retrieval is None
    options = dict(exclude_seen=exclude_seen, exclude=exact.items.decode(np.array(exclude, dtype=np.int64)),
                   rule=rule, promotions=[Promotion("p", 30, promotion)] if promotion is not None else [],
                   diversity=Diversity.of(genres(), "genres", cap) if cap else None)
    users = exact.users.decode(np.arange(len(exact.users))) + ["new"]
    for got, expected in zip(two.recommend_many(users, k, **options), exact.recommend_many(users, k, **options)):
        assert (got.indices, got.scores, got.promoted, got.fallback) == \
            (expected.indices, expected.scores, expected.promoted, expected.fallback)
    given_items = exact.items.decode(np.array([1, 5, 9]))
    got = two.recommend_from_items(given_items, k, user=users[2], **options)
    expected = exact.recommend_from_items(given_items, k, user=users[2], **options)
    assert (got.indices, got.promoted) == (expected.indices, expected.promoted)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5)  # a solved user's rows are not quarters
