"""`train` under corrupt input and interruptions: a readable failure and a non-zero exit, never a hang,
and an interrupted job that resumes to the model an uninterrupted one would have written."""

import gzip
import os
import re
import signal
import subprocess
import threading

import numpy as np
import pytest

from tests.container.opt_ml import ROOT, env, lay_out, run_train, train_command
from tests.container.test_train import csv_bytes, failure, train_in_process


@pytest.mark.parametrize("name, files, message", [
    ("truncated gzip", lambda good: {"r.gz": gzip.compress(good)[:400]}, r"r\.gz: cannot be decompressed"),
    ("binary junk", lambda good: {"r.bin": bytes(range(256)) * 20}, r"r\.bin: binary data, not delimited text"),
    ("UTF-16 text", lambda good: {"r.csv": good.decode().encode("utf-16")}, r"text is UTF-16; save it as UTF-8"),
    ("header only", lambda good: {"r.csv": b"userId,movieId,rating,timestamp\n"}, r"none of its 1 files holds a row"),
    ("a single column", lambda good: {"r.csv": b"17\n18\n"}, r"line 1 has one field"),
    ("ragged rows", lambda good: {"r.csv": b"userId,movieId\n1,2\n3,4,5,6,7\n"}, r"not readable as delimited text"),
    ("one bad file among many", lambda good: {**{f"part-{n:04d}.csv": b"userId,movieId\n1,2\n" for n in range(300)},
                                              "part-9999.csv": b"userId,movieId\n1,\n"},
     r"part-9999\.csv: line 2: item id is empty"),
])
def test_corrupt_input_ends_in_a_failure_file_and_exit_3(tmp_path, ratings, name, files, message):
    root = lay_out(tmp_path, {"train": files(csv_bytes(ratings))}, {"model": "mf"})
    assert train_in_process(root) == 3
    assert re.search(message, failure(root)), failure(root)


def test_thousands_of_tiny_files_are_read_as_one_channel(tmp_path, ratings):
    bounds = np.linspace(0, len(ratings), 2001).astype(int)
    files = {f"part-{n:05d}.csv": csv_bytes(ratings.iloc[a:b]) for n, (a, b) in enumerate(zip(bounds, bounds[1:]))}
    root = lay_out(tmp_path, {"train": files}, {"model": "mf", "epochs": "1"})
    assert train_in_process(root) == 0
    assert (root / "model" / "metadata.json").exists()


def test_ids_with_spaces_around_them_are_trimmed(tmp_path, ratings):
    text = ratings.to_csv(index=False).replace(",", " , ")
    root = lay_out(tmp_path, {"train": {"r.csv": text.encode()}}, {"model": "mf", "epochs": "1"})
    assert train_in_process(root) == 0


def test_an_empty_pipe_fails_fast_instead_of_hanging(tmp_path):
    root = lay_out(tmp_path, {"train": {}}, {"model": "mf"}, mode="Pipe")
    fifo = root / "input" / "data" / "train_0"
    os.mkfifo(fifo)

    def close_at_once():
        with open(fifo, "wb"):
            pass

    threading.Thread(target=close_at_once, daemon=True).start()
    out = run_train(root, timeout=120)
    assert out.returncode == 3 and "train_0: file is empty" in failure(root)


def test_sigterm_during_a_stalled_pipe_read_stops_at_once_with_a_failure_file(tmp_path, ratings):
    import time

    root = lay_out(tmp_path, {"train": {}}, {"model": "mf"}, mode="Pipe")
    fifo = root / "input" / "data" / "train_0"
    os.mkfifo(fifo)
    opened, released = threading.Event(), threading.Event()

    def write_a_little_then_stall():
        with open(fifo, "wb") as writer:  # returns once `train` has opened the FIFO to read it
            opened.set()
            writer.write(csv_bytes(ratings)[:1000])  # a first part, then nothing until the test ends
            writer.flush()
            released.wait(60)

    threading.Thread(target=write_a_little_then_stall, daemon=True).start()
    process = subprocess.Popen(train_command(), cwd=ROOT, env=env(root), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        assert opened.wait(120), "train never opened the FIFO"
        time.sleep(1)  # inside the FIFO's read by now, waiting for more
        assert process.poll() is None
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
        assert time.monotonic() - signalled < 10
        assert failure(root).startswith("Stopped: stopped by request while reading the channels")
    finally:
        released.set()
        process.kill()


def test_a_read_only_data_channel_is_fine_as_fast_file_mode_presents_it(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"r.csv": csv_bytes(ratings)}}, {"model": "mf", "epochs": "1"}, mode="FastFile")
    folder = root / "input" / "data" / "train"
    (folder / "r.csv").chmod(0o444)
    folder.chmod(0o555)
    assert train_in_process(root) == 0


