"""Which path answers top-k, exact or two-stage, decided by measurement and said in a sentence.

`ncf.retrieval` builds the first stage; this module measures it. Recall is never assumed: `measure_recall`
compares the two-stage top-k with the exact full-model top-k of the same users, and `calibrate` sizes the
shortlist (and the IVF's `nprobe`) as the smallest reaching `TARGET_RECALL`. The rule for the default
(`choose`): exact top-k while its measured time (median of single-user top-10s, one thread, as a worker
scores) is within `TARGET_MS`; two-stage above it, when it reaches the recall target; forced either way by
`Recommender(..., retrieval="exact" | "two-stage")`. `prepare` measures once for the model folder (training's
end, or `python -m ncf.retrieval_cli MODEL_DIR` for a model already trained), so `serve` need not.

The recommender calls `choose` as it is built, so this module takes it as a `TopK` (what measuring needs of
one) rather than importing `ncf.recommender`: the imports stay layers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from . import artifacts
from .errors import ArtifactError, ConfigError
from .retrieval import (LADDER, NUMPY_MAX_FLOATS, PROBES, TARGET_MS, TARGET_RECALL, Stage, build_index,
                        index_bytes, index_from_bytes)
from .retrieval_modes import MODES

if TYPE_CHECKING:  # pragma: no cover
    from .artifacts import ModelArtifact
    from .inference import NumpyScorer
    from .vocab import Vocabulary

log = logging.getLogger(__name__)


class TopK(Protocol):
    """What measuring needs of a `ncf.recommender.Recommender`."""

    users: "Vocabulary"
    scorer: "NumpyScorer"
    artifact: "ModelArtifact"
    metadata: dict

    def with_retrieval(self, stage: Stage | None) -> "TopK": ...

    def recommend(self, user, k: int = 10) -> Any: ...

    def recommend_many(self, users: Sequence, k: int = 10) -> list: ...

#: Users whose answers recall is measured on: recall@10 over 200 users has a standard error of ~0.003 at 0.98.
SAMPLE_USERS = 200


@dataclass(frozen=True)
class Choice:
    """Which path answers top-k and why, as `serve` logs it.

    Attributes:
        path: "exact" or "two-stage".
        why: one sentence with the measured figures that decided it.
        stage: the first stage when two-stage, else None.
        section: the measurements, as metadata.json's "retrieval" keeps them (`prepare`).
    """

    path: str
    why: str
    stage: Stage | None = None
    section: dict = field(default_factory=dict)


def sample_users(recommender: TopK, n: int = SAMPLE_USERS, seed: int = 0) -> list:
    """Up to `n` known users' raw ids, drawn without replacement, for recall and timing."""
    ids = recommender.users.ids
    pick = np.random.default_rng(seed).choice(len(ids), min(n, len(ids)), replace=False)
    return ids[np.sort(pick)].tolist()


def recall(exact: list, approximate: list) -> float:
    """Mean over users of the share of the exact answer's items the approximate answer holds (users with an
    empty exact answer left out; 1.0 when none is left)."""
    shares = [len(set(a.indices) & set(e.indices)) / len(e.indices) for e, a in zip(exact, approximate)
              if len(e.indices)]
    return float(np.mean(shares)) if shares else 1.0


def measure_recall(recommender: TopK, users, k: int = 10) -> float:
    """Recall@k of `recommender`'s top-k (its own path, two-stage or exact) against the exact full-model top-k
    of the same users, seen items excluded as served."""
    exact = recommender.with_retrieval(None).recommend_many(users, k)
    return recall(exact, recommender.recommend_many(users, k))


def median_ms(recommender: TopK, users, k: int = 10, statistic=np.median) -> float:
    """Median (or `statistic`) milliseconds of one user's top-k, one at a time, on one thread (as a worker
    scores)."""
    from threadpoolctl import threadpool_limits

    times = []
    with threadpool_limits(1):
        recommender.recommend(users[0], k)  # first touch of the arrays
        for user in users:
            start = time.perf_counter()
            recommender.recommend(user, k)
            times.append(time.perf_counter() - start)
    return 1000.0 * float(statistic(times))


def calibrate(recommender: TopK, stage: Stage, users: list | None = None, k: int = 10,
              target: float = TARGET_RECALL) -> tuple[Stage, dict]:
    """`stage` with the smallest shortlist of `LADDER` (and, with an index, the nprobe of `PROBES` that makes
    it fastest) whose recall@k against exact top-k on `users` reaches `target`; when none does, the best
    recall's. Returns the stage and what was measured, per configuration tried."""
    users = users if users is not None else sample_users(recommender)
    exact = recommender.with_retrieval(None).recommend_many(users, k)
    probes = [p for p in PROBES if p <= stage.index.nlist] if stage.index is not None else [0]
    tried, reaching = [], []
    for m in LADDER:
        for p in probes:
            candidate = replace(stage, shortlist=m, nprobe=p)
            got = recall(exact, recommender.with_retrieval(candidate).recommend_many(users, k))
            tried.append({"shortlist": m, "nprobe": p, "recall": round(got, 4)})
            if got >= target:
                reaching.append(candidate)
                break  # a wider search of this shortlist only costs more
        if reaching and stage.index is None:
            break  # the product costs the same whatever m: the smallest m reaching it wins
    timed = users[:50]
    if reaching:
        times = [median_ms(recommender.with_retrieval(s), timed, k) for s in reaching]
        best = reaching[int(np.argmin(times))]
    else:
        top = max(tried, key=lambda t: (t["recall"], -t["shortlist"], -t["nprobe"]))
        best = replace(stage, shortlist=top["shortlist"], nprobe=top["nprobe"])
    chosen = next(t for t in tried if (t["shortlist"], t["nprobe"]) == (best.shortlist, best.nprobe))
    return best, {"k": k, "users": len(users), "target_recall": target, "recall": chosen["recall"],
                  "shortlist": best.shortlist, "nprobe": best.nprobe, "tried": tried,
                  "two_stage_ms": round(median_ms(recommender.with_retrieval(best), timed, k), 3)}


