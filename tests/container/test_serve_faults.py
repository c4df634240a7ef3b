"""`serve` under load, faults and hostile input, on loopback: nothing lost that was not in a killed worker's
hands, no 5xx for any client input, memory flat. NCF_SOAK_SECONDS (default 8) sets the soak's length; the
README's figures come from a 60 s run of it (`-s` prints them)."""

import http.client
import json
import os
import random
import select
import signal
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.container.test_serve import Server, request
from tests.waiting import wait_until


@pytest.fixture
def server(tmp_path, model_dir):
    import shutil

    shutil.copytree(model_dir, tmp_path / "model")
    s = Server(tmp_path)
    s.wait_until_ready()
    yield s
    s.stop()


def holder_of(server, client: socket.socket) -> int | None:
    """The worker that has accepted `client`'s connection (holds its server-side socket), or None while it
    still waits in the listen backlog, where a SIGTERM to the master would drop it."""
    client_port = client.getsockname()[1]
    inodes = set()
    with open("/proc/net/tcp") as table:  # sl local rem st queues tr retrnsmt uid timeout inode
        for row in table.readlines()[1:]:
            fields = row.split()
            local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
            if (local, remote) == (server.port, client_port):
                inodes.add(f"socket:[{fields[9]}]")
    for pid in server.workers():
        try:
            if inodes & {os.readlink(fd.path) for fd in os.scandir(f"/proc/{pid}/fd")}:
                return pid
        except OSError:  # the worker exited meanwhile, or one of its descriptors closed while listed
            continue
    return None


def rss_kb(pids) -> int:
    total = 0
    for pid in pids:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def mixed_requests(recommender):
    rng = random.Random(0)
    users = recommender.users.decode(range(len(recommender.users)))
    items = recommender.items.decode(range(len(recommender.items)))
    kinds = []
    for _ in range(50):
        u, i = rng.choice(users), rng.choice(items)
        kinds += [
            (json.dumps({"instances": [{"user": u, "item": i}]}), "application/json"),
            (json.dumps({"inputs": {"user": [u] * 50, "item": rng.sample(items, 50)}}), "application/json"),
            (json.dumps({"user": u, "k": 10}), "application/json"),
            (json.dumps({"item": i, "k": 5}), "application/json"),
            ("".join(json.dumps({"user": v, "k": 5}) + "\n" for v in rng.sample(users, 20)), "application/jsonlines"),
            (f"{u},{i}\n{u},{rng.choice(items)}\n", "text/csv"),
        ]
    return kinds


def drive(port, bodies, connections, seconds, results):
    stop = time.monotonic() + seconds

    def client(seed):
        rng = random.Random(seed)
        while time.monotonic() < stop:
            body, kind = rng.choice(bodies)
            start = time.monotonic()
            try:
                status, _, _ = request(port, "POST", "/invocations", body, {"Content-Type": kind}, timeout=30)
            except (OSError, http.client.HTTPException) as e:  # a killed worker's half-sent answer included
                status = f"connection error: {type(e).__name__}: {e}"
            results.append((status, time.monotonic() - start))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(connections)]
    for t in threads:
        t.start()
    return threads


