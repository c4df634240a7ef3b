"""Who works when inside one gunicorn worker, and for how long.

The workers are gevent's (`gunicorn.conf.py`), each holding many connections, so a client that trickles its
headers or never reads its answer costs one greenlet, not the worker: `/ping` answers beside it. But scoring
is numpy holding the CPU, and two requests interleaving it in one worker would only add up their latencies
and their memory. So `/invocations` takes turns: one request per worker at a time reads its body, scores and
streams its answer, which is what `limits.Limits` (one request's work and memory per worker) assume.
`/ping` and `/execution-parameters` take no turn.

CPU: the turn's holder does its CPU work (decoding, scoring, encoding) on the worker's one scoring thread, a
native thread (`Turn.run`), and its greenlet waits for it. So gevent's loop, in the main thread, keeps
running: it accepts connections and answers `/ping` while the worker scores for minutes (Python hands the GIL
over every few milliseconds, and numpy releases it in its large products). Done on the loop, scoring yields
nothing, and `/ping` would wait behind it for as long as it lasts: SageMaker replaces an instance whose
`/ping` takes over 2 s. A scoring worker's loop would then accept connections as readily as an idle one's,
and queue their requests behind its turn while another worker waits for work: so a worker holding a turn
leaves new connections to a worker that may serve them sooner (`idle_first_server`), and takes them itself
when every other worker has been busy for long.

Time: with the loop free, the worker's heartbeat goes on while it scores, so gunicorn's arbiter would never
replace a worker stuck on one request. `Turn.run` does instead: work that holds the scoring thread past the
worker timeout logs and exits the worker, and gunicorn starts another, as it killed sync workers. What
waits on the network (a trickled body, a slow reader of a streamed answer) is bounded by `deadline`.

Outside a gevent worker (Flask's test client, a sync worker) a turn is a plain lock, its work runs in the
calling thread, and a deadline is nothing.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import fcntl
import logging
import math
import mmap
import os
import struct
import sys
import threading
import time
import weakref

log = logging.getLogger("container.turns")


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
    """One request's turn at a time, per process, and the scoring thread its work runs on. Both are made on
    first use after the fork, once gevent has patched the worker: a lock made before would block the whole
    worker, not one greenlet, and a thread does not survive a fork.

    Args:
        work_limit_s: the most seconds one piece of work (`Turn.run`) may hold the scoring thread before the
            worker exits: gunicorn's worker timeout. None: no limit.
    """

    def __init__(self, work_limit_s: float | None = None):
        self._pid: int | None = None
        self._lock = None
        self._scorer = None
        self._work_limit_s = work_limit_s

    def take(self, wait_s: float) -> "Turn | None":
        """The turn, or None when it did not come within `wait_s` seconds."""
        if self._pid != os.getpid():
            in_gevent = cooperative()
            self._lock = _Queue() if in_gevent else threading.Lock()
            self._scorer = _Scorer(self._work_limit_s) if in_gevent else None
            self._pid = os.getpid()
        return Turn(self._lock, self._scorer) if self._lock.acquire(timeout=wait_s) else None


def _outcome(work, args) -> tuple[bool, object]:
    """`work(*args)`'s value or exception, as a value: raised in the pool's thread, gevent would print every
    client's 400 as a traceback before passing it on."""
    try:
        return True, work(*args)
    except Exception as error:  # noqa: BLE001 - re-raised as it is in the waiting greenlet
        return False, error


class _Scorer:
    """The worker's scoring thread: a gevent thread pool of one native thread. One turn at a time uses it, so
    one thread is all a worker needs, and numpy's BLAS is limited to one thread per worker (post_fork)."""

    def __init__(self, limit_s: float | None):
        from gevent.threadpool import ThreadPool

        self._pool = ThreadPool(1)
        self._limit_s = limit_s

    def run(self, work, *args):
        done = self._pool.spawn(_outcome, work, args)
        done.wait(self._limit_s)  # a timeout or an error of the waiting greenlet (its deadline) propagates
        if not done.ready():
            # A native thread cannot be interrupted, and every later turn would queue behind it: give the
            # worker back to gunicorn, as its arbiter did when scoring stopped the heartbeat.
            log.critical("worker %d: a request held the scoring thread past the %g s timeout; exiting",
                         os.getpid(), self._limit_s)
            sys.stderr.flush()
            os._exit(1)
        ok, value = done.get()
        if ok:
            return value
        raise value


#: Seconds a worker's current request must have held its turn for the worker to count as long busy: one
#: that has held it less may free within milliseconds and take a waiting connection itself.
LONG_BUSY_S = 0.2
#: Seconds between a busy worker's looks at a connection it leaves to the others...
DEFER_S = 0.05
#: ... and how long it leaves one to them when none of them accepts anything meanwhile: they are stuck, and
#: the busy worker takes the connection (its `/ping` answered within a second).
MAX_DEFER_S = 0.5


