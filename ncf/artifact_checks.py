"""What `artifacts.load` checks before a model folder may serve: every array serving will index or print.

Kept apart from the reading and writing of the folder (`artifacts`) because it is a list of rules, one line
each, that grows with the format; `load` calls `check` once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .calibration import Calibration
from .errors import ArtifactError

#: The optimiser state's file name (`artifacts.OPTIMIZER`), for messages.
OPTIMIZER = "optimizer.npz"


def check(path: Path, a) -> None:
    """Everything serving will index or print, checked once at load (a few vectorised passes over the arrays),
    so that a folder that loads cannot later fail a request or answer NaN.

    Args:
        a: the `artifacts.ModelArtifact` just read.
    """
    from .kinds import MODEL_KINDS

    problems = []
    if a.kind not in MODEL_KINDS:
        problems.append(f"model kind {a.kind!r} is not one of {list(MODEL_KINDS)}")
    threshold = a.metadata.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        problems.append(f"threshold {threshold!r} is not a number from 0 to 1")
    try:
        Calibration.from_dict(a.metadata.get("calibration"))
    except ArtifactError as e:
        problems.append(str(e))
    indptr, indices = a.seen.indptr, a.seen.indices
    if len(indptr) != len(a.users) + 1:
        problems.append(f"seen items cover {len(indptr) - 1} users, vocabulary has {len(a.users)}")
    elif indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        problems.append("seen items are not integer arrays")
    elif indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
        problems.append("seen items' indptr is not a running count from 0 to the number of seen items")
    elif len(indices) and (indices.min() < 0 or indices.max() >= len(a.items)):
        problems.append(f"seen items hold item indices outside [0, {len(a.items)})")
    if a.popularity.shape != (len(a.items),):
        problems.append(f"popularity has shape {a.popularity.shape}, vocabulary has {len(a.items)} items")
    elif a.popularity.dtype.kind not in "iuf" or not np.all(np.isfinite(a.popularity)) or np.any(a.popularity < 0):
        problems.append("popularity holds values that are not finite counts >= 0")
    for name, array in a.weights.items():
        rows = {"/user": len(a.users), "/item": len(a.items)}
        for suffix, expected in rows.items():
            if name.endswith(suffix) and (array.ndim != 2 or array.shape[0] != expected):
                problems.append(f"weights {name} have shape {array.shape}, vocabulary has {expected} rows")
        if array.dtype.kind != "f":
            problems.append(f"weights {name} are {array.dtype}, not floating point")
        elif not np.all(np.isfinite(array)):
            problems.append(f"weights {name} hold NaN or infinite values")
    if a.optimizer is not None:
        problems += _optimizer_problems(a.optimizer, a.weights)
    if problems:
        raise ArtifactError(f"{path} is inconsistent: " + "; ".join(problems))


def _optimizer_problems(state: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> list[str]:
    """What keeps `optimizer.npz` from continuing these weights: a step count that is not one count >= 0, a
    moment of no weight or of another shape, a moment that is not finite, a second moment below zero."""
    problems = []
    steps = state.get("iterations")
    if steps is None or steps.shape != () or steps.dtype.kind not in "iu" or int(steps) < 0:
        problems.append(f"{OPTIMIZER}: 'iterations' is not one step count >= 0")
    for name, array in state.items():
        if name == "iterations":
            continue
        weight = weights.get(name[2:]) if name[:2] in ("m/", "v/") else None
        if weight is None or array.shape != weight.shape:
            problems.append(f"{OPTIMIZER}: {name} is no moment of a weight of its shape ({array.shape})")
        elif array.dtype.kind != "f" or not np.all(np.isfinite(array)) or (name[0] == "v" and np.any(array < 0)):
            problems.append(f"{OPTIMIZER}: {name} holds values no Adam moment has (NaN, infinite, or v < 0)")
    return problems
