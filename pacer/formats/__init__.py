"""The event formats pacer streams in, one object per API, and their registry.

Everything pacer knows of an API's events lives in that API's ``EventFormat``: how
its events split into text lanes and kept events (``parse``), how paced text goes
back into its events (``text_frame``), how it ends (blocked, stopped, error,
truncated: ``Ending`` values whose ``kind`` says which) and what a client was shown
(``read``). Each module's docstring says which fields are text and which are kept.

- ``"text"``: ``PlainText`` (``pacer.formats.text``), each event's data is text;
  ``TextEvents`` frames a pipeline's chunks so.
- ``"chat.completions"``: ``ChatCompletions``, and ``OpenAIChunks`` that frames a
  pipeline's chunks so; ``"completions"``: ``Completions`` (``pacer.formats.choices``).
- ``"responses"``: ``Responses`` (``pacer.formats.responses``).
- ``"messages"``: ``AnthropicMessages`` (``pacer.formats.messages``).

``FORMATS`` maps each name to its class, ``ROUTES`` each streaming route path to
its class. A ``Transcript`` reads the SSE frames a stream sent (or logged) in one of
them: ``text`` is the answer's text as a client shows it (the ``content`` of the first
choice, the ``output_text`` of a response, the ``text`` blocks of a message),
``reasoning`` the reasoning or thinking text; ``choices`` has both for each choice of
an ``n > 1`` request; ``stop_frames()`` are the events that end the stream the API's
own way after the last one read, as a client's "stop" would have it. Error events are
no text, and end nothing. This is how ``pacer.resumable`` answers a cancel: from the
events written, so the text it reports is exactly what every reader received.

Cost: O(size of the frames) once each.
"""

from __future__ import annotations

from typing import Any

from ..sse import ServerSentEvent, SSEDecoder
from .base import (
    ChunkEncoder,
    Ending,
    EndingKind,
    EventFormat,
    Keep,
    Part,
    Received,
    Text,
    Unchecked,
    UpstreamError,
    dumps,
    frame,
)
from .choices import ChatCompletions, Completions, OpenAIChunks
from .messages import AnthropicMessages
from .responses import Responses
from .text import PlainText, TextEvents

__all__ = [
    "FORMATS",
    "FORMAT_NAMES",
    "ROUTES",
    "AnthropicMessages",
    "ChatCompletions",
    "ChunkEncoder",
    "Completions",
    "Ending",
    "EndingKind",
    "EventFormat",
    "Keep",
    "OpenAIChunks",
    "Part",
    "PlainText",
    "Received",
    "Responses",
    "Text",
    "TextEvents",
    "Transcript",
    "Unchecked",
    "UpstreamError",
    "dumps",
    "frame",
]

#: Each format, by the name streams and transcripts know it by.
FORMATS: dict[str, type[EventFormat]] = {
    fmt.transcript: fmt for fmt in (PlainText, ChatCompletions, Completions, Responses, AnthropicMessages)
}

#: The names of ``FORMATS``.
FORMAT_NAMES = tuple(FORMATS)

#: The format of each streaming route, by path.
ROUTES: dict[str, type[EventFormat]] = {
    "/v1/chat/completions": ChatCompletions,
    "/v1/completions": Completions,
    "/v1/responses": Responses,
    "/v1/messages": AnthropicMessages,
}


class Transcript:
    """The text of a stream's frames, fed in order, and how to end it (module docstring)."""

    def __init__(self, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"Transcript: fmt must be one of {', '.join(FORMAT_NAMES)}, got {fmt!r}")
        self.fmt = fmt
        self.format = FORMATS[fmt]()
        self.received = Received()
        self._decoder = SSEDecoder()

    @property
    def complete(self) -> bool:
        """The stream's own end event was read (or its stop frames were made)."""
        return self.received.complete

    def feed(self, data: bytes) -> None:
        """Read the next frames (any bytes of the stream, split anywhere)."""
        for event in self._decoder.feed(data):
            self.read(event)

    def read(self, event: ServerSentEvent) -> None:
        """Read the next event (already decoded, as a client that parses the stream has it)."""
        self.format.read(event, self.received)

    @property
    def text(self) -> str:
        """The first choice's answer text."""
        return self.received.joined(0, Part.TEXT)

    @property
    def reasoning(self) -> str:
        """The first choice's reasoning (or thinking) text."""
        return self.received.joined(0, Part.REASONING)

    @property
    def choices(self) -> list[dict[str, Any]]:
        """``{"index", "text", "reasoning"}`` of each choice, by index."""
        joined = self.received.joined
        return [
            {"index": i, "text": joined(i, Part.TEXT), "reasoning": joined(i, Part.REASONING)}
            for i in sorted(self.received.lanes)
        ]

    def stopped(self) -> Ending:
        """The ending a stop makes after what was read (no frames if the stream had ended)."""
        if self.received.complete:
            return Ending(EndingKind.STOPPED)
        ending = self.format.stopped(self.received)
        self.received.complete = True
        return ending

    def stop_frames(self) -> list[bytes]:
        """The events that end the stream after what was read (none if it had ended)."""
        return self.stopped().encoded()