class _Flock(ctypes.Structure):
    """`struct flock` as Linux lays it out on 64-bit machines (fcntl(2)), for F_GETLK."""

    _fields_ = [("l_type", ctypes.c_short), ("l_whence", ctypes.c_short), ("l_start", ctypes.c_int64),
                ("l_len", ctypes.c_int64), ("l_pid", ctypes.c_int32)]


class _Board:
    """Since when each of gunicorn's workers has been busy, and when it last accepted a connection, for all
    of them to read: a page shared by the master before it forks (a memfd, mapped), a slot per
    worker holding when its current request took the turn (0 when idle) and when it last accepted, in
    `time.monotonic()` (the same clock in every process). A worker owns its slot by a POSIX lock on the
    slot's byte of the file, held for its life: the kernel drops a dead worker's lock, so its slot reads as
    nobody's, and a replacement claims it."""

    IDLE = 0.0
    CLOSED = -math.inf  # shutting down: accepts nothing, as good as long busy

    def __init__(self, slots: int):
        self._fd = os.memfd_create("ncf-turns", os.MFD_CLOEXEC)  # no file system needed
        os.ftruncate(self._fd, 16 * slots)
        self._times = mmap.mmap(self._fd, 16 * slots)  # MAP_SHARED: the workers see one page
        self._slots = slots
        self._mine: int | None = None

    def join(self) -> None:
        """In a new worker: claim a free slot, idle."""
        for slot in range(self._slots):
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
            except OSError:
                continue
            self._mine = slot
            struct.pack_into("dd", self._times, 16 * slot, self.IDLE, time.monotonic())
            return

    def mark(self, since: float) -> None:
        """This worker busy since `since`, or `IDLE`."""
        if self._mine is not None:
            struct.pack_into("d", self._times, 16 * self._mine, since)

    def accepted(self, when: float) -> None:
        if self._mine is not None:
            struct.pack_into("d", self._times, 16 * self._mine + 8, when)

    def leave(self) -> None:
        """A worker that stops accepting (gunicorn closing it to shut down): never waited for again."""
        self.mark(self.CLOSED)
        self._mine = None

    def _others(self):
        """(busy since, accepted at) of every other live worker. Liveness is asked without taking the lock
        (F_GETLK)."""
        for slot in range(self._slots):
            if slot == self._mine:
                continue
            query = bytes(_Flock(fcntl.F_WRLCK, os.SEEK_SET, slot, 1, 0))
            if _Flock.from_buffer_copy(fcntl.fcntl(self._fd, fcntl.F_GETLK, query)).l_type != fcntl.F_UNLCK:
                yield struct.unpack_from("dd", self._times, 16 * slot)

    def worth_waiting(self, now: float) -> bool:
        """Whether another worker is idle or busy for less than `LONG_BUSY_S`, so may soon take a waiting
        connection."""
        return any(since == self.IDLE or now - since < LONG_BUSY_S for since, _ in self._others())

    def accepting(self, since: float) -> bool:
        """Whether another worker has accepted a connection since `since` (it is not stuck)."""
        return any(accepted >= since for _, accepted in self._others())


_board: _Board | None = None
#: This process's turn queues (one per app), and the servers to wake when its turn falls free.
_queues: "weakref.WeakSet[_Queue]" = weakref.WeakSet()
_servers: "weakref.WeakSet" = weakref.WeakSet()


def share_board(workers: int) -> None:
    """In gunicorn's master, before it forks: the board on which its workers say since when they are busy
    (room for as many replacements as workers, while a dead worker's slot is freed). Without one, a busy
    worker accepts as readily as an idle one: `/ping` is answered all the same."""
    global _board
    try:
        _board = _Board(2 * workers)
    except OSError as error:
        log.warning("workers cannot share whether they are busy (%s): a busy worker may queue requests that an "
                    "idle one could serve", error)


def join_board() -> None:
    """In a worker, after the fork: take a slot on the board, idle."""
    if _board is not None:
        _board.join()


def busy() -> bool:
    """Whether a request holds a turn in this process, so that a new one would queue behind it."""
    return any(queue.busy for queue in _queues)


def _turn_taken() -> None:
    """A request took this process's turn (a new one, or handed over): busy since now."""
    if _board is not None:
        _board.mark(time.monotonic())


def _turn_free() -> None:
    if _board is not None:
        _board.mark(_Board.IDLE)
    for server in tuple(_servers):
        server.loop.run_callback_threadsafe(server.turn_free)


