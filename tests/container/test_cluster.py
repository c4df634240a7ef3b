"""How `train` learns its peers: resourceconfig.json and the environment, parsed once into a `Cluster`."""

import pytest

from container.cluster import DEFAULT_PORT, Cluster, wait_for_hosts
from ncf.errors import ClusterError, ConfigError

TWO = {"current_host": "algo-2", "hosts": ["algo-2", "algo-1"], "network_interface_name": "ethwe"}


def test_no_resource_config_is_one_host_that_is_chief():
    cluster = Cluster.parse({}, "resourceconfig.json", {})
    assert cluster.size == 1 and cluster.is_chief and cluster.hosts == ("algo-1",)


def test_tf_config_lists_every_host_in_the_same_order_and_the_first_is_chief():
    cluster = Cluster.parse(TWO, "resourceconfig.json", {})
    assert cluster.tf_config() == {
        "cluster": {"worker": [f"algo-1:{DEFAULT_PORT}", f"algo-2:{DEFAULT_PORT}"]},
        "task": {"type": "worker", "index": 1}}
    assert not cluster.is_chief
    assert Cluster.parse({**TWO, "current_host": "algo-1"}, "r", {}).is_chief


def test_host_addresses_and_port_come_from_the_environment():
    cluster = Cluster.parse(TWO, "r", {"NCF_HOST_ADDRESSES": "algo-1=127.0.0.1:9001, algo-2=127.0.0.1:9002",
                                       "NCF_CLUSTER_PORT": "7777"})
    assert cluster.tf_config()["cluster"]["worker"] == ["127.0.0.1:9001", "127.0.0.1:9002"]
    assert Cluster.parse(TWO, "r", {"NCF_CLUSTER_PORT": "7777"}).endpoint("algo-1") == "algo-1:7777"


@pytest.mark.parametrize("environ, message", [
    ({"NCF_CLUSTER_PORT": "http"}, "NCF_CLUSTER_PORT must be a TCP port"),
    ({"NCF_CLUSTER_PORT": "70000"}, "NCF_CLUSTER_PORT must be a TCP port"),
    ({"NCF_HOST_ADDRESSES": "algo-1:9001"}, "expected HOST=ADDRESS:PORT"),
    ({"NCF_HOST_ADDRESSES": "algo-9=127.0.0.1:9001"}, "'algo-9', which is not among the job's hosts"),
])
def test_bad_cluster_settings_say_which_and_what_was_expected(environ, message):
    with pytest.raises(ConfigError, match=message):
        Cluster.parse(TWO, "r", environ)


def test_a_current_host_outside_the_host_list_is_refused():
    with pytest.raises(ConfigError, match="current_host 'algo-3' is not among hosts"):
        Cluster.parse({"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}, "resourceconfig.json", {})


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_host_names_that_resolve_late_are_waited_for():
    time, calls = FakeTime(), []

    def resolve(name):
        calls.append(name)
        if name == "algo-2" and time.now < 3:
            raise OSError("Name or service not known")

    wait_for_hosts(Cluster.parse(TWO, "r", {}), timeout=60, resolve=resolve, clock=time.clock, sleep=time.sleep)
    assert calls.count("algo-2") > 1 and calls.count("algo-1") == 1 and 3 <= time.now < 60


def test_a_host_that_never_resolves_fails_naming_it():
    time = FakeTime()

    def resolve(name):
        if name == "algo-2":
            raise OSError("Name or service not known")

    with pytest.raises(ClusterError, match="algo-2 did not resolve within 30 s"):
        wait_for_hosts(Cluster.parse(TWO, "r", {}), timeout=30, resolve=resolve, clock=time.clock, sleep=time.sleep)
    assert time.now >= 30
