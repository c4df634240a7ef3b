"""HTTP errors that carry their status; `app.create_app` renders every one as JSON in one handler.

Library errors map here too: an unknown id or a bad option from a client is a 400, never a 500.
"""

from __future__ import annotations

from ncf.errors import ConfigError, DataError, UnknownIdError


class HTTPError(Exception):
    """`message` becomes the JSON body's `error`; `details` (numbers a client can act on) sit beside it."""

    status = 500

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(HTTPError):
    status = 400


class NotAcceptable(HTTPError):
    status = 406


class RequestTimeout(HTTPError):
    status = 408


class TooLarge(HTTPError):
    """A request the server refuses before answering: more work than a request may take, or an answer larger
    than a response may carry. `details` name the limit and how much would fit."""

    status = 413


class UnsupportedMediaType(HTTPError):
    status = 415


class NotReady(HTTPError):
    status = 503


def as_http_error(error: Exception) -> HTTPError | None:
    """The HTTP error a client's request caused, or None for a fault of ours (a 500)."""
    if isinstance(error, HTTPError):
        return error
    if isinstance(error, (UnknownIdError, ConfigError, DataError)):
        return BadRequest(str(error))
    return None
