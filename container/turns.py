"""Who works when inside one gunicorn worker, and for how long.

The workers are gevent's (`gunicorn.conf.py`), each holding many connections, so a client that trickles its
headers or never reads its answer costs one greenlet, not the worker: `/ping` answers beside it. But scoring
is numpy holding the CPU, and two requests interleaving it in one worker would only add up their latencies
and their memory. So `/invocations` takes turns: one request per worker at a time reads its body, scores and
streams its answer, which is what `invocations.Limits` (one request's work and memory per worker) assume.
`/ping` and `/execution-parameters` take no turn.

Time: a request that holds the CPU yields nothing, so the worker's heartbeat stops and gunicorn's arbiter
kills it at the timeout, exactly as it did sync workers. What does yield (a trickled body, a slow reader of a
streamed answer) would never be killed that way, so it is bounded here by `deadline`.

Outside a gevent worker (Flask's test client, a sync worker) a turn is a plain lock and a deadline nothing.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import weakref


def cooperative() -> bool:
    """Whether this process runs gevent's patched sockets (a gevent worker after its fork)."""
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")


def deadline(seconds: float, error: Exception):
    """A context in which whatever still waits on the network after `seconds` is interrupted by `error`."""
    if not cooperative():
        return contextlib.nullcontext()
    import gevent

    return gevent.Timeout(seconds, error)


class Turns:
    """One request's turn at a time, per process. The lock is made on first use after the fork, once gevent
    has patched the worker: a lock made before would block the whole worker, not one greenlet."""

    def __init__(self):
        self._pid: int | None = None
        self._lock = None

    def take(self, wait_s: float) -> "Turn | None":
        """The turn, or None when it did not come within `wait_s` seconds."""
        if self._pid != os.getpid():
            self._lock = _Queue() if cooperative() else threading.Lock()
            self._pid = os.getpid()
        return Turn(self._lock) if self._lock.acquire(timeout=wait_s) else None


class _Queue:
    """A lock handed over in arrival order, for greenlets. gevent's own Semaphore wakes a waiter only at the
    next switch, so the greenlet that released it may take it back first (a client whose next request is
    already there); handing the turn straight to the oldest waiter bounds every request's wait by the
    requests queued before it. (The 70-420 ms p99 measured with kept-alive connections was not this: the
    no-op server, which takes no turn, had it too; see `pre_request` in gunicorn.conf.py.)"""

    def __init__(self):
        from gevent.event import Event

        self._event = Event
        self._busy = False
        self._waiting: collections.deque = collections.deque()

    def acquire(self, timeout: float) -> bool:
        if not self._busy and not self._waiting:
            self._busy = True
            return True
        handed = self._event()
        self._waiting.append(handed)
        try:
            handed.wait(timeout)
        except BaseException:  # killed while waiting (the worker's shutdown): pass on a turn handed over
            self._give_up(handed)
            raise
        if handed.is_set():  # release() gave this greenlet the turn (checked after waking: it may come late)
            return True
        self._give_up(handed)
        return False

    def _give_up(self, handed) -> None:
        if handed.is_set():
            self.release()
        else:
            self._waiting.remove(handed)

    def release(self) -> None:
        if self._waiting:
            self._waiting.popleft().set()  # still busy: the turn passes on without a gap to take it in
        else:
            self._busy = False


class Turn:
    """A taken turn; `end()` gives it back, once, however often it is called."""

    def __init__(self, lock):
        self._lock = lock

    def end(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def end_with(self, answer) -> None:
        """End the turn when `answer` (a streamed body) is garbage-collected at the latest: a response that
        is never sent nor closed (a fault after the view returned) would otherwise keep it for good."""
        weakref.finalize(answer, self.end)
