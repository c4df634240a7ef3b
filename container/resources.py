"""What the container may use, as its cgroup says, and how many workers fit in it.

A serverless endpoint gives the container 1 to 6 GB and a share of a CPU; `docker run --memory 1g --cpus 1`
does the same. Neither shows in `os.cpu_count()` or in `/proc/meminfo`, which report the host: a server
that forks a worker per host CPU in a 1 GB container is killed by the kernel's OOM killer at its first large
request, all workers at once. So `serve` reads the limits the kernel enforces (cgroup v2 `cpu.max` and
`memory.max`, or v1's `cpu.cfs_quota_us` and `memory.limit_in_bytes`, the lowest along the cgroup's path)
and fits its workers to both (`fit_workers`).

The model itself is loaded once, in the master, before the workers fork, and its arrays stay shared (numpy
buffers that no worker writes): memory is the master's, once, plus each worker's own working set, which the
request limits bound (`worker_bytes`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024
#: A cgroup v1 limit at or above this is "no limit" (the kernel writes 2^63 rounded down to a page).
UNLIMITED = 1 << 60
#: A worker's own memory with no request in flight: the pages it writes after the fork (interpreter and
#: module state its reference counts touch, gevent's loop and stacks, the scoring thread's stack).
WORKER_BASE_BYTES = 48 * MB
#: Copies of a request body a worker holds at once: the bytes read, their text (JSON Lines and CSV decode to
#: str: one byte a character for ASCII), and a decompressed copy when it came gzip'd.
BODY_COPIES = 3
#: What a streamed answer holds at a time: one chunk (`answers.CHUNK_ENTRIES` entries, ~15 MB of response
#: objects and ~3 MB of their JSON), with room for what a chunk echoes.
STREAM_CHUNK_BYTES = 32 * MB
#: Scoring's temporaries: a block of `[users, n_items]` float32 logits (`ncf.arrays.BLOCK_SCORES`, 16 MB)
#: and the few arrays of its size that masking and top-k make.
SCORING_BYTES = 4 * 16 * MB
#: Memory left to the kernel's page cache, gunicorn's master loop and what the estimate misses.
HEADROOM = 0.1


@dataclass(frozen=True)
class Limits:
    """What the container may use.

    Attributes:
        cpus: CPUs it may keep busy at once: its affinity, lowered to the CFS quota rounded up (1.5 -> 2).
        memory_bytes: the memory limit, or the machine's memory when the cgroup sets none.
        memory_source: where `memory_bytes` came from, for the log line.
    """

    cpus: int
    memory_bytes: int
    memory_source: str


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_paths(root: Path) -> dict[str, str]:
    """`{controller: path}` of this process (`"": path` for cgroup v2), from `/proc/self/cgroup`."""
    paths: dict[str, str] = {}
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def _along(mount: Path, path: str, name: str) -> list[str]:
    """`name`'s values in the cgroup at `path` under `mount` and each of its parents. Inside a container the
    cgroup's own folder is the mount itself (a namespaced mount): then only the mount's file is found."""
    values, parts = [], [p for p in path.split("/") if p]
    for depth in range(len(parts), -1, -1):
        value = _read(mount.joinpath(*parts[:depth], name))
        if value is not None:
            values.append(value)
    return values


def _memory_total(root: Path) -> int:
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _quota_cpus(root: Path, paths: dict[str, str]) -> float | None:
    """The CFS quota in CPUs (the lowest along the path), or None when there is none."""
    cgroup = root / "sys/fs/cgroup"
    quotas = []
    for value in _along(cgroup, paths.get("", "/"), "cpu.max"):  # v2: "max 100000" or "150000 100000"
        quota, _, period = value.partition(" ")
        if quota != "max" and period:
            quotas.append(int(quota) / int(period))
    for controller in ("cpu", "cpu,cpuacct"):
        mount = cgroup / controller
        for quota, period in zip(_along(mount, paths.get("cpu", "/"), "cpu.cfs_quota_us"),
                                 _along(mount, paths.get("cpu", "/"), "cpu.cfs_period_us")):
            if int(quota) > 0 and int(period) > 0:
                quotas.append(int(quota) / int(period))
    return min(quotas) if quotas else None


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_limits(root: Path = Path("/"), cpus: int | None = None) -> Limits:
    """The container's `Limits` from the files under `root` (`/`; a test passes a folder laid out alike);
    `cpus`: the CPUs this process may run on (default: its affinity), before the quota lowers them."""
    cpus = cpus or _affinity()
    paths = _cgroup_paths(root)
    quota = _quota_cpus(root, paths)
    if quota is not None:
        cpus = max(1, min(cpus, math.ceil(quota - 1e-9)))
    total = _memory_total(root)
    cgroup = root / "sys/fs/cgroup"
    limits = [(int(v), "cgroup memory.max") for v in _along(cgroup, paths.get("", "/"), "memory.max") if v != "max"]
    limits += [(int(v), "cgroup memory.limit_in_bytes")
               for v in _along(cgroup / "memory", paths.get("memory", "/"), "memory.limit_in_bytes")
               if int(v) < UNLIMITED]
    limits = [(b, source) for b, source in limits if not total or b < total]
    memory, source = min(limits) if limits else (total, "MemTotal")
    return Limits(cpus=cpus, memory_bytes=memory, memory_source=source)


#: The master's memory besides the model: Python, numpy, Flask, gunicorn and gevent imported.
MASTER_BASE_BYTES = 80 * MB
#: Memory the loaded model takes per byte of its files: the arrays as stored, and what loading derives from
#: them (a NeuMF's item vectors, the seen items' lookups).
LOADED_PER_FILE_BYTE = 2
#: Files of the model folder that `serve` never loads (a warm start's optimizer state).
NOT_LOADED = frozenset({"optimizer.npz"})


def master_bytes(model_dir: Path) -> int:
    """The master's memory once it has loaded the model in `model_dir`, estimated from the folder's files
    before loading it (the SavedModel's folder and the optimizer state are not loaded); the base alone when
    the folder cannot be read (`/ping` says why then)."""
    try:
        files = sum(f.stat().st_size for f in model_dir.iterdir() if f.is_file() and f.name not in NOT_LOADED)
    except OSError:
        files = 0
    return MASTER_BASE_BYTES + LOADED_PER_FILE_BYTE * files


def worker_bytes(body_limit_bytes: int, answer_bytes: int | None) -> int:
    """The most memory one worker holds beyond what it shares with the master: its own pages, a request's
    body (`BODY_COPIES` of `body_limit_bytes`), its answer (`answer_bytes` when answers are built whole;
    None: streamed, a chunk at a time) and scoring's temporaries."""
    answer = STREAM_CHUNK_BYTES if answer_bytes is None else answer_bytes
    return WORKER_BASE_BYTES + BODY_COPIES * body_limit_bytes + answer + SCORING_BYTES


@dataclass(frozen=True)
class Fit:
    """How many workers `serve` runs, and the sentence its log gives for it."""

    workers: int
    why: str


def fit_workers(limits: Limits, shared_bytes: int, per_worker_bytes: int, requested: int | None = None) -> Fit:
    """Workers: one per CPU, as many as the memory holds beside the master's `shared_bytes` (the loaded model,
    shared by every worker) at `per_worker_bytes` each, at least one; `requested` (the environment's worker
    count) is kept as given, with a warning in `why` when memory does not hold that many."""
    usable = limits.memory_bytes * (1 - HEADROOM) - shared_bytes
    by_memory = max(0, int(usable // per_worker_bytes))
    facts = (f"{limits.cpus} CPU(s), {limits.memory_bytes / MB:,.0f} MB of memory ({limits.memory_source}), "
             f"about {shared_bytes / MB:,.0f} MB in the master (the loaded model, shared by the workers), "
             f"up to {per_worker_bytes / MB:,.0f} MB per worker (its request limits): memory holds {by_memory}")
    if requested is not None:
        warning = (f"; WARNING: memory holds only {by_memory}, so a large request may get the server killed "
                   "(lower SAGEMAKER_MODEL_SERVER_WORKERS or SAGEMAKER_MAX_PAYLOAD_IN_MB)"
                   if requested > by_memory else "")
        return Fit(requested, f"{requested} worker(s), as SAGEMAKER_MODEL_SERVER_WORKERS says; {facts}{warning}")
    workers = max(1, min(limits.cpus, by_memory))
    bound = "CPUs" if limits.cpus <= by_memory else "memory"
    warning = ("; WARNING: memory holds none at these limits: one worker may be killed by a large request "
               "(lower SAGEMAKER_MAX_PAYLOAD_IN_MB, or give the container more memory)" if by_memory == 0 else "")
    return Fit(workers, f"{workers} worker(s), bound by {bound}: {facts}{warning}")
