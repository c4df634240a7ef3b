import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from ncf.models import build_model, embedding_tables  # noqa: E402
from ncf.optimizers import LazyAdam  # noqa: E402


def train(optimizer_kind, users, items, labels, steps=5, l2=1e-2, whole_rows=0):
    """`steps` Adam steps on a tiny MF (6 users, 5 items); returns the final weights by name. One batch, or
    (2-D `users`, `items`, `labels`) step k takes row k % len(users). `whole_rows`: LazyAdam's, 0 updates every
    table row by row, 6 every table whole."""
    users, items, labels = np.atleast_2d(users), np.atleast_2d(items), np.atleast_2d(labels)
    keras.utils.set_random_seed(3)
    lazy = optimizer_kind == "lazy"
    model = build_model("mf", 6, 5, factors=3, l2=l2, embedding_l2=0.0 if lazy else l2)
    optimizer = (LazyAdam(0.05, row_l2=l2, penalised=embedding_tables(model), whole_rows=whole_rows) if lazy
                 else keras.optimizers.Adam(0.05))
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(users, items, labels):
        with tf.GradientTape() as tape:
            logits = model({"user": users, "item": items}, training=True)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
            if model.losses:
                loss += tf.add_n(model.losses)
        gradients = tape.gradient(loss, model.trainable_variables)
        if not lazy:  # Adam on the whole gradient (Keras' Adam squares repeated rows of a sparse one one by one)
            gradients = [tf.convert_to_tensor(g) for g in gradients]
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))

    for k in range(steps):
        row = k % len(users)
        step(tf.constant(users[row]), tf.constant(items[row]), tf.constant(labels[row]))
    return {v.path: v.numpy() for v in model.trainable_variables}, optimizer


@pytest.mark.parametrize("whole_rows", [0, 6], ids=["row by row", "whole tables"])
def test_when_every_row_is_in_every_batch_lazy_adam_is_adam(whole_rows):
    # ids repeat within the batch: their gradient rows are summed before the update, as in a dense gradient
    users = np.array([0, 1, 2, 3, 4, 5, 0, 3], np.int32)
    items = np.array([0, 1, 2, 3, 4, 0, 0, 1], np.int32)
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 1], np.float32)
    lazy, _ = train("lazy", users, items, labels, whole_rows=whole_rows)
    dense, _ = train("dense", users, items, labels)
    assert lazy.keys() == dense.keys()
    for name in lazy:
        np.testing.assert_allclose(lazy[name], dense[name], atol=2e-6, err_msg=name)


@pytest.mark.parametrize("whole_rows", [0, 6], ids=["row by row", "whole tables"])
def test_rows_that_no_batch_touched_keep_their_weights_and_moments(whole_rows):
    users = np.array([0, 1, 0], np.int32)
    items = np.array([2, 2, 3], np.int32)
    labels = np.array([1, 0, 0], np.float32)
    before, _ = train("lazy", users, items, labels, steps=0)
    after, optimizer = train("lazy", users, items, labels, whole_rows=whole_rows)
    user_table = next(name for name in after if name.endswith("user/embeddings"))
    item_table = next(name for name in after if name.endswith("item/embeddings"))
    np.testing.assert_array_equal(after[user_table][2:], before[user_table][2:])
    np.testing.assert_array_equal(after[item_table][[0, 1, 4]], before[item_table][[0, 1, 4]])
    assert not np.array_equal(after[user_table][:2], before[user_table][:2])
    moments = [v.numpy() for v in optimizer.variables[1:]]
    user_moments = [m for m in moments if m.shape == after[user_table].shape]
    assert user_moments and all(not m[2:].any() and m[:2].any() for m in user_moments)
    assert int(optimizer.iterations.numpy()) == 5


# one batch: rows 2-5 of the users and 0, 1, 4 of the items never looked up, user 0 and item 2 twice a batch
ONE_BATCH = (np.array([0, 1, 0], np.int32), np.array([2, 2, 3], np.int32), np.array([1, 0, 0], np.float32))
# steps that each skip rows looked up before: the mask, not the gradient's zeros, must keep those rows (their
# moments would decay and their L2 apply otherwise)
SKIPPING = (np.array([[0, 1, 0], [2, 3, 2], [0, 2, 5]], np.int32),
            np.array([[2, 3, 3], [0, 4, 4], [2, 0, 1]], np.int32),
            np.array([[1, 0, 0], [0, 1, 1], [1, 0, 1]], np.float32))


@pytest.mark.parametrize("batches", [ONE_BATCH, SKIPPING], ids=["one batch", "batches skipping earlier rows"])
def test_a_table_updated_whole_ends_where_the_row_by_row_update_does(batches):
    by_row, by_row_optimizer = train("lazy", *batches, steps=7, whole_rows=0)
    whole, whole_optimizer = train("lazy", *batches, steps=7, whole_rows=6)
    for name in by_row:
        np.testing.assert_allclose(whole[name], by_row[name], rtol=1e-6, atol=1e-7, err_msg=name)
    for a, b in zip(whole_optimizer.variables, by_row_optimizer.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-9)
    tables = [weights for name, weights in whole.items() if name.endswith("embeddings")]
    assert len(tables) == 4 and not any(whole_optimizer.row_wise(t) for t in tables)  # factors, biases
    assert all(by_row_optimizer.row_wise(t) for t in tables)
