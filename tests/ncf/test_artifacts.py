import json

import numpy as np
import pytest

from ncf import artifacts
from ncf.errors import ArtifactError
from ncf.recommender import Recommender
from ncf.training import keras_scorer, to_artifact


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, trained, dataset):
    path = tmp_path_factory.mktemp("model")
    result = trained["neumf"]
    artifacts.save(path, to_artifact(result, dataset, {"test": {"hr@10": 0.5}}), keras_model=result.model)
    return path


def test_the_folder_holds_every_part_and_metadata_says_what_it_is(model_dir, dataset):
    names = {p.name for p in model_dir.iterdir()}
    assert {"metadata.json", "vocabulary.npz", "weights.npz", "seen.npz", "popularity.npy", "saved_model"} <= names
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["format_version"] == artifacts.FORMAT_VERSION and meta["kind"] == "neumf"
    assert meta["hyperparameters"]["factors"] == 8 and meta["metrics"]["test"]["hr@10"] == 0.5
    assert meta["data"]["users"] == dataset.n_users
    assert set(meta["versions"]) == {"ncf", "numpy", "tensorflow", "keras"}
    assert not any(p.name.endswith(".tmp") for p in model_dir.iterdir())


def test_load_returns_what_save_wrote(model_dir, dataset):
    loaded = artifacts.load(model_dir)
    assert (loaded.users.ids == dataset.users.ids).all() and (loaded.items.ids == dataset.items.ids).all()
    assert (loaded.seen.indices == dataset.seen.indices).all()
    assert loaded.popularity.sum() == len(dataset.seen.indices)


def test_string_ids_survive_the_round_trip(tmp_path, trained, dataset):
    from dataclasses import replace
    from ncf.vocab import Vocabulary

    artifact = to_artifact(trained["mf"], dataset)
    text_items = Vocabulary(np.array([f"item-{i:06d}" for i in dataset.items.ids]))
    artifacts.save(tmp_path, replace(artifact, items=text_items))
    assert artifacts.load(tmp_path).items.ids.tolist() == text_items.ids.tolist()


def genres(n_items: int, extra: int = 0):
    """Item metadata for a model of `n_items` items: a genre each, every third item without a row, and `extra`
    metadata-only rows."""
    from ncf.metadata import ItemMetadata

    index = np.concatenate([np.arange(0, n_items, 3), np.full(extra, -1)])
    ids = [str(i) for i in index[:len(index) - extra]] + [f"only-{n}" for n in range(extra)]
    return ItemMetadata.from_table(index, ids, {"GENRES": [f"g{i % 4}|all" for i in range(len(index))],
                                                "year": [str(1990 + i % 30) for i in range(len(index))]}, n_items)


def test_item_metadata_is_saved_beside_the_model_and_loads_with_it(tmp_path, trained, dataset):
    from dataclasses import replace

    metadata = genres(dataset.n_items, extra=2)
    artifacts.save(tmp_path, replace(to_artifact(trained["mf"], dataset), item_metadata=metadata))
    assert (tmp_path / "items.npz").is_file()
    loaded = artifacts.load(tmp_path).item_metadata
    assert loaded.names == ["GENRES", "year"] and loaded.extra_ids == ["only-0", "only-1"]
    assert loaded.texts("genres", range(4)) == ["g0|all", None, None, "g1|all"]
    assert loaded.find("GENRES").isin(["all"]).sum() == len(range(0, dataset.n_items, 3))
    assert loaded.find("year").kind == "numeric"


def test_a_folder_without_item_metadata_loads_as_before(model_dir):
    assert not (model_dir / "items.npz").exists()
    assert artifacts.load(model_dir).item_metadata is None


def test_item_metadata_for_another_vocabulary_is_refused_at_save_and_at_load(model_dir, tmp_path, dataset):
    from dataclasses import replace

    folder = copy_folder(model_dir, tmp_path / "m")
    artifact = artifacts.load(folder)
    with pytest.raises(ArtifactError, match=f"item metadata for {dataset.n_items + 1} items, the model has"):
        artifacts.save(tmp_path / "other", replace(artifact, item_metadata=genres(dataset.n_items + 1)))
    genres(dataset.n_items + 1).save(folder / "items.npz")
    with pytest.raises(ArtifactError, match=f"items.npz: item metadata for {dataset.n_items + 1} items"):
        artifacts.load(folder)


