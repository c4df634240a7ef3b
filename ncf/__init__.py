"""NeuMF and friends for implicit feedback: data, training, evaluation, artifacts and numpy inference.

Importing `ncf` does not import TensorFlow: serving (`ncf.recommender`) runs on numpy alone. Modules that
train (`models`, `training`, `savedmodel`) import TensorFlow when they are imported themselves.
"""

__version__ = "0.1.0"
