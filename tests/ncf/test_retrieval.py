"""Two-stage top-k (#34): candidates by the model's dot-product part, exactly or from an IVF index, re-scored by
the full model; recall measured against exact top-k; the index kept in the model folder; the path chosen by
measurement and forced by a setting."""

from dataclasses import replace

import numpy as np
import pytest

import ncf.retrieval_choice
from ncf import artifacts
from ncf.errors import ArtifactError, ConfigError
from ncf.filters import ItemFilter
from ncf.recommender import Recommender
from ncf.retrieval import Stage, build_index, index_bytes, index_from_bytes
from ncf.retrieval_choice import calibrate, choose, measure_recall, prepare
from ncf.retrieval_cli import main
from ncf.seen import SeenItems
from ncf.vocab import Vocabulary

N_USERS, N_ITEMS = 40, 400


def random_artifact(kind: str, seed: int = 0, n_items: int = N_ITEMS) -> artifacts.ModelArtifact:
    """Normal random weights (no ties), ~15 seen items per user."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    if kind == "mf":
        weights = {"mf/user": normal(N_USERS, 6), "mf/item": normal(n_items, 6), "mf/user_bias": normal(N_USERS),
                   "mf/item_bias": 3 * normal(n_items), "mf/bias": np.zeros((), np.float32)}
    else:
        weights = {"head/kernel": normal(6 if kind == "neumf" else 4, 1), "head/bias": normal(1)}
        if kind in ("neumf", "gmf"):
            weights.update({"gmf/user": normal(N_USERS, 4), "gmf/item": normal(n_items, 4)})
        if kind in ("neumf", "mlp"):
            weights.update({"mlp/user": normal(N_USERS, 4), "mlp/item": normal(n_items, 4),
                            "mlp/dense_0/kernel": normal(8, 4), "mlp/dense_0/bias": normal(4),
                            "mlp/dense_1/kernel": normal(4, 2), "mlp/dense_1/bias": normal(2)})
        if kind == "mlp":
            weights["head/kernel"] = normal(2, 1)
    pairs = rng.integers(0, [N_USERS, n_items], (N_USERS * 15, 2))
    seen = SeenItems.from_pairs(pairs[:, 0], pairs[:, 1], N_USERS, n_items)
    return artifacts.ModelArtifact(kind=kind, weights=weights, users=Vocabulary(np.arange(N_USERS) + 1),
                                   items=Vocabulary(np.arange(n_items) + 1000), seen=seen,
                                   popularity=np.bincount(seen.indices, minlength=n_items))


def ivf(stage: Stage, nprobe: int | None = None, shortlist: int | None = None) -> Stage:
    index = build_index(stage.items)
    return replace(stage, backend="ivf", index=index, nprobe=nprobe or index.nlist,
                   shortlist=shortlist or stage.shortlist)


def answers(rec: Recommender, **options) -> list[tuple]:
    users = rec.users.decode(np.arange(len(rec.users)))
    return [(r.indices, r.scores) for r in rec.recommend_many(users, **options)]


@pytest.fixture(scope="module")
def neumf() -> Recommender:
    return Recommender(random_artifact("neumf"), retrieval="exact")


@pytest.mark.parametrize("backend", ["numpy", "ivf"])
@pytest.mark.parametrize("kind", ["neumf", "gmf", "mf"])
def test_two_stage_equals_exact_top_k_when_the_shortlist_covers_the_catalogue(kind, backend):
    rec = Recommender(random_artifact(kind), retrieval="exact")
    stage = replace(Stage.of(rec.scorer), shortlist=N_ITEMS)
    stage = ivf(stage) if backend == "ivf" else stage
    two = rec.with_retrieval(stage)
    exclude = rec.items.decode(np.arange(0, N_ITEMS, 7))
    for options in [dict(k=10), dict(k=25, exclude=exclude), dict(k=N_ITEMS, exclude_seen=False)]:
        got, expected = answers(two, **options), answers(rec, **options)
        assert [g[0] for g in got] == [e[0] for e in expected]
        np.testing.assert_allclose(np.concatenate([g[1] for g in got]), np.concatenate([e[1] for e in expected]),
                                   rtol=1e-5)


def test_mfs_first_stage_folds_the_item_bias_in_so_a_shortlist_of_k_is_exact():
    rec = Recommender(random_artifact("mf"), retrieval="exact")
    stage = Stage.of(rec.scorer)
    assert stage.bias_column and stage.items.shape == (N_ITEMS, 7)
    users = rec.users.decode(np.arange(N_USERS))
    assert measure_recall(rec.with_retrieval(replace(stage, shortlist=10)), users, k=10) == 1.0
    # The lift to L2 keeps the inner product's order: an index searching every list finds the same top 20.
    queries = stage.query(rec.scorer.user_side(np.arange(N_USERS)))
    top20 = replace(stage, shortlist=20)
    assert np.array_equal(ivf(top20).candidates(queries, None, None), top20.candidates(queries, None, None))


def planted_recommender() -> Recommender:
    """NeuMF whose GMF part ranks items 0, 1, 2, ... (small scores) and whose MLP lifts items 100-109 far above
    every other for user 0 only, items 200-209 for user 1 only. The average user's MLP lifts both groups half
    as far, so the first stage ranks 100-109, then 200-209, then the rest: a shortlist of m holds all of user
    0's exact top 10 from m = 10 on, and `min(max(m - 10, 0), 10)` of user 1's."""
    n_users, n_items = 2, 300
    mlp_item = np.zeros((n_items, 2), np.float32)
    mlp_item[100:110, 0] = mlp_item[200:210, 1] = 1.0
    weights = {"gmf/user": np.ones((n_users, 2), np.float32),
               "gmf/item": np.repeat(np.linspace(1.0, 0.0, n_items, dtype=np.float32)[:, None], 2, axis=1),
               "mlp/user": np.eye(2, dtype=np.float32), "mlp/item": mlp_item,  # unit j fires for user j's group
               "mlp/dense_0/kernel": np.vstack([np.eye(2), np.eye(2)]).astype(np.float32),
               "mlp/dense_0/bias": -np.ones(2, np.float32),
               "mlp/dense_1/kernel": np.ones((2, 1), np.float32), "mlp/dense_1/bias": np.zeros(1, np.float32),
               "head/kernel": np.array([[0.1], [0.1], [10.0]], np.float32), "head/bias": np.zeros(1, np.float32)}
    seen = SeenItems(np.zeros(n_users + 1, np.int64), np.zeros(0, np.int32), n_items)
    return Recommender(artifacts.ModelArtifact(
        kind="neumf", weights=weights, users=Vocabulary(np.arange(n_users)), items=Vocabulary(np.arange(n_items)),
        seen=seen, popularity=np.ones(n_items, np.int64)), retrieval="exact")


def test_neumfs_first_stage_adds_the_mlps_score_of_each_item_for_the_average_user():
    rec = planted_recommender()
    own = Stage.of(rec.scorer).items[:, -1]
    assert own[100:110] == pytest.approx(5.0) and own[200:210] == pytest.approx(5.0)
    assert np.delete(own, np.r_[100:110, 200:210]) == pytest.approx(0.0)


@pytest.mark.parametrize("shortlist, expected", [(5, 0.5), (10, 0.5), (15, 0.75), (20, 1.0), (100, 1.0)])
def test_recall_is_the_share_of_the_exact_top_k_that_two_stage_finds(shortlist, expected):
    rec = planted_recommender()
    assert rec.recommend(0, 10).indices == tuple(range(100, 110))
    assert rec.recommend(1, 10).indices == tuple(range(200, 210))
    two = rec.with_retrieval(replace(Stage.of(rec.scorer), shortlist=shortlist))
    assert measure_recall(two, [0, 1], k=10) == pytest.approx(expected)


def test_calibration_takes_the_smallest_shortlist_of_the_ladder_reaching_the_target(monkeypatch):
    monkeypatch.setattr(ncf.retrieval_choice, "LADDER", (10, 15, 20, 40, 80))
    rec = planted_recommender()
    stage, measured = calibrate(rec, Stage.of(rec.scorer), [0, 1], target=0.98)
    assert stage.shortlist == 20 and measured["recall"] == 1.0
    assert [(t["shortlist"], t["recall"]) for t in measured["tried"]] == [(10, 0.5), (15, 0.75), (20, 1.0)]
    stage, measured = calibrate(rec, Stage.of(rec.scorer), [0, 1], target=1.5)  # unreachable: the best recall's
    assert stage.shortlist == 20 and measured["recall"] == 1.0 and len(measured["tried"]) == 5


@pytest.mark.parametrize("situation, keep, shortlist, exact_rows", [
    ("a rule keeping few items, scored exactly over them", 0.1, 30, "all"),
    ("a rule keeping most items, searched by the index's selector", 0.8, 12, "not all"),
    ("inverted lists too small to fill the shortlist: more lists searched, no item scored exactly", 0.6, 150,
     "none"),
    ("a rule over each user's seen items, few passing, each row exactly", None, 30, "all"),
])
def test_rules_seen_items_and_exclude_still_give_k_results_through_the_index(neumf, monkeypatch, situation, keep,
                                                                             shortlist, exact_rows):
    import ncf.retrieval

    exact, calls = ncf.retrieval._exact, []
    monkeypatch.setattr(ncf.retrieval, "_exact", lambda items, queries, *a: calls.append(len(queries)) or
                        exact(items, queries, *a))
    rng = np.random.default_rng(1)
    rule = ItemFilter(N_ITEMS, include=rng.random(N_ITEMS) < keep) if keep is not None else \
        ItemFilter(N_ITEMS, include_seen=True, exclude=rng.random(N_ITEMS) < 0.5)
    two = neumf.with_retrieval(ivf(Stage.of(neumf.scorer), nprobe=1, shortlist=shortlist))
    exclude = neumf.items.decode(np.arange(0, N_ITEMS, 3))
    exclude_seen = keep is not None
    users = neumf.users.decode(np.arange(N_USERS))
    for u, got in enumerate(two.recommend_many(users, 12, exclude=exclude, rule=rule, exclude_seen=exclude_seen)):
        seen = neumf.artifact.seen.row(u)
        passing = rule.allowed(seen)
        passing[np.arange(0, N_ITEMS, 3)] = False
        if exclude_seen:
            passing[seen] = False
        assert len(got.indices) == min(12, passing.sum()) and passing[list(got.indices)].all()
        assert got.scores == sorted(got.scores, reverse=True)
    assert {"all": sum(calls) == N_USERS, "not all": sum(calls) < N_USERS, "none": not calls}[exact_rows], calls


def test_fold_in_goes_through_the_same_two_stages(neumf):
    stage = replace(Stage.of(neumf.scorer), shortlist=N_ITEMS)
    given = neumf.items.decode(np.array([3, 50, 77]))
    for user in (None, 5):
        exact = neumf.recommend_from_items(given, 10, user=user)
        two = neumf.with_retrieval(stage).recommend_from_items(given, 10, user=user)
        assert two.indices == exact.indices and not set(two.items) & set(given)


def test_the_index_round_trips_through_the_model_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(ncf.retrieval_choice, "NUMPY_MAX_FLOATS", 0)  # an index even for 400 items
    rec = Recommender(random_artifact("mf"), retrieval="exact")
    section, index = prepare(rec, force=True)
    assert section["backend"] == "ivf" and section["recall"] >= 0.98 and index.dtype == np.uint8
    artifacts.save(tmp_path / "m", replace(rec.artifact, metadata={"retrieval": section}, retrieval_index=index))
    loaded = Recommender.load(tmp_path / "m", retrieval="two-stage")
    assert loaded.retrieval_choice.path == "two-stage" and "kept in the model folder" in loaded.retrieval_choice.why
    assert (loaded.retrieval.shortlist, loaded.retrieval.nprobe) == (section["shortlist"], section["nprobe"])
    assert loaded.retrieval.index.ntotal == N_ITEMS and np.array_equal(index_bytes(loaded.retrieval.index), index)
    assert answers(loaded, k=10) == answers(rec.with_retrieval(loaded.retrieval), k=10)


def test_a_model_already_trained_gets_its_first_stage_without_losing_other_files(tmp_path, monkeypatch):
    monkeypatch.setattr(ncf.retrieval_choice, "NUMPY_MAX_FLOATS", 0)
    folder = artifacts.save(tmp_path / "m", random_artifact("neumf"))
    (folder / artifacts.SAVED_MODEL).mkdir()
    (folder / artifacts.SAVED_MODEL / "saved_model.pb").write_bytes(b"kept")
    main([str(folder), "--force"])
    assert (folder / artifacts.SAVED_MODEL / "saved_model.pb").read_bytes() == b"kept"
    kept = artifacts.load(folder).metadata["retrieval"]
    assert kept["backend"] == "ivf" and (folder / artifacts.RETRIEVAL).is_file()


def test_an_index_of_another_catalogue_or_not_an_index_is_refused_saying_so(neumf):
    stage = Stage.of(neumf.scorer)
    other = build_index(np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32))
    with pytest.raises(ArtifactError, match="holds 100 vectors of 5 dimensions; this model needs 400 of 6"):
        index_from_bytes(index_bytes(other), stage)
    with pytest.raises(ArtifactError, match="not a faiss IVF index"):
        index_from_bytes(np.frombuffer(b"not an index at all", np.uint8), stage)


def test_auto_keeps_exact_top_k_within_the_latency_target_and_says_why(neumf):
    choice = choose(neumf, "auto", target_ms=1e6)
    assert choice.path == "exact" and choice.stage is None and "within the 1e+06 ms target" in choice.why
    assert choose(neumf, "exact").why == "exact top-k, as asked (retrieval=exact)"


def test_auto_takes_two_stage_above_the_target_only_when_its_recall_reaches_0_98():
    exact_model = Recommender(random_artifact("mf"), retrieval="exact")  # MF's first stage is its own order
    choice = choose(exact_model, "auto", target_ms=0.0)
    assert choice.path == "two-stage" and choice.section["recall"] == 1.0
    assert "above the 0 ms target" in choice.why and "built and measured at load" in choice.why
    planted = planted_recommender()
    planted.artifact.metadata["retrieval"] = {"backend": "numpy", "shortlist": 10, "recall": 0.5, "users": 2}
    choice = choose(planted, "auto", target_ms=0.0)
    assert choice.path == "exact" and "two-stage reaches only recall@10 0.5 on 2 users" in choice.why
    assert choose(planted, "two-stage").stage.shortlist == 10  # forced: served, and the figures say how well


def test_a_model_without_a_dot_product_part_serves_exact_top_k_and_cannot_be_forced_to_two_stage():
    mlp = Recommender(random_artifact("mlp"), retrieval="auto")
    assert mlp.retrieval is None and "has no dot-product part" in mlp.retrieval_choice.why
    with pytest.raises(ConfigError, match="retrieval=two-stage is impossible: a model of kind 'mlp' has no dot"):
        Recommender(random_artifact("mlp"), retrieval="two-stage")
    with pytest.raises(ConfigError, match="retrieval must be one of auto, exact, two-stage, got 'fast'"):
        Recommender(random_artifact("neumf"), retrieval="fast")
