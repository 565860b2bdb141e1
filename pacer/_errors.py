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

Cost: one ``json.dumps`` of a two-field object per error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .sse import SSEError, encode

__all__ = [
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
