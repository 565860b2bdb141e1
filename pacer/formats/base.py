"""What an API's event format is: the pieces it parses into, the endings it builds,
and the record of what a client received.

An ``EventFormat`` (one object per stream: it keeps sequence numbers and where the
stream stands) answers, for one streaming API:

- *parsing*: ``parse(event)`` splits an upstream event into ``Text`` (a text delta of
  one lane: a choice of an ``n > 1`` request; other APIs have one lane) and ``Keep``
  (any other event, sent as it came); ``Unchecked``, a ``Keep`` that carries text in a
  channel the format does not know, which a pipeline with checks refuses;
- *rendering*: ``text_frame`` builds the API's own text event around paced text,
  ``keep_frame`` a kept event as it goes out;
- *endings*: each an ``Ending``, its ``kind`` (an ``EndingKind``) beside its frames, so
  a caller records the outcome without reading bytes: ``filtered`` and ``closing``
  (a check blocked the answer), ``stopped`` (a client's cancel), ``error``, and
  ``truncated`` (the exception for an upstream that ended before its end event);
- *reading*: ``read(event, received)`` adds what one sent event showed a client to a
  ``Received`` record (per lane, the answer's text and its reasoning), which
  ``stopped`` then ends.

Each format lists its text fields once (which field is answer text, which
reasoning), and its parser and its reader both use that list.

Cost: O(size of the event) per event, for every operation here.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from .._core import Chunk
from .._errors import BlockedText, ErrorText, KindedError, body_frame, error_object, typed_frame
from .._shown import ShownText
from ..sse import ServerSentEvent, encode

if TYPE_CHECKING:
    from .splice import Continuation

__all__ = [
    "ChunkEncoder",
    "Ending",
    "EndingKind",
    "EventFormat",
    "FrameTemplate",
    "Keep",
    "Part",
    "Received",
    "ReceivedLane",
    "Text",
    "Unchecked",
    "UpstreamError",
    "as_sent",
    "dumps",
    "event_name",
    "field_of",
    "frame",
    "has_text",
    "json_object",
    "merged_extras",
    "parse_json_event",
]


class UpstreamError(KindedError):
    """The upstream stream reported an error or sent something that cannot be read."""

    def __init__(self, message: str, *, body: Any = None, type: str = "upstream_error") -> None:
        super().__init__(message)
        self.body = body
        self.type = self.kind = type

    def to_json(self) -> dict[str, Any]:
        """The error as an OpenAI-style ``{"error": {...}}`` object."""
        if isinstance(self.body, Mapping) and isinstance(self.body.get("error"), Mapping):
            return {"error": dict(self.body["error"])}
        return error_object(str(self), self.type)


class Part(enum.Enum):
    """What a text field holds, as a client shows it: the answer, the reasoning, or a
    tool call's arguments (JSON text, checked as text like the rest)."""

    TEXT = "text"
    REASONING = "reasoning"
    ARGUMENTS = "arguments"


class EndingKind(enum.Enum):
    """How a stream ended: the outcome an ``Ending``'s frames say."""

    DONE = "done"  # the stream's own end: the answer is whole
    BLOCKED = "blocked"  # a check withheld the rest (the API's content-filter ending)
    STOPPED = "stopped"  # a client's stop or cancel ended it
    ERROR = "error"  # the stream failed
    TRUNCATED = "truncated"  # the upstream ended before its end event


class Ending:
    """The frames that end a stream (or one lane of it) and what they say (``kind``)."""

    __slots__ = ("failure", "frames", "kind")

    def __init__(self, kind: EndingKind, frames: tuple[str, ...] = (), *, failure: bool = False) -> None:
        self.kind = kind
        self.frames = frames  # SSE frames, in order
        self.failure = failure  # the frames are an ``event: error``: the client is told it failed

    def encoded(self) -> list[bytes]:
        """The frames as UTF-8 bytes, one each, typed with what they say, so that the
        client writer records it without reading the bytes: ``BlockedFrame``s for a
        blocked ending's (an ``event: error`` of type ``content_filter`` included),
        ``ErrorFrame``s for a failure's."""
        return [typed_frame(f) for f in self.texts()]

    def texts(self) -> list[str]:
        """The frames as text, typed as ``encoded``'s are (``BlockedText``, ``ErrorText``)."""
        typed = BlockedText if self.kind is EndingKind.BLOCKED else ErrorText if self.failure else str
        return [typed(f) for f in self.frames]

    def __repr__(self) -> str:
        return f"Ending({self.kind}, {self.frames!r})"


