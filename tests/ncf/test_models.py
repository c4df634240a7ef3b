import keras
import numpy as np
import pytest

from ncf.errors import ConfigError
from ncf.models import (MF_START_MLP_HEAD, MLPTower, MatrixFactorization, SideTables, build_model, export_weights,
                        neumf_from_mf, neumf_from_pretrained)

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


def test_layer_configs_round_trip():
    mf = MatrixFactorization.from_config(MatrixFactorization(5, 6, 3, l2=0.01).get_config())
    assert (mf.n_users, mf.n_items, mf.factors, mf.l2) == (5, 6, 3, 0.01)
    tables = SideTables.from_config(SideTables(5, 6, [("gmf", 3), ("mlp", 2)], l2=0.01).get_config())
    assert (tables.n_users, tables.n_items, tables.parts, tables.l2) == (5, 6, [("gmf", 3), ("mlp", 2)], 0.01)
    mlp = MLPTower.from_config(MLPTower((8, 4, 2), dropout=0.1).get_config())
    assert mlp.layer_sizes == (8, 4, 2) and mlp.dropout == 0.1


@pytest.mark.parametrize("bad", [(8,), (7, 4), (8, 0)])
def test_bad_mlp_layer_sizes_are_refused(bad):
    with pytest.raises(ConfigError, match="MLP layers"):
        MLPTower(bad)


def test_bad_sizes_and_kinds_are_refused():
    with pytest.raises(ConfigError, match="positive sizes"):
        build_model("gmf", 0, 6, factors=4)
    with pytest.raises(ConfigError, match="positive sizes"):
        build_model("neumf", 5, 6, factors=0)
    with pytest.raises(ConfigError, match="positive sizes"):
        build_model("mf", 5, 0)
    with pytest.raises(ConfigError, match="dropout"):
        MLPTower((8, 4), dropout=1.0)
    with pytest.raises(ConfigError, match="model must be one of"):
        build_model("transformer", 5, 6)


def test_neumf_keeps_both_towers_in_one_table_per_side_and_exports_each_towers_columns():
    model = build_model("neumf", 5, 6, factors=3, mlp_layers=(4, 2))
    tables = model.get_layer("embeddings")
    user = keras.ops.convert_to_numpy(tables.user_embedding.embeddings)
    item = keras.ops.convert_to_numpy(tables.item_embedding.embeddings)
    assert user.shape == (5, 5) and item.shape == (6, 5)
    weights = export_weights(model)
    np.testing.assert_array_equal(weights["gmf/user"], user[:, :3])
    np.testing.assert_array_equal(weights["mlp/user"], user[:, 3:])
    np.testing.assert_array_equal(weights["gmf/item"], item[:, :3])
    np.testing.assert_array_equal(weights["mlp/item"], item[:, 3:])
    # The logit is the head over [gmf product, MLP of the concatenated halves], as He et al. define it.
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    x = np.concatenate([weights["gmf/user"][USERS] * weights["gmf/item"][ITEMS],
                        relu(np.concatenate([weights["mlp/user"][USERS], weights["mlp/item"][ITEMS]], axis=1)
                             @ weights["mlp/dense_0/kernel"] + weights["mlp/dense_0/bias"])], axis=1)
    expected = x @ weights["head/kernel"][:, 0] + weights["head/bias"][0]
    np.testing.assert_allclose(logits(model), expected, atol=1e-6)


def test_neumf_from_pretrained_outputs_the_alpha_weighted_sum_of_its_towers():
    gmf = build_model("gmf", 5, 6, factors=4)
    mlp = build_model("mlp", 5, 6, mlp_layers=(8, 4))
    neumf = build_model("neumf", 5, 6, factors=4, mlp_layers=(8, 4))
    neumf_from_pretrained(neumf, gmf, mlp, alpha=0.3)
    np.testing.assert_allclose(logits(neumf), 0.3 * logits(gmf) + 0.7 * logits(mlp), atol=1e-6)
    with pytest.raises(ConfigError, match="alpha"):
        neumf_from_pretrained(neumf, gmf, mlp, alpha=1.5)


def test_neumf_from_mf_starts_as_mfs_dot_product_without_biases_plus_a_tenth_of_its_mlp():
    rng = np.random.default_rng(4)
    mf = build_model("mf", 5, 6, factors=4)
    mf.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in mf.get_weights()])  # biases nonzero
    neumf = build_model("neumf", 5, 6, factors=4, mlp_layers=(8, 4))
    neumf.get_layer("head").set_weights([w + 0.5 for w in neumf.get_layer("head").get_weights()])
    kernel = neumf.get_layer("head").get_weights()[0].copy()
    mlp_before = logits(neumf) - 0.5 - _gmf_part(neumf, kernel)  # the MLP half of the logit (head bias 0.5)
    neumf_from_mf(neumf, mf)
    layer = mf.get_layer("mf")
    dot = (layer.user_embedding.get_weights()[0][USERS] * layer.item_embedding.get_weights()[0][ITEMS]).sum(axis=1)
    new_kernel, new_bias = neumf.get_layer("head").get_weights()
    np.testing.assert_array_equal(new_kernel[:4], 1.0)
    np.testing.assert_allclose(new_kernel[4:], MF_START_MLP_HEAD * kernel[4:])
    assert not new_bias.any()
    mlp_only = neumf.get_layer("head")
    mlp_only.set_weights([np.concatenate([np.zeros((4, 1), np.float32), new_kernel[4:]]), new_bias])
    mlp_part = logits(neumf)
    np.testing.assert_allclose(mlp_part, MF_START_MLP_HEAD * mlp_before, atol=1e-5)
    mlp_only.set_weights([new_kernel, new_bias])
    np.testing.assert_allclose(logits(neumf), dot + mlp_part, atol=1e-5)


def _gmf_part(neumf, kernel):
    """The GMF half of NeuMF's logit under head `kernel`, from its tables as they are now."""
    tables = neumf.get_layer("embeddings")
    u, i = tables.user_embedding.get_weights()[0][USERS, :4], tables.item_embedding.get_weights()[0][ITEMS, :4]
    return (u * i) @ kernel[:4, 0]


def test_neumf_from_mf_refuses_an_mf_of_another_width():
    with pytest.raises(ConfigError, match="does not fit"):
        neumf_from_mf(build_model("neumf", 5, 6, factors=4, mlp_layers=(8, 4)), build_model("mf", 5, 6, factors=8))
