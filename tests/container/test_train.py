"""`train` as SageMaker calls it: a fake /opt/ml tree under SAGEMAKER_BASE_DIR, the real entry point."""

import gzip
import io
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from container.metric_definitions import METRIC_DEFINITIONS
from container.train import main
from ncf.recommender import Recommender
from tests.container.opt_ml import ROOT, env, lay_out, run_train, tar_gz, train_command
from tests.synthetic import ratings_frame


def csv_bytes(frame):
    return frame.to_csv(index=False).encode()


def train_in_process(root):
    """The same entry point in this process (no TensorFlow start-up per test); SIGTERM handling restored."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        return main([], {"SAGEMAKER_BASE_DIR": str(root)})
    finally:
        signal.signal(signal.SIGTERM, previous)


def failure(root):
    return (root / "output" / "failure").read_text()


def test_a_job_completes_with_model_outputs_and_metric_lines(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"ratings.csv": csv_bytes(ratings)}},
                   {"model": '"neumf"', "pretrain": '"False"', "mlp_layers": '"[8, 4]"', "sagemaker_region": "x"})
    out = run_train(root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert not (root / "output" / "failure").exists()
    # The log starts with the job: TensorFlow's start-up chatter is dropped (container/quiet.py).
    for chatter in ("oneDNN", "absl::InitializeLog", "Assets written"):
        assert chatter not in out.stdout + out.stderr
    data = root / "output" / "data"
    metrics = json.loads((data / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"hr@10", "ndcg@10", "accuracy", "full_recall@10"}
    assert "hr@10" in metrics["popularity"] and metrics["protocol"] == "loo-99"
    assert metrics["best_round"] == {"round": 1, "of": 1}  # one validation round an epoch at this size
    used = json.loads((data / "hyperparameters.json").read_text())
    assert used["pretrain"] == "none" and used["mlp_layers"] == [8, 4] and used["epochs"] == 2
    assert (data / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (data / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    served = metrics["calibration"]
    assert served["method"] == "platt" and "ece" in metrics["test"] and served["reliability"]
    # test:accuracy reads the calibrated probability, not the plain sigmoid's
    assert set(served["uncalibrated"]) == {"accuracy", "ece"}
    assert metrics["test"]["accuracy"] != served["uncalibrated"]["accuracy"]
    assert re.search(r"test:hr@10=[0-9.]+ .*test:accuracy=[0-9.]+ test:ece=[0-9.]+", out.stdout)
    rec = Recommender.load(root / "model")
    assert rec.metadata["calibration"]["scale"] == served["scale"]
    assert rec.metadata["threshold"] == 0.5 and len(rec.recommend(10, k=5).items) == 5
    assert re.search(r"epoch=2/2 .*samples_per_s=\d+ seconds=[0-9.]+ eta_s=\d+", out.stdout)
    assert set(metrics["seconds"]) == {"read", "prepare", "train", "evaluate", "export"}
    assert all(value >= 0 for value in metrics["seconds"].values()) and metrics["seconds"]["train"] > 0
    assert re.search(r"timing: read_s=[0-9.]+ prepare_s=[0-9.]+ train_s=[0-9.]+ evaluate_s=[0-9.]+ export_s=[0-9.]+",
                     out.stdout)
    users = metrics["data"]["test"]
    assert metrics["full_ranking_users"] == {"evaluated": users, "of": users, "seed": 0}  # few users: all of them


def test_test_metrics_rank_the_stated_samples_of_users_with_each_metrics_standard_error(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"ratings.csv": csv_bytes(ratings)}},
                   {"model": "mf", "epochs": "1", "full_ranking_users": "25", "test_users": "40"})
    assert train_in_process(root) == 0
    metrics = json.loads((root / "output" / "data" / "metrics.json").read_text())
    assert metrics["full_ranking_users"] == {"evaluated": 25, "of": metrics["data"]["test"], "seed": 0}
    assert metrics["candidate_users"] == {"evaluated": 40, "of": metrics["data"]["test"], "seed": 0}
    assert "full_recall@10" in metrics["test"] and "full_recall@10" in metrics["popularity"]
    for name in ("hr@10", "ndcg@10", "full_recall@10", "full_ndcg@10"):
        assert 0 < metrics["test"][f"{name}_se"] < 0.2, name


def test_the_job_says_whether_the_model_beats_popularity_and_by_how_much(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"ratings.csv": csv_bytes(ratings)}}, {"model": "mf", "epochs": "2"})
    out = run_train(root)
    assert out.returncode == 0, out.stdout + out.stderr
    verdict = json.loads((root / "output" / "data" / "metrics.json").read_text())["against_popularity"]
    for split in ("validation", "test"):
        judged = verdict[split]
        assert judged["margin"] == pytest.approx(judged["hr@10"] - judged["popularity_hr@10"])
        assert judged["beats_popularity"] == (judged["margin"] > 1.96 * judged["margin_se"])
        assert re.search(rf"{split}:popularity_margin=-?[0-9.]+ .*{split}:beats_popularity=[01]", out.stdout)


def test_a_model_that_learns_nothing_is_saved_with_a_warning_that_names_a_cause(tmp_path, ratings):
    # one epoch at a batch larger than the data: a handful of steps, so the model cannot beat popularity
    root = lay_out(tmp_path, {"train": {"ratings.csv": csv_bytes(ratings)}},
                   {"model": "mf", "epochs": "1", "batch_size": "65536", "learning_rate": "0.0001"})
    out = run_train(root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"WARNING .*the model does not beat popularity on validation: .*Likely cause: an epoch "
                     r"makes only \d+ optimiser steps \(batch_size=65536\)", out.stdout)
    metrics = json.loads((root / "output" / "data" / "metrics.json").read_text())
    assert metrics["against_popularity"]["validation"]["beats_popularity"] is False
    assert "validation:beats_popularity=0" in out.stdout
    assert (root / "model" / "metadata.json").is_file()


def test_a_neumf_from_random_weights_on_few_interactions_per_user_is_told_to_start_from_an_mf(tmp_path):
    # ~6 training interactions a user, and a learning rate too small to move: popularity's level, as NeuMF
    # without an MF start reached on the data-shape matrix's sparse rows
    sparse = ratings_frame(n_users=2000, n_items=300, per_user=(5, 10))  # enough pairs for 100 steps an epoch
    root = lay_out(tmp_path, {"train": {"ratings.csv": csv_bytes(sparse)}},
                   {"pretrain": "none", "epochs": "1", "learning_rate": "0.000001"})
    out = run_train(root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"WARNING .*does not beat popularity on validation: .*Likely cause: few interactions per user "
                     r"\([0-9.]+ on average\).*try model=mf, or pretrain=mf \(NeuMF started from an MF\)", out.stdout)


def test_an_auto_batch_size_is_resolved_from_the_data_logged_and_recorded(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"ratings.csv": csv_bytes(ratings)}},
                   {"model": "mf", "epochs": "1", "batch_size": "auto"})
    out = run_train(root)
    assert out.returncode == 0, out.stdout + out.stderr
    used = json.loads((root / "output" / "data" / "hyperparameters.json").read_text())
    assert isinstance(used["batch_size"], int) and 256 <= used["batch_size"] < 4096  # the fixture is small
    assert f"batch_size=auto: {used['batch_size']}: " in out.stdout
    metadata = json.loads((root / "model" / "metadata.json").read_text())
    assert metadata["hyperparameters"]["batch_size"] == used["batch_size"]


def test_every_metric_definition_matches_the_real_log(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"r.csv": csv_bytes(ratings)}}, {"model": "mf"})
    out = run_train(root)
    assert out.returncode == 0, out.stdout + out.stderr
    for definition in METRIC_DEFINITIONS:
        values = re.findall(definition["Regex"], out.stdout)
        assert values, f"{definition['Name']} matched nothing"
        lowest = -1.0 if definition["Name"].endswith("_margin") else 0.0  # a model may trail popularity
        assert all(lowest <= float(v) for v in values), (definition["Name"], values)
    assert len(METRIC_DEFINITIONS) <= 40


def test_channels_of_gzip_parquet_and_many_files_are_read_together(tmp_path, ratings):
    compressed = gzip.compress(csv_bytes(ratings.iloc[:1000]))
    parquet = io.BytesIO()
    ratings.iloc[1000:2000].to_parquet(parquet)
    files = {"part-0.gz": compressed, "part-1": parquet.getvalue(), "part-2.csv": csv_bytes(ratings.iloc[2000:])}
    root = lay_out(tmp_path, {"train": files}, {"model": "gmf", "validation_k": "0", "patience": "0"}, mode="FastFile")
    assert train_in_process(root) == 0
    metrics = json.loads((root / "output" / "data" / "metrics.json").read_text())
    assert metrics["data"]["interactions"] == len(ratings.drop_duplicates(["userId", "movieId"]))
    assert metrics["data"]["validation"] == 0


def test_given_validation_and_test_channels_are_used_instead_of_carving(tmp_path, ratings):
    last = ratings.sort_values("timestamp").groupby("userId").tail(2)
    first, second = last.groupby("userId").head(1), last.groupby("userId").tail(1)
    rest = ratings.drop(last.index)
    root = lay_out(tmp_path, {"train": {"a.csv": csv_bytes(rest)}, "validation": {"v.csv": csv_bytes(first)},
                              "test": {"t.csv": csv_bytes(second)}}, {"model": "mf"})
    assert train_in_process(root) == 0
    stats = json.loads((root / "output" / "data" / "metrics.json").read_text())["data"]
    assert stats["train"] == len(rest) and stats["test"] == len(second) and stats["validation"] == len(first)


def test_tensorboard_events_are_written_when_the_folder_exists(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"r.csv": csv_bytes(ratings)}}, {"model": "mf"}, tensorboard=True)
    assert train_in_process(root) == 0
    assert list((root / "output" / "tensorboard").glob("events.out.tfevents.*"))


def test_pipe_mode_reads_the_fifo_once(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {}}, {"model": "mf"}, mode="Pipe")
    fifo = root / "input" / "data" / "train_0"
    os.mkfifo(fifo)
    payload = gzip.compress(csv_bytes(ratings))

    def feed():
        with open(fifo, "wb") as f:  # blocks until train opens the FIFO, as SageMaker's writer does
            f.write(payload)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    out = run_train(root)
    writer.join(timeout=5)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (root / "model" / "metadata.json").exists()


@pytest.mark.parametrize("setup, code, message", [
    (lambda r, f: {"validation": {"v.csv": f}}, 2, r"Bad hyperparameter or configuration: the 'train' channel is required"),
    (lambda r, f: {"train": {"empty.csv": b""}}, 3, r"Bad input data: channel 'train': .*none of its 1 files holds a row"),
    (lambda r, f: {"train": {"r.csv": b"a,b,c\n1,2,3\n"}}, 3, r"Bad input data: channel 'train': .*r\.csv: line 1: rating 'c' is not a finite number"),
    (lambda r, f: {"train": {"r.csv": b"userId,thing\n1,2\n"}}, 3, r"no item column: the file has columns \['userId', 'thing'\]"),
    (lambda r, f: {"train": {"r.csv": b"userId,movieId,timestamp\n1,2,-1\n1,3,4\n"}}, 3, r"line 2: timestamp is negative"),
    (lambda r, f: {"train": {"r.csv": f}, "extra": {"x": f}}, 2, r"unknown channel\(s\) \['extra'\]"),
])
def test_bad_jobs_fail_with_a_readable_reason_and_exit_code(tmp_path, ratings, setup, code, message):
    root = lay_out(tmp_path, setup(tmp_path, csv_bytes(ratings.head(500))))
    assert train_in_process(root) == code
    assert re.search(message, failure(root)), failure(root)
    assert not (root / "model" / "metadata.json").exists()


@pytest.mark.parametrize("hyperparameters, message", [
    ({"epochs": "many"}, r"hyperparameter 'epochs' = 'many': expected an integer"),
    ({"learning_rte": "0.1"}, r"unknown hyperparameter 'learning_rte'"),
    ({"mlp_layers": "7,3"}, r"mlp_layers must be an even embedding width"),
])
def test_bad_hyperparameters_fail_naming_the_key(tmp_path, ratings, hyperparameters, message):
    root = lay_out(tmp_path, {"train": {"r.csv": csv_bytes(ratings)}}, hyperparameters)
    assert train_in_process(root) == 2
    assert re.search(message, failure(root))


def test_hyperparameters_that_are_not_json_fail_clearly(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"r.csv": csv_bytes(ratings)}})
    (root / "input" / "config" / "hyperparameters.json").write_text("{epochs: 3")
    assert train_in_process(root) == 2
    assert "hyperparameters.json is not valid JSON" in failure(root)


def test_a_sharded_train_channel_on_several_hosts_is_refused_with_what_to_do(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"r.csv": csv_bytes(ratings)}},
                   resources={"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]})
    config = root / "input" / "config" / "inputdataconfig.json"
    config.write_text(config.read_text().replace("FullyReplicated", "ShardedByS3Key"))
    assert train_in_process(root) == 2
    assert "use FullyReplicated" in failure(root) and "train" in failure(root)


def test_an_unwritable_model_folder_is_a_failure_file_not_a_traceback(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"r.csv": csv_bytes(ratings)}}, {"model": "mf"})
    (root / "model").rmdir()
    (root / "model").write_text("a file where the model folder should be")
    assert train_in_process(root) == 4
    assert failure(root).startswith("Cannot write or read the model:")


def test_sigterm_stops_within_the_grace_period_and_the_next_run_resumes(tmp_path, ratings):
    root = lay_out(tmp_path, {"train": {"r.csv": csv_bytes(ratings)}},
                   {"model": "mf", "epochs": "8", "batch_size": "16", "patience": "0"}, checkpoints=True)
    process = subprocess.Popen(train_command(), cwd=ROOT, env=env(root), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if "epoch=2/8" in line:
            break
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    rest = process.stdout.read()
    assert process.wait(timeout=120) == 143, rest
    assert time.monotonic() - sent < 30
    assert failure(root).startswith("Stopped:")
    assert list((root / "checkpoints").glob("ncf-algo-1.npz"))
    assert not (root / "model" / "metadata.json").exists()

    (root / "output" / "failure").unlink()
    resumed = run_train(root)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = int(re.search(r"resuming mf from checkpoint after epoch (\d+)", resumed.stdout).group(1))
    epochs = [int(n) for n in re.findall(r"stage=mf epoch=(\d+)/8", resumed.stdout)]
    assert after >= 2 and epochs == list(range(after + 1, 9))


def test_the_model_channel_warm_starts_a_job_that_inherits_the_previous_shapes(tmp_path, ratings):
    first = lay_out(tmp_path / "first", {"train": {"ratings.csv": csv_bytes(ratings.iloc[: len(ratings) * 8 // 10])}},
                    {"factors": "6"})
    assert train_in_process(first) == 0, failure(first)
    second = lay_out(tmp_path / "second", {"train": {"ratings.csv": csv_bytes(ratings)},
                                           "model": {"model.tar.gz": tar_gz(first / "model")}})
    hyperparameters = json.loads((second / "input" / "config" / "hyperparameters.json").read_text())
    hyperparameters.pop("factors")  # not set: the warm start gives the previous model's
    (second / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    out = run_train(second)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"warm start from .*model \(neumf\): rows kept", out.stdout)
    assert re.search(r"warm start: the optimiser continues after step [1-9]", out.stdout + out.stderr)
    used = json.loads((second / "output" / "data" / "hyperparameters.json").read_text())
    assert used["factors"] == 6
    old, new = Recommender.load(first / "model"), Recommender.load(second / "model")
    assert len(new.users) >= len(old.users) and set(old.items.ids) <= set(new.items.ids)


@pytest.mark.parametrize("setup, message", [
    ("factors", "warm start: factors=16 but the model it starts from has factors=4"),
    ("evil", "holds entries a model folder never has"),
    ("empty", "holds neither a model folder (metadata.json) nor one model.tar.gz"),
])
def test_a_warm_start_that_cannot_be_is_exit_2_naming_why(tmp_path, ratings, setup, message):
    import tarfile

    first = lay_out(tmp_path / "first", {"train": {"ratings.csv": csv_bytes(ratings)}})
    assert train_in_process(first) == 0, failure(first)
    archive = tar_gz(first / "model")
    if setup == "evil":
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as bad:
            info = tarfile.TarInfo("../outside.txt")
            info.size = 1
            bad.addfile(info, io.BytesIO(b"x"))
        archive = buffer.getvalue()
    files = {} if setup == "empty" else {"model.tar.gz": archive}
    second = lay_out(tmp_path / "second", {"train": {"ratings.csv": csv_bytes(ratings)}, "model": files},
                     {"factors": "16"} if setup == "factors" else {})
    assert train_in_process(second) == 2
    assert message in failure(second)
    assert not (tmp_path / "second" / "input" / "data" / "outside.txt").exists()


def test_a_sharded_model_channel_is_refused_because_one_host_alone_would_get_the_model(tmp_path, ratings):
    import json as _json

    root = lay_out(tmp_path, {"train": {"ratings.csv": csv_bytes(ratings)}, "model": {"model.tar.gz": b"x"}})
    config = root / "input" / "config" / "inputdataconfig.json"
    channels = _json.loads(config.read_text())
    channels["model"]["S3DistributionType"] = "ShardedByS3Key"
    config.write_text(_json.dumps(channels))
    assert train_in_process(root) == 2
    assert "channel 'model': S3DistributionType=ShardedByS3Key" in failure(root)


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_local_movielens_job_reads_a_local_copy_without_the_network(tmp_path, ratings, how):
    copy = tmp_path / "movielens"
    (copy / "ml-latest-small").mkdir(parents=True)
    ratings.to_csv(copy / "ml-latest-small" / "ratings.csv", index=False)  # synthetic, laid out as GroupLens'
    argv = ["--movielens", "ml-latest-small", "--model-dir", str(tmp_path / "model"), "--set", "model=mf",
            "--set", "epochs=1", "--movielens-url", "http://127.0.0.1:9/nowhere"]  # a download would fail
    environ = {"NCF_MOVIELENS_DIR": str(copy)} if how == "environment" else {}
    argv += ["--movielens-dir", str(copy)] if how == "flag" else []
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert main(argv, environ) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert metrics["data"]["interactions"] == len(ratings.drop_duplicates(["userId", "movieId"]))
