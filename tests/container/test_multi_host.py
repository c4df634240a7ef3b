"""Several hosts, one job: `train` processes on loopback form a MultiWorkerMirroredStrategy cluster as the hosts
of a SageMaker job do (each its own /opt/ml, a resourceconfig.json naming algo-1 and algo-2), with the host names
mapped to 127.0.0.1 ports through NCF_HOST_ADDRESSES."""

import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from tests.container.opt_ml import ROOT, env, lay_out, run_train, train_command

HOSTS = ["algo-1", "algo-2"]
#: Long enough for the curve to move, small enough for a few seconds per run. Dense Adam: several hosts always
#: train with it (lazy_adam runs in one process only), and one host must train the same way to be compared.
JOB = {"model": "mf", "epochs": "6", "factors": "8", "batch_size": "512", "patience": "0", "optimizer": "adam"}


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_hosts(tmp_path, train_files, hyperparameters, checkpoints=False):
    """One `train` process per host, `train_files[host]` its train channel; returns [(root, Popen)], chief first."""
    addresses = ",".join(f"{h}=127.0.0.1:{p}" for h, p in zip(HOSTS, free_ports(len(HOSTS))))
    started = []
    for host in HOSTS:
        root = lay_out(tmp_path / host, {"train": {"ratings.csv": train_files[host]}}, hyperparameters,
                       resources={"current_host": host, "hosts": HOSTS, "network_interface_name": "ethwe"},
                       checkpoints=checkpoints)
        process = subprocess.Popen(train_command(), cwd=ROOT, env={**env(root), "NCF_HOST_ADDRESSES": addresses},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append((root, process))
    return started


def finish(started, timeout=300):
    return [(process.wait(timeout=timeout), process.stdout.read()) for _, process in started]


def epoch_lines(log):
    """Each epoch's line without its timing: what must be identical on every host."""
    return [re.sub(r" samples_per_s=.*", "", line.split(": ", 1)[1]) for line in log.splitlines() if " epoch=" in line]


def metrics_of(root):
    return json.loads((root / "output" / "data" / "metrics.json").read_text())["test"]


@pytest.fixture(scope="module")
def same_data(ratings):
    data = ratings.to_csv(index=False).encode()
    return {host: data for host in HOSTS}


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory, same_data):
    started = start_hosts(tmp_path_factory.mktemp("two-hosts"), same_data, JOB, checkpoints=True)
    return [root for root, _ in started], finish(started)


@pytest.fixture(scope="module")
def one_host(tmp_path_factory, same_data):
    root = lay_out(tmp_path_factory.mktemp("one-host"), {"train": {"ratings.csv": same_data["algo-1"]}}, JOB)
    out = run_train(root)
    assert out.returncode == 0, out.stdout + out.stderr
    return root, out.stdout


def test_two_hosts_complete_one_job_through_tf_config(two_hosts):
    _, outputs = two_hosts
    for host, (code, log) in zip(HOSTS, outputs):
        assert code == 0, log
        assert re.search(r'multi-worker training: .*"worker": \["127.0.0.1:\d+", "127.0.0.1:\d+"\]', log)
        assert f'"index": {HOSTS.index(host)}' in log


def test_only_the_chief_writes_the_model_and_the_outputs(two_hosts):
    (chief, worker), _ = two_hosts
    assert (chief / "model" / "metadata.json").is_file()
    assert (chief / "output" / "data" / "metrics.json").is_file()
    assert list((worker / "model").iterdir()) == []
    assert not (worker / "output" / "data").exists()


def test_every_host_checkpoints_under_its_own_name(two_hosts):
    (chief, worker), _ = two_hosts
    assert sorted(p.name for p in (chief / "checkpoints").iterdir()) == ["ncf-algo-1-refit.npz", "ncf-algo-1.npz"]
    assert sorted(p.name for p in (worker / "checkpoints").iterdir()) == ["ncf-algo-2-refit.npz", "ncf-algo-2.npz"]


def test_the_hosts_share_every_step_so_their_losses_and_validation_agree(two_hosts):
    _, [(_, chief_log), (_, worker_log)] = two_hosts
    chief, worker = epoch_lines(chief_log), epoch_lines(worker_log)
    chosen, refit = [line for line in chief if "stage=mf" in line], [line for line in chief if "stage=refit" in line]
    assert len(chosen) == 6 and 1 <= len(refit) <= 6 and len(chosen) + len(refit) == len(chief)
    assert chief == worker


