"""Multi-model endpoints: SageMaker's "Custom Containers Contract for Multi-Model Endpoints", on the same
request path as `/invocations`.

With `SAGEMAKER_MULTI_MODEL=true` the server starts with no model and answers:

    POST   /models                 {"model_name": NAME, "url": FOLDER}: load (409 loaded, 507 over the budget)
    GET    /models                 {"models": [{"modelName", "modelUrl"}], "nextPageToken"}: pages of page_size
    GET    /models/NAME            one model
    DELETE /models/NAME            unload (404 when not loaded)
    POST   /models/NAME/invoke     whatever `/invocations` takes, answered by the model's own `app.create_app`

Every answer is JSON and every client mistake a 4xx; the `X-Amzn-SageMaker-Target-Model` header (the
client's TargetModel) is logged with each load, unload, first use in a worker and failed invocation.

gunicorn's workers do not share memory, and a load reaches one of them. The one it reaches loads the folder
(checked as a single-model server checks it: a broken folder is a 400 saying why), times its requests
(`Costs`, as a server does at start), writes its large arrays to files (`shared_arrays`) and records it in the
registry (`model_store`), which decides 409 and 507 under a lock. Every other worker builds the model on its
first invocation of it, mapping those files instead of reading the weights again, and drops it when the
registry says it was unloaded: one copy of the arrays in memory whatever the worker count. Loads and first
uses build on the worker's scoring thread (`turns`), so `/ping` answers meanwhile.

The memory budget (`NCF_MODELS_MEMORY_MB`, by default the container's memory less what the workers need for
requests, `model_loads.budget`) counts each model as its shared arrays once plus, per worker, its private arrays
and `model_loads.PRIVATE_BYTES`; a load that would pass it is a 507, after which SageMaker unloads a model and
loads again.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import gc
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flask import Flask, request

from ncf.recommender import Recommender

from . import codecs, model_loads
from .errors import BadRequest, HTTPError, NotFound, NotReady, TooLarge
from .model_loads import MAX_LOAD_BODY, MB, budget
from .model_store import Entry, ModelStore
from .rules import RuleBook
from .serve_config import ServeConfig
from .turns import Turns, cooperative

log = logging.getLogger("container.multimodel")

TARGET_MODEL = "X-Amzn-SageMaker-Target-Model"
#: Models per `GET /models` page unless `page_size` says otherwise, and the most it may say.
PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000
#: Seconds between an idle worker's looks at the registry, to drop the models unloaded through another.
SWEEP_S = 2.0


def _page_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode("utf-8", "surrogatepass")).decode("ascii")


def _after(token: str | None) -> str | None:
    if token is None:
        return None
    try:
        name = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8", "surrogatepass")
    except (UnicodeError, binascii.Error, ValueError):
        name = None
    if name is None or _page_token(name) != token:  # the decoder skips what is not base64
        raise BadRequest(f"next_page_token {token[:100]!r} is not a token this server gave")
    return name


@dataclass(frozen=True)
class Served:
    """A model as one worker serves it: its entry's id and its `/invocations` app."""

    id: str
    app: Flask


