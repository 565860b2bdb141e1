"""Server-Sent Events: an encoder and an incremental decoder.

The decoder follows the WHATWG HTML "event stream interpretation" rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html) over any split of
the byte stream: UTF-8 decoding with a single leading BOM removed, lines ended by
CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the next
are one line end), comments, fields with one optional space after the colon,
``id`` values containing NUL ignored, ``retry`` taken only when it is all ASCII
digits (at most 15: longer is ignored too), dispatch on a blank line, no event for
a blank data buffer, the last event id carried over from event to event, and the
unterminated tail discarded at the end of the stream.

The encoder splits data on CR, LF and CRLF only (never on other Unicode line
separators, which are ordinary characters in an event stream), and refuses to
write an event without data: several clients, the OpenAI SDK among them, crash on
those.

Cost: O(1) amortised work per byte fed; memory is the current line and the current
event's data, each bounded by a limit that raises ``SSEError`` when exceeded.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "DONE",
    "SSEDecoder",
    "SSEError",
    "ServerSentEvent",
    "encode",
    "encode_comment",
]

_LINE_END = re.compile(r"\r\n|\r|\n")


class SSEError(ValueError):
    """An event stream broke a limit or a frame could not be encoded.

    ``events``: the events the failing ``SSEDecoder.feed`` call completed before the
    failure, in order, so that nothing already sent is lost with the error.
    """

    def __init__(self, message: str, events: list[ServerSentEvent] | None = None) -> None:
        super().__init__(message)
        self.events: list[ServerSentEvent] = events if events is not None else []


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its type, its data and the stream's last event id at that point."""

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None
    """The reconnection time the stream had set when this event was dispatched, if any."""

    def encode(self) -> bytes:
        """This event as event-stream bytes (type omitted when it is the default)."""
        return encode(self.data, event=None if self.event == "message" else self.event, id=self.id or None)


class _Lines:
    """The lines of an event stream from its bytes, however they are split: UTF-8 (bad
    bytes replaced), a leading BOM dropped, lines ended by CR, LF or CRLF, also when a
    CRLF is split between two chunks. A line longer than ``max_line`` is an ``SSEError``."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._started = False  # the first character (a possible BOM) has been seen
        self._skip_lf = False  # the last line ended with CR: an LF next belongs to it
        self._line: list[str] = []  # the pieces of the unfinished line
        self._line_len = 0

    def feed(self, data: bytes, final: bool = False) -> Iterator[str]:
        """The lines ``data`` completes, one at a time (each taken before the next is read)."""
        text = self._decoder.decode(data, final)
        if not text:
            return
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        start = 0
        for m in _LINE_END.finditer(text):
            piece = text[start : m.start()]
            start = m.end()
            if self._line:
                self._append(piece)
                line = "".join(self._line)
                self._line.clear()
                self._line_len = 0
            else:
                if len(piece) > self.max_line:
                    raise SSEError(f"event stream line longer than max_line={self.max_line} characters")
                line = piece
            yield line
        rest = text[start:]
        if rest:
            self._append(rest)
        if text.endswith("\r"):
            self._skip_lf = True

    def _append(self, piece: str) -> None:
        self._line_len += len(piece)
        if self._line_len > self.max_line:
            raise SSEError(f"event stream line longer than max_line={self.max_line} characters")
        self._line.append(piece)

    def reset(self) -> None:
        """A new connection: no partial character, line or BOM state is carried over."""
        self._decoder.reset()
        self._started = False
        self._skip_lf = False
        self._line.clear()
        self._line_len = 0


class SSEDecoder:
    """Turn event-stream bytes into ``ServerSentEvent`` objects, chunk by chunk.

    ``feed(data)`` takes any bytes (an arbitrary split of the stream) and returns
    the events completed by them. ``flush()`` ends the stream: an event not closed
    by a blank line is discarded, as the specification says, so it returns the
    events already complete (none) and resets the line state. ``retry`` is the
    last valid reconnection time in milliseconds (or ``None``), ``last_event_id``
    the last event id seen.

    ``max_line`` and ``max_event`` (characters) bound memory: a line or an event's
    data longer than that raises ``SSEError``; the events before it were returned by
    earlier calls or are on the error's ``events``.
    """

    def __init__(self, *, max_line: int = 1 << 20, max_event: int = 1 << 24) -> None:
        if max_line < 1:
            raise ValueError(f"SSEDecoder: max_line must be >= 1, got {max_line}")
        if max_event < 1:
            raise ValueError(f"SSEDecoder: max_event must be >= 1, got {max_event}")
        self.max_event = max_event
        self.retry: int | None = None
        self.last_event_id = ""
        self._lines = _Lines(max_line)
        self._data: list[str] = []
        self._data_len = 0
        self._event = ""
        self._id_buffer = ""

    @property
    def max_line(self) -> int:
        """The longest line accepted, in characters."""
        return self._lines.max_line

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Take the next bytes of the stream; return the events they complete."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"SSEDecoder.feed takes bytes, got {type(data).__name__}")
        out: list[ServerSentEvent] = []
        try:
            for line in self._lines.feed(bytes(data)):
                self._process(line, out)
        except SSEError as exc:
            exc.events = out
            raise
        return out

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: discard an unterminated event and reset for a new connection."""
        out: list[ServerSentEvent] = []
        for line in self._lines.feed(b"", final=True):
            self._process(line, out)
        self._lines.reset()
        self._reset_event()
        self._id_buffer = self.last_event_id
        return out

    def _process(self, line: str, out: list[ServerSentEvent]) -> None:
        if not line:
            self._dispatch(out)
            return
        colon = line.find(":")
        if colon == 0:
            return  # comment
        if colon < 0:
            field, value = line, ""
        else:
            field = line[:colon]
            value = line[colon + 2 :] if line.startswith(" ", colon + 1) else line[colon + 1 :]
        if field == "data":
            self._data_len += len(value) + 1
            if self._data_len > self.max_event:
                raise SSEError(f"event data longer than max_event={self.max_event} characters")
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif field == "retry" and _good_retry(value):
            self.retry = int(value)
        # any other field is ignored

    def _dispatch(self, out: list[ServerSentEvent]) -> None:
        self.last_event_id = self._id_buffer
        if self._data:
            out.append(
                ServerSentEvent(
                    "\n".join(self._data), self._event or "message", self.last_event_id, self.retry
                )
            )
        self._reset_event()

    def _reset_event(self) -> None:
        self._data.clear()
        self._data_len = 0
        self._event = ""


