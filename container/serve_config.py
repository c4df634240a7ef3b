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
  `SAGEMAKER_MODEL_SERVER_TIMEOUT` to the same value (`scripts/sagemaker_workflow.py` sets both to 3600);
- serverless endpoints: 60 s and 4 MB each way; asynchronous endpoints: bodies up to 1 GB (from S3) and up
  to 3600 s per request (InvocationTimeoutSeconds, 900 when the invocation does not say), answers with a
  Content-Length (`NCF_ENDPOINT_TYPE`, `EndpointType`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ncf.errors import ConfigError
from ncf.retrieval_modes import MODES
from ncf.spelling import SPELLINGS, spelled_bool

from . import resources
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
MB = 1024 * 1024


@dataclass(frozen=True)
class EndpointType:
    """What SageMaker allows one request on an endpoint of this type (`NCF_ENDPOINT_TYPE`): the default worker
    timeout, the most seconds a request may last whatever the timeout says (None: the timeout), the default
    and largest body limit, the largest answer."""

    timeout: int
    deadline_cap: int | None
    payload_mb: int
    max_payload_mb: int
    answer_bytes: int


#: Asynchronous endpoints wait 900 s unless the invocation says up to 3600 (InvocationTimeoutSeconds), take
#: 1 GB from S3 and write the answer there: built whole, for the Content-Length async needs, up to 1 GB.
ENDPOINT_TYPES = {"realtime": EndpointType(REALTIME_TIMEOUT, REALTIME_TIMEOUT, 6, 100, REALTIME_RESPONSE_BYTES),
                  "serverless": EndpointType(REALTIME_TIMEOUT, REALTIME_TIMEOUT, 4, 4, 4 * MB),
                  "async": EndpointType(900, None, 1024, 1024, 1024 * MB)}


@dataclass(frozen=True)
class Setting:
    """One environment variable `serve` reads: the names it answers to (first wins), its default and effect as
    docs/serving.md shows them (generated from `ENVIRONMENT` by docs/tables.py, checked by a test)."""

    names: tuple[str, ...]
    default: str
    effect: str


_SHARE = "half" if WORK_SHARE == 0.5 else f"{WORK_SHARE:.0%}"
PORT = Setting(("SAGEMAKER_BIND_TO_PORT",), "8080", "port (inference pipelines set it)")
WORKERS = Setting(("SAGEMAKER_MODEL_SERVER_WORKERS", "MODEL_SERVER_WORKERS"), "fitted",
                  "gunicorn workers; by default one per CPU the container may use (its cgroup's CPU quota), as many "
                  "as its memory holds (cgroup `memory.max`, else the machine's) beside the model at the request "
                  "limits' worst case, at least one; `serve` logs the reason")
BATCH = Setting(
    ("SAGEMAKER_BATCH",), "false",
    f"`true` (batch transform sets it): timeout {BATCH_TIMEOUT} s by default (what SageMaker waits unless the job "
    f"says more), no {REALTIME_RESPONSE_BYTES >> 20} MB answer limit, `/execution-parameters` advertises a payload "
    f"derived from the model; spelled {SPELLINGS}, in any case")
TIMEOUT = Setting(
    ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "MODEL_SERVER_TIMEOUT"),
    f"{REALTIME_TIMEOUT}; batch: {BATCH_TIMEOUT}; async: {ENDPOINT_TYPES['async'].timeout} "
    f"(at most {BATCH_TIMEOUT_MAX})",
    "seconds a worker may spend on one request before gunicorn replaces it; a request estimated to need more "
    f"than {_SHARE} of it (real time: {_SHARE} of SageMaker's {REALTIME_TIMEOUT} s, whatever this says) is refused "
    "with 413")
MAX_PAYLOAD = Setting(("SAGEMAKER_MAX_PAYLOAD_IN_MB",), "6; serverless: 4; async: 1024",
                      "request body limit (413 above it, checked before reading; at most 100, serverless 4, async "
                      "1024); `/execution-parameters` never advertises more")
MAX_CONCURRENT = Setting(("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS",), "workers (at most 100)",
                         "reported by `/execution-parameters`")
BASE_DIR = Setting((ROOT_VARIABLE,), f"`{DEFAULT_ROOT}`", "root of the model folder")
FILTERS = Setting(
    ("NCF_FILTERS",), "none",
    'filters a request names with `filterName`: a JSON object `{"name": "expression"}` '
    "([business rules](#business-rules)), over those of the model folder's `filters.json` of the same name; "
    "one that does not parse, or names a column the model's metadata lacks, makes `/ping` answer 503 saying why")
ENDPOINT_TYPE = Setting(
    ("NCF_ENDPOINT_TYPE",), "realtime",
    "`serverless`: 4 MB bodies (at most) and answers; `async` (an asynchronous endpoint): a request may last "
    "the whole timeout (default 900 s, at most 3600: the invocation's InvocationTimeoutSeconds), bodies up to "
    "1024 MB (the default), answers up to 1 GB; ignored in batch transform. "
    "`scripts/sagemaker_workflow.py deploy` sets it")
MULTI_MODEL = Setting(
    ("SAGEMAKER_MULTI_MODEL",), "false",
    "`true` on a [multi-model endpoint](#multi-model-endpoints) (`scripts/sagemaker_workflow.py deploy "
    "--multi-model` sets it, as AWS's own images read it): no model at start, SageMaker loads them through "
    "`/models`")
