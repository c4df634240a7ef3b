"""The hosts of a training job, and the TensorFlow strategy that trains across them.

SageMaker lists the job's hosts (`algo-1`, `algo-2`, ...) in `resourceconfig.json`, and the same names resolve
on the job's network (and on the compose network of the SDK's local mode). TensorFlow's
`MultiWorkerMirroredStrategy` learns its peers from `TF_CONFIG`: every host is a worker, listed in the same
order everywhere, and worker 0 (the first host) is the chief, the only one that writes the model and outputs.

Outside SageMaker (two processes on one machine, tests) `NCF_HOST_ADDRESSES` maps host names to
`address:port`, and `NCF_CLUSTER_PORT` moves the port every host listens on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ncf.errors import ClusterError, ConfigError

log = logging.getLogger(__name__)

DEFAULT_PORT = 2222
#: SageMaker's documentation warns that hosts may take a moment to resolve after the container starts.
RESOLVE_SECONDS = 300.0


@dataclass(frozen=True)
class Cluster:
    current_host: str = "algo-1"
    hosts: tuple[str, ...] = ("algo-1",)
    port: int = DEFAULT_PORT
    addresses: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, config: Any, where: str, environ: Mapping[str, str]) -> "Cluster":
        """From `resourceconfig.json` (an empty dict when the file is absent) and the environment."""
        if not isinstance(config, dict):
            raise ConfigError(f"{where} must hold a JSON object")
        hosts = config.get("hosts") or [config.get("current_host", "algo-1")]
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            raise ConfigError(f"{where}: hosts must be a list of host names, got {hosts!r}")
        current = config.get("current_host", hosts[0])
        if current not in hosts:
            raise ConfigError(f"{where}: current_host {current!r} is not among hosts {hosts}")
        port = environ.get("NCF_CLUSTER_PORT", str(DEFAULT_PORT))
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"NCF_CLUSTER_PORT must be a TCP port number, got {port!r}")
        return cls(current_host=current, hosts=tuple(sorted(hosts)), port=int(port),
                   addresses=_addresses(environ.get("NCF_HOST_ADDRESSES", ""), hosts))

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def index(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    def endpoint(self, host: str) -> str:
        return self.addresses.get(host, f"{host}:{self.port}")

    def tf_config(self) -> dict:
        return {"cluster": {"worker": [self.endpoint(h) for h in self.hosts]},
                "task": {"type": "worker", "index": self.index}}


def _addresses(text: str, hosts: list[str]) -> dict[str, str]:
    addresses = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, sep, address = item.partition("=")
        if not sep or ":" not in address or not address.rsplit(":", 1)[1].isdigit():
            raise ConfigError(f"NCF_HOST_ADDRESSES: expected HOST=ADDRESS:PORT, got {item!r}")
        if host not in hosts:
            raise ConfigError(f"NCF_HOST_ADDRESSES names {host!r}, which is not among the job's hosts {hosts}")
        addresses[host] = address
    return addresses


def wait_for_hosts(cluster: Cluster, timeout: float = RESOLVE_SECONDS,
                   resolve: Callable[[str], object] = socket.gethostbyname,
                   clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Returns once every peer's name resolves; raises `ClusterError` naming those that never did."""
    pending = [cluster.endpoint(h).rsplit(":", 1)[0] for h in cluster.hosts]
    deadline, delay = clock() + timeout, 0.5
    while True:
        still = []
        for name in pending:
            try:
                resolve(name)
            except OSError:
                still.append(name)
        if not still:
            return
        if clock() >= deadline:
            raise ClusterError(f"host name(s) {', '.join(still)} did not resolve within {timeout:.0f} s; "
                               f"the job's hosts are {', '.join(cluster.hosts)}")
        log.info("waiting for %s to resolve", ", ".join(still))
        pending = still
        sleep(delay)
        delay = min(delay * 2, 10.0)


def strategy_for(cluster: Cluster):
    """`MultiWorkerMirroredStrategy` for several hosts, `MirroredStrategy` for several GPUs, else None (the
    default strategy). Must run before TensorFlow executes anything else in the process."""
    import tensorflow as tf

    if cluster.size > 1:
        wait_for_hosts(cluster)
        os.environ["TF_CONFIG"] = json.dumps(cluster.tf_config())
        log.info("multi-worker training: %s", os.environ["TF_CONFIG"])
        # No collective timeout (CommunicationOptions.timeout_seconds): TensorFlow arms it by starting one
        # thread per collective op that sleeps out the whole timeout, ~1,000 threads per epoch of the tests'
        # small job, until creating one more fails and the C++ runtime aborts the process ("terminate called
        # after throwing an instance of 'std::system_error'": the rare second outcome of a lost peer, and the
        # certain end of a long job). A dead or unreachable peer is caught by the coordination service's
        # heartbeats instead, within seconds, as an error that `train` reports as exit 5.
        on_sigterm = signal.getsignal(signal.SIGTERM)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        if on_sigterm is not None:
            # The coordination service puts its own SIGTERM hook (a preemption notifier that nothing here
            # reads) in place of the one `train` installed: StopTrainingJob would go unheard.
            signal.signal(signal.SIGTERM, on_sigterm)
        return strategy
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        log.info("training on %d GPUs of this host", len(gpus))
        return tf.distribute.MirroredStrategy()
    return None