def _pending(sock) -> bool:
    """Whether a connection waits on the listening socket (a poll that never blocks, safe in gevent's loop)."""
    from gevent.monkey import get_original

    return bool(get_original("select", "select")([sock], [], [], 0)[0])


def idle_first_server():
    """gevent's `StreamServer` (which gunicorn's gevent worker accepts connections with), made to leave a new
    connection to a worker that may serve it sooner. All workers watch the same listening socket, and one
    that scores still accepts (its loop is free, `Turn.run`): it would take connections as readily as an
    idle one and queue their requests behind its turn while another worker waits for work or frees first.
    So while this worker holds a turn and another is idle or has been busy less than `LONG_BUSY_S` (`_Board`),
    it leaves the connection in the listen queue and looks again every `DEFER_S`; it takes it when every
    other worker is long busy (`/ping` is then answered within `LONG_BUSY_S` or so), or when the others have
    accepted nothing for `MAX_DEFER_S` (stuck). Requests of milliseconds thus never queue inside a worker
    busy for long, as they did not when scoring held its loop."""
    from gevent.server import StreamServer

    class IdleFirstServer(StreamServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._deferred_since: float | None = None  # when a waiting connection was first left to others
            self._defer = None
            _servers.add(self)

        def do_read(self):
            if busy() and _board is not None:
                if not _pending(self.socket):
                    return None  # another worker took it (an accept now could take the next one)
                now = time.monotonic()
                if self._deferred_since is None:
                    self._deferred_since = now
                if _board.worth_waiting(now) and (now - self._deferred_since < MAX_DEFER_S
                                                  or _board.accepting(self._deferred_since)):
                    self.stop_accepting()
                    self._defer = self.loop.timer(DEFER_S)
                    self._defer.start(self._look_again)
                    return None  # nothing accepted: gevent's accept loop stops here
            self._deferred_since = None
            accepted = super().do_read()
            if accepted is not None and _board is not None:
                _board.accepted(time.monotonic())
            return accepted

        def close(self):
            super().close()
            if _board is not None:
                _board.leave()

        def stop_accepting(self):
            super().stop_accepting()
            if self._defer is not None:
                self._defer.stop()
                self._defer.close()
                self._defer = None

        def _look_again(self):
            if not self.closed and not _pending(self.socket):  # another worker took it
                self._deferred_since = None
            self._accept_again()

        def turn_free(self):
            """This worker's turn fell free: accept at once, not at the next look."""
            if self._defer is not None:
                self._deferred_since = None
                self._accept_again()

        def _accept_again(self):
            self.stop_accepting()
            if self.started and not self.closed:  # not once gunicorn has closed it to shut down
                self.start_accepting()

    return IdleFirstServer


class _Queue:
    """A lock handed over in arrival order, for greenlets. gevent's own Semaphore wakes a waiter only at the
    next switch, so the greenlet that released it may take it back first (a client whose next request is
    already there); handing the turn straight to the oldest waiter bounds every request's wait by the
    requests queued before it. (The high p99 measured with kept-alive connections was not this: the
    no-op server, which takes no turn, had it too; see `pre_request` in gunicorn.conf.py.)"""

    def __init__(self):
        from gevent.event import Event

        self._event = Event
        self._busy = False
        self._waiting: collections.deque = collections.deque()
        _queues.add(self)

    @property
    def busy(self) -> bool:
        return self._busy

    def acquire(self, timeout: float) -> bool:
        if not self._busy and not self._waiting:
            self._busy = True
            _turn_taken()
            return True
        handed = self._event()
        self._waiting.append(handed)
        try:
            handed.wait(timeout)
        except BaseException:  # killed while waiting (the worker's shutdown): pass on a turn handed over
            self._give_up(handed)
            raise
        if handed.is_set():  # release() gave this greenlet the turn (checked after waking: it may come late)
            _turn_taken()
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
            _turn_free()


class Turn:
    """A taken turn; `end()` gives it back, once, however often it is called."""

    def __init__(self, lock, scorer: _Scorer | None = None):
        self._lock = lock
        self._scorer = scorer

    def run(self, work, *args):
        """`work(*args)`, done on the worker's scoring thread while this greenlet waits, so that the worker
        answers `/ping` meanwhile; its value is returned and its exception raised here. `work` must not touch
        Flask's request context (the thread has none). Outside a gevent worker it runs here."""
        if self._scorer is None:
            return work(*args)
        return self._scorer.run(work, *args)

    def end(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def end_with(self, answer) -> None:
        """End the turn when `answer` (a streamed body) is garbage-collected at the latest: a response that
        is never sent nor closed (a fault after the view returned) would otherwise keep it for good."""
        weakref.finalize(answer, self.end)
