"""Keras 3 models of He et al. 2017 (GMF, MLP, NeuMF) and plain matrix factorisation.

Each model maps `{"user": [B] int32, "item": [B] int32}` to logits `[B]`; the loss applies the sigmoid. The
towers are small layers over one embedding table per side (`SideTables`), so that NeuMF can be assembled from
pretrained GMF and MLP models, and so that `export_weights` can hand each tower's named numpy arrays to the
TensorFlow-free inference in `inference.py`.

Matrix factorisation (dot product plus biases) is here because Rendle et al. 2020 ("Neural Collaborative
Filtering vs. Matrix Factorization Revisited") showed that, tuned, it can beat NeuMF; users deserve the
choice (`model=mf`). NeuMF is the default: on MovieLens it ranks level with MF at 64 and 128 factors or
better (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np
from keras import layers, ops

from .errors import ConfigError
from .kinds import MODEL_KINDS

_EMBEDDING_INIT = {"class_name": "RandomNormal", "config": {"stddev": 0.01}}


def _regularizer(l2: float):
    return keras.regularizers.L2(l2) if l2 > 0 else None


def _embedding(count: int, dim: int, l2: float, name: str) -> layers.Embedding:
    """An embedding table; `l2` 0 leaves its penalty to the optimiser (`optimizers.LazyAdam`), which applies it
    to the rows a step touches instead of adding the whole table's norm, and so a dense gradient, to the loss."""
    return layers.Embedding(
        count, dim, embeddings_initializer=keras.initializers.get(_EMBEDDING_INIT),
        embeddings_regularizer=_regularizer(l2), name=name,
    )


