"""Array helpers the per-interaction paths share.

`np.unique` without `return_*` arguments takes numpy 2.4's hash-based path, which is two orders of magnitude
slower than sorting on this machine's data: 5M int64 keys took 10.6 s against 0.07 s for `np.sort` plus a
comparison of neighbours (23M: ~108 s). Vocabularies, seen-item matrices and splits call this instead.
"""

from __future__ import annotations

import numpy as np


def unique(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of a 1-D array (numbers or text), as `np.unique(values)` returns them."""
    ordered = np.sort(np.asarray(values))
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]
