"""The endpoint's settings, read once from the environment into one frozen object.

SageMaker configures a hosting container only through environment variables; these are the names AWS's own
images read (`SAGEMAKER_*` first, the older `MODEL_SERVER_*` second). Nothing else reads the environment.

The limits that keep a request from outliving its worker are settings too, so they live here with the timeout
they derive from (SageMaker's API reference is the source of each number):
- real-time `InvokeEndpoint`: the container must answer within 60 s, in at most 6 MB;
- batch transform (`SAGEMAKER_BATCH=true`): `ModelClientConfig.InvocationsTimeoutInSeconds` is 1 to 3600 s
  (600 when the job does not set it), `MaxPayloadInMB` at most 100, and `MaxConcurrentTransforms *
  MaxPayloadInMB` at most 100 too. The container is not told the job's InvocationsTimeoutInSeconds, so batch
  mode defaults the worker timeout to SageMaker's 600 s; a job that allows more sets
  `SAGEMAKER_MODEL_SERVER_TIMEOUT` to the same value (`scripts/sagemaker_workflow.py` sets both to 3600).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ncf.errors import ConfigError
from ncf.spelling import SPELLINGS, spelled_bool

from .paths import DEFAULT_ROOT, ROOT_VARIABLE, SageMakerPaths


#: Seconds a real-time endpoint's container has to answer (InvokeEndpoint), and its default worker timeout.
REALTIME_TIMEOUT = 60
#: How long a batch transform waits for one invocation when the job does not set
#: ModelClientConfig.InvocationsTimeoutInSeconds: batch mode's default worker timeout.
BATCH_TIMEOUT = 600
#: The most a job may set InvocationsTimeoutInSeconds to: the largest worker timeout.
BATCH_TIMEOUT_MAX = 3600
#: The largest real-time response SageMaker passes back (InvokeEndpoint's 6 MB).
REALTIME_RESPONSE_BYTES = 6 * 1024 * 1024
#: Share of the timeout one request's estimated work may take; the rest absorbs the estimate's error (a
#: calibration of a few users, other workers sharing memory bandwidth). Above it a request is refused (413).
WORK_SHARE = 0.5


@dataclass(frozen=True)
class Setting:
    """One environment variable `serve` reads: the names it answers to (first wins), its default and effect as
    docs/serving.md shows them (generated from `ENVIRONMENT` by docs/tables.py, checked by a test)."""

    names: tuple[str, ...]
    default: str
    effect: str


_SHARE = "half" if WORK_SHARE == 0.5 else f"{WORK_SHARE:.0%}"
PORT = Setting(("SAGEMAKER_BIND_TO_PORT",), "8080", "port (inference pipelines set it)")
WORKERS = Setting(("SAGEMAKER_MODEL_SERVER_WORKERS", "MODEL_SERVER_WORKERS"), "CPU count", "gunicorn workers")
BATCH = Setting(
    ("SAGEMAKER_BATCH",), "false",
    f"`true` (batch transform sets it): timeout {BATCH_TIMEOUT} s by default (what SageMaker waits unless the job "
    f"says more), no {REALTIME_RESPONSE_BYTES >> 20} MB answer limit, `/execution-parameters` advertises a payload "
    f"derived from the model; spelled {SPELLINGS}, in any case")
TIMEOUT = Setting(
    ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "MODEL_SERVER_TIMEOUT"),
    f"{REALTIME_TIMEOUT}; batch: {BATCH_TIMEOUT} (at most {BATCH_TIMEOUT_MAX})",
    "seconds a worker may spend on one request before gunicorn replaces it; a request estimated to need more "
    f"than {_SHARE} of it (real time: {_SHARE} of SageMaker's {REALTIME_TIMEOUT} s, whatever this says) is refused "
    "with 413")
MAX_PAYLOAD = Setting(("SAGEMAKER_MAX_PAYLOAD_IN_MB",), "6",
                      "request body limit (413 above it, checked before reading); `/execution-parameters` never "
                      "advertises more")
MAX_CONCURRENT = Setting(("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS",), "workers (at most 100)",
                         "reported by `/execution-parameters`")
BASE_DIR = Setting((ROOT_VARIABLE,), f"`{DEFAULT_ROOT}`", "root of the model folder")
FILTERS = Setting(
    ("NCF_FILTERS",), "none",
    'filters a request names with `filterName`: a JSON object `{"name": "expression"}` '
    "([business rules](#business-rules)), over those of the model folder's `filters.json` of the same name; "
    "one that does not parse, or names a column the model's metadata lacks, makes `/ping` answer 503 saying why")
#: Every variable `serve` reads, in the order docs/serving.md lists them.
ENVIRONMENT = (PORT, WORKERS, BATCH, TIMEOUT, MAX_PAYLOAD, MAX_CONCURRENT, BASE_DIR, FILTERS)


def markdown_table() -> str:
    """docs/serving.md's environment table."""
    rows = ["| environment variable | default | effect |", "|---|---|---|"]
    for setting in ENVIRONMENT:
        first, *others = setting.names
        name = f"`{first}`" + (f" (or {', '.join(f'`{o}`' for o in others)})" if others else "")
        rows.append(f"| {name} | {setting.default} | {setting.effect} |")
    return "\n".join(rows)


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    """`ncf.spelling`'s rule, as for every boolean read from text; a value that spells no boolean stops `serve`."""
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = spelled_bool(raw)
    if value is None:
        raise ConfigError(f"environment variable {name}={raw!r} is not a boolean: use one of {SPELLINGS}")
    return value


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
    """Attributes:
        batch: serving a batch transform (`SAGEMAKER_BATCH=true`): no 6 MB answer limit (answers stream to
            S3), and the timeout defaults to `BATCH_TIMEOUT`.
        timeout: seconds before gunicorn replaces a worker busy with one request.
        max_payload_mb: request body limit (413 above it); `/execution-parameters` never advertises more.
        filters: `NCF_FILTERS` as given (JSON text, "" when unset): parsed with the model, in
            `rules.named_filters`, so that a broken one is the endpoint's 503 with the reason, as a broken
            model is, rather than a server that never starts.
    """

    model_dir: Path
    port: int = 8080
    workers: int = 1
    timeout: int = REALTIME_TIMEOUT
    max_payload_mb: int = 6
    max_concurrent_transforms: int = 1
    batch: bool = False
    filters: str = ""

    @property
    def deadline_s(self) -> int:
        """Seconds a request may last: the worker's timeout, and in real time at most the 60 s SageMaker waits."""
        return self.timeout if self.batch else min(self.timeout, REALTIME_TIMEOUT)

    @property
    def work_budget_s(self) -> float:
        """The most estimated work one request may take: `WORK_SHARE` of `deadline_s`."""
        return WORK_SHARE * self.deadline_s

    @property
    def max_answer_bytes(self) -> int | None:
        """The largest answer a real-time response may carry; None in batch mode (answers stream to S3)."""
        return None if self.batch else REALTIME_RESPONSE_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "ServeConfig":
        cpus = os.cpu_count() or 1
        workers = _int(environ, WORKERS.names, cpus, 1, 256)
        batch = _bool(environ, BATCH.names[0], False)
        return cls(
            model_dir=SageMakerPaths.from_env(environ).model,
            port=_int(environ, PORT.names, 8080, 1, 65535),
            workers=workers,
            timeout=_int(environ, TIMEOUT.names,
                         BATCH_TIMEOUT if batch else REALTIME_TIMEOUT, 1, BATCH_TIMEOUT_MAX),
            # Batch transform allows up to 100 MB per request; real-time endpoints 6 MB.
            max_payload_mb=_int(environ, MAX_PAYLOAD.names, 6, 1, 100),
            # MaxConcurrentTransforms x MaxPayloadInMB <= 100, and the payload is at least 1 MB.
            max_concurrent_transforms=_int(environ, MAX_CONCURRENT.names, min(workers, 100),
                                           1, 100),
            batch=batch,
            filters=environ.get(FILTERS.names[0], ""),
        )
