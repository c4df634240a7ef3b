"""Fold-in: a user's vectors fitted to a list of items with the model's own loss, the item side fixed."""

import numpy as np
import pytest

from ncf.errors import ConfigError
from ncf.foldin import FoldIn, FoldInConfig
from ncf.inference import NumpyScorer
from ncf.models import export_weights
from ncf.recommender import Recommender
from ncf.training import to_artifact

KINDS = ["neumf", "gmf", "mlp", "mf"]


@pytest.fixture(scope="module")
def recommenders(trained, dataset):
    return {kind: Recommender(to_artifact(result, dataset)) for kind, result in trained.items()}


def mean_bce(fold: FoldIn, theta: dict, items: np.ndarray, labels: np.ndarray) -> float:
    logits = fold.scorer.pairs_of(fold.side(theta), items).astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, logits) - labels * logits))


@pytest.mark.parametrize("kind", KINDS)
def test_the_gradient_is_the_loss_derivative_of_every_user_parameter(trained, kind):
    weights = export_weights(trained[kind].model)
    fold = FoldIn(NumpyScorer(kind, weights), weights)
    rng = np.random.default_rng(0)
    items = rng.integers(0, fold.scorer.n_items, 40)
    labels = (rng.random(40) < 0.3).astype(float)
    theta = {name: value + rng.normal(0, 0.3, value.shape) for name, value in fold.start(3).items()}
    grads = fold._gradients(theta, fold._item_rows(items), labels.astype(np.float32))
    assert set(grads) == set(theta)
    for name, value in theta.items():
        for index in np.ndindex(value.shape):
            step = np.zeros_like(value)
            step[index] = 1e-3
            up = mean_bce(fold, {**theta, name: value + step}, items, labels)
            down = mean_bce(fold, {**theta, name: value - step}, items, labels)
            assert grads[name][index] == pytest.approx((up - down) / 2e-3, abs=2e-4), (name, index)


@pytest.mark.parametrize("kind", ["neumf", "mf"])
def test_a_known_user_with_no_new_items_is_scored_as_trained(recommenders, dataset, kind):
    rec = recommenders[kind]
    user = dataset.users.decode(np.array([4]))[0]
    assert rec.recommend_from_items([], k=10, user=user).items == rec.recommend(user, k=10).items


@pytest.mark.parametrize("kind", ["neumf", "mf"])
def test_the_same_items_give_the_same_answer_and_the_given_items_are_excluded(recommenders, dataset, kind):
    rec = recommenders[kind]
    given = list(dataset.items.decode(dataset.seen.row(7)[:5]))
    first = rec.recommend_from_items(given, k=20)
    assert first == rec.recommend_from_items(given, k=20)
    assert not set(first.items) & set(given) and not first.fallback and len(first.items) == 20
    assert first.scores == sorted(first.scores, reverse=True)


@pytest.mark.parametrize("kind", ["neumf", "mf"])
def test_a_stranger_folded_in_from_a_users_items_gets_that_users_recommendations_not_the_popular_ones(
        recommenders, dataset, kind):
    """Each user's training items folded in from the mean user: the top 10 lands near the trained user's own."""
    rec = recommenders[kind]
    folded, popular = [], []
    for user in range(0, dataset.n_users, 3):
        raw = dataset.users.decode(np.array([user]))[0]
        given = list(dataset.items.decode(dataset.train_seen.row(user)))
        trained = set(rec.recommend(raw, k=10, exclude=given).items)
        folded.append(len(trained & set(rec.recommend_from_items(given, k=10).items)))
        popular.append(len(trained & set(rec.recommend("someone new", k=10, exclude=given).items)))
    # Trained MF on this small synthetic set is close to popularity (8.4 of 10 items shared), NeuMF less so.
    assert np.mean(folded) > np.mean(popular) + 0.3, (np.mean(folded), np.mean(popular))


def test_unknown_items_are_ignored_and_listed_and_none_known_is_the_popular_fallback(recommenders, dataset):
    rec = recommenders["neumf"]
    known = list(dataset.items.decode(np.array([0, 1])))
    some = rec.recommend_from_items(known + ["no such item"], k=5)
    assert some.ignored == ("no such item",) and not some.fallback
    none = rec.recommend_from_items(["nope", "neither"], k=5)
    assert none.fallback and none.ignored == ("nope", "neither")
    assert none.items == rec.recommend("someone new", k=5).items


def test_more_distinct_items_than_the_stated_maximum_is_refused_and_repeats_count_once(recommenders, dataset):
    rec = recommenders["mf"]
    with pytest.raises(ConfigError, match="at most 1000 items"):
        rec.fold_in.solve(np.arange(FoldInConfig().max_items + 1))
    given = list(dataset.items.decode(np.array([3, 1, 2])))
    again = rec.recommend_from_items(given[::-1] + given, k=10)  # another order, every item twice: the same set
    assert again == rec.recommend_from_items(given, k=10)


def test_negatives_avoid_the_given_and_excluded_items_and_are_seeded_by_the_input(trained):
    weights = export_weights(trained["mf"].model)
    fold = FoldIn(NumpyScorer("mf", weights), weights)
    items = np.array([1, 2, 3])
    excluded = np.arange(0, fold.scorer.n_items - 5)
    drawn = fold.negatives(items, np.concatenate([items, excluded]))
    assert len(drawn) == 3 * FoldInConfig().negatives
    assert set(drawn.tolist()) <= set(range(fold.scorer.n_items - 5, fold.scorer.n_items))
    np.testing.assert_array_equal(drawn, fold.negatives(items, np.concatenate([items, excluded])))