def test_soak_of_mixed_requests_loses_nothing_and_memory_stays_flat(server, recommender):
    seconds = int(os.environ.get("NCF_SOAK_SECONDS", "8"))
    bodies = mixed_requests(recommender)
    warm = []
    for t in drive(server.port, bodies, 16, 1, warm):
        t.join()
    before = rss_kb(server.workers())
    results = []
    for t in drive(server.port, bodies, 16, seconds, results):
        t.join()
    after = rss_kb(server.workers())
    failed = [r for r in results + warm if r[0] != 200]
    latencies = sorted(r[1] for r in results)
    p50, p99 = latencies[len(latencies) // 2] * 1e3, latencies[int(len(latencies) * 0.99)] * 1e3
    print(f"\nsoak: {len(results)} requests in {seconds} s over 16 connections, {len(failed)} failed, "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, worker RSS {before / 1024:.0f} -> {after / 1024:.0f} MB")
    assert not failed, failed[:5]
    assert after <= before * 1.10


def test_a_worker_killed_under_load_is_replaced_and_only_its_request_fails(server, recommender):
    results = []
    threads = drive(server.port, mixed_requests(recommender), 4, 6, results)
    wait_until(lambda: len(results) >= 4, 30, lambda: f"{len(results)} answers under load")  # the load is on
    victim = server.workers()[0]
    os.kill(victim, signal.SIGKILL)
    for t in threads:
        t.join()
    failed = [r for r in results if r[0] != 200]
    print(f"\nkill -9 of a worker under load: {len(results)} requests, {len(failed)} failed")
    assert len(failed) <= 1, failed
    wait_until(lambda: len(pids := server.workers()) == 2 and victim not in pids, 60,
               lambda: f"the killed worker {victim} was not replaced: workers {server.workers()}")
    assert request(server.port, "GET", "/ping")[0] == 200


def test_sigterm_lets_the_request_in_flight_finish(server, recommender):
    body = json.dumps({"user": recommender.users.decode([0])[0], "k": 3}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body[:5])
        holder = wait_until(lambda: holder_of(server, conn), 30, lambda: "no worker accepted the connection")
        server.process.send_signal(signal.SIGTERM)
        # The master passes SIGTERM on to every worker at once: the idle one's exit shows it has. Waiting is
        # bounded well inside BODY_STALL_S (10 s), after which the half-sent request would be answered 408.
        try:
            wait_until(lambda: server.workers() == [holder], 6, lambda: "")
        except AssertionError:  # a loaded machine: the idle worker is slow to go, SIGTERM was still sent
            pass
        assert holder in server.workers(), "the worker holding a request in flight exited on SIGTERM"
        conn.sendall(body[5:])
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200") and b'"itemList"' in response
    assert server.process.wait(timeout=30) == 0


raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
                     ["user", "item", "k", "instances", "inputs", "exclude", "threshold", "x"]), c, max_size=3),
                 max_leaves=12).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 400).map(lambda depth: (b"[" * depth * 50) + (b"]" * depth * 50)),
)
content_types = st.sampled_from(["application/json", "application/jsonlines", "text/csv", "text/plain", "",
                                 "application/json; charset=latin-1", "multipart/form-data"])
accepts = st.sampled_from(["", "*/*", "application/json", "text/csv", "image/png", "application/jsonlines;q=0.5"])


def test_hostile_requests_never_get_a_5xx_and_ping_stays_200(server):
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=raw_bodies, content_type=content_types, accept=accepts)
    def check(body, content_type, accept):
        headers = {k: v for k, v in (("Content-Type", content_type), ("Accept", accept)) if v}
        status, kind, payload = request(server.port, "POST", "/invocations", body, headers)
        assert status < 500, (status, payload[:300])
        if status >= 400:
            assert "error" in json.loads(payload)

    check()
    assert request(server.port, "GET", "/ping")[0] == 200