@keras.saving.register_keras_serializable(package="ncf")
class SideTables(layers.Layer):
    """The embeddings of GMF and MLP in one table per side, split into each tower's columns after the lookup.

    NeuMF's towers look up the same user and the same item, so one `[users, factors + mlp half]` table per side
    means one gather and one row update per lookup where four tables took two each: a faster step with
    ml-25m's tables, and no loss on small tables, where the rows stay in cache (the timings are in commit
    efb22de's message). Adam is element-wise, L2 is a sum over elements and the initialiser is the same
    for both towers, so this trains what separate tables would; `export_weights` writes each tower's columns
    under its own name.

    Args:
        parts: `[(tower name, width), ...]`, the columns of each tower in order, e.g. `[("gmf", 64), ("mlp", 32)]`.

    Returns `[user part, item part]` per tower, flat: `[u_gmf, i_gmf, u_mlp, i_mlp]`.
    """

    def __init__(self, n_users: int, n_items: int, parts: Sequence[Sequence], l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.parts = [(str(name), int(width)) for name, width in parts]
        if min([n_users, n_items] + [width for _, width in self.parts]) < 1 or not self.parts:
            raise ConfigError(f"embeddings need positive sizes, got users={n_users} items={n_items} "
                              f"widths={[w for _, w in self.parts]}")
        self.n_users, self.n_items, self.l2 = n_users, n_items, l2
        width = sum(w for _, w in self.parts)
        self.user_embedding = _embedding(n_users, width, l2, "user")
        self.item_embedding = _embedding(n_items, width, l2, "item")

    def build(self, input_shape):
        self.user_embedding.build((None,))
        self.item_embedding.build((None,))

    def columns(self, name: str) -> slice:
        """The columns of tower `name` in either table."""
        start = 0
        for part, width in self.parts:
            if part == name:
                return slice(start, start + width)
            start += width
        raise KeyError(name)

    def call(self, inputs):
        user, item = inputs
        u, i = self.user_embedding(user), self.item_embedding(item)
        if len(self.parts) == 1:
            return [u, i]
        out = []
        for name, _ in self.parts:
            cols = self.columns(name)
            out += [u[:, cols], i[:, cols]]
        return out

    def get_config(self):
        return {**super().get_config(), "n_users": self.n_users, "n_items": self.n_items,
                "parts": [list(p) for p in self.parts], "l2": self.l2}


@keras.saving.register_keras_serializable(package="ncf")
class GMF(layers.Layer):
    """Generalised matrix factorisation tower: `p_u * q_i`, `[B, factors]`.

    A linear head over this product is a weighted dot product, which is what lets NeuMF learn MF.
    """

    def call(self, inputs):
        user, item = inputs
        return user * item


@keras.saving.register_keras_serializable(package="ncf")
class MLPTower(layers.Layer):
    """MLP tower: `concat(p_u, q_i)` through ReLU layers, `[B, layers[-1]]`.

    Args:
        layer_sizes: as in the paper, the first entry is the width of the concatenated embeddings (each
            side gets half, in `SideTables`), the rest are the hidden layers: `(64, 32, 16, 8)`.
    """

    def __init__(self, layer_sizes: Sequence[int], dropout: float = 0.0, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        layer_sizes = tuple(int(s) for s in layer_sizes)
        if len(layer_sizes) < 2 or layer_sizes[0] < 2 or layer_sizes[0] % 2 or min(layer_sizes) < 1:
            raise ConfigError(
                f"MLP layers must be an even embedding width followed by at least one hidden size, got {layer_sizes}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.layer_sizes, self.dropout, self.l2 = layer_sizes, dropout, l2
        self.hidden = [
            layers.Dense(size, activation="relu", kernel_regularizer=_regularizer(l2), name=f"dense_{n}")
            for n, size in enumerate(layer_sizes[1:])
        ]
        self.dropouts = [layers.Dropout(dropout) for _ in self.hidden] if dropout > 0 else []

    def build(self, input_shape):
        width = self.layer_sizes[0]
        for dense in self.hidden:
            dense.build((None, width))
            width = dense.units

    def call(self, inputs, training=False):
        user, item = inputs
        x = ops.concatenate([user, item], axis=-1)
        for n, dense in enumerate(self.hidden):
            x = dense(x)
            if self.dropouts:
                x = self.dropouts[n](x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "layer_sizes": list(self.layer_sizes), "dropout": self.dropout,
                "l2": self.l2}


@keras.saving.register_keras_serializable(package="ncf")
class MatrixFactorization(layers.Layer):
    """`p_u . q_i + b_u + b_i + b`, `[B]` logits: the baseline of Rendle et al. 2020."""

    def __init__(self, n_users: int, n_items: int, factors: int, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if min(n_users, n_items, factors) < 1:
            raise ConfigError(f"MF needs positive sizes, got users={n_users} items={n_items} factors={factors}")
        self.n_users, self.n_items, self.factors, self.l2 = n_users, n_items, factors, l2
        self.user_embedding = _embedding(n_users, factors, l2, "user")
        self.item_embedding = _embedding(n_items, factors, l2, "item")
        self.user_bias = layers.Embedding(n_users, 1, embeddings_initializer="zeros", name="user_bias")
        self.item_bias = layers.Embedding(n_items, 1, embeddings_initializer="zeros", name="item_bias")

    def build(self, input_shape):
        for layer in (self.user_embedding, self.item_embedding, self.user_bias, self.item_bias):
            layer.build((None,))
        self.bias = self.add_weight(shape=(), initializer="zeros", name="bias")

    def call(self, inputs):
        user, item = inputs
        dot = ops.sum(self.user_embedding(user) * self.item_embedding(item), axis=-1)
        return dot + self.user_bias(user)[:, 0] + self.item_bias(item)[:, 0] + self.bias

    def get_config(self):
        return {**super().get_config(), "n_users": self.n_users, "n_items": self.n_items,
                "factors": self.factors, "l2": self.l2}


def build_model(
    kind: str, n_users: int, n_items: int, *, factors: int = 32, mlp_layers: Sequence[int] = (64, 32, 16, 8),
    dropout: float = 0.0, l2: float = 0.0, embedding_l2: float | None = None,
) -> keras.Model:
    """A functional model `{"user", "item"} -> logits [B]` of the given kind.

    `l2` regularises the dense kernels, and the embedding tables too unless `embedding_l2` says otherwise
    (0 when the optimiser applies their penalty row by row)."""
    embedding_l2 = l2 if embedding_l2 is None else embedding_l2
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model must be one of {list(MODEL_KINDS)}, got {kind!r}")
    user = keras.Input(shape=(), dtype="int32", name="user")
    item = keras.Input(shape=(), dtype="int32", name="item")
    if kind == "mf":
        logits = MatrixFactorization(n_users, n_items, factors, embedding_l2, name="mf")([user, item])
        return keras.Model({"user": user, "item": item}, logits, name=kind)
    parts = [("gmf", factors)] if kind in ("neumf", "gmf") else []
    if kind in ("neumf", "mlp"):
        mlp = MLPTower(mlp_layers, dropout, l2, name="mlp")  # validates the widths before the tables use them
        parts.append(("mlp", mlp.layer_sizes[0] // 2))
    vectors = SideTables(n_users, n_items, parts, embedding_l2, name="embeddings")([user, item])
    towers = []
    for n, (name, _) in enumerate(parts):
        pair = [vectors[2 * n], vectors[2 * n + 1]]
        towers.append(GMF(name="gmf")(pair) if name == "gmf" else mlp(pair))
    x = towers[0] if len(towers) == 1 else layers.Concatenate(name="fuse")(towers)
    logits = layers.Dense(1, kernel_initializer="lecun_uniform", name="head")(x)
    return keras.Model({"user": user, "item": item}, ops.squeeze(logits, axis=-1), name=kind)


def neumf_from_pretrained(neumf: keras.Model, gmf: keras.Model, mlp: keras.Model, alpha: float = 0.5) -> None:
    """Initialise NeuMF's towers from trained GMF and MLP models, and its head as their weighted sum
    (`alpha` for GMF, `1 - alpha` for MLP), as in He et al. 2017 section 3.4.1."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    tables = neumf.get_layer("embeddings")
    gmf_tables, mlp_tables = gmf.get_layer("embeddings"), mlp.get_layer("embeddings")
    for side in ("user_embedding", "item_embedding"):
        getattr(tables, side).set_weights([np.concatenate(
            [getattr(gmf_tables, side).get_weights()[0], getattr(mlp_tables, side).get_weights()[0]], axis=1)])
    neumf.get_layer("mlp").set_weights(mlp.get_layer("mlp").get_weights())
    g_kernel, g_bias = gmf.get_layer("head").get_weights()
    m_kernel, m_bias = mlp.get_layer("head").get_weights()
    neumf.get_layer("head").set_weights(
        [np.concatenate([alpha * g_kernel, (1 - alpha) * m_kernel]), alpha * g_bias + (1 - alpha) * m_bias]
    )


#: With `neumf_from_mf`, the MLP's share of NeuMF's head at the start: a tenth of its initial values, so the
#: pretrained MF ranks as it did and the MLP, still random, adds to it as it learns.
MF_START_MLP_HEAD = 0.1


def neumf_from_mf(neumf: keras.Model, mf: keras.Model) -> None:
    """Initialise NeuMF's GMF columns from a trained MF's factors and its head to their plain dot product,
    so NeuMF starts as MF without its biases; the MLP tower keeps its random start, its share of the head
    scaled by `MF_START_MLP_HEAD`. Trained alone, MF ranks at least as well as NeuMF on MovieLens; started
    there, NeuMF keeps that and the MLP adds to it (`pretrain=mf`; benchmarks: "NeuMF, today's default")."""
    tables, source = neumf.get_layer("embeddings"), mf.get_layer("mf")
    width = source.factors
    if tables.parts[0] != ("gmf", width) or (tables.n_users, tables.n_items) != (source.n_users, source.n_items):
        raise ConfigError(f"an MF of {source.n_users} users x {source.n_items} items x {width} factors does not "
                          f"fit NeuMF's {tables.n_users} x {tables.n_items} tables with towers {tables.parts}")
    for side in ("user_embedding", "item_embedding"):
        table = getattr(tables, side).get_weights()[0]
        table[:, :width] = getattr(source, side).get_weights()[0]
        getattr(tables, side).set_weights([table])
    kernel, bias = neumf.get_layer("head").get_weights()
    kernel[:width] = 1.0
    kernel[width:] *= MF_START_MLP_HEAD
    neumf.get_layer("head").set_weights([kernel, np.zeros_like(bias)])


def embedding_tables(model: keras.Model) -> list:
    """The user and item embedding variables that `l2` regularises (not MF's biases): what
    `optimizers.LazyAdam` penalises row by row when the layers were built with `embedding_l2=0`."""
    return [v for v, _, penalised in _lookups(model) if penalised]


def embedding_inputs(model: keras.Model) -> dict[int, str]:
    """`{id(variable): "user" | "item"}` for every embedding table, biases included: which input's ids look
    each table up, so a training step can hand `LazyAdam` the rows of each batch once per input."""
    return {id(v): feature for v, feature, _ in _lookups(model)}


def _lookups(model: keras.Model) -> list[tuple]:
    """`(variable, input, regularised by l2)` for each embedding table."""
    names = {layer.name for layer in model.layers}
    out = []
    for layer in (model.get_layer(name) for name in ("embeddings", "mf") if name in names):
        out += [(layer.user_embedding.embeddings, "user", True), (layer.item_embedding.embeddings, "item", True)]
        if isinstance(layer, MatrixFactorization):
            out += [(layer.user_bias.embeddings, "user", False), (layer.item_bias.embeddings, "item", False)]
    return out


def export_weights(model: keras.Model, value_of: Callable | None = None) -> dict[str, np.ndarray]:
    """Named float32 arrays for `inference.NumpyScorer`: `gmf/user`, `mlp/dense_0/kernel`, `head/bias`, ...

    `value_of(variable)` exports something shaped like each variable instead of it (an optimiser's moments
    of it, `training.optimizer_state`), under the same names."""
    out: dict[str, np.ndarray] = {}
    names = {layer.name for layer in model.layers}
    if value_of is None:
        def value_of(variable):
            return variable
    if "embeddings" in names:
        tables = model.get_layer("embeddings")
        user, item = (keras.ops.convert_to_numpy(value_of(t.embeddings))
                      for t in (tables.user_embedding, tables.item_embedding))
        for name, _ in tables.parts:
            out[f"{name}/user"], out[f"{name}/item"] = user[:, tables.columns(name)], item[:, tables.columns(name)]
    if "mlp" in names:
        for n, dense in enumerate(model.get_layer("mlp").hidden):
            out[f"mlp/dense_{n}/kernel"], out[f"mlp/dense_{n}/bias"] = value_of(dense.kernel), value_of(dense.bias)
    if "head" in names:
        head = model.get_layer("head")
        out["head/kernel"], out["head/bias"] = value_of(head.kernel), value_of(head.bias)
    if "mf" in names:
        mf = model.get_layer("mf")
        out["mf/user"], out["mf/item"] = value_of(mf.user_embedding.embeddings), value_of(mf.item_embedding.embeddings)
        out["mf/user_bias"] = keras.ops.convert_to_numpy(value_of(mf.user_bias.embeddings))[:, 0]
        out["mf/item_bias"] = keras.ops.convert_to_numpy(value_of(mf.item_bias.embeddings))[:, 0]
        out["mf/bias"] = value_of(mf.bias)
    return {name: np.array(keras.ops.convert_to_numpy(v), dtype=np.float32, order="C") for name, v in out.items()}


def import_weights(model: keras.Model, weights: dict[str, np.ndarray], user_rows: np.ndarray,
                   item_rows: np.ndarray, target_of: Callable | None = None) -> None:
    """The inverse of `export_weights` for a model whose tables may have grown: row `r` of a user table takes
    row `user_rows[r]` of the exported one (what the target held where it is -1: a fresh model's row), items
    alike; dense weights are taken whole. `target_of(variable)` names what to write instead of each variable
    (its optimiser moment). Shapes that do not fit raise `ConfigError` naming the array."""
    if target_of is None:
        def target_of(variable):
            return variable

    def rows(table, parts: list[tuple[str, slice]], mapping: np.ndarray) -> None:
        table = target_of(table)
        value = np.array(keras.ops.convert_to_numpy(table), dtype=np.float32)
        keep = np.flatnonzero(mapping >= 0)
        for name, columns in parts:
            old, width = weights.get(name), value[:, columns].shape[1]
            if old is None or old.ndim != 2 or old.shape[1] != width:
                raise ConfigError(f"warm-start array {name!r} has shape {None if old is None else old.shape}; "
                                  f"this model's has {width} columns")
            value[keep, columns] = old[mapping[keep]]
        table.assign(value)

    def whole(variable, name: str) -> None:
        variable = target_of(variable)
        old = weights.get(name)
        if old is None or old.shape != tuple(variable.shape):
            raise ConfigError(f"warm-start array {name!r} has shape {None if old is None else old.shape}, this "
                              f"model's {tuple(variable.shape)}")
        variable.assign(old)

    weights = {name: value[:, None] if name in ("mf/user_bias", "mf/item_bias") and value.ndim == 1 else value
               for name, value in weights.items()}
    names = {layer.name for layer in model.layers}
    if "embeddings" in names:
        tables = model.get_layer("embeddings")
        for side, mapping in (("user", user_rows), ("item", item_rows)):
            rows(getattr(tables, f"{side}_embedding").embeddings,
                 [(f"{name}/{side}", tables.columns(name)) for name, _ in tables.parts], mapping)
    if "mlp" in names:
        for n, dense in enumerate(model.get_layer("mlp").hidden):
            whole(dense.kernel, f"mlp/dense_{n}/kernel")
            whole(dense.bias, f"mlp/dense_{n}/bias")
    if "head" in names:
        head = model.get_layer("head")
        whole(head.kernel, "head/kernel")
        whole(head.bias, "head/bias")
    if "mf" in names:
        mf = model.get_layer("mf")
        rows(mf.user_embedding.embeddings, [("mf/user", slice(None))], user_rows)
        rows(mf.item_embedding.embeddings, [("mf/item", slice(None))], item_rows)
        for side, mapping in (("user", user_rows), ("item", item_rows)):  # exported as [n], kept as [n, 1]
            rows(getattr(mf, f"{side}_bias").embeddings, [(f"mf/{side}_bias", slice(None))], mapping)
        whole(mf.bias, "mf/bias")