class Text:
    """Text of one ``kind`` (``"content"``, ``"reasoning_content"``, ...) in ``lane``.

    ``template`` is what the format needs to build a text event like the upstream's
    (its parsed event); ``extra`` the per-token data that goes with this text (logprobs).
    """

    __slots__ = ("extra", "kind", "lane", "template", "text")

    def __init__(self, lane: int, kind: Hashable, text: str, template: Any, extra: Any = None) -> None:
        self.lane = lane
        self.kind = kind
        self.text = text
        self.template = template
        self.extra = extra

    def __repr__(self) -> str:
        return f"Text(lane={self.lane}, kind={self.kind!r}, text={self.text!r})"


class Keep:
    """An event that goes out as it came, after everything before it in ``lane`` (every
    lane when ``lane`` is ``None``). ``frame`` is its SSE frame; ``body`` its parsed data
    for formats that rebuild events; ``end``: the stream's own end event; ``floating``: an
    event whose place in the text does not matter (a ping), which may go out after the
    run of text it came in rather than cut that run in two for the checks; ``failure``:
    the upstream's own ``error`` event, which tells the client the stream failed;
    ``blocked``: a frame of the ending of a stream checks blocked."""

    __slots__ = ("blocked", "body", "end", "failure", "floating", "frame", "lane")

    def __init__(
        self,
        lane: int | None,
        frame: str,
        body: Any = None,
        end: bool = False,
        floating: bool = False,
        *,
        failure: bool = False,
        blocked: bool = False,
    ) -> None:
        self.lane = lane
        self.frame = frame
        self.body = body
        self.end = end  # the stream's own end ([DONE]): none is added after a block
        self.floating = floating
        self.failure = failure
        self.blocked = blocked

    def __repr__(self) -> str:
        return f"Keep(lane={self.lane}, frame={self.frame!r})"


class Unchecked(Keep):
    """An event that carries text in a channel the format does not know (``channel``
    names it), so no check could see it. Without checks it goes out as it came; with a
    ``Guard`` in the pipeline it is held back and ends its lane as blocked (fail closed):
    ``template`` (a ``Text`` of the lane, empty) is what the format's filtered ending is
    built from."""

    __slots__ = ("channel", "template")

    def __init__(self, lane: int, frame: str, channel: str, template: Text, body: Any = None) -> None:
        super().__init__(lane, frame, body)
        self.channel = channel
        self.template = template

    def __repr__(self) -> str:
        return f"Unchecked(lane={self.lane}, channel={self.channel!r})"


def has_text(value: Any) -> bool:
    """Whether parsed JSON holds a non-empty string anywhere (a channel's text)."""
    if isinstance(value, str):
        return bool(value)
    if isinstance(value, dict):
        return any(has_text(v) for v in value.values())
    if isinstance(value, list):
        return any(has_text(v) for v in value)
    return False


class ReceivedLane:
    """One lane's text as a client received it, and whether the lane has ended."""

    __slots__ = ("finished", "parts", "template")

    def __init__(self) -> None:
        self.parts = {part: ShownText() for part in Part}
        self.finished = False  # the lane's own end (a finish reason) was read
        self.template: Any = None  # the format's note of the lane's last event, for its stop

    def joined(self, part: Part) -> str:
        return self.parts[part].text


class Received:
    """What a stream's frames showed a client: each lane's text, and whether it ended."""

    __slots__ = ("complete", "lanes")

    def __init__(self) -> None:
        self.lanes: dict[int, ReceivedLane] = {}
        self.complete = False  # the stream's own end event was read (or a stop was made)

    def lane(self, index: object) -> ReceivedLane:
        """The lane of ``index`` (lane 0 when it is not an int), made on first use."""
        key = index if isinstance(index, int) and not isinstance(index, bool) else 0
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = ReceivedLane()
        return lane

    def joined(self, index: int, part: Part) -> str:
        lane = self.lanes.get(index)
        return "" if lane is None else lane.joined(part)


# ``json.dumps`` with options builds an encoder on every call; these are built once and
# write the same bytes (``json.dumps(body, ensure_ascii=..., separators=(",", ":"))``).
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_COMPACT_ASCII = json.JSONEncoder(separators=(",", ":")).encode