def raw_exchange(port, head: bytes, body: bytes = b"", timeout=30) -> tuple[int, dict, bytes]:
    """`head + body` on a fresh connection; the status, headers and body of the answer (read to its end)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(head + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    top, _, payload = answer.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, payload


def chunked(body: bytes, size: int = 1 << 16) -> bytes:
    return b"".join(f"{len(body[i:i + size]):x}\r\n".encode() + body[i:i + size] + b"\r\n"
                    for i in range(0, len(body), size)) + b"0\r\n\r\n"


POST = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/jsonlines\r\nConnection: close\r\n"


def test_a_chunked_body_is_read_whole_and_one_over_the_limit_is_413_not_cut(server, recommender):
    user = json.dumps({"user": recommender.users.decode([0])[0], "k": 1})
    lines = 1000
    status, _, payload = raw_exchange(server.port, POST + b"Transfer-Encoding: chunked\r\n\r\n",
                                      chunked(("\n".join([user] * lines) + "\n").encode()))
    assert status == 200 and payload.count(b'{"user"') == lines  # every record answered (the answer is chunked)
    big = b'{"user":1}\n' * (6 * 1024 * 1024 // 11 + 10)  # just over the default 6 MB
    status, headers, payload = raw_exchange(server.port, POST + b"Transfer-Encoding: chunked\r\n\r\n", chunked(big))
    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(payload)["error"] == "body is over the 6 MB limit"


def test_a_malformed_chunk_is_400_json(server):
    status, headers, payload = raw_exchange(server.port, POST + b"Transfer-Encoding: chunked\r\n\r\n",
                                            b"zz\r\n{}\r\n0\r\n\r\n")
    assert status == 400 and headers["content-type"] == "application/json" and "error" in json.loads(payload)


@pytest.mark.parametrize("framing", [b"Transfer-Encoding: chunked\r\n\r\n100\r\n" + b"x" * 10,
                                     b"Content-Length: 256\r\n\r\n" + b"x" * 10])
def test_a_body_that_stops_midway_is_answered_408_not_left_to_the_worker_timeout(server, framing):
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as conn:
        conn.sendall(POST + framing)  # then silence: a worker timeout would answer nothing, or HTML
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"stopped arriving" in answer
    assert request(server.port, "GET", "/ping")[0] == 200


@pytest.mark.parametrize("head", [
    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
    b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    b"GARBAGE\r\n\r\n",
])
def test_requests_gunicorn_refuses_itself_are_answered_in_json(server, head):
    status, headers, payload = raw_exchange(server.port, head)
    assert 400 <= status < 500 and headers["content-type"] == "application/json", (status, payload[:200])
    assert json.loads(payload)["error"]


@pytest.fixture
def one_worker(tmp_path, model_dir):
    """One worker with an 8 s deadline: what one slow client could hold, it holds here."""
    import shutil

    shutil.copytree(model_dir, tmp_path / "model")
    s = Server(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="1", SAGEMAKER_MODEL_SERVER_TIMEOUT="8")
    s.wait_until_ready()
    yield s
    s.stop()


class Trickler(threading.Thread):
    """A client sending `pieces` one every `interval` seconds, as slowly as a hostile one would; `cut` says
    whether the server closed the connection before the last piece, `answer` holds what it sent back."""

    def __init__(self, port, pieces, interval):
        super().__init__(daemon=True)
        self.conn = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.pieces, self.interval = pieces, interval
        self.cut, self.answer = False, b""

    def run(self):
        try:
            for piece in self.pieces:
                self.conn.sendall(piece)
                readable, _, _ = select.select([self.conn], [], [], self.interval)
                if readable:
                    break
            else:
                return
            while chunk := self.conn.recv(65536):
                self.answer += chunk
            self.cut = True
        except OSError:  # reset by the server while sending
            self.cut = True
        finally:
            self.conn.close()


def test_slow_clients_holding_connections_do_not_starve_ping_or_invocations(one_worker, recommender):
    # A header line every half second for 20 s, from more clients than there are workers: one such client
    # held a sync worker, and /ping with it, for as long as it kept sending.
    head = [b"POST /invocations HTTP/1.1\r\n"] + [f"X-Slow-{n}: y\r\n".encode() for n in range(40)]
    slow = [Trickler(one_worker.port, head, 0.5) for _ in range(4)]
    for client in slow:
        client.start()
    wait_until(lambda: all(holder_of(one_worker, c.conn) for c in slow), 30,
               lambda: "the worker did not accept every slow client's connection", ignoring=(OSError,))
    for _ in range(3):
        assert request(one_worker.port, "GET", "/ping", timeout=3)[0] == 200
    assert not any(c.cut for c in slow)  # they were held all along: this tested /ping beside them
    body = json.dumps({"user": recommender.users.decode([0])[0], "k": 3})
    status, _, answer = request(one_worker.port, "POST", "/invocations", body, {"Content-Type": "application/json"},
                                timeout=10)
    assert status == 200 and len(json.loads(answer)["itemList"]) == 3
    for client in slow:
        client.join(timeout=30)
    # ... and each was dropped once its headers had taken longer than the keep-alive bound allows
    assert all(c.cut for c in slow) and not any(c.answer for c in slow)


def test_a_body_trickled_past_the_deadline_is_408_and_the_next_request_is_answered(one_worker, recommender):
    body = json.dumps({"user": recommender.users.decode([0])[0], "k": 3}).encode()
    workers = one_worker.workers()
    head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body) + 200}\r\n\r\n".encode())
    # a byte a second never stalls for BODY_STALL_S, and would take 4 minutes to finish
    trickler = Trickler(one_worker.port, [head] + [bytes([b]) for b in body + b" " * 200], 1.0)
    trickler.start()
    wait_until(lambda: trickler.cut or holder_of(one_worker, trickler.conn), 30, lambda: "never accepted")
    time.sleep(2)  # the trickler has its turn, mid-body
    status, _, answer = request(one_worker.port, "POST", "/invocations", body, {"Content-Type": "application/json"},
                                timeout=30)
    assert status == 200 and len(json.loads(answer)["itemList"]) == 3
    trickler.join(timeout=30)
    assert trickler.cut and trickler.answer.startswith(b"HTTP/1.1 408")
    assert b"did not arrive whole within 8 s" in trickler.answer
    assert one_worker.workers() == workers  # answered by the same worker, not killed and replaced
