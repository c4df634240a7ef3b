"""A warm start: a new model over grown vocabularies starts from a previous model's rows and dense weights."""

from dataclasses import replace

import numpy as np
import pytest

from ncf.data import Interactions
from ncf.dataset import prepare
from ncf.errors import ConfigError, DataError
from ncf.models import build_model, export_weights
from ncf.training import TrainConfig, to_artifact
from ncf.vocab import Vocabulary
from ncf.warmstart import inherited, initialiser

SMALL = dict(factors=8, mlp_layers=(16, 8, 4), epochs=2, batch_size=256, seed=1)


def grown(dataset, ratings):
    """The same interactions plus a new user who rated a new item and an old one."""
    x = Interactions(np.concatenate([ratings.userId.to_numpy(), [10**9, 10**9]]),
                     np.concatenate([ratings.movieId.to_numpy(), [10**9 + 1, ratings.movieId.iloc[0]]]),
                     None, np.concatenate([ratings.timestamp.to_numpy(), [2, 3]]))
    return prepare(x, test_k=1, validation_k=1, known_users=dataset.users, known_items=dataset.items)


@pytest.mark.parametrize("kind", ["neumf", "mf"])
def test_every_known_id_keeps_its_row_and_new_ids_start_fresh(trained, dataset, ratings, kind):
    old = to_artifact(trained[kind], dataset)
    new_data = grown(dataset, ratings)
    assert len(new_data.users) == len(dataset.users) + 1 and len(new_data.items) == len(dataset.items) + 1
    config = replace(TrainConfig(model=kind, **SMALL))
    model = build_model(kind, new_data.n_users, new_data.n_items, factors=8, mlp_layers=(16, 8, 4))
    initialiser(old, new_data.users, new_data.items)(model, None)
    new = export_weights(model)
    tower = "mf" if kind == "mf" else "gmf"
    users_old = old.users.lookup_array(new_data.users.ids)
    known = users_old >= 0
    np.testing.assert_array_equal(new[f"{tower}/user"][known], old.weights[f"{tower}/user"][users_old[known]])
    fresh = new[f"{tower}/user"][~known]
    assert fresh.shape[0] == 1 and 0 < np.abs(fresh).max() < 0.1  # RandomNormal(0.01), as a fresh model
    items_old = old.items.lookup_array(new_data.items.ids)
    np.testing.assert_array_equal(new[f"{tower}/item"][items_old >= 0], old.weights[f"{tower}/item"][items_old[items_old >= 0]])
    dense = [name for name in old.weights if "/dense_" in name or name.startswith("head/") or name == "mf/bias"]
    assert dense and all(np.array_equal(new[name], old.weights[name]) for name in dense)
    assert config.model == kind


@pytest.mark.parametrize("kind", ["neumf", "mf"])
def test_a_warm_start_continues_the_optimiser_where_the_old_job_ended(trained, dataset, ratings, tmp_path, kind):
    from ncf import artifacts
    from ncf.optimizers import LazyAdam
    from ncf.training import optimizer_state

    artifacts.save(tmp_path / "old", to_artifact(trained[kind], dataset))
    old = artifacts.load(tmp_path / "old", optimizer=True)
    assert artifacts.load(tmp_path / "old").optimizer is None  # serving never reads it
    steps = int(old.optimizer["iterations"])
    assert steps > 0 and set(old.optimizer) == {"iterations"} | {p + n for p in ("m/", "v/") for n in old.weights}
    new_data = grown(dataset, ratings)
    model = build_model(kind, new_data.n_users, new_data.n_items, factors=8, mlp_layers=(16, 8, 4))
    optimizer = LazyAdam(1e-3)
    optimizer.build(model.trainable_variables)
    initialiser(old, new_data.users, new_data.items)(model, optimizer)
    state = optimizer_state(model, optimizer)
    assert int(state["iterations"]) == steps
    tower = "mf" if kind == "mf" else "gmf"
    users_old = old.users.lookup_array(new_data.users.ids)
    known = users_old >= 0
    for moment in ("m/", "v/"):
        table = state[f"{moment}{tower}/user"]
        np.testing.assert_array_equal(table[known], old.optimizer[f"{moment}{tower}/user"][users_old[known]])
        assert not table[~known].any()  # a new user's row starts with no history
    assert np.abs(state[f"v/{tower}/user"][known]).max() > 0
    dense = [n for n in old.weights if "/dense_" in n or n.startswith("head/") or n == "mf/bias"]
    assert dense and all(np.array_equal(state["v/" + n], old.optimizer["v/" + n]) for n in dense)


def test_shapes_are_inherited_when_not_set_and_a_different_setting_is_refused(trained, dataset):
    old = to_artifact(trained["neumf"], dataset)
    config = inherited(TrainConfig(), old, given=set())
    assert (config.model, config.factors, config.mlp_layers) == ("neumf", 8, (16, 8, 4))
    with pytest.raises(ConfigError, match=r"factors=64 but the model it starts from has factors=8"):
        inherited(TrainConfig(factors=64), old, given={"factors"})
    with pytest.raises(ConfigError, match="model=mf but the model it starts from is neumf"):
        inherited(TrainConfig(model="mf"), old, given={"model"})
    with pytest.raises(ConfigError, match="pretrain"):
        inherited(TrainConfig(pretrain=True), old, given={"pretrain"})


def test_vocabularies_grow_sorted_and_text_ids_cannot_continue_integer_ones(dataset, ratings):
    new_data = grown(dataset, ratings)
    assert np.all(np.diff(new_data.users.ids) > 0) and set(dataset.users.ids) <= set(new_data.users.ids)
    text = Interactions(np.array(["a", "b"]), np.array(["x", "y"]))
    with pytest.raises(DataError, match="user ids are integers, this data's are text"):
        prepare(text, test_k=1, validation_k=0, known_users=dataset.users)
    assert isinstance(new_data.items, Vocabulary)


def test_a_shape_the_old_kind_does_not_have_is_refused_unless_it_is_the_old_jobs_own(trained, dataset):
    mf = to_artifact(trained["mf"], dataset)
    with pytest.raises(ConfigError, match=r"mlp_layers=\(32, 16\) but the model it starts from is mf, which has no "
                                          r"MLP; leave 'mlp_layers' out"):
        inherited(TrainConfig(mlp_layers=(32, 16)), mf, given={"mlp_layers"})
    with pytest.raises(ConfigError, match=r"factors=32 but the model it starts from is mlp, which has no factor"):
        inherited(TrainConfig(factors=32), to_artifact(trained["mlp"], dataset), given={"factors"})
    reused = inherited(TrainConfig(mlp_layers=(16, 8, 4)), mf, given={"mlp_layers"})  # its hyperparameters.json
    assert reused.model == "mf"