def unsized(recommender: TopK, seed: int = 0) -> tuple[Stage, float]:
    """The first stage before `calibrate` sizes it: the exact product while a user's reads at most
    `NUMPY_MAX_FLOATS`, else a new IVF index; and the seconds building it took."""
    stage = Stage.of(recommender.scorer)
    if stage is None:
        raise ConfigError(f"a model of kind {recommender.scorer.kind!r} has no dot-product part to retrieve "
                          "candidates by")
    start = time.perf_counter()
    if stage.items.size > NUMPY_MAX_FLOATS:
        stage = replace(stage, backend="ivf", index=build_index(stage.items, seed=seed), nprobe=PROBES[0])
    return stage, time.perf_counter() - start


def prepare(recommender: TopK, *, force: bool = False, k: int = 10,
            target_ms: float = TARGET_MS) -> tuple[dict, np.ndarray | None]:
    """What a model folder keeps of retrieval (metadata.json's "retrieval", and the index's bytes or None):
    exact top-k's measured time and, when it misses `target_ms` (or `force`), a first stage built, sized by
    `calibrate` and measured. Training's end calls it; so does `python -m ncf.retrieval MODEL_DIR`."""
    users = sample_users(recommender)
    exact_ms = median_ms(recommender.with_retrieval(None), users[:20], k)
    section = {"exact_ms": round(exact_ms, 3), "target_ms": target_ms, "backend": None}
    if (exact_ms <= target_ms and not force) or recommender.scorer.item_dot is None:
        return section, None
    stage, build_s = unsized(recommender)
    stage, measured = calibrate(recommender, stage, users, k)
    section.update(measured, backend=stage.backend, build_s=round(build_s, 2))
    if stage.index is None:
        return section, None
    section["nlist"] = int(stage.index.nlist)
    return section, index_bytes(stage.index)


def _saved(recommender: TopK) -> tuple[Stage, dict] | None:
    """The first stage the model folder keeps, None when it keeps none."""
    section = recommender.metadata.get("retrieval")
    if not isinstance(section, dict) or section.get("backend") not in ("numpy", "ivf"):
        return None
    stage = Stage.of(recommender.scorer)
    try:
        stage = replace(stage, backend=section["backend"], shortlist=int(section["shortlist"]),
                        nprobe=int(section.get("nprobe") or 0))
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"metadata.json's retrieval section is malformed ({e!r})") from e
    if stage.backend == "ivf":
        data = getattr(recommender.artifact, "retrieval_index", None)
        if data is None:
            raise ArtifactError("metadata.json names an IVF retrieval index, but the folder holds none")
        try:
            stage = replace(stage, index=index_from_bytes(data, stage))
        except ArtifactError as e:
            raise ArtifactError(f"{artifacts.RETRIEVAL}: {e}") from e
    return stage, section


def choose(recommender: TopK, mode: str = "auto", *, target_ms: float = TARGET_MS) -> Choice:
    """Which path answers top-k: `exact` and `two-stage` as asked; `auto` exact while exact top-10's measured
    time (the fastest of 7 users, one thread: what it costs when nothing else competes for the core, so that
    a busy machine at start does not switch a model's path) is within `target_ms`; two-stage above it when its
    recall reaches `TARGET_RECALL`, exact again (saying so) when it does not. The first stage comes from the
    model folder (`prepare` at training's end), else is built and calibrated now, which a catalogue of 10^6
    items pays in tens of seconds at load."""
    if mode not in MODES:
        raise ConfigError(f"retrieval must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "exact":
        return Choice("exact", "exact top-k, as asked (retrieval=exact)")
    if recommender.scorer.item_dot is None or not len(recommender.users):
        why = (f"a model of kind {recommender.scorer.kind!r} has no dot-product part to retrieve candidates by"
               if len(recommender.users) else "the model knows no user")
        if mode == "two-stage":
            raise ConfigError(f"retrieval=two-stage is impossible: {why}; use exact")
        return Choice("exact", why)
    exact_ms = None
    if mode == "auto":
        exact_ms = median_ms(recommender.with_retrieval(None), sample_users(recommender, 7), statistic=np.min)
        if exact_ms <= target_ms:
            return Choice("exact", f"exact top-10 takes {exact_ms:.1f} ms (fastest of 7 users, one thread), "
                                   f"within the {target_ms:g} ms target", section={"exact_ms": round(exact_ms, 3)})
    saved = _saved(recommender)
    source = "kept in the model folder"
    if saved is None:
        stage, build_s = unsized(recommender)
        stage, section = calibrate(recommender, stage)
        section.update(backend=stage.backend, build_s=round(build_s, 2))
        source = f"built and measured at load in {build_s:.1f} s"
        saved = stage, section
    stage, section = saved
    figures = f"recall@{section.get('k', 10)} {section.get('recall')} on {section.get('users')} users"
    if mode == "auto" and not section.get("recall", 0.0) >= TARGET_RECALL:
        return Choice("exact", f"exact top-10 takes {exact_ms:.1f} ms, above the {target_ms:g} ms target, but "
                               f"two-stage reaches only {figures} (target {TARGET_RECALL}): exact is served",
                      section=section)
    reason = (f"exact top-10 takes {exact_ms:.1f} ms, above the {target_ms:g} ms target"
              if exact_ms is not None else "as asked (retrieval=two-stage)")
    return Choice("two-stage", f"{reason}; candidates from {stage.describe()} ({source}; {figures})",
                  stage, section)
