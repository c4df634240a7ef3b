"""The Flask application: `/ping`, `/execution-parameters`, `/invocations`.

`create_app(recommender, config)` builds it around any loaded model (tests pass their own); gunicorn calls
`from_environment()`, which loads the model from `/opt/ml/model` once, in the master before workers fork. A
model that cannot be loaded does not crash the server into a restart loop: `/ping` answers 503 with the
reason, and the log says it once.

At creation the app times a few requests on the model (`limits.Costs`, a small part of start-up even on an
ml-25m-sized NeuMF) and derives its `Limits`: what a request may ask, and the `MaxPayloadInMB` that
`/execution-parameters` advertises. Every answer carries a Content-Length (asynchronous endpoints fail
without one, deepjavalibrary/djl-serving#2567), built whole within the endpoint's answer limit, but for a
batch transform's JSON Lines answers, which can be gigabytes: those are streamed, one chunk of records at a
time. An answer's Content-Type is the request's as spelled (`codecs.answer_type`: data capture). A
request's CPU work runs on its worker's scoring thread (`Turn.run`), so `/ping` answers while it scores; a
request whose turn came too late for its estimated work to finish by its deadline is answered 503 (`Busy`).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time

from flask import Flask, Response, request
from gunicorn.http.errors import ParseException

from ncf.recommender import Recommender

from . import codecs
from .answers import answer, answer_chunks
from .errors import BadRequest, NotReady, RequestTimeout, TooLarge
from .costs import Costs
from .limits import Limits
from .requests import Options, requests
from .rules import FILTERS_FILE, RuleBook
from .serve_config import ServeConfig
from .turns import Turn, Turns, deadline

log = logging.getLogger("container.app")

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


#: What a 503 "busy" answer asks a client to wait before it tries again (`Retry-After`, and `retry_after_s` in
#: its JSON: SageMaker passes a container's body on to the caller, not its headers). The worker's queue is
#: not the retry's: it may reach another worker or instance, so a short pause, not the backlog's length.
RETRY_AFTER_S = 1


class Busy(NotReady):
    """503: this worker could not serve the request by its deadline (its turn came too late); another try
    may find a worker free. Answered with `Retry-After`."""

    def __init__(self, message: str):
        super().__init__(message, retry_after_s=RETRY_AFTER_S)


def _overdue(limits: Limits, records, options: Options, seconds_left: float) -> float | None:
    """The estimated seconds of answering `records` (checked by `limits`) when they are more than
    `seconds_left`, counted up to the first record past it (a lower bound then); None when they fit.

    `Limits.check` has passed, so the whole estimate is within `limits.budget_s`: only a request left with
    less than that (one that waited long for its turn, or whose body was slow) is estimated again, record by
    record, which costs parsing the records once more, only then."""
    if seconds_left >= limits.budget_s:
        return None
    seconds = 0.0
    compiled: set = set()
    for request_ in requests(records, options):
        seconds += limits.costs.seconds(request_, compiled)
        if seconds > seconds_left:
            return seconds
    return None


def _streamed(pieces, seconds: float, turn: Turn):
    """The body's pieces as they are made; a fault midway is logged and cuts the response short (its status
    is already sent), so a client sees a broken answer, never a complete-looking partial one. So does a reader
    too slow to take the whole answer within `seconds` (gunicorn logs the timeout where its write waited),
    which would otherwise hold the worker's `turn`. The turn ends with the last piece, or when the response
    is closed or dropped unsent (`Turn.end_with`)."""
    try:
        with deadline(seconds, RequestTimeout(f"the answer was not read within {seconds:g} s")):
            yield from pieces
    except Exception:
        log.exception("internal error while streaming an answer; the response was cut short")
        raise
    finally:
        turn.end()


def _scored(turn: Turn, pieces):
    """`pieces`, each made on the worker's scoring thread (`Turn.run`)."""
    end = object()
    while (piece := turn.run(next, pieces, end)) is not end:
        yield piece


#: Seconds a request body may stall (no byte arriving) before the request is answered 408: a client that
#: stops midway would otherwise hold the worker's turn until the request's deadline, then get no answer. (A
#: client trickling a byte every few seconds is bounded by that deadline instead.)
BODY_STALL_S = 10.0


