"""A real `serve` (gunicorn with `container/gunicorn.conf.py`, or another WSGI app under the same settings) on
a free loopback port, for the benchmarks that time requests (`serve_bench`, `scale`, `foldin`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "container" / "gunicorn.conf.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn in its own process group under `SAGEMAKER_BASE_DIR=base`, started and waited for until /ping
    answers 200 (`first_ping`: seconds from start); `app` None serves the model folder as `serve` does."""

    def __init__(self, base: Path, app: str | None, workers: int, extra_env: dict | None = None,
                 worker_class: str | None = None):
        self.port = free_port()
        env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(self.port),
               "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), "PYTHONPATH": str(ROOT), **(extra_env or {})}
        command = [sys.executable, "-m", "gunicorn", "-c", CONFIG] + (
            ["--worker-class", worker_class] if worker_class else []) + ([app] if app else [])
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        self.first_ping = self._wait()

    def _wait(self) -> float:
        while time.monotonic() - self.started < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - self.started
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("server did not answer /ping")

    def pss_mb(self) -> float:
        """Proportional set size of the master and its workers: pages they share (the model, loaded before
        fork) counted once."""
        pids = [self.process.pid] + [int(p) for p in subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()]
        total = 0
        for pid in pids:
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        return total / 1024

    def stop(self):
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)
