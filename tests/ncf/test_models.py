import keras
import numpy as np
import pytest

from ncf.errors import ConfigError
from ncf.models import GMF, MLPTower, MatrixFactorization, build_model, neumf_from_pretrained

USERS, ITEMS = np.array([0, 1, 2, 3], np.int32), np.array([3, 2, 1, 0], np.int32)


def logits(model):
    return keras.ops.convert_to_numpy(model({"user": USERS, "item": ITEMS}, training=False))


@pytest.mark.parametrize("kind", ["neumf", "gmf", "mlp", "mf"])
def test_every_kind_maps_a_batch_of_pairs_to_one_logit_each(kind):
    model = build_model(kind, 5, 6, factors=4, mlp_layers=(8, 4))
    assert logits(model).shape == (4,)


@pytest.mark.parametrize("kind", ["neumf", "gmf", "mlp", "mf"])
def test_a_saved_model_loads_back_with_the_same_outputs(tmp_path, kind):
    model = build_model(kind, 5, 6, factors=4, mlp_layers=(8, 4), dropout=0.2, l2=1e-5)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(logits(again), logits(model), atol=1e-6)


@pytest.mark.parametrize("layer", [GMF, MatrixFactorization])
def test_layer_config_round_trips(layer):
    original = layer(5, 6, 3, l2=0.01)
    clone = layer.from_config(original.get_config())
    assert (clone.n_users, clone.n_items, clone.factors, clone.l2) == (5, 6, 3, 0.01)


def test_mlp_config_round_trips():
    clone = MLPTower.from_config(MLPTower(5, 6, (8, 4, 2), dropout=0.1).get_config())
    assert clone.layer_sizes == (8, 4, 2) and clone.dropout == 0.1


@pytest.mark.parametrize("bad", [(8,), (7, 4), (8, 0)])
def test_bad_mlp_layer_sizes_are_refused(bad):
    with pytest.raises(ConfigError, match="MLP layers"):
        MLPTower(5, 6, bad)


def test_bad_sizes_and_kinds_are_refused():
    with pytest.raises(ConfigError, match="positive sizes"):
        GMF(0, 6, 4)
    with pytest.raises(ConfigError, match="dropout"):
        MLPTower(5, 6, (8, 4), dropout=1.0)
    with pytest.raises(ConfigError, match="model must be one of"):
        build_model("transformer", 5, 6)


def test_neumf_from_pretrained_outputs_the_alpha_weighted_sum_of_its_towers():
    gmf = build_model("gmf", 5, 6, factors=4)
    mlp = build_model("mlp", 5, 6, mlp_layers=(8, 4))
    neumf = build_model("neumf", 5, 6, factors=4, mlp_layers=(8, 4))
    neumf_from_pretrained(neumf, gmf, mlp, alpha=0.3)
    np.testing.assert_allclose(logits(neumf), 0.3 * logits(gmf) + 0.7 * logits(mlp), atol=1e-6)
    with pytest.raises(ConfigError, match="alpha"):
        neumf_from_pretrained(neumf, gmf, mlp, alpha=1.5)
