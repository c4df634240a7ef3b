import numpy as np
import pytest

from ncf import artifacts
from ncf.errors import ConfigError, UnknownIdError
from ncf.inference import NumpyScorer
from ncf.models import export_weights
from ncf.recommender import Recommender
from ncf.training import keras_scorer, to_artifact


@pytest.fixture(scope="module")
def recommenders(trained, dataset):
    return {kind: Recommender(to_artifact(result, dataset)) for kind, result in trained.items()}


@pytest.mark.parametrize("kind", ["neumf", "gmf", "mlp", "mf"])
def test_numpy_scores_match_keras_to_1e_5(trained, dataset, kind):
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, dataset.n_users, 3000), rng.integers(0, dataset.n_items, 3000)
    expected = keras_scorer(trained[kind].model)(users, items)
    got = Recommender(to_artifact(trained[kind], dataset)).score(dataset.users.decode(users),
                                                                    dataset.items.decode(items))
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["neumf", "mf"])
def test_scoring_every_item_at_once_matches_scoring_pairs(trained, dataset, kind):
    scorer = NumpyScorer(kind, export_weights(trained[kind].model))
    users = np.array([0, 5, 7])
    all_items = scorer.all_items(users)
    pairs = scorer.pairs(np.repeat(users, dataset.n_items), np.tile(np.arange(dataset.n_items), 3))
    np.testing.assert_allclose(all_items.ravel(), pairs, atol=1e-5)


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
