"""Adam whose cost per step grows with the batch, not with the embedding tables.

Keras' Adam rewrites every row of every table on every step: its moments decay everywhere, so a step over a
162k x 59k MF model (28M parameters, three copies with the moments) costs many times a step over a 5k x 2k one
on the same batch (docs/benchmarks.md, Tried and rejected: Keras' dense Adam). `LazyAdam` updates an embedding table
only in the rows the batch looked up (a gradient that arrives as `tf.IndexedSlices`): each lookup's gradient
row is summed with those of the same id, and the weights and both moments of those rows alone are gathered,
updated and scattered back. Dense variables (MLP kernels, biases, the head) get ordinary Adam.

The work is per lookup, `[batch, width]` with static shapes, so it compiles with XLA: a row looked up twice is
updated twice with the same values. Which lookups share an id comes from `tf.unique`, which the caller runs
outside XLA (`segments`): XLA lowers it to a sort many times slower than TensorFlow's own kernel (commit
d2945b3), and a step has one per table.

A table of at most twice as many rows as a step has lookups (`whole_rows`, `training` sets twice the batch:
ml-latest-small's 610 users at the default batch of 4,096, its 9,724 items too at 16,384) is cheaper to
update whole: the lookups' gradients are summed into a gradient of the table's shape (one scatter-add) and
every row goes through the same update, kept only where the step looked it up (a mask). The arithmetic and
the result are those of the row-wise path (up to the order of float sums); XLA's CPU gathers and scatters,
per lookup, cost more than a dense pass over a small table (`benchmarks/step_speed.py --row-wise`,
`docs/benchmarks.md`). Such a table needs no `segments`.

What changes in semantics, as in TensorFlow Addons' LazyAdam: a row's moments decay only on the steps that
touch it, and the L2 penalty of an embedding row (`row_l2`, the gradient `2 * l2 * w` of Keras'
`L2(l2)`) is applied on those steps only, instead of shrinking every row of the table each step. Bias
correction uses the global step count, like Keras' Adam. A row looked up several times in a batch gets the
sum of its gradients, as in a dense gradient (Keras' Adam, given the sparse one, squares each lookup's part
separately). `benchmarks/scale.py` shows the speed and
`benchmarks/ab.py` the quality against Keras' Adam (`--config lazy:optimizer=lazy_adam --config dense:optimizer=adam`).
"""

from __future__ import annotations


