import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from ncf.models import build_model, embedding_tables  # noqa: E402
from ncf.optimizers import LazyAdam  # noqa: E402


def train(optimizer_kind, users, items, labels, steps=5, l2=1e-2):
    """`steps` Adam steps on a tiny MF; returns the final weights by name."""
    keras.utils.set_random_seed(3)
    lazy = optimizer_kind == "lazy"
    model = build_model("mf", 6, 5, factors=3, l2=l2, embedding_l2=0.0 if lazy else l2)
    optimizer = LazyAdam(0.05, row_l2=l2, penalised=embedding_tables(model)) if lazy else keras.optimizers.Adam(0.05)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = model({"user": tf.constant(users), "item": tf.constant(items)}, training=True)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.constant(labels), logits=logits))
            if model.losses:
                loss += tf.add_n(model.losses)
        gradients = tape.gradient(loss, model.trainable_variables)
        if not lazy:  # Adam on the whole gradient (Keras' Adam squares repeated rows of a sparse one one by one)
            gradients = [tf.convert_to_tensor(g) for g in gradients]
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))

    for _ in range(steps):
        step()
    return {v.path: v.numpy() for v in model.trainable_variables}, optimizer


def test_when_every_row_is_in_every_batch_lazy_adam_is_adam():
    # ids repeat within the batch: their gradient rows are summed before the update, as in a dense gradient
    users = np.array([0, 1, 2, 3, 4, 5, 0, 3], np.int32)
    items = np.array([0, 1, 2, 3, 4, 0, 0, 1], np.int32)
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 1], np.float32)
    lazy, _ = train("lazy", users, items, labels)
    dense, _ = train("dense", users, items, labels)
    assert lazy.keys() == dense.keys()
    for name in lazy:
        np.testing.assert_allclose(lazy[name], dense[name], atol=2e-6, err_msg=name)


def test_rows_that_no_batch_touched_keep_their_weights_and_moments():
    users = np.array([0, 1, 0], np.int32)
    items = np.array([2, 2, 3], np.int32)
    labels = np.array([1, 0, 0], np.float32)
    before, _ = train("lazy", users, items, labels, steps=0)
    after, optimizer = train("lazy", users, items, labels)
    user_table = next(name for name in after if name.endswith("user/embeddings"))
    item_table = next(name for name in after if name.endswith("item/embeddings"))
    np.testing.assert_array_equal(after[user_table][2:], before[user_table][2:])
    np.testing.assert_array_equal(after[item_table][[0, 1, 4]], before[item_table][[0, 1, 4]])
    assert not np.array_equal(after[user_table][:2], before[user_table][:2])
    moments = [v.numpy() for v in optimizer.variables[1:]]
    user_moments = [m for m in moments if m.shape == after[user_table].shape]
    assert user_moments and all(not m[2:].any() and m[:2].any() for m in user_moments)
    assert int(optimizer.iterations.numpy()) == 5