def test_a_damaged_items_file_is_an_artifact_error_naming_it(model_dir, tmp_path, dataset):
    folder = copy_folder(model_dir, tmp_path / "m")
    genres(dataset.n_items).save(folder / "items.npz")
    assert artifacts.load(folder).item_metadata is not None
    (folder / "items.npz").write_bytes((folder / "items.npz").read_bytes()[:300])
    with pytest.raises(ArtifactError, match="items.npz is corrupt"):
        artifacts.load(folder)


def copy_folder(src, dst):
    import shutil
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("saved_model"))
    return dst


def test_another_format_version_is_refused_naming_both(model_dir, tmp_path):
    folder = copy_folder(model_dir, tmp_path / "m")
    meta = json.loads((folder / "metadata.json").read_text())
    meta["format_version"] = 99
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="format version 99; this library reads versions 1, 2"):
        artifacts.load(folder)


def test_a_version_1_folder_without_calibration_still_loads_and_serves_the_plain_sigmoid(model_dir, tmp_path):
    from ncf.calibration import Calibration

    folder = copy_folder(model_dir, tmp_path / "m")
    meta = json.loads((folder / "metadata.json").read_text())
    del meta["calibration"]
    (folder / "metadata.json").write_text(json.dumps({**meta, "format_version": 1}))
    recommender = Recommender.load(folder)
    users, items = recommender.users.ids[:5], recommender.items.ids[:5]
    logits = recommender.scorer.pairs(np.arange(5), np.arange(5)).astype(np.float64)
    np.testing.assert_allclose(recommender.score(users, items), 0.5 * (1.0 + np.tanh(0.5 * logits)), rtol=1e-12)
    assert recommender.calibration == Calibration()


def test_a_folder_without_metadata_is_not_a_model(tmp_path):
    with pytest.raises(ArtifactError, match="holds no metadata.json"):
        artifacts.load(tmp_path)
    with pytest.raises(ArtifactError, match="does not exist"):
        artifacts.load(tmp_path / "nope")


def test_arrays_that_would_need_pickle_are_refused(model_dir, tmp_path):
    folder = copy_folder(model_dir, tmp_path / "m")
    with open(folder / "vocabulary.npz", "wb") as f:
        np.savez(f, users=np.array([1, "a"], dtype=object), items=np.array([1]))
    with pytest.raises(ArtifactError, match="array .users. holds Python objects"):
        artifacts.load(folder)


def test_a_missing_or_truncated_file_is_an_artifact_error(model_dir, tmp_path):
    folder = copy_folder(model_dir, tmp_path / "m")
    (folder / "weights.npz").write_bytes((model_dir / "weights.npz").read_bytes()[:100])
    with pytest.raises(ArtifactError, match="weights.npz is corrupt"):
        artifacts.load(folder)
    (folder / "seen.npz").unlink()
    with pytest.raises(ArtifactError, match="seen.npz is missing"):
        artifacts.load(folder)


def test_weights_that_do_not_fit_the_vocabulary_are_refused(model_dir, tmp_path):
    folder = copy_folder(model_dir, tmp_path / "m")
    weights = dict(np.load(folder / "weights.npz"))
    weights["gmf/item"] = weights["gmf/item"][:-1]
    with open(folder / "weights.npz", "wb") as f:
        np.savez(f, **weights)
    with pytest.raises(ArtifactError, match=r"weights gmf/item have shape \(199, 8\), vocabulary has 200 rows"):
        artifacts.load(folder)


def test_the_saved_model_takes_raw_ids_and_matches_numpy_calibration_included(model_dir, dataset):
    from ncf.calibration import Calibration
    from ncf.savedmodel import load_signature

    users = dataset.users.decode(dataset.test.user)
    items = dataset.items.decode(dataset.test.item)
    serve = load_signature(model_dir / "saved_model")
    out = serve(user=np.array([str(u) for u in users] + ["nobody"]), item=np.array([str(i) for i in items] + ["1"]))
    recommender = Recommender.load(model_dir)
    assert recommender.calibration.method == "platt"  # fitted on validation, not the plain sigmoid
    expected = recommender.score(users, items)
    plain = Calibration().probability(recommender.scorer.pairs(*(v.lookup(x) for v, x in
                                                                   ((dataset.users, users), (dataset.items, items)))))
    assert np.abs(expected - plain).max() > 1e-3
    np.testing.assert_allclose(out["probability"].numpy()[:-1], expected, atol=1e-5)
    assert out["known"].numpy().tolist() == [True] * len(users) + [False]