class MultiModel:
    """The WSGI app of a multi-model endpoint (module docstring). `create_app` is `app.create_app`, the
    single-model app each loaded model is served by."""

    def __init__(self, config: ServeConfig, create_app: Callable, store: ModelStore, budget_bytes: int):
        self.config, self.create_app, self.store, self.budget = config, create_app, store, budget_bytes
        self.turns = Turns(work_limit_s=config.timeout)  # one per worker for all its models: one turn at a time
        self.served: dict[str, Served] = {}
        self._generation = -1
        self._sweeping: int | None = None
        self.management = self._management()

    @classmethod
    def from_config(cls, config: ServeConfig, create_app: Callable) -> "MultiModel":
        """The app gunicorn serves, made in the master: a registry of its own, emptied."""
        master = os.getpid()
        store = ModelStore(Path(tempfile.gettempdir()) / f"ncf-models-{master}")
        store.clear()
        # The arrays leave with the server; workers run these hooks too on their way out, and leave them.
        atexit.register(lambda: os.getpid() == master and store.clear())
        size, why = budget(config)
        log.info("multi-model endpoint: no model loaded; models may take %s MB (%s); registry in %s",
                 f"{size / MB:,.0f}", why, store.root)
        return cls(config, create_app, store, size)

    def __call__(self, environ, start_response):
        self._sync()
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "POST" and path.startswith("/models/") and path.endswith("/invoke"):
            name = path[len("/models/"):-len("/invoke")].encode("latin-1").decode("utf-8", "replace")
            try:
                served = self._served(name, environ.get("HTTP_X_AMZN_SAGEMAKER_TARGET_MODEL"))
            except HTTPError as error:  # answered by the management app, as JSON
                environ["ncf.multimodel.error"], served = error, None
            if served is not None:
                return self._invoke(served, name, environ, start_response)
        return self.management(environ, start_response)

    def _invoke(self, served: Served, name: str, environ, start_response):
        target = environ.get("HTTP_X_AMZN_SAGEMAKER_TARGET_MODEL")

        def logged(status: str, headers, exc_info=None):
            if not status.startswith("2"):
                log.info("model %r (%s %s): %s", name, TARGET_MODEL, target, status)
            return start_response(status, headers, exc_info)

        environ["PATH_INFO"] = "/invocations"
        return served.app(environ, logged)

    # ------------------------------------------------------------------------------------- this worker's view

    def _sync(self) -> None:
        """Drops the models the registry no longer holds (unloaded through another worker, or loaded again from
        another folder): one stat(2) when nothing changed."""
        if self._sweeping != os.getpid():
            self._sweeping = os.getpid()
            if cooperative():
                import gevent

                gevent.spawn(self._sweep)
        generation = self.store.generation()
        if generation == self._generation:
            return
        self._generation = generation
        dropped = False
        for name, served in list(self.served.items()):
            entry = self.store.get(name)
            if entry is None or entry.id != served.id:
                del self.served[name]
                dropped = True
                log.info("model %r dropped by worker %d: unloaded", name, os.getpid())
        if dropped:
            gc.collect()  # a Flask app holds reference cycles: free its model's maps now, not at the next pass

    def _sweep(self) -> None:
        import gevent

        while True:
            gevent.sleep(SWEEP_S)
            try:
                self._sync()
            except Exception:  # noqa: BLE001 - a failed look must not end the sweeping
                log.exception("looking at the model registry failed")

    def _served(self, name: str, target: str | None) -> Served | None:
        """The model `name` as this worker serves it, built from the registry on first use; None when it is
        not loaded."""
        served = self.served.get(name)
        if served is not None:
            return served
        entry = self.store.get(name)
        if entry is None:
            return None
        turn = self.turns.take(self.config.deadline_s)
        if turn is None:
            raise NotReady(f"busy: model {name!r} could not be prepared in this worker within "
                           f"{self.config.deadline_s} s; retry", retry_after_s=1)
        try:
            served = self.served.get(name)  # another request may have built it while this one waited
            if served is None or served.id != entry.id:
                started = time.monotonic()
                served = turn.run(self._build, entry)
                now = self.store.get(name)
                if now is None or now.id != entry.id:  # unloaded while it was built: kept, it would outlive that
                    return None
                self.served[name] = served
                log.info("model %r (%s %s) ready in worker %d in %.2f s", name, TARGET_MODEL, target, os.getpid(),
                         time.monotonic() - started)
            return served
        finally:
            turn.end()

    def _build(self, entry: Entry) -> Served:
        return self._app(entry, *model_loads.build(entry))

    def _app(self, entry: Entry, recommender: Recommender, book: RuleBook) -> Served:
        limits = model_loads.limits(entry, self.config)
        return Served(entry.id, self.create_app(recommender, self.config, limits=limits, book=book, turns=self.turns))

    def _load(self, name: str, url: str) -> tuple[Entry, Served, float, str]:
        """`model_loads.load` on the scoring thread: the entry, this worker's model, the seconds it took and
        where they went."""
        started = time.monotonic()
        entry, recommender, book, took = model_loads.load(name, url, self.config, self.store, self.budget)
        return entry, self._app(entry, recommender, book), time.monotonic() - started, took

    # --------------------------------------------------------------------------------------- management

    def _management(self) -> Flask:
        app = Flask("ncf-multi-model")
        app.config["DEBUG"] = False

        def described(entry: Entry) -> dict:
            return {"modelName": entry.name, "modelUrl": entry.url}

        @app.get("/ping")
        def ping():
            return codecs.json_response({"status": "ok"})

        @app.post("/models")
        def load():
            body = request.stream.read(MAX_LOAD_BODY + 1)
            if len(body) > MAX_LOAD_BODY:
                raise TooLarge(f"a load request's body is over {MAX_LOAD_BODY // 1024} KB")
            name, url = model_loads.load_request(body)
            target = request.headers.get(TARGET_MODEL)
            turn = self.turns.take(self.config.deadline_s)
            if turn is None:
                raise NotReady(f"busy: could not load model {name!r} within {self.config.deadline_s} s; retry",
                               retry_after_s=1)
            try:
                entry, served, seconds, took = turn.run(self._load, name, url)
            finally:
                turn.end()
            now = self.store.get(name)
            if now is not None and now.id == entry.id:  # not unloaded through another worker meanwhile
                self.served[name] = served
            log.info("model %r (%s %s) loaded from %s by worker %d in %.2f s (%s): %.1f MB shared, %.1f MB per "
                     "worker", name, TARGET_MODEL, target, url, os.getpid(), seconds, took,
                     entry.manifest["sharedBytes"] / MB, entry.manifest["privateBytes"] / MB)
            return codecs.json_response({**described(entry), "memoryBytes": entry.footprint,
                                         "seconds": round(seconds, 3)})

        @app.get("/models")
        def listing():
            raw = request.args.get("page_size", str(PAGE_SIZE))
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
                raise BadRequest(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}, got {raw[:100]!r}")
            after = _after(request.args.get("next_page_token"))
            entries = [e for e in self.store.entries() if after is None or e.name > after]
            page = entries[:int(raw)]
            body: dict = {"models": [described(e) for e in page]}
            if len(entries) > len(page):
                body["nextPageToken"] = _page_token(page[-1].name)
            return codecs.json_response(body)

        @app.get("/models/<path:name>")
        def describe(name: str):
            entry = self.store.get(name)
            if entry is None:
                raise NotFound(f"model {name!r} is not loaded")
            m = entry.manifest
            return codecs.json_response({**described(entry), "kind": m["kind"], "users": m["users"],
                                         "items": m["items"], "memoryBytes": entry.footprint})

        @app.delete("/models/<path:name>")
        def unload(name: str):
            entry = self.store.remove(name)
            if entry is None:
                raise NotFound(f"model {name!r} is not loaded")
            self._sync()  # this worker drops it now
            log.info("model %r (%s %s) unloaded by worker %d", name, TARGET_MODEL,
                     request.headers.get(TARGET_MODEL), os.getpid())
            return codecs.json_response({**described(entry), "status": "unloaded"})

        @app.post("/models/<path:name>/invoke")
        def not_served(name: str):
            raise request.environ.get("ncf.multimodel.error") or NotFound(
                f"model {name!r} is not loaded: load it with POST /models first")

        @app.post("/invocations")
        def invocations():
            raise NotFound("this is a multi-model endpoint: invoke a model with POST /models/NAME/invoke "
                           "(InvokeEndpoint's TargetModel)")

        @app.errorhandler(Exception)
        def render(error: Exception):
            return codecs.error_response(error, f"{request.method} {request.path}")

        return app