def test_sigterm_during_data_loading_stops_and_the_next_run_completes(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"r.csv": csv_bytes(ratings)}}, {"model": "mf"}, checkpoints=True)
    process = subprocess.Popen(train_command(), cwd=ROOT, env=env(root), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if "data:" in line:  # the channel has been read; training has not begun
            process.send_signal(signal.SIGTERM)
            break
    process.stdout.read()
    assert process.wait(timeout=120) == 143 and failure(root).startswith("Stopped:")
    assert run_train(root).returncode == 0
    assert not (root / "output" / "failure").exists()  # the stopped run's reason does not outlive a success


def test_sigterm_after_training_stops_before_evaluation_and_no_model_is_written(tmp_path, ratings, monkeypatch):
    from ncf import training

    real_fit = training.fit

    def fit_then_sigterm(*args, **kwargs):  # SIGTERM lands exactly between training and evaluation
        result = real_fit(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(training, "fit", fit_then_sigterm)
    root = lay_out(tmp_path, {"train": {"r.csv": csv_bytes(ratings)}}, {"model": "mf", "epochs": "1"})
    assert train_in_process(root) == 143
    assert failure(root).startswith("Stopped: stopped by request after training, before evaluation")
    assert not (root / "model" / "metadata.json").exists()


def test_an_interrupted_and_resumed_job_writes_the_same_model_as_an_uninterrupted_one(tmp_path, ratings):
    hyperparameters = {"model": "neumf", "epochs": "4", "batch_size": "64", "patience": "0", "dropout": "0.1"}
    whole = lay_out(tmp_path / "whole", {"train": {"r.csv": csv_bytes(ratings)}}, hyperparameters)
    assert run_train(whole).returncode == 0

    cut = lay_out(tmp_path / "cut", {"train": {"r.csv": csv_bytes(ratings)}}, hyperparameters, checkpoints=True)
    process = subprocess.Popen(train_command(), cwd=ROOT, env=env(cut), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if "epoch=2/4" in line:
            process.send_signal(signal.SIGTERM)
            break
    process.stdout.read()
    assert process.wait(timeout=120) == 143
    resumed = run_train(cut)
    # the default NeuMF pretrains from MF on data this small (pretrain=auto): the cut lands in the MF stage
    assert resumed.returncode == 0 and "resuming mf from checkpoint" in resumed.stdout
    assert "stage=refit-mf" in resumed.stdout and "stage=refit " in resumed.stdout

    a = np.load(whole / "model" / "weights.npz")
    b = np.load(cut / "model" / "weights.npz")
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)


def test_a_pipe_channel_whose_part_does_not_fit_on_disk_is_a_data_error_saying_so(tmp_path):
    import resource

    from container.channels import read_channel
    from container.train_config import Channel
    from ncf.data import Columns
    from ncf.errors import DataError

    fifo = tmp_path / "train_0"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            try:
                f.write(b"user,item\n" + b"1,2\n" * (1 << 20))
            except BrokenPipeError:
                pass

    threading.Thread(target=feed, daemon=True).start()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))  # a volume with 1 MiB free, as far as writes go
    try:
        with pytest.raises(DataError, match=r"channel 'train': .*train_0: a 4 MiB part could not be written .*"
                                            r"that much free disk is needed"):
            read_channel(Channel("train", fifo, input_mode="Pipe"), Columns())
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