class LazyAdam:
    """Adam with row-wise ("lazy") updates of the variables whose gradients are `tf.IndexedSlices`.

    Args:
        learning_rate, beta_1, beta_2, epsilon: as `keras.optimizers.Adam` (same defaults).
        row_l2, penalised: the L2 coefficient applied to the rows a step touches of the `penalised` tables
            (the embeddings whose Keras layers then carry no regulariser of their own; `models.embedding_tables`).
        whole_rows: tables of at most this many rows are updated whole, under a mask of the rows a step looked
            up (`training` sets twice the batch size); larger ones row by row. 0: every table row by row.

    `build(variables)` creates the moments; `apply_gradients(pairs, segments)` takes one step, as Keras'
    optimisers do; `variables` lists the state (step count and moments) for checkpoints, in a fixed order.
    One process only: the scatters update the variables in place, not through a distribution strategy's
    mirrored updates.
    """

    def __init__(self, learning_rate: float, *, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 row_l2: float = 0.0, penalised=(), whole_rows: int = 0):
        self.learning_rate, self.beta_1, self.beta_2, self.epsilon = learning_rate, beta_1, beta_2, epsilon
        self.row_l2, self.whole_rows = row_l2, whole_rows
        self._penalised = {id(v) for v in penalised}
        self.iterations = None
        self._moments: list[tuple] = []
        self._slots: dict[int, tuple] = {}

    def build(self, variables) -> None:
        import tensorflow as tf

        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self._moments = [
            (tf.Variable(tf.zeros_like(v), trainable=False, name=f"m_{n}"),
             tf.Variable(tf.zeros_like(v), trainable=False, name=f"v_{n}"))
            for n, v in enumerate(variables)
        ]
        self._slots = {id(v): pair for v, pair in zip(variables, self._moments)}

    def moments(self, variable) -> tuple:
        """`(m, v)`, Adam's two moment variables of one of the built `variable`s, shaped like it."""
        return self._slots[id(variable)]

    def row_wise(self, variable) -> bool:
        """Whether a sparse gradient of `variable` is applied row by row (and wants its `segments`)."""
        return variable.shape[0] > self.whole_rows

    @property
    def variables(self) -> list:
        return [self.iterations] + [moment for pair in self._moments for moment in pair]

    def apply_gradients(self, pairs, segments: dict | None = None) -> None:
        """One step. `segments` maps `id(variable)` of a `row_wise` table to `tf.unique(ids)[1]` of the ids that
        looked it up, in the order of its gradient's rows (computed here when missing)."""
        import tensorflow as tf

        gradients, variables = zip(*pairs)
        segments = segments or {}
        step = tf.cast(self.iterations.assign_add(1), tf.float32)
        alpha = self.learning_rate * tf.sqrt(1.0 - tf.pow(self.beta_2, step)) / (1.0 - tf.pow(self.beta_1, step))
        for gradient, variable, (m, v) in zip(gradients, variables, self._moments):
            if gradient is None:
                continue
            if isinstance(gradient, tf.IndexedSlices):
                l2 = self.row_l2 if id(variable) in self._penalised else 0.0
                if not self.row_wise(variable):
                    self._apply_whole(gradient, _tf_variable(variable), m, v, alpha, l2)
                    continue
                segment = segments.get(id(variable))
                if segment is None:
                    segment = tf.unique(gradient.indices)[1]
                self._apply_rows(gradient, segment, _tf_variable(variable), m, v, alpha, l2)
            else:
                m.assign(self.beta_1 * m + (1.0 - self.beta_1) * gradient)
                v.assign(self.beta_2 * v + (1.0 - self.beta_2) * tf.square(gradient))
                variable.assign_sub(alpha * m / (tf.sqrt(v) + self.epsilon))

    def _apply_rows(self, gradient, segment, variable, m, v, alpha, l2: float) -> None:
        """The update of the rows in `gradient.indices` alone, one `[lookups, width]` row per lookup: the
        lookups of one id (same `segment`) get its summed gradient, so they compute and write the same values."""
        import tensorflow as tf

        ids = gradient.indices
        lookups = tf.shape(ids)[0]
        rows = tf.gather(tf.math.unsorted_segment_sum(gradient.values, segment, lookups), segment)
        weights = tf.gather(variable, ids)
        if l2:
            rows += 2.0 * l2 * weights
        m_rows = self.beta_1 * tf.gather(m, ids) + (1.0 - self.beta_1) * rows
        v_rows = self.beta_2 * tf.gather(v, ids) + (1.0 - self.beta_2) * tf.square(rows)
        m.scatter_update(tf.IndexedSlices(m_rows, ids))
        v.scatter_update(tf.IndexedSlices(v_rows, ids))
        variable.scatter_update(tf.IndexedSlices(weights - alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), ids))

    def _apply_whole(self, gradient, variable, m, v, alpha, l2: float) -> None:
        """`_apply_rows`' update as one pass over the table: the same values in the rows the step looked up,
        the others left as they were. `[rows, width]` temporaries, for tables of at most `whole_rows` rows."""
        import tensorflow as tf

        ids, rows = gradient.indices, variable.shape[0]
        summed = tf.math.unsorted_segment_sum(gradient.values, ids, rows)
        looked_up = tf.math.unsorted_segment_max(tf.ones_like(ids, tf.int32), ids, rows)[:, None] > 0
        weights = variable.read_value()
        if l2:
            summed += 2.0 * l2 * weights
        m_rows = self.beta_1 * m + (1.0 - self.beta_1) * summed
        v_rows = self.beta_2 * v + (1.0 - self.beta_2) * tf.square(summed)
        m.assign(tf.where(looked_up, m_rows, m))
        v.assign(tf.where(looked_up, v_rows, v))
        variable.assign(tf.where(looked_up, weights - alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), weights))


def _tf_variable(variable):
    """The `tf.Variable` under a Keras 3 variable: only it has the scatter methods."""
    import keras

    return variable.value if isinstance(variable, keras.Variable) else variable
