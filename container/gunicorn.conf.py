"""gunicorn's settings for `serve`: the one place they live.

Values come from `ServeConfig` (SageMaker's environment variables). Loaded by `serve` as
`gunicorn -c container/gunicorn.conf.py`.
"""

import json
import logging
import os
import pwd
import sys

from gunicorn import util

from container import turns
from container.serve_config import ServeConfig

_config = ServeConfig.from_env(os.environ)
# The app's own log lines (model loaded, internal errors) go to stderr beside gunicorn's.
logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")

# SageMaker sends requests to 8080, or to SAGEMAKER_BIND_TO_PORT in inference pipelines.
bind = f"0.0.0.0:{_config.port}"
# Default: one worker per CPU the container may use (its cgroup's CPU quota, not the host's count), as many as
# its memory holds beside the model at the request limits' worst case (container/resources.py): a serverless
# endpoint of 1 GB, or `docker run --memory 1g`, would otherwise fork a worker per host CPU and be killed by
# the OOM killer at its first large request, every worker at once. SAGEMAKER_MODEL_SERVER_WORKERS overrides.
workers = _config.workers
# gevent workers: a worker holds many connections, so a client that trickles its headers, its body or its
# reading of the answer costs one greenlet, not the worker, and /ping answers beside it (a sync worker was
# held by one slow client for as long as it lasted). /invocations still takes turns, one per worker at a
# time (container/turns.py): scoring is numpy holding the CPU. Its work runs on the worker's scoring thread,
# so the gevent loop answers /ping while the worker scores (SageMaker replaces an instance whose /ping takes
# over 2 s). Chosen over nginx in front (AWS's examples: a second server to configure, supervise and keep
# answering JSON) and over gthread (a slow client holds a thread, and a busy request is never killed at the
# timeout).
worker_class = "gevent"
# Connections one worker holds at once; past them a connection waits in the listen backlog.
worker_connections = 1000
# Seconds a connection may take to deliver its request's headers; then it is closed without an answer.
# (gunicorn bounds the header read only on its keep-alive path, so that path is on; see pre_request.)
keepalive = 5
# Seconds one request's work may hold the worker's scoring thread before the worker exits and gunicorn
# replaces it (container/turns.py: the loop, free meanwhile, keeps the heartbeat going, so the worker does it
# itself); what waits on the network instead is cut at the same deadline by the app.
# Real time: 60, SageMaker's own limit, past which the answer is lost anyway. Batch transform
# (SAGEMAKER_BATCH=true): 600, what SageMaker waits when the job does not set
# ModelClientConfig.InvocationsTimeoutInSeconds. SAGEMAKER_MODEL_SERVER_TIMEOUT overrides either (up to 3600).
# The app refuses (413) a request whose estimated work is over half of it, and advertises a MaxPayloadInMB
# whose worst case fits (limits.Limits).
timeout = _config.timeout
# SageMaker sends SIGKILL 30 s after SIGTERM: finish in-flight requests within 25 s.
graceful_timeout = 25
# Load the model once in the master, before fork, so all workers share one copy (copy-on-write pages).
# Safe because the server never imports TensorFlow: the model is plain numpy arrays, no threads or sessions.
preload_app = True
wsgi_app = "container.app:from_environment()"
# Bodies are limited by the app (MaxPayloadInMB); headers stay at gunicorn's defaults.
# Workers answer requests as the image's unprivileged user `ncf` when started as root (the master keeps
# root only to bind the port and to read the model before fork); without that user, nothing changes.
try:
    _worker_user = pwd.getpwnam("ncf") if os.getuid() == 0 else None
except KeyError:
    _worker_user = None
if _worker_user is not None:
    user, group = _worker_user.pw_uid, _worker_user.pw_gid
accesslog = None
# No runtime-management socket: nothing on an endpoint would use it, and $HOME may be read-only.
control_socket_disable = True
errorlog = "-"
loglevel = "info"


def on_starting(server):
    # Before the workers fork: where they say since when they are busy, so that a busy one leaves new
    # connections to one that may serve them sooner (container/turns.py).
    turns.share_board(workers)


def when_ready(server):
    mode = "batch transform" if _config.batch else f"{_config.endpoint_type} endpoint"
    server.log.info("serving on %s with %d workers (%s, timeout %d s, body limit %d MB)", bind, workers, mode,
                    timeout, _config.max_payload_mb)
    server.log.info("workers: %s", _config.workers_why)


def post_fork(server, worker):
    # Each worker scores on one core; several BLAS threads per worker would fight over the same CPUs.
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    # While this worker holds a turn, new connections go to a worker that may serve them sooner
    # (container/turns.py): gunicorn's gevent worker accepts with its module's StreamServer, built after
    # this hook.
    from gunicorn.workers import ggevent

    turns.join_board()
    ggevent.StreamServer = turns.idle_first_server()
    server.log.info("worker %d ready", worker.pid)


def worker_abort(worker):
    # The arbiter's SIGABRT to a worker whose loop missed its heartbeats for the timeout: something held the
    # loop itself (scoring runs on the scoring thread, whose own limit exits the worker). gunicorn would raise
    # SystemExit in the greenlet that holds it, and the gevent worker swallows that and drains for
    # graceful_timeout while still sending heartbeats, so nothing would replace it for 25 s. Exit at once, as
    # a sync worker did.
    worker.log.critical("worker %d: its loop was held past the %d s timeout; exiting", worker.pid, timeout)
    sys.stderr.flush()
    os._exit(1)


def pre_request(worker, req):
    # One request per connection, as the sync workers answered (`Connection: close`). Kept-alive connections
    # stay with the worker that accepted them, and at 4 connections on 2 workers gave p99 latencies many times
    # those of closed ones (benchmarks/serve_bench.py; docs/benchmarks.md, Tried and rejected).
    req.must_close = True


def _write_json_error(sock, status_int, reason, mesg):
    """gunicorn's own answers (a malformed request line or header, a bad Content-Length or chunk size, a
    header over its limits: everything it refuses before the app runs) as JSON like every other answer of
    the server, in place of its HTML page. gunicorn calls `util.write_error` for each of them."""
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


util.write_error = _write_json_error
