"""The training job's configuration, read once from `/opt/ml/input/config` into one frozen object.

`TrainJob.from_paths` is the only place that reads SageMaker's config files; everything after it takes typed
values. `TrainJob.local` builds the same object from command-line arguments, so a local run goes through
exactly the code a training job does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ncf.errors import ConfigError

from .cluster import Cluster
from .hyperparameters import Hyperparameters
from .paths import SageMakerPaths

INPUT_MODES = ("File", "FastFile", "Pipe")
#: Data channels, `model`: SageMaker's channel for incremental training (a previous job's model.tar.gz), and
#: `items`: item metadata (`ncf.items`), a table read whole.
CHANNELS = ("train", "validation", "test", "model", "items")


@dataclass(frozen=True)
class Channel:
    """One input channel. `source` is a folder or file (File, FastFile) or the first pass's FIFO (Pipe)."""

    name: str
    source: Path
    input_mode: str = "File"
    distribution: str = "FullyReplicated"
    compression: str = "None"

    @property
    def is_pipe(self) -> bool:
        return self.input_mode == "Pipe"


@dataclass(frozen=True)
class TrainJob:
    """Everything `train` needs: where to read and write, and how to train."""

    hyperparameters: Hyperparameters
    channels: dict[str, Channel]
    model_dir: Path
    output_data_dir: Path
    failure_file: Path | None = None
    checkpoint_dir: Path | None = None
    tensorboard_dir: Path | None = None
    cluster: Cluster = field(default_factory=Cluster)
    #: A previous model to start from (`ncf.warmstart`): a model folder, or a folder holding model.tar.gz.
    warm_start: Path | None = None
    #: An items table (`ncf.items`): a file or a folder of parts, written into the model folder.
    items: Path | None = None

    @classmethod
    def from_paths(cls, paths: SageMakerPaths, environ: Mapping[str, str] | None = None) -> "TrainJob":
        hyperparameters = Hyperparameters.parse(_json(paths.hyperparameters, default={}))
        channels = _channels(paths, _json(paths.input_data_config, default=None))
        model = channels.pop("model", None)
        if model is not None and model.is_pipe:
            raise ConfigError("channel 'model': Pipe mode streams records, a model is files; use File mode")
        if model is not None and model.distribution == "ShardedByS3Key":
            raise ConfigError("channel 'model': S3DistributionType=ShardedByS3Key would give the model.tar.gz to one "
                              "host alone; use FullyReplicated")
        items = channels.pop("items", None)
        if items is not None and items.is_pipe:
            raise ConfigError("channel 'items': Pipe mode streams records, and item metadata is a table read whole; "
                              "use File or FastFile mode")
        if items is not None and items.distribution == "ShardedByS3Key":
            raise ConfigError("channel 'items': S3DistributionType=ShardedByS3Key would give each host part of the "
                              "item table; use FullyReplicated")
        cluster = Cluster.parse(_json(paths.resource_config, default={}), str(paths.resource_config), environ or {})
        return cls(
            hyperparameters=hyperparameters,
            channels=channels,
            model_dir=paths.model,
            output_data_dir=paths.output_data,
            failure_file=paths.failure,
            checkpoint_dir=paths.checkpoints if paths.checkpoints.is_dir() else None,
            tensorboard_dir=paths.tensorboard if paths.tensorboard.is_dir() else None,
            cluster=cluster,
            warm_start=model.source if model is not None else None,
            items=items.source if items is not None else None,
        )

    @classmethod
    def local(cls, ratings: Path, model_dir: Path, raw_hyperparameters: dict[str, Any],
              output_dir: Path | None = None, checkpoint_dir: Path | None = None,
              validation: Path | None = None, test: Path | None = None,
              warm_start: Path | None = None, items: Path | None = None) -> "TrainJob":
        sources = {"train": ratings, "validation": validation, "test": test}
        channels = {name: Channel(name, Path(path)) for name, path in sources.items() if path is not None}
        return cls(
            hyperparameters=Hyperparameters.parse(raw_hyperparameters),
            channels=channels,
            model_dir=Path(model_dir),
            output_data_dir=Path(output_dir) if output_dir else Path(model_dir).parent / "output",
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
            warm_start=Path(warm_start) if warm_start else None,
            items=Path(items) if items else None,
        )


def _json(path: Path, default: Any) -> Any:
    if not path.is_file():
        if default is None:
            raise ConfigError(f"{path} is missing: SageMaker writes it for every training job")
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e})") from e


def _channels(paths: SageMakerPaths, config: Any) -> dict[str, Channel]:
    if not isinstance(config, dict):
        raise ConfigError(f"{paths.input_data_config} must hold a JSON object of channel names")
    unknown = sorted(set(config) - set(CHANNELS))
    if unknown:
        raise ConfigError(f"unknown channel(s) {unknown}; this algorithm reads {list(CHANNELS)}")
    if "train" not in config:
        raise ConfigError(f"the 'train' channel is required (channels given: {sorted(config)})")
    channels = {}
    for name, spec in config.items():
        spec = spec if isinstance(spec, dict) else {}
        mode = spec.get("TrainingInputMode", "File")
        if mode not in INPUT_MODES:
            raise ConfigError(f"channel {name!r}: TrainingInputMode {mode!r} is not one of {list(INPUT_MODES)}")
        wrapper = spec.get("RecordWrapperType", "None")
        if wrapper not in ("None", None):
            raise ConfigError(f"channel {name!r}: RecordWrapperType {wrapper!r} is not supported; use None "
                              "(plain CSV, TSV or Parquet files)")
        channels[name] = Channel(
            name=name,
            source=paths.pipe(name) if mode == "Pipe" else paths.channel(name),
            input_mode=mode,
            distribution=spec.get("S3DistributionType", "FullyReplicated"),
            compression=spec.get("CompressionType", "None") or "None",
        )
    return channels