def _body(limit: int, write_stall_s: float) -> bytes:
    """The request body, whole, or the 4xx that says why not, read from the WSGI input directly (werkzeug's
    reader turns a stall into a generic "client disconnected" and cuts a chunked body at the limit).

    With a Content-Length: refused (413) above `limit` before reading, then read to that length. Chunked: read
    up to one byte past `limit` and refused there. A malformed chunk is a 400, a body that stops arriving for
    `BODY_STALL_S` a 408, one that ends early a 400. Afterwards, a write of the answer that does not finish
    within `write_stall_s` ends the connection: a client that never reads would otherwise hold it for good.
    """
    length = request.content_length
    over = TooLarge(f"body is over the {limit // (1024 * 1024)} MB limit")
    if length is not None and length > limit:
        raise over
    stream = request.environ["wsgi.input"]
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        sock.settimeout(BODY_STALL_S)
    try:
        wanted = limit + 1 if length is None else length
        parts, got = [], 0
        while got < wanted:
            part = stream.read(wanted - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        body = b"".join(parts)
    except TimeoutError:
        raise RequestTimeout(f"the request body stopped arriving for {BODY_STALL_S:g} s") from None
    except (ParseException, OSError) as e:  # gunicorn's chunked reader: a bad chunk size, a body cut short
        raise BadRequest(f"the request body could not be read ({type(e).__name__}: {e})") from None
    finally:
        if sock is not None:
            sock.settimeout(write_stall_s)
    if len(body) > limit:  # chunked (a Content-Length was checked above)
        raise over
    if length is not None and len(body) < length:
        raise BadRequest(f"the request body ended after {len(body):,} of the {length:,} bytes its Content-Length "
                         "announced")
    return body


def create_app(recommender: Recommender | None, config: ServeConfig, problem: str | None = None,
               limits: Limits | None = None, book: RuleBook | None = None, turns: Turns | None = None) -> Flask:
    """An app serving `recommender`; with None, every route but `/ping`'s 503 answers 503 with `problem`.

    `book` defaults to the model's rules with the deploy-time filters of `config` (`RuleBook.load`: raises
    `ConfigError` for a broken one); `limits` to those derived from timing `recommender` with them on this
    machine (`Costs.measure`); `turns` to the app's own (a multi-model endpoint's models share one: one
    request at a time per worker, whatever the model)."""
    app = Flask("ncf")
    app.config["DEBUG"] = False  # Flask would take FLASK_DEBUG from the endpoint's environment: tracebacks, reloads
    defaults = Options(threshold=float(recommender.metadata.get("threshold", 0.5))) if recommender else Options()
    not_ready = problem or "model not loaded"
    if recommender is not None and book is None:
        book = RuleBook.load(recommender, config.filters, config.model_dir)
    if recommender is not None and limits is None:
        limits = Limits.derive(Costs.measure(recommender, book=book), config)
    if limits is not None:
        log.info("limits: %s", limits.describe())
        if config.batch and not limits.fits:
            log.warning("even %d MB of the smallest records would take longer than %g s: such requests are "
                        "refused (413); raise SAGEMAKER_MODEL_SERVER_TIMEOUT and the job's InvocationsTimeoutInSeconds "
                        "together (up to 3600 s)",
                        limits.payload_mb, limits.budget_s)
    turns = turns or Turns(work_limit_s=config.timeout)
    ping_ok = json.dumps({"status": "ok"})
    execution_parameters = json.dumps({
        "MaxConcurrentTransforms": config.max_concurrent_transforms,
        # One record a request when even the smallest payload the API allows (1 MB) of the costliest records
        # cannot be answered within the timeout (fold-ins of a large NeuMF): a transform that leaves its
        # strategy to the container then still succeeds, a round trip a line.
        "BatchStrategy": "SINGLE_RECORD" if config.batch and limits is not None and not limits.fits
        else "MULTI_RECORD",
        "MaxPayloadInMB": limits.payload_mb if limits else config.max_payload_mb,
    })

    @app.get("/ping")
    def ping():
        if recommender is None:
            return codecs.json_response({"status": "unavailable", "error": not_ready}, 503)
        return Response(ping_ok, status=200, mimetype=codecs.JSON)

    @app.get("/execution-parameters")
    def parameters():
        return Response(execution_parameters, status=200, mimetype=codecs.JSON)

    @app.post("/invocations")
    def invocations():
        if recommender is None:
            raise NotReady(not_ready)
        request_type = codecs.media_type(request.headers.get("Content-Type"))
        response_type = codecs.negotiate(request.headers.get("Accept"), request_type)
        answer_type = codecs.answer_type(request.headers.get("Content-Type"), response_type)
        encoding = codecs.content_encoding(request.headers.get("Content-Encoding"))  # 415 before the body
        options = defaults.with_attributes(request.headers.get(CUSTOM_ATTRIBUTES))
        seconds = config.deadline_s
        arrived = time.monotonic()
        ends = arrived + seconds  # one deadline for the whole request: its wait, body and answer
        turn = turns.take(seconds)
        if turn is None:
            raise Busy(f"busy: earlier requests held this worker for the {seconds} s this request may last; retry")
        try:
            def left() -> float:
                return ends - time.monotonic()

            waited = time.monotonic() - arrived
            if left() <= 0:
                raise Busy(f"busy: this request waited {waited:.1f} s for its turn, all of the {seconds} s it may "
                           "last; retry")
            # Network waits get at least a second: a body sent while the request waited is read in one, and
            # the answer's estimated work is checked against the time left before any is done.
            late_body = RequestTimeout(f"the request body did not arrive whole within {seconds} s")
            with deadline(max(1.0, left()), late_body):
                body = _body(config.max_payload_mb * 1024 * 1024, max(1.0, left()))
            reading = time.monotonic() - arrived - waited

            def work(body: bytes):
                """The request's CPU work up to its answer's body (a JSON Lines answer: its first piece and the
                rest to make), in one go on the scoring thread."""
                body = codecs.decompressed(body, encoding, config.max_payload_mb * 1024 * 1024)
                records = codecs.DECODERS[request_type](body)
                # 413 now rather than a worker killed midway; then 503 rather than work finished after the
                # caller gave up. JSON Lines records are parsed here and again when answered: keeping the
                # typed requests of a 100 MB body (9.5M records) would cost ~1 GB.
                limits.check(records, options, book)
                late = _overdue(limits, records, options, left())
                if late is not None:
                    why = (f"the {max(left(), 0):.1f} s left of the {seconds} s it may last cannot cover its work, "
                           f"estimated at {late:.1f} s or more")
                    if reading > waited:  # the client's doing, not the server's load
                        raise RequestTimeout(f"the request body took {reading:.1f} s to arrive, and {why}")
                    raise Busy(f"busy: this request waited {waited:.1f} s for its turn, and {why}; retry")
                if request_type == codecs.JSONLINES:
                    pieces = iter(codecs.ENCODERS[response_type](answer_chunks(recommender, records, options, book),
                                                                 len(records)))
                    if not config.batch:  # whole, within `limits.answer_bytes`: a list's Content-Length is its sum
                        return [piece.encode() for piece in pieces], None
                    return next(pieces, ""), pieces  # before the status is sent: a fault here is a JSON 500
                responses = answer(recommender, records, options, book)
                if "error" in responses[0]:
                    raise BadRequest(responses[0]["error"])
                return "".join(codecs.ENCODERS[response_type]([responses], len(responses))), None

            first, rest = turn.run(work, body)
            del body
            if rest is None:
                return Response(first, status=200, content_type=answer_type)
            streaming = _streamed(itertools.chain([first], _scored(turn, rest)), max(1.0, left()), turn)
            turn.end_with(streaming)
            streamed = Response(streaming, status=200, content_type=answer_type)
            streamed.call_on_close(turn.end)
            turn = None
            return streamed
        finally:
            if turn is not None:
                turn.end()

    @app.errorhandler(Exception)
    def render(error: Exception):
        return codecs.error_response(error, f"{request.method} {request.path}")

    return app


def from_environment():
    """The app gunicorn serves: settings from the environment, the model from the model folder; on a
    multi-model endpoint, no model until SageMaker loads some (`multimodel`)."""
    config = ServeConfig.from_env(os.environ)
    if config.multi_model:
        from .multimodel import MultiModel

        return MultiModel.from_config(config, create_app)
    stage = f"model not loaded from {config.model_dir}"
    try:
        recommender = Recommender.load(config.model_dir, retrieval=config.retrieval)
        stage = f"deploy-time filters not loaded (NCF_FILTERS, {config.model_dir / FILTERS_FILE})"
        book = RuleBook.load(recommender, config.filters, config.model_dir)
        # Timing real requests scores the model once: weights that load but cannot score (a kernel of the
        # wrong shape) fail here, and the endpoint says so on /ping instead of dying in a restart loop.
        stage = f"model not loaded from {config.model_dir}"
        limits = Limits.derive(Costs.measure(recommender, book=book), config)
    except Exception as error:  # noqa: BLE001 - any broken model or filter must become a 503 that says why
        log.error("%s: %s", stage, error)
        return create_app(None, config, problem=f"{stage}: {error}")
    log.info("model loaded from %s: %s, %d users, %d items, %s", config.model_dir, recommender.metadata.get("kind"),
             len(recommender.users), len(recommender.items),
             f"{len(book.named)} deploy-time filter(s)" if book.named else "no deploy-time filters")
    return create_app(recommender, config, limits=limits, book=book)
