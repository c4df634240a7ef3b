"""Where SageMaker puts things, under one root.

SageMaker mounts everything under `/opt/ml`; AWS's own toolkit reads `SAGEMAKER_BASE_DIR` to run the same
code against another root outside a container, and so do we. Nothing else in the project spells these paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_ROOT = "/opt/ml"
#: The environment variable that moves the root (AWS's toolkit reads the same one).
ROOT_VARIABLE = "SAGEMAKER_BASE_DIR"


@dataclass(frozen=True)
class SageMakerPaths:
    root: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "SageMakerPaths":
        return cls(Path(environ.get(ROOT_VARIABLE) or DEFAULT_ROOT))

    @property
    def config_dir(self) -> Path:
        return self.root / "input" / "config"

    @property
    def hyperparameters(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def input_data_config(self) -> Path:
        return self.config_dir / "inputdataconfig.json"

    @property
    def resource_config(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    @property
    def data_dir(self) -> Path:
        return self.root / "input" / "data"

    def channel(self, name: str) -> Path:
        """File and FastFile mode: a folder of files."""
        return self.data_dir / name

    def pipe(self, name: str, epoch: int = 0) -> Path:
        """Pipe mode: one FIFO per pass over the data, read once each."""
        return self.data_dir / f"{name}_{epoch}"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def failure(self) -> Path:
        return self.output / "failure"

    @property
    def tensorboard(self) -> Path:
        return self.output / "tensorboard"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"
