"""A warm start's model.tar.gz is user data: a cut, damaged, oversized or ambiguous archive stops the job with
exit 2 and one line saying why, before anything of it is used."""

import gzip
import io
import signal
import tarfile

import pytest

from container import model_channel
from container.model_channel import load_previous
from container.train import main
from ncf.errors import ArtifactError, ConfigError
from tests.container.opt_ml import lay_out, run_train

#: The order SageMaker's archives need not have, fixed here so a test can damage the last entry.
ORDER = ["metadata.json", "vocabulary.npz", "weights.npz", "seen.npz", "popularity.npy", "optimizer.npz"]


def tar_bytes(files) -> bytes:
    """An uncompressed tar of `files` ({name in the archive: contents}, or such pairs), in the order given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in dict.items(files) if isinstance(files, dict) else files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def model_files(model_dir, prefix="") -> dict[str, bytes]:
    return {prefix + name: (model_dir / name).read_bytes() for name in ORDER}


def write_archive(folder, tar: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.tar.gz").write_bytes(gzip.compress(tar))
    return folder


def test_a_whole_archive_of_a_model_folder_loads(model_dir, tmp_path):
    source = write_archive(tmp_path / "model", tar_bytes(model_files(model_dir)))
    assert load_previous(source).optimizer is not None


def test_a_model_one_folder_down_loads(model_dir, tmp_path):
    source = write_archive(tmp_path / "model", tar_bytes(model_files(model_dir, "model/")))
    assert load_previous(source).kind == "neumf"


def test_a_truncated_archive_is_exit_2_with_a_one_line_reason_not_a_traceback(model_dir, tmp_path, ratings):
    whole = gzip.compress(tar_bytes(model_files(model_dir)))
    root = lay_out(tmp_path / "job", {"train": {"r.csv": ratings.to_csv(index=False).encode()},
                                      "model": {"model.tar.gz": whole[: len(whole) // 2]}})
    out = run_train(root)
    assert out.returncode == 2, out.stdout + out.stderr
    reason = (root / "output" / "failure").read_text()
    assert reason.startswith("Bad hyperparameter or configuration: warm start: ")
    assert "model.tar.gz is truncated" in reason and reason.count("\n") == 1
    assert "Traceback" not in out.stdout + out.stderr


def test_a_truncated_archive_given_locally_is_exit_2_too(model_dir, tmp_path, ratings_csv):
    whole = gzip.compress(tar_bytes(model_files(model_dir)))
    (tmp_path / "model.tar.gz").write_bytes(whole[:2000])
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main(["--ratings", str(ratings_csv), "--model-dir", str(tmp_path / "new"),
                     "--warm-start", str(tmp_path / "model.tar.gz")], {})
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 2


def test_a_damaged_header_on_the_last_entry_is_refused_instead_of_ending_the_archive(model_dir, tmp_path):
    tar = bytearray(tar_bytes(model_files(model_dir)))
    with tarfile.open(fileobj=io.BytesIO(bytes(tar))) as archive:
        last = archive.getmembers()[-1]
    assert last.name == "optimizer.npz"
    tar[last.offset + 148: last.offset + 156] = b"0000000\0"  # a wrong header checksum
    source = write_archive(tmp_path / "model", bytes(tar))
    with pytest.raises(ConfigError, match="model.tar.gz holds data no entry accounts for, after its entry "
                                          "'popularity.npy'"):
        load_previous(source)


def test_zero_bytes_in_the_middle_of_the_stream_are_refused_naming_the_archive(model_dir, tmp_path):
    tar = tar_bytes(model_files(model_dir))
    source = write_archive(tmp_path / "model", tar[:600] + b"\0" * 64 + tar[600:])
    with pytest.raises(ConfigError, match="warm start: model.tar.gz holds data no entry accounts for, after its "
                                          "entry 'metadata.json'"):
        load_previous(source)


def test_an_archive_of_more_entries_than_a_model_folder_holds_is_refused(model_dir, tmp_path):
    empty = {f"junk/{n}": b"" for n in range(1_000)}  # with the model's six: 1,006
    source = write_archive(tmp_path / "model", tar_bytes({**model_files(model_dir), **empty}))
    with pytest.raises(ConfigError, match="holds more than 1,000 entries; a model folder holds about a dozen"):
        load_previous(source)


def test_an_archive_that_unpacks_to_far_more_than_its_size_is_refused(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(model_channel, "MIN_UNPACKED_LIMIT", 1 << 20)  # the 1 GiB floor, scaled down
    padding = {"padding.bin": b"\0" * (4 << 20)}  # compresses 1,000-fold
    source = write_archive(tmp_path / "model", tar_bytes({**model_files(model_dir), **padding}))
    with pytest.raises(ConfigError, match=r"unpacks to more than [\d,]+ bytes \(20 times its own size or "
                                          r"1,048,576, whichever is more\)"):
        load_previous(source)


def test_an_archive_with_two_model_folders_is_refused_naming_both(model_dir, tmp_path):
    source = write_archive(tmp_path / "model",
                           tar_bytes({**model_files(model_dir, "b/"), **model_files(model_dir, "a/")}))
    with pytest.raises(ConfigError, match=r"holds 2 model folders \(a/, b/\); pack the one to continue alone"):
        load_previous(source)


def test_a_file_of_the_model_twice_is_refused(model_dir, tmp_path):
    files = [*model_files(model_dir).items(), ("weights.npz", b"another model's")]
    source = write_archive(tmp_path / "model", tar_bytes(files))
    with pytest.raises(ConfigError, match="holds weights.npz twice"):
        load_previous(source)


def test_a_missing_file_names_the_archive_not_a_temporary_folder(model_dir, tmp_path):
    files = model_files(model_dir)
    del files["vocabulary.npz"]
    source = write_archive(tmp_path / "model", tar_bytes(files))
    with pytest.raises(ArtifactError) as error:
        load_previous(source)
    assert f"model file {source / 'model.tar.gz'}/vocabulary.npz is missing" in str(error.value)
    assert "ncf-warm-start-" not in str(error.value)
