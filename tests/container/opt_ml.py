"""Lays out a fake /opt/ml tree as SageMaker presents it to a training container."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).parents[2]

#: Small and fast: a training job of the synthetic data in a few seconds.
SMALL = {"epochs": "2", "factors": "4", "mlp_layers": "[8, 4]", "batch_size": "256"}


def lay_out(root: Path, channels: dict[str, dict[str, bytes]], hyperparameters: dict | None = None,
            mode: str = "File", resources: dict | None = None, checkpoints: bool = False,
            tensorboard: bool = False) -> Path:
    """channels: {name: {file name: bytes}}; in Pipe mode each channel's files are ignored (write FIFOs)."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({**SMALL, **(hyperparameters or {})}))
    (config / "inputdataconfig.json").write_text(json.dumps({
        name: {"ContentType": "text/csv", "TrainingInputMode": mode, "S3DistributionType": "FullyReplicated",
               "RecordWrapperType": "None"} for name in channels}))
    if resources is not None:
        (config / "resourceconfig.json").write_text(json.dumps(resources))
    for name, files in channels.items():
        folder = root / "input" / "data" / name
        folder.mkdir(parents=True)
        for file_name, data in files.items():
            (folder / file_name).write_bytes(data)
    (root / "model").mkdir()
    (root / "output").mkdir()
    if checkpoints:
        (root / "checkpoints").mkdir()
    if tensorboard:
        (root / "output" / "tensorboard").mkdir()
    return root


def env(root: Path) -> dict[str, str]:
    return {**os.environ, "SAGEMAKER_BASE_DIR": str(root), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def train_command() -> list[str]:
    return [sys.executable, "-c", "from container.train import entry_point; entry_point()"]


def run_train(root: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`train` exactly as SageMaker runs it: no arguments, everything from the tree."""
    return subprocess.run(train_command(), cwd=ROOT, env=env(root), capture_output=True, text=True, timeout=timeout)


def tar_gz(folder: Path) -> bytes:
    """A model folder as SageMaker uploads it: model.tar.gz of the folder's contents."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(folder.iterdir()):
            archive.add(path, arcname=path.name)
    return buffer.getvalue()
