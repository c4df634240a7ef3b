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
