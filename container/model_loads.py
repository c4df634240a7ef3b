"""Loading a model into a multi-model endpoint, and building it again in the other workers.

`load` is the worker that received `POST /models`: it checks the folder as a single-model server checks
`/opt/ml/model` (a broken one is a 400 saying why, a missing one a 404), refuses early a model whose files
alone pass the memory budget, times the model's requests (`Costs`, what a server measures at start), writes its
large arrays to the registry (`shared_arrays`), and registers it (`model_store`: 409 when loaded, 507 over the
budget), all in one go on the worker's scoring thread. `build` is every other worker, on its first request for
the model: it reads the folder again (checked again, and against the loaded folder's metadata.json) and maps
the registry's arrays in place of its own. Neither measures anything twice: the costs and the deploy-time
filters travel in the registry's manifest.

The budget counts each model as its shared arrays once plus, in every worker, its private arrays and
`PRIVATE_BYTES`. Its default is the container's memory (cgroup `memory.max`, else the machine's: `resources`)
less a tenth and what the workers' requests may take at their limits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

from ncf import artifacts
from ncf.errors import ArtifactError, NCFError
from ncf.recommender import Recommender

from . import resources, shared_arrays
from .costs import Costs
from .errors import BadRequest, Conflict, InsufficientStorage, NotFound, NotReady
from .limits import Limits
from .model_store import Entry, Exists, Full, ModelStore
from .rules import RuleBook, named_filters
from .serve_config import ServeConfig

MB = 2**20
#: What one model holds in each worker besides its arrays: its Python objects, its Flask app, its rules'
#: cache (a default NeuMF of ml-latest-small's size, 50 of them in 2 workers: benchmarks/multimodel.py).
PRIVATE_BYTES = 2 * MB
MAX_NAME_CHARS = 1024
#: A load request is a name and a path.
MAX_LOAD_BODY = 64 * 1024
EXAMPLE = '{"model_name": "NAME", "url": "/opt/ml/models/NAME/model"}'


def budget(config: ServeConfig) -> tuple[int, str]:
    """The bytes models may take, and where the figure came from (for the log)."""
    if config.models_memory_mb:
        return config.models_memory_mb * MB, "NCF_MODELS_MEMORY_MB"
    limits = resources.read_limits()
    requests = config.workers * resources.worker_bytes(config.max_payload_mb * MB, config.max_answer_bytes)
    usable = int(limits.memory_bytes * (1 - resources.HEADROOM)) - requests
    return max(usable, 0), (f"{limits.memory_bytes / MB:,.0f} MB ({limits.memory_source}) less "
                            f"{resources.HEADROOM:.0%} and {requests / MB:,.0f} MB for {config.workers} worker(s)' "
                            "requests")


def load_request(body: bytes) -> tuple[str, str]:
    """`(model_name, url)` of a `POST /models` body, or the 400 that says what is wrong with it."""
    try:
        value = json.loads(body)
    except ValueError:
        raise BadRequest(f"a load request's body must be JSON: {EXAMPLE}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"a load request's body must be a JSON object: {EXAMPLE}")
    name, url = value.get("model_name"), value.get("url")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS or "\0" in name:
        raise BadRequest(f"model_name must be a non-empty string of at most {MAX_NAME_CHARS} characters: {EXAMPLE}")
    if not isinstance(url, str) or not url.strip() or "\0" in url:
        raise BadRequest(f"url must be the model's folder as a non-empty string: {EXAMPLE}")
    return name, url


def _costs_json(costs: Costs) -> dict:
    fields = dataclasses.asdict(costs)
    fields["rule_lines"] = [line.decode("latin-1") for line in costs.rule_lines]
    return fields


def limits(entry: Entry, config: ServeConfig) -> Limits:
    """The model's limits in this server, from the costs its load measured."""
    fields = entry.manifest["costs"]
    costs = Costs(**{**fields, "rule_lines": tuple(line.encode("latin-1") for line in fields["rule_lines"])})
    return Limits.derive(costs, config)


def _fingerprint(folder: Path) -> str:
    """What a worker checks before building a model from its folder: that it is still the one loaded."""
    return hashlib.sha256((folder / artifacts.METADATA).read_bytes()).hexdigest()