def dumps(body: Any) -> str:
    """Compact JSON; a lone surrogate (which UTF-8 cannot carry) as JSON's ``\\u`` escape."""
    data = _COMPACT(body)
    try:
        data.encode("utf-8")
    except UnicodeEncodeError:
        data = _COMPACT_ASCII(body)
    return data


#: A text no upstream sends, put where a template's text goes to find where that is.
_HOLE = "\x00pacer: the text goes here\x00"
_HOLE_JSON = json.encoder.encode_basestring(_HOLE)  # type: ignore[attr-defined]
_STRING = json.encoder.encode_basestring  # type: ignore[attr-defined]  # a str as JSON, ensure_ascii=False


class FrameTemplate:
    """The frames of one upstream event, which differ only in their text: rendered once
    with a hole for the text, then each frame is the two halves around the text's JSON
    string, the same bytes ``dumps`` writes (a text or template with a lone surrogate,
    which ``dumps`` escapes throughout, or a template that holds the hole's own text,
    is rendered whole). Keeps the last event's template (``key``)."""

    __slots__ = ("key", "parts")

    def __init__(self) -> None:
        self.key: tuple[Any, Hashable] | None = None
        self.parts: tuple[str, str] | None = None

    def render(self, template: Any, kind: Hashable, text: str, make: Callable[[str], str]) -> str:
        """``make(text)``, from the halves of ``make(hole)`` when ``template`` and ``kind``
        are the last call's."""
        key = self.key
        if key is None or key[0] is not template or key[1] != kind:
            self.key = (template, kind)
            whole = make(_HOLE)
            halves = whole.split(_HOLE_JSON)
            self.parts = (halves[0], halves[1]) if len(halves) == 2 and _utf8(whole) else None
        parts = self.parts
        if parts is None or not _utf8(text):
            return make(text)
        return parts[0] + _STRING(text) + parts[1]


def _utf8(text: str) -> bool:
    """Whether UTF-8 can carry ``text`` (it has no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def frame(data: str, event: str | None = None) -> str:
    """An SSE frame for one line of ``data`` (JSON never holds a raw line break)."""
    return f"data: {data}\n\n" if event is None else f"event: {event}\ndata: {data}\n\n"


def event_name(event: ServerSentEvent) -> str | None:
    """The event's type as its frame names it (``None`` for the default ``message``)."""
    return None if event.event == "message" else event.event


