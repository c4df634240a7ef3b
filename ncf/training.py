"""The library's training API in one import: `fit` a `TrainConfig` on a `Dataset`, then `to_artifact`.

Callers (the container, the benchmarks, docs/library.md) import from here; each name lives in the module of
its concern, where a reader looks for it:

- `config`: `TrainConfig`, its modes and their spellings;
- `history`: `EpochLog` (one validation round) and `TrainResult`;
- `loop`: one stage's loop, the compiled steps and early stopping (`EarlyStopping`);
- `stages`: `fit`, the stages around the loop (pretraining, calibration, the refit);
- `export`: scorers of a Keras model, the model folder's contents, the optimiser's state;
- `checkpoint`: the resumable state, and which state may be resumed (`data_key`).

The constants here are copies, for reading: the code reads each in its own module, so a test that changes
one (`STEP_CALL_EXAMPLES`, `VALIDATION_USERS`) sets it there.
"""

from .checkpoint import data_key
from .config import OPTIMIZERS, PRETRAIN_MODES, REFIT_MODES, TrainConfig
from .export import keras_logits, keras_scorer, optimizer_state, to_artifact
from .history import EpochLog, TrainResult
from .loop import PROGRESS_SECONDS, STEP_CALL_EXAMPLES, EarlyStopping, Progress
from .stages import VALIDATION_USERS, fit

__all__ = [
    "OPTIMIZERS", "PRETRAIN_MODES", "PROGRESS_SECONDS", "REFIT_MODES", "STEP_CALL_EXAMPLES", "VALIDATION_USERS",
    "EarlyStopping", "EpochLog", "Progress", "TrainConfig", "TrainResult", "data_key", "fit", "keras_logits",
    "keras_scorer", "optimizer_state", "to_artifact",
]