def _rewrite(folder, name, change):
    arrays = dict(np.load(folder / name))
    change(arrays)
    with open(folder / name, "wb") as f:
        np.savez(f, **arrays)


def _set(key, value):
    def change(arrays):
        arrays[key] = value(arrays[key])
    return change


@pytest.mark.parametrize("name, change, message", [
    ("weights.npz", _set("gmf/item", lambda a: a[:, :-1]), "do not fit together"),
    ("weights.npz", _set("mlp/user", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 3, np.nan, a)),
     "weights mlp/user hold NaN or infinite values"),
    ("weights.npz", _set("head/kernel", lambda a: a.astype(np.int32)), "are int32, not floating point"),
    ("seen.npz", _set("indices", lambda a: a + 10**6), "seen items hold item indices outside"),
    ("seen.npz", _set("indptr", lambda a: a[::-1].copy()), "indptr is not a running count"),
])
def test_weights_and_seen_items_that_load_but_cannot_serve_are_refused_at_load(model_dir, tmp_path, name, change,
                                                                                message):
    folder = copy_folder(model_dir, tmp_path / "m")
    _rewrite(folder, name, change)
    with pytest.raises(ArtifactError, match=message):
        Recommender.load(folder)  # what serving loads


@pytest.mark.parametrize("change, message", [
    (_set("iterations", lambda a: np.array([1, 2])), "'iterations' is not one step count"),
    (_set("m/gmf/user", lambda a: a[:-1]), "m/gmf/user is no moment of a weight of its shape"),
    (_set("v/head/kernel", lambda a: -a - 1), "v/head/kernel holds values no Adam moment has"),
    (lambda arrays: arrays.update({"m/nothing": np.zeros(3, np.float32)}), "m/nothing is no moment"),
])
def test_an_optimizer_state_that_cannot_continue_the_weights_is_refused_where_it_is_read(model_dir, tmp_path,
                                                                                        change, message):
    folder = copy_folder(model_dir, tmp_path / "m")
    _rewrite(folder, "optimizer.npz", change)
    with pytest.raises(ArtifactError, match=message):
        artifacts.load(folder, optimizer=True)  # what a warm start reads
    assert artifacts.load(folder).optimizer is None  # serving never reads the file


def test_saving_into_a_folder_removes_another_models_optimizer_state(model_dir, tmp_path):
    from dataclasses import replace

    folder = copy_folder(model_dir, tmp_path / "m")
    assert (folder / "optimizer.npz").exists()
    artifacts.save(folder, replace(artifacts.load(folder), optimizer=None))
    assert not (folder / "optimizer.npz").exists()


@pytest.mark.parametrize("threshold", ["high", -0.1, True, None])
def test_a_threshold_that_is_not_a_probability_is_refused_at_load(model_dir, tmp_path, threshold):
    folder = copy_folder(model_dir, tmp_path / "m")
    metadata = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**metadata, "threshold": threshold}))
    with pytest.raises(ArtifactError, match="threshold .* is not a number from 0 to 1"):
        artifacts.load(folder)


def test_an_array_claiming_more_data_than_it_holds_is_refused_before_allocating(model_dir, tmp_path):
    import io
    import zipfile

    folder = copy_folder(model_dir, tmp_path / "m")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(folder / "weights.npz", "a") as archive:
        archive.writestr("huge.npy", header.getvalue() + b"\0" * 64)
    with pytest.raises(ArtifactError, match="array 'huge' claims 4,000,000,000,000 bytes of data but holds"):
        artifacts.load(folder)
    (folder / "popularity.npy").write_bytes(header.getvalue())
    with pytest.raises(ArtifactError, match="claims 4,000,000,000,000 bytes"):
        artifacts.load(folder)


def test_a_symbolic_link_is_refused_as_one(model_dir, tmp_path):
    folder = copy_folder(model_dir, tmp_path / "m")
    (folder / "seen.npz").unlink()
    (folder / "seen.npz").symlink_to("/etc/passwd")
    with pytest.raises(ArtifactError, match="seen.npz is a symbolic link; model files must be regular files"):
        artifacts.load(folder)


