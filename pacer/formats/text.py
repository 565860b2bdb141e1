"""Plain text over SSE: each event's data is text, as ``PacedEventSource`` sends it by default.

Text lane (one lane): every event's data. Kept: ``data: [DONE]``, the end. An
``event: error`` is an error. A stream a check blocked ends with an ``event: error``
whose type is ``content_filter`` (never ``[DONE]``: no false success); a stopped
one with ``data: [DONE]``.

Cost: O(size of the event) per event.
"""

from __future__ import annotations

from typing import Any

from .._core import Chunk
from .._errors import error_object
from ..sse import ServerSentEvent, encode
from .base import (
    ChunkEncoder,
    Ending,
    EndingKind,
    EventFormat,
    Keep,
    Text,
    UpstreamError,
    as_sent,
    frame,
    json_object,
)

__all__ = ["PlainText", "TextEvents"]

_WITHHELD = "the rest of the answer was withheld by an output check"


class PlainText(EventFormat):
    """Events whose data is text (see the module docstring)."""

    transcript = "text"
    name = "text"

    def parse(self, event: ServerSentEvent) -> list[Text | Keep]:
        if event.data.strip() == "[DONE]":
            self.complete = self.ended = True
            return [Keep(None, as_sent(event), end=True)]
        if event.event == "error":
            body = json_object(event.data)
            raise UpstreamError(f"upstream error: {event.data[:200]}", body=body)
        return [Text(0, "text", event.data, None)]

    def text_frame(self, first: Text, text: str, extras: list[Any]) -> str:
        return encode(text).decode("utf-8")

    def closing(self) -> Ending:
        return self.error(error_object(_WITHHELD, "content_filter"), EndingKind.BLOCKED)


class TextEvents(ChunkEncoder):
    """Each chunk's text as one event's data (``PacedEventSource``'s default framing);
    ends with ``data: [DONE]``, or a ``content_filter`` error event when a check blocked
    the rest."""

    def __call__(self, chunk: Chunk) -> bytes:
        return encode(chunk.text)

    def ending(self, blocked: bool, done: bool) -> Ending:
        if blocked:
            return PlainText().closing()
        return Ending(EndingKind.DONE, (frame("[DONE]"),) if done else ())
