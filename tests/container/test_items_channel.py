"""The `items` channel through the real `train`: item metadata read once the item vocabulary is known, written
into the model folder, refused in Pipe mode, a broken table failing the job before it trains, and carried over
by a warm start."""

import json
import re
import signal

import numpy as np
import pytest

from container.train import main
from ncf import artifacts
from tests.container.opt_ml import lay_out, run_train, tar_gz


def csv_bytes(frame) -> bytes:
    return frame.to_csv(index=False).encode()


def train_in_process(root) -> int:
    """The entry point as SageMaker runs it, in this process (no TensorFlow start-up per test)."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        return main([], {"SAGEMAKER_BASE_DIR": str(root)})
    finally:
        signal.signal(signal.SIGTERM, previous)


def failure(root) -> str:
    return (root / "output" / "failure").read_text()


def movies(ratings, every: int = 1, extra: int = 0, genre: str = "Drama") -> bytes:
    """A movies.csv for the synthetic ratings' items: every `every`-th item, then `extra` ids no rating has."""
    ids = np.unique(ratings.movieId.to_numpy())[::every].tolist() + [10 ** 9 + n for n in range(extra)]
    rows = [f'{i},"Movie {i}, The ({1950 + i % 70})",{genre}|G{i % 3}' for i in ids]
    return ("movieId,title,genres\n" + "\n".join(rows) + "\n").encode()


def test_the_items_channel_lands_in_the_model_folder_and_the_log_says_what_it_held(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"ratings.csv": csv_bytes(ratings)},
                              "items": {"movies.csv": movies(ratings, every=2, extra=3)}}, {"model": "mf"})
    out = run_train(root)
    assert out.returncode == 0, out.stdout + out.stderr
    n_items = ratings.movieId.nunique()
    described = len(range(0, n_items, 2))
    assert re.search(rf"items: {described + 3} rows from .*input/data/items; columns title: text, genres: "
                     rf"categorical \(text: mostly distinct values, most holding a space; each kept whole, never "
                     rf"split at \|\); 3 metadata-only \(ids not in the interactions: kept, not scored\); "
                     rf"{n_items - described} of {n_items} trained items have no row", out.stdout), out.stdout
    model = artifacts.load(root / "model")
    assert (root / "model" / "items.npz").is_file()
    metadata = model.item_metadata
    assert metadata.n_items == n_items and len(metadata.extra_ids) == 3
    first = int(model.items.ids[0])
    assert metadata.texts("TITLE", [0, 1]) == [f"Movie {first}, The ({1950 + first % 70})", None]
    assert metadata.find("genres").isin(["Drama"]).sum() == described


def test_an_items_channel_in_pipe_mode_is_refused_saying_to_use_file_mode(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"ratings.csv": csv_bytes(ratings)}, "items": {"m.csv": movies(ratings)}})
    config = root / "input" / "config" / "inputdataconfig.json"
    channels = json.loads(config.read_text())
    channels["items"]["TrainingInputMode"] = "Pipe"
    config.write_text(json.dumps(channels))
    assert train_in_process(root) == 2
    assert failure(root).startswith("Bad hyperparameter or configuration: channel 'items': Pipe mode streams "
                                    "records, and item metadata is a table read whole; use File or FastFile mode")


@pytest.mark.parametrize("table, message", [
    (b"movieId,title\n17,A\n1026,B\n17,C\n", r"m\.csv: line 2 and .*m\.csv: line 4: item id '17' appears twice"),
    (b"movieId,title,genres\n17,A,x\n1026,B\n", r"m\.csv: line 3: 2 fields, the header has 3"),
    (b"name,genres\nA,x\n", r"no item id column: the file has columns \['name', 'genres'\]"),
])
def test_a_broken_items_table_fails_the_job_with_exit_3_naming_the_line_before_training(tmp_path, ratings, capsys,
                                                                                         table, message):
    root = lay_out(tmp_path, {"train": {"ratings.csv": csv_bytes(ratings)}, "items": {"m.csv": table}})
    assert train_in_process(root) == 3
    assert failure(root).startswith("Bad input data: channel 'items': ")
    assert re.search(message, failure(root)), failure(root)
    assert "epoch=" not in capsys.readouterr().out  # refused before any training
    assert not (root / "model" / "metadata.json").exists()