def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(model_dir, tmp_path):
    import os
    import threading

    folder = copy_folder(model_dir, tmp_path / "m")
    (folder / "weights.npz").unlink()
    os.mkfifo(folder / "weights.npz")
    outcome = []

    def load():
        try:
            artifacts.load(folder)
        except ArtifactError as e:
            outcome.append(str(e))

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(timeout=30)
    if reader.is_alive():  # unblock the reader so the test run can end, then fail
        with open(folder / "weights.npz", "wb"):
            pass
    assert outcome and "weights.npz is not a regular file" in outcome[0]


def test_compressed_arrays_are_refused_as_np_savez_never_writes_them(model_dir, tmp_path):
    folder = copy_folder(model_dir, tmp_path / "m")
    weights = dict(np.load(folder / "weights.npz"))
    with open(folder / "weights.npz", "wb") as f:
        np.savez_compressed(f, **weights)
    with pytest.raises(ArtifactError, match="is compressed; model arrays are stored as np.savez writes them"):
        artifacts.load(folder)


# Saving over a model: what loads afterwards is the whole old model, the whole new one, or nothing.

ENTRIES = {"metadata.json", "vocabulary.npz", "weights.npz", "seen.npz", "popularity.npy", "optimizer.npz",
           "items.npz", "saved_model"}

def _model_files(folder):
    """The entries of the model format in `folder` (staging leftovers aside), with a SavedModel's file bytes."""
    from pathlib import Path

    entries = {name for name in ENTRIES if (folder / name).exists()}
    saved = folder / artifacts.SAVED_MODEL
    tree = {str(p.relative_to(saved)): p.read_bytes() for p in sorted(Path(saved).rglob("*")) if p.is_file()}
    return entries, tree


def _same_model(a, b) -> bool:
    """Two loaded artifacts hold the same arrays and metadata (np.savez stamps its zip entries with the time,
    so equal models need not be equal bytes)."""
    def arrays_equal(x, y):
        return (x is None) == (y is None) and (x is None or (x.keys() == y.keys() and all(
            np.array_equal(x[k], y[k]) for k in x)))

    def same_items(x, y):
        return (x is None) == (y is None) and (x is None or (x.names == y.names and x.extra_ids == y.extra_ids and all(
            x.texts(name, range(x.n_items)) == y.texts(name, range(y.n_items)) for name in x.names)))

    return (a.kind == b.kind and a.metadata == b.metadata and arrays_equal(a.weights, b.weights)
            and same_items(a.item_metadata, b.item_metadata)
            and arrays_equal(a.optimizer, b.optimizer) and np.array_equal(a.users.ids, b.users.ids)
            and np.array_equal(a.items.ids, b.items.ids) and np.array_equal(a.seen.indices, b.seen.indices)
            and np.array_equal(a.popularity, b.popularity))


def what_loads(folder, references) -> str:
    """'nothing' (a clear ArtifactError), or the name of the one reference folder whose whole model loads."""
    try:
        loaded = artifacts.load(folder, optimizer=True)
    except ArtifactError as e:
        assert "holds no metadata.json" in str(e)
        return "nothing"
    for name, reference in references.items():
        if _model_files(folder) == _model_files(reference) and _same_model(
                loaded, artifacts.load(reference, optimizer=True)):
            return name
    raise AssertionError(f"{folder} loads a mix of models: {sorted(_model_files(folder)[0])}")


@pytest.fixture
def old_and_new(model_dir, tmp_path):
    """An old model (with optimizer.npz, items.npz and saved_model/) and a new one that differs in weights,
    calibration and threshold, and has none of those three entries: what a mix of them would betray."""
    from dataclasses import replace

    old = tmp_path / "old"
    import shutil
    shutil.copytree(model_dir, old)
    artifact = artifacts.load(old)
    genres(len(artifact.items)).save(old / "items.npz")
    metadata = {key: value for key, value in artifact.metadata.items() if key != "saved_model"}
    metadata.update(threshold=0.7, calibration={**metadata["calibration"], "scale": 3.0})
    new = artifacts.save(tmp_path / "new", replace(
        artifact, weights={k: v * 0.5 for k, v in artifact.weights.items()}, metadata=metadata, optimizer=None))
    return old, new


def save_steps(old, new, tmp_path) -> list[str]:
    import shutil

    steps = []
    target = shutil.copytree(old, tmp_path / "steps")
    original, artifacts._step = artifacts._step, steps.append
    try:
        artifacts.save(target, artifacts.load(new, optimizer=True))
    finally:
        artifacts._step = original
    assert what_loads(target, {"new": new}) == "new"
    return steps


