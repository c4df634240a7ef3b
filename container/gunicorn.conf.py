"""gunicorn's settings for `serve`: the one place they live.

Values come from `ServeConfig` (SageMaker's environment variables). Loaded by `serve` as
`gunicorn -c container/gunicorn.conf.py`.
"""

import json
import logging
import os
import pwd

from gunicorn import util

from container.serve_config import ServeConfig

_config = ServeConfig.from_env(os.environ)
# The app's own log lines (model loaded, internal errors) go to stderr beside gunicorn's.
logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")

# SageMaker sends requests to 8080, or to SAGEMAKER_BIND_TO_PORT in inference pipelines.
bind = f"0.0.0.0:{_config.port}"
# Default: one worker per CPU; SAGEMAKER_MODEL_SERVER_WORKERS overrides.
workers = _config.workers
# Sync workers: one request at a time each; scoring is numpy and holds the CPU, so threads would not help.
worker_class = "sync"
# Seconds one request may hold a worker before gunicorn replaces it (sync workers send no heartbeat while
# they answer, streaming included). Real time: 60, SageMaker's own limit, past which the answer is lost
# anyway. Batch transform (SAGEMAKER_BATCH=true): 600, what SageMaker waits when the job does not set
# ModelClientConfig.InvocationsTimeoutInSeconds. SAGEMAKER_MODEL_SERVER_TIMEOUT overrides either (up to 3600). The app refuses (413) a request whose estimated
# work is over half of it, and advertises a MaxPayloadInMB whose worst case fits (invocations.Limits).
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


def when_ready(server):
    server.log.info("serving on %s with %d workers (%s, timeout %d s, body limit %d MB)", bind, workers,
                    "batch transform" if _config.batch else "real time", timeout, _config.max_payload_mb)


def post_fork(server, worker):
    # Each worker scores on one core; several BLAS threads per worker would fight over the same CPUs.
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    server.log.info("worker %d ready", worker.pid)


def _write_json_error(sock, status_int, reason, mesg):
    """gunicorn's own answers (a malformed request line or header, a bad Content-Length or chunk size, a
    header over its limits: everything it refuses before the app runs) as JSON like every other answer of
    the server, in place of its HTML page. gunicorn calls `util.write_error` for each of them."""
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


util.write_error = _write_json_error