def test_a_warm_start_carries_the_metadata_over_and_a_new_items_table_replaces_it(tmp_path, ratings):
    later = np.unique(ratings.movieId)[:10]  # items first rated after the first job
    early = ratings[~ratings.movieId.isin(later)]
    first = lay_out(tmp_path / "first", {"train": {"ratings.csv": csv_bytes(early)},
                                         "items": {"m.csv": movies(ratings)}}, {"model": "mf", "epochs": "1"})
    assert train_in_process(first) == 0, failure(first)
    old = artifacts.load(first / "model")
    unseen = sorted(set(ratings.movieId) - set(early.movieId))
    assert unseen == later.tolist() and len(old.item_metadata.extra_ids) == 10  # metadata-only at first

    carried = lay_out(tmp_path / "carried", {"train": {"ratings.csv": csv_bytes(ratings)},
                                             "model": {"model.tar.gz": tar_gz(first / "model")}}, {"epochs": "1"})
    assert train_in_process(carried) == 0, failure(carried)
    new = artifacts.load(carried / "model")
    assert len(new.items) == ratings.movieId.nunique() and new.item_metadata.extra_ids == []
    position = {int(i): n for n, i in enumerate(new.items.ids)}
    for item in (unseen[0], int(old.items.ids[5])):  # a metadata-only item now trained, and an old one
        assert new.item_metadata.texts("title", [position[item]]) == [f"Movie {item}, The ({1950 + item % 70})"]

    replaced = lay_out(tmp_path / "replaced", {"train": {"ratings.csv": csv_bytes(ratings)},
                                               "model": {"model.tar.gz": tar_gz(first / "model")},
                                               "items": {"m.csv": movies(ratings, genre="Comedy")}}, {"epochs": "1"})
    assert train_in_process(replaced) == 0, failure(replaced)
    metadata = artifacts.load(replaced / "model").item_metadata
    assert metadata.find("genres").isin(["Comedy"]).all() and not metadata.find("genres").isin(["Drama"]).any()


def test_local_train_takes_items_and_movielens_brings_its_movies_with_the_year_from_the_title(tmp_path, ratings):
    copy = tmp_path / "movielens" / "ml-latest-small"
    copy.mkdir(parents=True)
    ratings.to_csv(copy / "ratings.csv", index=False)
    ids = sorted(set(ratings.movieId))
    (copy / "movies.csv").write_text("movieId,title,genres\n" + "\n".join(
        [f'{ids[0]},"American President, The (1995)",Comedy|Drama|Romance',
         f"{ids[1]},Babylon 5,Sci-Fi",  # no year in the title: missing
         f"{ids[2]},Cosmos (1980) ,Documentary"]) + "\n")
    argv = ["--movielens", "ml-latest-small", "--movielens-dir", str(tmp_path / "movielens"), "--model-dir",
            str(tmp_path / "model"), "--set", "model=mf", "--set", "epochs=1",
            "--movielens-url", "http://127.0.0.1:9/nowhere"]  # a download would fail: the local copy is read
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert main(argv, {}) == 0
        metadata = artifacts.load(tmp_path / "model").item_metadata
        assert metadata.find("year").kind == "numeric"
        assert metadata.texts("year", [0, 1, 2]) == ["1995", None, "1980"]
        assert metadata.texts("Genres", [0]) == ["Comedy|Drama|Romance"]
        assert (copy / "items.csv").is_file()  # the table written beside the ratings, ready for an items channel

        own = tmp_path / "own.csv"
        own.write_text(f"item_id,colour\n{ids[3]},red\n")
        assert main(argv + ["--items", str(own)], {}) == 0  # given, it is the one used
        metadata = artifacts.load(tmp_path / "model").item_metadata
        assert metadata.names == ["colour"] and metadata.texts("colour", [3]) == ["red"]
    finally:
        signal.signal(signal.SIGTERM, previous)