MODELS_MEMORY = Setting(
    ("NCF_MODELS_MEMORY_MB",), "the container's memory less 10% and the workers' request limits",
    "multi-model endpoints: the memory the loaded models may take, beyond which a load is refused with 507 "
    "(each model counted as its arrays once plus its own objects in every worker)")
RETRIEVAL = Setting(
    ("NCF_RETRIEVAL",), "auto",
    "how top-k is answered ([large catalogues](#large-catalogues)): `auto` exact while its measured time is "
    "within 10 ms, two-stage above it when its recall@10 reaches 0.98; `exact` or `two-stage` forces one "
    "(`two-stage` on a model without a dot-product tower: `/ping` answers 503 saying why)")
#: Every variable `serve` reads, in the order docs/serving.md lists them.
ENVIRONMENT = (PORT, WORKERS, BATCH, TIMEOUT, MAX_PAYLOAD, MAX_CONCURRENT, BASE_DIR, FILTERS, ENDPOINT_TYPE,
               MULTI_MODEL, MODELS_MEMORY, RETRIEVAL)


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
        endpoint_type: a key of `ENDPOINT_TYPES` (`NCF_ENDPOINT_TYPE`); batch mode overrides it.
        workers_why: the sentence `serve` logs for its worker count (`resources.fit_workers`).
        multi_model: a multi-model endpoint (`SAGEMAKER_MULTI_MODEL`): models come through `/models`.
        models_memory_mb: `NCF_MODELS_MEMORY_MB`, or None: `multimodel.budget` derives it from the container.
        retrieval: `NCF_RETRIEVAL`, one of `ncf.retrieval_modes.MODES` (`Recommender(retrieval=...)`).
    """

    model_dir: Path
    port: int = 8080
    workers: int = 1
    timeout: int = REALTIME_TIMEOUT
    max_payload_mb: int = 6
    max_concurrent_transforms: int = 1
    batch: bool = False
    filters: str = ""
    endpoint_type: str = "realtime"
    workers_why: str = ""
    multi_model: bool = False
    models_memory_mb: int | None = None
    retrieval: str = "auto"

    @property
    def deadline_s(self) -> int:
        """Seconds a request may last: the worker's timeout, and in real time (serverless too) at most the 60 s
        SageMaker waits."""
        cap = ENDPOINT_TYPES[self.endpoint_type].deadline_cap
        return self.timeout if self.batch or cap is None else min(self.timeout, cap)

    @property
    def work_budget_s(self) -> float:
        """The most estimated work one request may take: `WORK_SHARE` of `deadline_s`."""
        return WORK_SHARE * self.deadline_s

    @property
    def max_answer_bytes(self) -> int | None:
        """The largest answer: what the endpoint type's response may carry, built whole with its Content-Length;
        None in batch mode (answers stream to S3)."""
        return None if self.batch else ENDPOINT_TYPES[self.endpoint_type].answer_bytes

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "ServeConfig":
        batch = _bool(environ, BATCH.names[0], False)
        kind = (environ.get(ENDPOINT_TYPE.names[0]) or "realtime").strip().lower()
        retrieval = (environ.get(RETRIEVAL.names[0]) or "auto").strip().lower()
        if retrieval not in MODES:
            raise ConfigError(f"environment variable {RETRIEVAL.names[0]}={retrieval!r} is not one of "
                              f"{', '.join(MODES)}")
        if kind not in ENDPOINT_TYPES:
            raise ConfigError(f"environment variable {ENDPOINT_TYPE.names[0]}={kind!r} is not one of "
                              f"{', '.join(ENDPOINT_TYPES)}")
        # Batch transform allows up to 100 MB per request and waits 600 s unless the job says more.
        endpoint = EndpointType(BATCH_TIMEOUT, None, 6, 100, 0) if batch else ENDPOINT_TYPES[kind]
        payload_mb = _int(environ, MAX_PAYLOAD.names, endpoint.payload_mb, 1, endpoint.max_payload_mb)
        model_dir = SageMakerPaths.from_env(environ).model
        requested = _int(environ, WORKERS.names, 0, 1, 256) or None
        fit = resources.fit_workers(resources.read_limits(), resources.master_bytes(model_dir),
                                    resources.worker_bytes(payload_mb * MB, None if batch else endpoint.answer_bytes),
                                    requested)
        return cls(
            model_dir=model_dir,
            port=_int(environ, PORT.names, 8080, 1, 65535),
            workers=fit.workers,
            timeout=_int(environ, TIMEOUT.names, endpoint.timeout, 1, BATCH_TIMEOUT_MAX),
            max_payload_mb=payload_mb,
            # MaxConcurrentTransforms x MaxPayloadInMB <= 100, and the payload is at least 1 MB.
            max_concurrent_transforms=_int(environ, MAX_CONCURRENT.names, min(fit.workers, 100),
                                           1, 100),
            batch=batch,
            filters=environ.get(FILTERS.names[0], ""),
            endpoint_type=kind,
            workers_why=fit.why,
            multi_model=_bool(environ, MULTI_MODEL.names[0], False),
            models_memory_mb=_int(environ, MODELS_MEMORY.names, 0, 1, 2**24) or None,
            retrieval=retrieval,
        )