def as_sent(event: ServerSentEvent) -> str:
    """The event's frame as the upstream sent it (its type and data, line for line)."""
    return encode(event.data, event=event_name(event)).decode("utf-8")


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` of parsed JSON, or the attribute of an SDK object."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def json_object(data: str) -> dict[str, Any] | None:
    """The JSON object ``data`` holds, or ``None`` (for a reader, which skips the rest)."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def parse_json_event(event: ServerSentEvent) -> dict[str, Any]:
    """The JSON object an event carries; ``UpstreamError`` when it carries anything else."""
    try:
        body = json.loads(event.data)
    except (json.JSONDecodeError, RecursionError) as exc:
        if isinstance(exc, json.JSONDecodeError):
            reason = f"{exc.msg} at character {exc.pos}"
        else:
            reason = "nested too deep"
        raise UpstreamError(
            f"upstream sent malformed JSON ({reason}): {event.data[:80]!r}", type="malformed_upstream"
        ) from None
    if not isinstance(body, dict):
        raise UpstreamError(
            f"upstream event data is not a JSON object: {event.data[:80]!r}", type="malformed_upstream"
        )
    return body


def merged_extras(template: Any, extras: list[Any]) -> Any:
    """Per-token data of several upstream events as one: each list field concatenated."""
    if isinstance(template, list):
        return [x for extra in extras if isinstance(extra, list) for x in extra]
    if not isinstance(template, dict):
        return template
    out: dict[str, Any] = {}
    for key, value in template.items():
        lists = [e[key] for e in extras if isinstance(e, dict) and isinstance(e.get(key), list)]
        if lists:
            out[key] = [x for part in lists for x in part]
        else:
            out[key] = [] if isinstance(value, list) else (None if extras else value)
    return out


class EventFormat:
    """One API's event stream: its pieces, its text events, its endings, its reader.

    Stateful (sequence numbers, the end seen): make one per stream. ``parse`` raises
    ``UpstreamError`` for what cannot be read or for an error the API reports by
    ending the stream; ``complete`` turns true at the stream's own end (``[DONE]``,
    ``message_stop``), ``ended`` when nothing after it may be read.
    """

    #: The API's name in messages ("upstream chat completions stream ended ...").
    name: ClassVar[str] = "events"
    #: The name the registry (``pacer.formats.FORMATS``) and ``Transcript`` know it by.
    transcript: ClassVar[str] = "text"
    #: How a broken answer of this API goes on (``pacer.formats.splice``), if it can.
    continues: ClassVar[type[Continuation] | None] = None

    def __init__(self) -> None:
        self.complete = False
        self.ended = False

    def continuation(self, body: Mapping[str, Any], policy: str) -> Continuation | None:
        """What continues a broken answer to the request ``body`` under ``policy``
        (``"continue"``, ``"regenerate"``, ``"error"``); ``None``: this API cannot."""
        if self.continues is None or policy == "error":
            return None
        return self.continues(body, policy)

    # -- parsing and rendering ------------------------------------------------------------

    def parse(self, event: ServerSentEvent) -> list[Text | Keep]:
        raise NotImplementedError

    def keep_frame(self, keep: Keep) -> str:
        """The frame of a kept event as it goes out."""
        return keep.frame

    def sent_frame(self, keep: Keep) -> str:
        """``keep_frame``, an ``ErrorText`` when the kept event is the upstream's error, a
        ``BlockedText`` when it closes a stream checks blocked."""
        sent = self.keep_frame(keep)
        return ErrorText(sent) if keep.failure else BlockedText(sent) if keep.blocked else sent

    def text_frame(self, first: Text, text: str, extras: list[Any]) -> str:
        """A text event like ``first``'s upstream event, carrying ``text`` and the per-token
        data of the upstream events it completes."""
        raise NotImplementedError

    # -- endings ------------------------------------------------------------------------

    def filtered(self, last: Text) -> Ending:
        """What ends a lane a check blocked (``last``: its last text piece): the API's own
        content-filter ending. No frames by default."""
        return Ending(EndingKind.BLOCKED)

    def closing(self) -> Ending:
        """What ends a stream whose source was stopped because checks blocked every lane
        before its own end event came. No frames by default."""
        return Ending(EndingKind.BLOCKED)

    def truncated(self) -> UpstreamError:
        """The error of an upstream stream that ended before its end event."""
        return UpstreamError(
            f"upstream {self.name} stream ended before its end event; the answer may be cut short",
            type="upstream_truncated",
        )

    def error(self, body: Mapping[str, Any], kind: EndingKind = EndingKind.ERROR) -> Ending:
        """The ``event: error`` frame whose data is ``body`` (``{"error": {...}}``): how
        every format here ends a failed stream."""
        return Ending(kind, (body_frame(body).decode("utf-8"),), failure=True)

    def stopped(self, received: Received) -> Ending:
        """The frames that end the stream the API's own way after what ``received`` holds,
        as a client's stop would have it. ``data: [DONE]`` by default."""
        return Ending(EndingKind.STOPPED, (frame("[DONE]"),))

    # -- reading what a client received -------------------------------------------------

    def read(self, event: ServerSentEvent, received: Received) -> None:
        """Add what ``event``, as sent to a client, showed it. Error events are no text;
        ``data: [DONE]`` completes the stream."""
        if event.event == "error":
            return
        if event.data.strip() == "[DONE]":
            received.complete = True
            return
        self.read_data(event.data, received)

    def read_data(self, data: str, received: Received) -> None:
        """Read one event's data (not an error, not ``[DONE]``): here, all of it is text."""
        received.lane(0).parts[Part.TEXT].add(data)


class ChunkEncoder:
    """Renders a pipeline's output chunks as one API's events (``PacedEventSource``'s
    ``encoder``), and ends the stream that API's way. Stateful: one per stream."""

    #: The name of the format it writes (``pacer.formats.FORMATS``), for ``Transcript``.
    transcript: ClassVar[str] = "text"

    def __call__(self, chunk: Chunk) -> bytes:
        raise NotImplementedError

    def ending(self, blocked: bool, done: bool) -> Ending:
        """The frames after the last chunk: the API's content-filter ending if a check
        ``blocked`` the rest, else its own end (with ``data: [DONE]`` if ``done``)."""
        raise NotImplementedError
