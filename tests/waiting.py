"""Waiting for a condition, never for a while: how tests wait on processes, ports, files and logs.

A readiness signal (/ping 200, a port open, a log line) says that one thing is ready, not everything: gunicorn
answers /ping once its first worker is up, while the others are still forking. A test that asserts the rest
right away passes on a quiet machine and fails on a loaded CI runner. So a test polls the very condition it
checks, up to a deadline: a slow machine only waits longer, and a real fault still fails, with what was seen.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, describe: Callable[[], str],
               ignoring: tuple[type[BaseException], ...] = (), interval: float = 0.1) -> T:
    """Calls `check` until it returns something truthy, and returns that.

    Args:
        check: the condition; exceptions of the `ignoring` types count as "not yet", any other propagates
            (a check may raise AssertionError at once when waiting is pointless, e.g. the process exited).
        timeout: seconds before the test fails; generous, since it costs nothing when all is well.
        describe: what was seen instead, called once on timeout (a process listing, a log tail).
        interval: seconds between checks.
    """
    deadline, error = time.monotonic() + timeout, None
    while True:
        try:
            value, error = check(), None
        except ignoring as e:
            value, error = None, e
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {describe()}"
                                 + (f" (last check raised {error!r})" if error is not None else ""))
        time.sleep(interval)
