"""The endpoint's settings, read once from the environment into one frozen object.

SageMaker configures a hosting container only through environment variables; these are the names AWS's own
images read (`SAGEMAKER_*` first, the older `MODEL_SERVER_*` second). Nothing else reads the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ncf.errors import ConfigError

from .paths import SageMakerPaths


def _int(environ: Mapping[str, str], names: tuple[str, ...], default: int, low: int, high: int) -> int:
    for name in names:
        raw = environ.get(name)
        if raw is None or not raw.strip():
            continue
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None
        if not low <= value <= high:
            raise ConfigError(f"environment variable {name}={value} must be between {low} and {high}")
        return value
    return default


@dataclass(frozen=True)
class ServeConfig:
    model_dir: Path
    port: int = 8080
    workers: int = 1
    timeout: int = 60
    max_payload_mb: int = 6
    max_concurrent_transforms: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "ServeConfig":
        cpus = os.cpu_count() or 1
        workers = _int(environ, ("SAGEMAKER_MODEL_SERVER_WORKERS", "MODEL_SERVER_WORKERS"), cpus, 1, 256)
        return cls(
            model_dir=SageMakerPaths.from_env(environ).model,
            port=_int(environ, ("SAGEMAKER_BIND_TO_PORT",), 8080, 1, 65535),
            workers=workers,
            timeout=_int(environ, ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "MODEL_SERVER_TIMEOUT"), 60, 1, 3600),
            # Batch transform allows up to 100 MB per request; real-time endpoints 6 MB.
            max_payload_mb=_int(environ, ("SAGEMAKER_MAX_PAYLOAD_IN_MB",), 6, 1, 100),
            max_concurrent_transforms=_int(environ, ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS",), workers, 1, 256),
        )