def test_only_the_chief_evaluates_on_the_test_split(two_hosts):
    _, [(_, chief_log), (_, worker_log)] = two_hosts
    assert "test:hr@10=" in chief_log and "test:hr@10=" not in worker_log


def test_two_hosts_reach_the_quality_of_one_on_the_same_data(two_hosts, one_host):
    (chief, _), [(_, chief_log), _] = two_hosts
    root, one_log = one_host
    two, one = metrics_of(chief), metrics_of(root)
    # Same global batches, gradients summed across hosts: only float summation order differs.
    assert abs(two["hr@10"] - one["hr@10"]) <= 0.02 and abs(two["ndcg@10"] - one["ndcg@10"]) <= 0.02
    assert epoch_lines(chief_log) == epoch_lines(one_log)  # loss and validation, to the printed digits


def test_hosts_that_read_different_data_fail_and_say_to_use_fully_replicated(tmp_path, ratings):
    half = len(ratings) // 2
    data = {"algo-1": ratings.iloc[:half].to_csv(index=False).encode(),
            "algo-2": ratings.iloc[half:].to_csv(index=False).encode()}
    started = start_hosts(tmp_path, data, JOB)
    for (root, _), (code, log) in zip(started, finish(started)):
        assert code == 5, log
        reason = (root / "output" / "failure").read_text()
        assert reason.startswith("Hosts of the job cannot train together") and "FullyReplicated" in reason


def test_a_host_that_dies_fails_the_others_within_a_minute_instead_of_hanging(tmp_path, same_data):
    started = start_hosts(tmp_path, same_data, {**JOB, "epochs": "200", "batch_size": "64"})
    (chief_root, chief), (_, worker) = started
    for line in worker.stdout:
        if " epoch=2/200" in line:
            break
    worker.kill()
    killed = time.monotonic()
    log, _ = chief.communicate(timeout=120)  # drained as it goes: a full pipe would stall the chief
    assert time.monotonic() - killed < 60
    assert not (chief_root / "model" / "metadata.json").exists()
    # One outcome: the coordination service misses the dead host's heartbeats and fails the collective, which
    # `train` reports. (TensorFlow's own abort, once seen here now and then, came from threads that the
    # collective timeout left behind; see `strategy_for` and the long job below.)
    assert chief.returncode == 5, (chief.returncode, log[-3000:])
    reason = (chief_root / "output" / "failure").read_text()
    assert reason.startswith("Hosts of the job cannot train together: lost contact with another host of "
                             "algo-1, algo-2"), reason


def threads(process) -> int:
    return len(os.listdir(f"/proc/{process.pid}/task"))


@pytest.fixture(scope="module")
def long_job_stopped(tmp_path_factory, same_data):
    """A 200-epoch job on two hosts, stopped after epoch 8 by SIGTERM on every host, as StopTrainingJob does.
    Returns [(root, threads at epoch 2, threads at epoch 8, exit code, log)] by host, chief first."""
    started = start_hosts(tmp_path_factory.mktemp("long-job"), same_data, {**JOB, "epochs": "200"},
                          checkpoints=True)
    (_, chief), _ = started
    counts = {}
    for line in chief.stdout:
        if found := re.search(r" epoch=([28])/200 ", line):
            counts[found.group(1)] = [threads(process) for _, process in started]
            if found.group(1) == "8":
                break
    for _, process in started:
        process.send_signal(signal.SIGTERM)
    ends = [process.communicate(timeout=120)[0] for _, process in started]
    assert set(counts) == {"2", "8"}, ends[0][-3000:]
    return [(root, counts["2"][n], counts["8"][n], process.returncode, end)
            for n, ((root, process), end) in enumerate(zip(started, ends))]


def test_sigterm_on_every_host_stops_the_job_at_each_hosts_checkpoint(long_job_stopped):
    for host, (root, _, _, code, log) in zip(HOSTS, long_job_stopped):
        assert code == 143, (host, code, log[-3000:])
        assert (root / "output" / "failure").read_text().startswith("Stopped:")
        assert (root / "checkpoints" / f"ncf-{host}.npz").is_file()
        assert not (root / "model" / "metadata.json").exists()


def test_a_long_job_holds_its_thread_count_so_tensorflow_never_runs_out_of_threads(long_job_stopped):
    """A collective timeout made TensorFlow start a thread per collective op (~1,000 per epoch here) until it
    could start no more and aborted; without it the count stays where the first epochs left it (~120)."""
    for host, (_, early, late, _, _) in zip(HOSTS, long_job_stopped):
        assert late <= early * 1.5, (host, early, late)
