"""The model kinds, in a module of their own: validating a config or a model folder (serving) needs the names
without importing training (pandas, pyarrow) or models (TensorFlow)."""

MODEL_KINDS = ("neumf", "gmf", "mlp", "mf")
