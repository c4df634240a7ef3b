"""Export a trained model as a TensorFlow SavedModel that takes raw ids.

So TF Serving (or any TensorFlow program) can host the same model the numpy Recommender serves. The
signature `serving_default(user: string [n], item: string [n])` returns `probability [n]` (calibrated as the
numpy Recommender's, `calibration`) and `known [n]` (false where either id is not in the vocabulary; its
probability is then meaningless). Integer ids are passed as their decimal text, exactly as `str(id)` writes
them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from .calibration import Calibration
from .errors import ArtifactError
from .vocab import Vocabulary


def _table(vocab: Vocabulary) -> tf.lookup.StaticHashTable:
    keys = tf.constant(vocab.ids.astype(str))
    values = tf.range(len(vocab), dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)


class _RawIdModel(tf.Module):
    def __init__(self, model, users: Vocabulary, items: Vocabulary, calibration: Calibration):
        super().__init__(name="ncf")
        self.model = model
        self.scale = tf.constant(calibration.scale, tf.float32)
        self.bias = tf.constant(calibration.bias, tf.float32)
        self.user_table = _table(users)
        self.item_table = _table(items)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user"),
                                  tf.TensorSpec([None], tf.string, name="item")])
    def serve(self, user, item):
        u = self.user_table.lookup(user)
        i = self.item_table.lookup(item)
        known = tf.logical_and(u >= 0, i >= 0)
        logits = self.model({"user": tf.cast(tf.maximum(u, 0), tf.int32),
                             "item": tf.cast(tf.maximum(i, 0), tf.int32)}, training=False)
        return {"probability": tf.sigmoid(self.scale * logits + self.bias), "known": known}


def export_saved_model(model, users: Vocabulary, items: Vocabulary, path: Path,
                       calibration: Calibration | None = None) -> None:
    module = _RawIdModel(model, users, items, calibration or Calibration())
    try:
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    except tf.errors.OpError as e:  # TensorFlow reports a full disk or a read-only folder in its own types
        raise ArtifactError(f"cannot write the SavedModel to {path}: {e.message}") from e


def load_signature(path: Path):
    """The `serving_default` function of an exported folder (for tests and TF users)."""
    return tf.saved_model.load(str(path)).signatures["serving_default"]

