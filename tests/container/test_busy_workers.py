"""`serve` with its workers busy, on loopback: `/ping` answers within SageMaker's 2 s (here: 1 s) while every
worker scores a request of several seconds; while one worker scores, new requests go to the idle one; and a
request whose turn (or body) came too late for its estimated work to finish by its deadline is refused (503
with Retry-After, or 408) instead of being scored for a caller that gave up."""

import json
import math
import os
import socket
import threading
import time

import pytest

from benchmarks.fake_model import fake_model
from container.costs import Costs
from container.requests import Options, parse
from ncf.recommender import Recommender
from tests.container.test_serve import Server, request
from tests.container.test_serve_faults import Trickler, holder_of
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """/opt/ml with a model of 50 users x 12 items (ids 1...), on which a fold-in costs ~20 ms whatever its
    items: a few hundred of them keep a worker's CPU for seconds with a body of a few KB."""
    base = tmp_path_factory.mktemp("opt_ml")
    fake_model(base / "model", "mf", users=50, items=12, interactions=200, seed=0)
    return base


@pytest.fixture(scope="module")
def costs(tiny):
    """What the server estimates, measured here the same way (the server's own figures vary with the load)."""
    return Costs.measure(Recommender.load(tiny / "model"))


FOLD_IN = {"items": [1, 2, 3, 4, 5, 6], "k": 5}


def fold_ins(lines: int) -> bytes:
    """JSON Lines of `lines` fold-ins."""
    return (json.dumps(FOLD_IN) + "\n").encode() * lines


def fold_ins_lasting(costs, seconds: float) -> bytes:
    """Fold-ins estimated at about `seconds` of work."""
    return fold_ins(max(1, math.ceil(seconds / costs.seconds(parse(FOLD_IN, Options())))))


def pairs_csv(megabytes: float) -> bytes:
    """CSV pairs of known ids, about `megabytes` long."""
    rows = int(megabytes * 1024 * 1024 / 6)
    return "".join(f"{1 + n % 50},{1 + n % 12}\n" for n in range(rows)).encode()


class Post(threading.Thread):
    """A POST of `body` on its own connection, sent and read in a thread; `done` is set with the answer. With
    `pieces`, the body is sent in that many pieces `interval` seconds apart, as a slow client would."""

    def __init__(self, port, body: bytes, content_type: str, pieces: int = 1, interval: float = 0.0):
        super().__init__(daemon=True)
        self.conn = socket.create_connection(("127.0.0.1", port), timeout=300)
        self.head = (f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        size = math.ceil(len(body) / pieces)
        self.pieces = [body[n:n + size] for n in range(0, len(body), size)]
        self.interval, self.answer, self.done = interval, b"", threading.Event()

    def run(self):
        try:
            self.conn.sendall(self.head)
            for n, piece in enumerate(self.pieces):
                if n:
                    time.sleep(self.interval)
                self.conn.sendall(piece)
            while chunk := self.conn.recv(1 << 16):
                self.answer += chunk
        except OSError:  # the server stopped at the end of the test, midway
            pass
        finally:
            self.done.set()
            self.conn.close()

    @property
    def status(self) -> int:
        return int(self.answer.split(b" ", 2)[1])

    @property
    def headers(self) -> dict:
        top = self.answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in top)}

    @property
    def payload(self) -> bytes:
        return self.answer.partition(b"\r\n\r\n")[2]


def cpu_s(pid: int) -> float:
    """User and system CPU seconds `pid` has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def two_workers(tiny):
    s = Server(tiny, SAGEMAKER_BATCH="true")  # batch: requests of many seconds are allowed, none refused 413
    s.wait_until_ready()
    yield s
    s.stop()


@pytest.mark.parametrize("kind", ["fold-ins in JSON Lines", "a CSV of pairs"])
def test_ping_answers_within_a_second_while_every_worker_scores_for_seconds(two_workers, costs, kind):
    body, content_type = ((fold_ins_lasting(costs, 8.0), "application/jsonlines") if kind.startswith("fold-ins")
                          else (pairs_csv(5.5), "text/csv"))
    workers = set(two_workers.workers())
    # A connection goes to whichever worker accepts it first: send long requests until every worker holds one
    # (a worker may take several; each extra one only queues behind its first).
    posts, holders = [], {}
    for _ in range(6):
        post = Post(two_workers.port, body, content_type)
        post.start()
        posts.append(post)
        holder = wait_until(lambda: holder_of(two_workers, post.conn), 60, lambda: "no worker accepted a request")
        holders.setdefault(holder, post)
        if set(holders) == workers:
            break
    assert set(holders) == workers, f"every long request went to the same worker: {holders}"
    # Both scoring: each worker has spent CPU on its request, which is still far from done.
    start = {pid: cpu_s(pid) for pid in workers}
    wait_until(lambda: all(cpu_s(pid) - start[pid] > 0.5 for pid in workers), 60,
               lambda: f"CPU seconds since the requests: {({p: cpu_s(p) - start[p] for p in workers})}")
    assert not any(post.done.is_set() for post in holders.values()), "a long request ended early: make it longer"
    during = {pid: cpu_s(pid) for pid in workers}
    latencies = []
    for _ in range(5):
        began = time.monotonic()
        status, _, answer = request(two_workers.port, "GET", "/ping", timeout=120)
        latencies.append(time.monotonic() - began)
        assert status == 200 and json.loads(answer) == {"status": "ok"}
        time.sleep(0.2)
    worked = {pid: round(cpu_s(pid) - during[pid], 2) for pid in workers}
    print(f"\n/ping with every worker scoring {kind}: {', '.join(f'{s * 1e3:.0f}' for s in latencies)} ms; "
          f"CPU s each worker spent meanwhile: {worked}")
    assert max(latencies) < 1.0, latencies
    assert all(seconds > 0.1 for seconds in worked.values()), f"a worker was not scoring meanwhile: {worked}"
    for post in posts:  # the requests themselves are answered in full
        post.join(timeout=300)
        assert post.status == 200, post.answer[:300]


@pytest.fixture
def one_worker(tiny):
    """One worker whose requests may last 12 s (real time: 6 s of estimated work each)."""
    s = Server(tiny, SAGEMAKER_MODEL_SERVER_WORKERS="1", SAGEMAKER_MODEL_SERVER_TIMEOUT="12")
    s.wait_until_ready()
    yield s
    s.stop()


def most_fold_ins(server) -> int:
    """The most fold-ins the server's own estimate lets one request ask (what its 413 says)."""
    status, _, answer = request(server.port, "POST", "/invocations", fold_ins(100_000),
                                {"Content-Type": "application/jsonlines"}, timeout=60)
    assert status == 413 and json.loads(answer)["max_records"] >= 20, answer[:300]
    return json.loads(answer)["max_records"]


