"""Data parallelism through TensorFlow's own strategies, for one process or several.

Training runs under a `tf.distribute.Strategy`: the default one in a single process, `MirroredStrategy`
across the GPUs of one machine, `MultiWorkerMirroredStrategy` across machines (the container builds it; this
library never learns where the workers are). Every worker draws the same epoch of examples (the generator is
seeded by `(seed, epoch)`), cuts each global batch into one slice per replica, and the gradients are summed
across replicas, so a step on N replicas is the step one process takes on the whole batch, up to float order.

The helpers here are the only collectives outside the gradient all-reduce: `agree` averages a few numbers
(validation metrics, so that every worker takes the same early-stopping decision) and `gather` collects one
number per replica (to check that every worker built the same data).
"""

from __future__ import annotations

import numpy as np


def default_strategy():
    import tensorflow as tf

    return tf.distribute.get_strategy()


def sharded_batches(strategy, users: np.ndarray, items: np.ndarray, labels: np.ndarray, batch_size: int):
    """This worker's share of one epoch: `(distributed dataset, steps)`.

    Global batch k covers examples `[k*B, (k+1)*B)`; replica r of R gets its r-th slice of ceil(B/R) examples
    (the last batch's slices may be short or empty). Each element carries the global batch's size, so a replica
    divides its summed loss by it and the all-reduced gradient is that of the global batch's mean loss.
    Elements are whole slices cut from arrays in memory: batching single examples in tf.data costs ~40%.
    """
    import tensorflow as tf

    n = len(labels)
    steps = -(-n // batch_size)
    replicas = strategy.num_replicas_in_sync
    per_replica = -(-batch_size // replicas)

    def dataset_fn(context):
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local
        u, i, y = tf.constant(users), tf.constant(items), tf.constant(labels)

        def element(e):  # int64 throughout: Dataset.range counts in int64
            k = e // local
            start = k * batch_size + (first + e % local) * per_replica
            end = tf.minimum(start + per_replica, tf.minimum((k + 1) * batch_size, tf.constant(n, tf.int64)))
            start = tf.minimum(start, end)
            size = tf.cast(tf.minimum(tf.constant(batch_size, tf.int64), n - k * batch_size), tf.float32)
            return {"user": u[start:end], "item": i[start:end]}, y[start:end], size

        return tf.data.Dataset.range(steps * local).map(element).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset_fn), steps


def agree(strategy, values) -> np.ndarray:
    """The mean of `values` (a few floats) over all replicas; identical on every worker."""
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1:
        return np.asarray(values, np.float64).reshape(-1)

    def replica(vector):
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, vector)

    return _run(strategy, replica, np.asarray(values, np.float64).reshape(-1))


def gather(strategy, value: float) -> np.ndarray:
    """`[replicas]`: every replica's `value` (exact for integers below 2**53), in replica order."""
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1:
        return np.asarray([value], np.float64)

    replicas = strategy.num_replicas_in_sync

    def replica(value):
        context = tf.distribute.get_replica_context()
        one_hot = tf.one_hot(context.replica_id_in_sync_group, replicas, dtype=tf.float64)
        return context.all_reduce(tf.distribute.ReduceOp.SUM, one_hot * value)

    return _run(strategy, replica, np.float64(value))


def _run(strategy, replica_fn, argument) -> np.ndarray:
    """`replica_fn(argument)` on every replica inside a tf.function (eager collectives are slow and warn)."""
    import tensorflow as tf

    @tf.function
    def run(argument):
        # A bare function argument has no device for the all-reduce to start from ("destinations can not be
        # empty"): tf.identity gives it the replica's.
        per_replica = strategy.run(lambda a: replica_fn(tf.identity(a)), args=(argument,))
        return strategy.experimental_local_results(per_replica)[0]

    return np.asarray(run(tf.constant(argument)).numpy())