def _single_line(name: str, value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"SSE {name} must be str, got {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise SSEError(f"SSE {name} must not contain CR or LF: {value!r}")
    return value


def encode(
    data: str,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """One event as UTF-8 event-stream bytes, ending with the blank line that dispatches it.

    ``data`` is required (an empty string is a valid, dispatched, empty event): a
    frame with fields but no data would be a data-less event. ``data`` is split on
    CR, LF and CRLF into ``data:`` lines, so it round-trips exactly except that a
    CR or CRLF comes back as LF, as the specification normalises them.
    """
    if not isinstance(data, str):
        raise TypeError(f"SSE data must be str, got {type(data).__name__}")
    parts: list[str] = []
    if comment is not None:
        parts.append(_comment_lines(comment))
    if event is not None:
        parts.append(f"event: {_single_line('event', event)}\n")
    if id is not None:
        if "\0" in _single_line("id", id):
            raise SSEError("SSE id must not contain NUL: clients ignore such ids")
        parts.append(f"id: {id}\n")
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise SSEError(f"SSE retry must be a non-negative int (milliseconds), got {retry!r}")
        parts.append(f"retry: {retry}\n")
    for line in _LINE_END.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    frame = "".join(parts)
    try:
        return frame.encode()
    except UnicodeEncodeError as exc:
        raise SSEError(
            f"SSE frame has a lone surrogate {frame[exc.start]!r} at character {exc.start}: "
            "the stream is UTF-8, which cannot carry it (join surrogate pairs, or escape it in JSON)"
        ) from None


_MAX_RETRY_DIGITS = 15  # about 31,700 years in milliseconds


def _good_retry(value: str) -> bool:
    """All ASCII digits, and not longer than any real delay (nor than ``int()`` takes)."""
    return 0 < len(value) <= _MAX_RETRY_DIGITS and value.isascii() and value.isdigit()


def _comment_lines(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"SSE comment must be str, got {type(text).__name__}")
    return "".join(f": {line}\n" if line else ":\n" for line in _LINE_END.split(text))


def encode_comment(text: str = "") -> bytes:
    """A comment frame (clients ignore it): the heartbeat that keeps idle connections open."""
    return (_comment_lines(text) + "\n").encode()


#: The OpenAI-style end-of-stream event.
DONE = encode("[DONE]")
