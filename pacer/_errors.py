"""The JSON error body, in one place: ``{"error": {"message", "type"}}``.

Every failure a client is told of has this shape (OpenAI's), whichever way it goes out:

- ``error_object(message, kind)``: the object itself, a dict;
- ``error_body(exc)``: the object for an exception (its ``kind`` when it is a
  ``KindedError``, ``"stream_error"`` for malformed SSE, else its class name);
- ``error_event(message, kind)`` / ``error_frame(exc)`` / ``body_frame(body)``: an
  SSE ``event: error`` frame
  whose data is that object, typed ``ErrorFrame`` so that whoever writes it to the
  client knows the stream failed without reading the bytes back;
- ``pacer.server.json_error``: a JSON response with it (the one form that needs Starlette).

The ``type`` of each error pacer itself answers an HTTP request with is named once,
below (``INVALID_REQUEST`` ...); a stream log's errors carry theirs as ``kind``
(``pacer.streamlog``).

Cost: one ``json.dumps`` of a two-field object per error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._outcome import Outcome
from .sse import SSEError, encode

__all__ = [
    "ending_of",
    "INVALID_LAST_EVENT_ID",
    "INVALID_REQUEST",
    "METHOD_NOT_ALLOWED",
    "NOT_FOUND",
    "RATE_LIMITED",
    "REQUEST_TOO_LARGE",
    "STREAM_LOG_UNREACHABLE",
    "UPSTREAM_UNREACHABLE",
    "BlockedFrame",
    "BlockedText",
    "ErrorFrame",
    "ErrorText",
    "KindedError",
    "body_frame",
    "error_body",
    "error_event",
    "error_frame",
    "error_object",
    "typed_frame",
]

#: A request pacer cannot take as sent (a bad parameter, header or body): a 400 or 415.
INVALID_REQUEST = "invalid_request_error"
#: A ``Last-Event-ID`` that names no event of the stream (malformed, or past its end): a 400.
INVALID_LAST_EVENT_ID = "invalid_last_event_id"
#: A request body over the limit of its route: a 413.
REQUEST_TOO_LARGE = "request_too_large"
#: A method that a route of pacer's own does not take: a 405 with ``Allow``.
METHOD_NOT_ALLOWED = "method_not_allowed"
#: No such thing here (a stream unknown, expired or another's; a feature that is off): a 404.
NOT_FOUND = "not_found"
#: Over a limit of requests or streams: a 429 with ``Retry-After``.
RATE_LIMITED = "rate_limited"
#: No upstream answered (a request's 502, ``/readyz``'s 503).
UPSTREAM_UNREACHABLE = "upstream_unreachable"
#: The stream log's store did not answer (``/readyz``'s 503).
STREAM_LOG_UNREACHABLE = "stream_log_unreachable"


class ErrorFrame(bytes):
    """An SSE frame that tells the client the stream failed (an ``event: error``).

    The same bytes as any frame; the type is the record that this frame is a failure,
    made where the frame is made."""

    __slots__ = ()


class ErrorText(str):
    """An SSE frame, as text, that tells the client the stream failed (an upstream's own
    ``error`` event passed on); it goes out as an ``ErrorFrame``."""

    __slots__ = ()


class BlockedFrame(bytes):
    """An SSE frame of the ending that says a check withheld the rest of the answer (the
    API's content-filter ending, a ``Guard``'s block): the writer records ``BLOCKED``."""

    __slots__ = ()


class BlockedText(str):
    """A blocked ending's SSE frame, as text; it goes out as a ``BlockedFrame``."""

    __slots__ = ()


def ending_of(frame: bytes) -> Outcome | None:
    """How ``frame`` says its stream ends, by its type: ``ERROR`` for an ``ErrorFrame``,
    ``BLOCKED`` for a ``BlockedFrame``; ``None`` for any other frame."""
    if isinstance(frame, ErrorFrame):
        return Outcome.ERROR
    if isinstance(frame, BlockedFrame):
        return Outcome.BLOCKED
    return None


def typed_frame(text: str) -> bytes:
    """``text`` as UTF-8 bytes, keeping what its type records: an ``ErrorText`` goes out as
    an ``ErrorFrame``, a ``BlockedText`` as a ``BlockedFrame``."""
    data = text.encode("utf-8")
    if isinstance(text, ErrorText):
        return ErrorFrame(data)
    if isinstance(text, BlockedText):
        return BlockedFrame(data)
    return data


class KindedError(RuntimeError):
    """An error whose JSON ``type`` is its ``kind`` (a class attribute, or a property)."""

    kind = "error"

    def to_json(self) -> dict[str, Any]:
        """The error as ``{"error": {"message", "type"}}``."""
        return error_object(str(self) or type(self).__name__, self.kind)


def error_object(message: str, kind: str) -> dict[str, Any]:
    """``{"error": {"message": message, "type": kind}}``."""
    return {"error": {"message": message, "type": kind}}


def error_body(exc: BaseException) -> dict[str, Any]:
    """An OpenAI-style ``{"error": {"message", "type"}}`` object for a stream's failure."""
    if isinstance(exc, KindedError):
        return exc.to_json()
    kind = "stream_error" if isinstance(exc, SSEError) else type(exc).__name__
    return error_object(str(exc) or type(exc).__name__, kind)


def error_event(message: str, kind: str) -> ErrorFrame:
    """An ``event: error`` frame whose data is ``error_object(message, kind)``."""
    return ErrorFrame(encode(json.dumps(error_object(message, kind)), event="error"))


def error_frame(exc: BaseException) -> ErrorFrame:
    """An ``event: error`` frame whose data is ``error_body(exc)``."""
    return body_frame(error_body(exc))


def body_frame(body: Mapping[str, Any]) -> ErrorFrame:
    """An ``event: error`` frame whose data is ``body``, an error object (non-ASCII kept)."""
    return ErrorFrame(encode(json.dumps(body, ensure_ascii=False), event="error"))
