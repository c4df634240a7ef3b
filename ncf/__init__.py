"""NeuMF and friends for implicit feedback: reading data, vocabularies, splits, negative sampling, models,
training, evaluation, the model folder, item metadata and filters, and numpy inference (top-k, fold-in).

Importing `ncf` does not import TensorFlow: serving (`ncf.recommender`, `ncf.inference`, `ncf.foldin`,
`ncf.filters`, `ncf.metadata`) runs on numpy alone. The modules that build and train models (`models`,
`loop`, `distribute`, `savedmodel`) import TensorFlow when they are imported themselves; `training`, the
one-import training API, imports it when it trains.
"""

__version__ = "0.1.0"
