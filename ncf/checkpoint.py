"""Resumable training state, in one file replaced atomically after every epoch.

A spot-interrupted job must continue, not restart. One `.npz` holds the model's variables (the dropout seed
generator included), the optimizer's, the best weights so far and, as a JSON string, the epoch, early-stopping
counters and history; it is written under a temporary name and renamed, so a kill during the write leaves the
previous checkpoint whole. Negatives need no saved state: each epoch's generator is seeded from
`(seed, epoch)`. No pickle: the file loads with `allow_pickle=False`. A checkpoint is resumed only by the
stage, hyperparameters and data that wrote it (`resumable`): anything else starts afresh.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .dataset import Dataset
from .history import EpochLog

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Where a training stage stood at the end of an epoch."""

    stage: str
    epoch: int
    config: dict
    history: list[EpochLog]
    best_epoch: int
    best_validation: dict
    best_key: tuple[float, float]
    waited: int
    model_variables: list[np.ndarray]
    optimizer_variables: list[np.ndarray]
    best_weights: list[np.ndarray] | None
    finished: bool = False
    data: dict | None = None  # `data_key` of the data it trained on
    #: The optimiser's variables when the best weights were taken: what ships beside them (a warm start
    #: continues from the weights' own moments and step, not from later steps').
    best_optimizer: list[np.ndarray] | None = None


class Checkpointer:
    """Saves and loads `TrainState` as `<directory>/<name>.npz`. `name` differs per host in multi-host jobs."""

    def __init__(self, directory: str | Path, name: str = "ncf-checkpoint"):
        self.path = Path(directory) / f"{name}.npz"

    def stage(self, stage: str) -> "Checkpointer":
        """A checkpoint of a later stage of the same run beside this one (`<name>-<stage>.npz`)."""
        return Checkpointer(self.path.parent, f"{self.path.stem}-{stage}")

    def save(self, state: TrainState) -> None:
        meta = {k: v for k, v in asdict(state).items()
                if k not in ("model_variables", "optimizer_variables", "best_weights", "best_optimizer", "history")}
        meta["history"] = [asdict(e) for e in state.history]
        meta["has_best"] = state.best_weights is not None
        meta["has_best_optimizer"] = state.best_optimizer is not None
        arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        arrays.update({f"model_{n}": v for n, v in enumerate(state.model_variables)})
        arrays.update({f"optimizer_{n}": v for n, v in enumerate(state.optimizer_variables)})
        arrays.update({f"best_{n}": v for n, v in enumerate(state.best_weights or [])})
        arrays.update({f"bestopt_{n}": v for n, v in enumerate(state.best_optimizer or [])})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def load(self) -> TrainState | None:
        """The saved state, or None when there is none or it cannot be read (logged: then training restarts)."""
        if not self.path.is_file():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as npz:
                meta = json.loads(npz["meta"].tobytes().decode())

                def series(prefix: str) -> list[np.ndarray]:
                    count = sum(1 for name in npz.files if name.startswith(prefix))
                    return [npz[f"{prefix}{n}"] for n in range(count)]

                model, optimizer, best = series("model_"), series("optimizer_"), series("best_")
                best_optimizer = series("bestopt_")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, json.JSONDecodeError) as e:
            log.warning("ignoring unreadable checkpoint %s (%s)", self.path, e)
            return None
        return TrainState(
            stage=meta["stage"], epoch=meta["epoch"], config=meta["config"],
            history=[EpochLog(**e) for e in meta["history"]], best_epoch=meta["best_epoch"],
            best_validation=meta["best_validation"], best_key=tuple(meta["best_key"]), waited=meta["waited"],
            model_variables=model, optimizer_variables=optimizer, best_weights=best if meta["has_best"] else None,
            finished=meta.get("finished", False), data=meta.get("data"),
            best_optimizer=best_optimizer if meta.get("has_best_optimizer") else None,
        )


def resumable(checkpoint: Checkpointer | None, stage: str, config: TrainConfig, dataset: Dataset) -> TrainState | None:
    """The checkpointed state of this stage, these hyperparameters and this data, or None to start afresh.

    SageMaker restores a job's checkpoint prefix at every start: a job on new data with the prefix of an old
    one must train, not ship the old model."""
    resume = checkpoint.load() if checkpoint is not None else None
    if resume is not None and (resume.stage != stage or resume.config != config.to_dict()):
        log.warning("checkpoint %s was written with other hyperparameters; starting afresh", checkpoint.path)
        resume = None
    if resume is not None and resume.data != data_key(dataset):
        log.warning("checkpoint %s was written for other data (%s; this job's: %s); starting afresh",
                    checkpoint.path, resume.data, data_key(dataset))
        resume = None
    return resume


def data_key(dataset: Dataset) -> dict:
    """What a checkpoint must match to be resumed: the data's fingerprint and the tables' sizes."""
    return {"fingerprint": dataset.fingerprint(), "users": dataset.n_users, "items": dataset.n_items,
            "train": len(dataset.train)}