def _costs_key(fingerprint: str, filters: dict, folder: Path) -> str:
    """Which measured costs fit this model: the same metadata.json (a training job's own), the same
    deploy-time filters, files of the same sizes."""
    sizes = {name: (folder / name).stat().st_size for name in artifacts.ENTRIES if (folder / name).is_file()}
    text = json.dumps([fingerprint, filters, sizes], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _served_bytes(folder: Path) -> int:
    """The bytes of the folder's files that serving reads: no model takes less memory than that."""
    skipped = {artifacts.OPTIMIZER, artifacts.SAVED_MODEL, artifacts.METADATA}
    total = 0
    for name in artifacts.ENTRIES:
        path = folder / name
        if name not in skipped and path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def _conflict(name: str) -> Conflict:
    return Conflict(f"model {name!r} is loaded already; unload it first (DELETE /models/{name})")


def _fits(store: ModelStore, name: str, at_least: int, budget_bytes: int) -> None:
    """Refuses before reading a model that is loaded (409: SageMaker's retry of a load) or that the budget
    cannot hold (507)."""
    if store.get(name) is not None:
        raise _conflict(name)
    used = store.used()
    if used + at_least > budget_bytes:
        raise InsufficientStorage(f"model {name!r} does not fit in memory: its files alone hold "
                                  f"{at_least / MB:,.1f} MB; {used / MB:,.1f} MB of the {budget_bytes / MB:,.1f} MB "
                                  "budget are held by the models loaded", needed_bytes=at_least, used_bytes=used,
                                  budget_bytes=budget_bytes)


def load(name: str, url: str, config: ServeConfig, store: ModelStore,
         budget_bytes: int) -> tuple[Entry, Recommender, RuleBook, str]:
    """Loads the folder at `url` as `name` and registers it: its entry, the model and rules as this worker
    serves them (its arrays mapped from the registry), and where the time went. Raises the HTTP error a
    failed load answers. A model loaded before (SageMaker evicts models and loads them again) is not timed
    again: its costs are kept in the registry."""
    started = time.perf_counter()
    folder = Path(url)
    if not folder.exists():
        raise NotFound(f"url {url!r}: no such folder")
    if not folder.is_dir():
        raise BadRequest(f"url {url!r} is not a folder; a model folder holds metadata.json, weights.npz, ...")
    _fits(store, name, _served_bytes(folder), budget_bytes)
    try:
        recommender = Recommender(artifacts.load(folder))  # metadata.json checked: a regular file
        fingerprint = _fingerprint(folder)
        filters = named_filters(config.filters, folder)
        book = RuleBook(recommender.item_metadata, len(recommender.items), filters)
    except (OSError, NCFError) as e:
        raise BadRequest(f"model {name!r} cannot be loaded from {url}: {e}") from None
    read = time.perf_counter()
    key = _costs_key(fingerprint, filters, folder)
    measured = store.costs(key)
    kept = measured is not None
    if not kept:
        measured = _costs_json(Costs.measure(recommender, book=book))
        store.keep_costs(key, measured)
    timed = time.perf_counter()
    staging = store.staging()
    try:
        files, shared, private = shared_arrays.save(recommender, staging)
        manifest = {"modelName": name, "modelUrl": url, "fingerprint": fingerprint, "arrays": files,
                    "filters": filters, "costs": measured, "kind": recommender.metadata.get("kind"),
                    "users": len(recommender.users), "items": len(recommender.items),
                    "sharedBytes": shared, "privateBytes": private + PRIVATE_BYTES,
                    "footprintBytes": shared + config.workers * (private + PRIVATE_BYTES)}
        entry = store.register(staging, manifest, budget_bytes)
    except Exists:
        raise _conflict(name) from None
    except Full as e:
        raise InsufficientStorage(f"model {name!r} does not fit in memory: it {e}", needed_bytes=e.needed,
                                  used_bytes=e.used, budget_bytes=e.budget) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone from here once registered
    shared_arrays.attach(recommender, entry.folder, files)
    timing = "its costs measured at an earlier load" if kept else f"timing its requests {timed - read:.2f} s"
    took = f"reading and checking {read - started:.2f} s, {timing}, sharing its arrays {time.perf_counter() - timed:.2f} s"
    return entry, recommender, book, took


def build(entry: Entry) -> tuple[Recommender, RuleBook]:
    """The model of `entry` as this worker serves it, its arrays mapped from the registry; a 503 saying why
    when its folder no longer holds the model that was loaded."""
    folder = Path(entry.url)
    try:
        if _fingerprint(folder) != entry.manifest["fingerprint"]:
            raise ArtifactError(f"{folder / artifacts.METADATA} changed since the model was loaded")
        recommender = Recommender(artifacts.load(folder))
        shared_arrays.attach(recommender, entry.folder, entry.manifest["arrays"])
    except (OSError, NCFError, shared_arrays.Mismatch) as e:
        raise NotReady(f"model {entry.name!r} was loaded from {entry.url}, but this worker cannot build it from "
                       f"there now ({e}); unload it and load it again") from None
    return recommender, RuleBook(recommender.item_metadata, len(recommender.items), entry.manifest["filters"])