def test_a_request_whose_turn_came_too_late_for_its_work_is_503_with_retry_after_not_scored(one_worker):
    most = most_fold_ins(one_worker)
    # The first request holds the worker's turn for all of its 12 s: a body trickled a byte a second (never
    # stalling), never whole, answered 408 at its deadline.
    head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n")
    holder = Trickler(one_worker.port, [head] + [b" "] * 30, 1.0)
    holder.start()
    wait_until(lambda: holder.cut or holder_of(one_worker, holder.conn), 30, lambda: "never accepted")
    time.sleep(0.3)
    # Queued behind it: half the 6 s of estimated work a request may take (by the server's own estimate),
    # whose turn comes with ~0.3 s of its deadline left; then a request of a millisecond, which still fits.
    late = Post(one_worker.port, fold_ins(most // 2), "application/jsonlines")
    late.start()
    time.sleep(0.2)
    quick = Post(one_worker.port, b'{"user": 1, "k": 3}', "application/json")
    quick.start()
    for client in (holder, late, quick):
        client.join(timeout=60)
    assert holder.answer.startswith(b"HTTP/1.1 408"), holder.answer[:200]
    assert late.status == 503, late.answer[:300]
    assert late.headers["retry-after"] == "1" and late.headers["content-type"] == "application/json"
    answer = json.loads(late.payload)
    assert "waited" in answer["error"] and "estimated" in answer["error"] and answer["retry_after_s"] == 1
    assert quick.status == 200 and len(json.loads(quick.payload)["itemList"]) == 3, quick.answer[:300]


def test_a_body_that_took_so_long_that_its_work_cannot_finish_in_time_is_408_not_scored(one_worker):
    # Half the estimated work a request may take, its body trickled over ~10 of the 12 s it may last (never
    # stalling): ~2 s are left for ~3 s of work. The client was slow, not the server: 408, no Retry-After.
    slow = Post(one_worker.port, fold_ins(most_fold_ins(one_worker) // 2), "application/jsonlines",
                pieces=12, interval=0.9)
    slow.start()
    slow.join(timeout=60)
    assert slow.status == 408 and "retry-after" not in slow.headers, slow.answer[:300]
    assert "estimated" in json.loads(slow.payload)["error"]


def test_while_one_worker_scores_for_seconds_short_requests_go_to_the_idle_one(two_workers, costs):
    # The scoring worker's loop is free (it answers /ping), but a request it accepted would wait behind its
    # turn: it leaves new connections to the idle worker.
    long = Post(two_workers.port, fold_ins_lasting(costs, 8.0), "application/jsonlines")
    before = {pid: cpu_s(pid) for pid in two_workers.workers()}
    long.start()
    holder = wait_until(lambda: holder_of(two_workers, long.conn), 60, lambda: "the long request was not accepted")
    # scoring (so holding its turn), not still reading the request: a request taken before that may go first
    wait_until(lambda: cpu_s(holder) - before[holder] > 0.3, 60, lambda: "the long request is not being scored")
    body = json.dumps({"user": 1, "k": 3})
    latencies, began = [], time.monotonic()
    while not long.done.is_set() and len(latencies) < 3000 and time.monotonic() - began < 120:
        start = time.monotonic()
        status, _, answer = request(two_workers.port, "POST", "/invocations", body,
                                    {"Content-Type": "application/json"}, timeout=120)
        latencies.append(time.monotonic() - start)
        assert status == 200, answer[:300]
    print(f"\n{len(latencies)} short requests while a worker scored for {time.monotonic() - began:.1f} s: "
          f"slowest {max(latencies, default=0) * 1e3:.0f} ms")
    assert max(latencies) < 1.0, sorted(latencies)[-5:]
    assert len(latencies) >= 20, "the long request ended too soon: make it longer"
    long.join(timeout=300)
    assert long.status == 200