def test_a_savedmodel_export_that_fails_over_a_model_leaves_the_old_model_whole(old_and_new, tmp_path,
                                                                                  monkeypatch):
    import re
    import shutil

    import ncf.savedmodel

    old, new = old_and_new
    target = shutil.copytree(old, tmp_path / "target")

    def full_disk(model, users, items, path, calibration=None):  # what TensorFlow leaves when the disk fills
        (path / "variables").mkdir(parents=True, exist_ok=True)
        (path / "variables" / "variables.data-00000-of-00001").write_bytes(b"half")
        raise ArtifactError(f"cannot write the SavedModel to {path}: No space left on device")

    monkeypatch.setattr(ncf.savedmodel, "export_saved_model", full_disk)
    with pytest.raises(ArtifactError, match=re.escape(f"cannot write the SavedModel to {target / 'saved_model'}:")):
        artifacts.save(target, artifacts.load(new, optimizer=True), keras_model=object())
    assert what_loads(target, {"old": old, "new": new}) == "old"  # its calibration and threshold with its arrays
    assert sorted(p.name for p in target.iterdir()) == sorted(ENTRIES)  # nothing of the save's left


def test_a_save_that_fails_at_any_step_leaves_the_old_model_or_none_and_no_leftovers(old_and_new, tmp_path):
    import errno
    import shutil

    old, new = old_and_new
    outcomes = []
    for n, step in enumerate(save_steps(old, new, tmp_path)):
        target = shutil.copytree(old, tmp_path / f"failed-{n}")

        def full_disk(done, at=step):
            if done == at:
                raise OSError(errno.ENOSPC, "No space left on device")

        original, artifacts._step = artifacts._step, full_disk
        try:
            with pytest.raises(ArtifactError, match="No space left on device"):
                artifacts.save(target, artifacts.load(new, optimizer=True))
        finally:
            artifacts._step = original
        outcome = what_loads(target, {"old": old, "new": new})
        left = {p.name for p in target.iterdir()}
        assert not any(name.startswith(".") or name.endswith(".tmp") for name in left), (step, left)
        if outcome == "nothing":  # failed half-way through the swap: no file of either model stays
            assert left == set(), (step, left)
        outcomes.append(outcome)
    assert outcomes[0] == "old" and "nothing" in outcomes and outcomes[-1] == "new"  # every phase was hit


KILL_AT = """
import os, signal, sys
from ncf import artifacts

def step(done):
    if done == sys.argv[3]:
        os.kill(os.getpid(), signal.SIGKILL)

artifacts._step = step
artifacts.save(sys.argv[1], artifacts.load(sys.argv[2], optimizer=True))
"""


def test_a_save_killed_at_any_step_leaves_the_old_model_the_new_one_or_none(old_and_new, tmp_path):
    import shutil
    import subprocess
    import sys

    old, new = old_and_new
    outcomes = {}
    for n, step in enumerate(save_steps(old, new, tmp_path)):
        target = shutil.copytree(old, tmp_path / f"killed-{n}")
        killed = subprocess.run([sys.executable, "-c", KILL_AT, str(target), str(new), step], capture_output=True,
                                text=True, timeout=120)
        assert killed.returncode == -9, killed.stderr
        outcomes[step] = what_loads(target, {"old": old, "new": new})
        if outcomes[step] == "nothing":
            with pytest.raises(ArtifactError, match="a save into it was interrupted"):
                artifacts.load(target)
        artifacts.save(target, artifacts.load(new, optimizer=True))  # the next save clears what the kill left
        assert what_loads(target, {"new": new}) == "new" and not list(target.glob(".*"))
    assert outcomes["wrote metadata.json"] == "old" and outcomes["moved in metadata.json"] == "new"
    assert outcomes["removed the old metadata.json"] == "nothing", outcomes


def test_a_load_that_overlaps_a_save_is_refused_rather_than_mixing_two_models(old_and_new, tmp_path,
                                                                               monkeypatch):
    old, new = old_and_new
    target = copy_folder(old, tmp_path / "target")
    read, saved, other = artifacts._arrays, [], artifacts.load(new)

    def arrays_while_saving(file):
        if not saved:  # after metadata.json was read: another process saves the new model over it
            saved.append(artifacts.save(target, other))
        return read(file)

    monkeypatch.setattr(artifacts, "_arrays", arrays_while_saving)
    with pytest.raises(ArtifactError, match="changed while it was read"):
        artifacts.load(target)