@pytest.mark.parametrize("kind", KINDS)
def test_the_history_jacobian_is_the_logit_derivative_of_every_user_parameter(trained, kind):
    """The history's curvature is built from these rows (`FoldIn.prior`): each is d logit / d theta."""
    weights = export_weights(trained[kind].model)
    fold = FoldIn(NumpyScorer(kind, weights), weights)
    rng = np.random.default_rng(1)
    items = rng.integers(0, fold.scorer.n_items, 12)
    theta = {name: value + rng.normal(0, 0.3, value.shape) for name, value in fold.start(5).items()}
    logits, jacobian = fold._jacobian(theta, fold._item_rows(items))
    flat = fold._flat(theta)
    assert jacobian.shape == (12, len(flat))
    for column in range(len(flat)):
        step = np.zeros_like(flat)
        step[column] = 1e-3
        up = fold.scorer.pairs_of(fold.side(fold._blocks(flat + step)), items).astype(np.float64)
        down = fold.scorer.pairs_of(fold.side(fold._blocks(flat - step)), items).astype(np.float64)
        np.testing.assert_allclose(jacobian[:, column], (up - down) / 2e-3, atol=2e-3, err_msg=str(column))


@pytest.mark.parametrize("kind", KINDS)
def test_a_known_users_history_stays_in_the_fold_ins_objective(recommenders, dataset, kind):
    """One click on an item a known user never saw: their seen items keep their likelihood (when the history
    was only the start, the user was fitted to the click alone: NeuMF, GMF and MF lost 0.4-0.7 nats per seen
    item on average, 0.7-1.1 at worst; this small MLP-only model moves little either way)."""
    rec = recommenders[kind]
    fold, rng, drops = rec.fold_in, np.random.default_rng(0), []
    for user in range(0, dataset.n_users, 4):
        seen = rec.artifact.seen.row(user).astype(np.int64)
        click = rng.choice(np.setdiff1d(np.arange(len(rec.items)), seen), 1)
        theta = fold.fit(click, user, excluded=seen, history=seen)
        before, after = (rec.scorer.pairs_of(fold.side(t), seen).astype(np.float64) for t in (fold.start(user), theta))
        drops.append(np.mean(np.logaddexp(0.0, -after) - np.logaddexp(0.0, -before)))
    assert np.mean(drops) < 0.1 and np.max(drops) < 0.3, (np.mean(drops), np.max(drops))


@pytest.fixture(scope="module")
def sharper(dataset):
    """An MF of 16 factors trained 10 epochs: the session's models (8 factors, 2 epochs) rank close to
    popularity, so that a click moves their top 10 little whatever the fold-in does."""
    from ncf.training import TrainConfig, fit

    config = TrainConfig(model="mf", factors=16, epochs=10, batch_size=256, seed=1)
    return Recommender(to_artifact(fit(dataset, config, on_epoch=lambda e: None), dataset))


def test_one_click_on_a_known_users_own_top_item_keeps_at_least_0_9_of_the_rest_of_their_top_10(sharper, dataset):
    """The user's own top-1 is what the model already expects of them: clicking it must not reshuffle their
    recommendations (0.84 kept on average, 0.33 at worst, when the fold-in forgot the history)."""
    kept = []
    for raw in dataset.users.decode(np.arange(dataset.n_users)):
        top = sharper.recommend(raw, k=10).items
        after = sharper.recommend_from_items([top[0]], k=10, user=raw).items
        kept.append(len(set(after) & set(top[1:])) / 9)
    assert np.mean(kept) >= 0.9, (np.mean(kept), np.min(kept))


def test_a_known_users_fold_in_is_deterministic_and_a_new_users_ignores_any_history(recommenders, dataset):
    rec = recommenders["neumf"]
    raw = dataset.users.decode(np.array([9]))[0]
    given = list(dataset.items.decode(np.array([0, 5, 11])))
    assert rec.recommend_from_items(given, k=10, user=raw) == rec.recommend_from_items(given[::-1], k=10, user=raw)
    items, seen = rec.items.lookup(given), rec.artifact.seen.row(9)
    new = rec.fold_in.fit(items, None, history=seen)
    for name, value in rec.fold_in.fit(items).items():
        np.testing.assert_array_equal(new[name], value)


def test_a_history_longer_than_the_cap_is_sampled_and_stands_for_all_of_it(recommenders, dataset):
    """The cost is bounded by `history` items, and the sample's curvature is scaled to the whole history."""
    rec = recommenders["mf"]
    user = int(np.argmax(np.diff(rec.artifact.seen.indptr)))
    seen = rec.artifact.seen.row(user).astype(np.int64)
    start, none = rec.fold_in.start(user), np.zeros(0, np.int64)
    whole, count = FoldIn(rec.scorer, rec.artifact.weights, FoldInConfig(history=len(seen))).prior(start, seen, none)
    capped = FoldIn(rec.scorer, rec.artifact.weights, FoldInConfig(history=len(seen) // 2))
    sampled, sampled_count = capped.prior(start, seen, none)
    assert sampled_count == count == len(seen) * (1 + FoldInConfig().negatives)
    assert np.linalg.norm(sampled - whole) < 0.5 * np.linalg.norm(whole)
    assert np.trace(sampled) == pytest.approx(np.trace(whole), rel=0.3)


@pytest.mark.parametrize("setting", [{"history": -1}, {"recency": 0.0}, {"recency": float("nan")}])
def test_fold_in_settings_out_of_range_are_refused(setting):
    with pytest.raises(ConfigError, match="out of range"):
        FoldInConfig(**setting)
