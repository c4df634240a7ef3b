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
