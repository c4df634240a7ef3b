"""HTTP errors that carry their status, and `error_answer`, the one rendering of any error as JSON that both
applications' handlers (`app.create_app`, `multimodel`) use.

Library errors map here too: an unknown id or a bad option from a client is a 400, never a 500.
"""

from __future__ import annotations

import logging

from werkzeug.exceptions import HTTPException

from ncf.errors import ConfigError, DataError, UnknownIdError

log = logging.getLogger("container.errors")


class HTTPError(Exception):
    """`message` becomes the JSON body's `error`; `details` (numbers a client can act on) sit beside it."""

    status = 500

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(HTTPError):
    status = 400


class NotFound(HTTPError):
    status = 404


class NotAcceptable(HTTPError):
    status = 406


class RequestTimeout(HTTPError):
    status = 408


class Conflict(HTTPError):
    status = 409


class TooLarge(HTTPError):
    """A request the server refuses before answering: more work than a request may take, or an answer larger
    than a response may carry. `details` name the limit and how much would fit."""

    status = 413


class UnsupportedMediaType(HTTPError):
    status = 415


class InsufficientStorage(HTTPError):
    """507: the multi-model contract's answer to a load that memory does not allow; SageMaker then unloads a
    model."""

    status = 507


class NotReady(HTTPError):
    status = 503


def as_http_error(error: Exception) -> HTTPError | None:
    """The HTTP error a client's request caused, or None for a fault of ours (a 500)."""
    if isinstance(error, HTTPError):
        return error
    if isinstance(error, (UnknownIdError, ConfigError, DataError)):
        return BadRequest(str(error))
    return None


def error_answer(error: Exception, where: str) -> tuple[dict, int, dict[str, str]]:
    """The JSON body, status and headers answering `error` raised by a route (`where`: its method and path):
    werkzeug's own (404, 405, a disconnected client) as they are, a client's mistake as its 4xx with the numbers
    it can act on (and `Retry-After` when it says when to retry), anything else a 500 whose traceback is logged."""
    if isinstance(error, HTTPException):
        return {"error": error.description or error.name}, error.code or 500, {}
    http = as_http_error(error)
    if http is None:
        log.exception("internal error answering %s", where)
        return {"error": "internal error; see the endpoint's log"}, 500, {}
    headers = {"Retry-After": str(http.details["retry_after_s"])} if "retry_after_s" in http.details else {}
    return {"error": http.message, **http.details}, http.status, headers
