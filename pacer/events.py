"""Pace the text inside an API's event stream, and keep every other event in its place.

An ``EventFormat`` (one per stream, ``pacer.apis`` has those of the common APIs) splits
each upstream event into *pieces*: ``Text``, a text delta of one *lane* (a choice of an
``n > 1`` request; a Responses or Messages stream has one lane), and ``Keep``, any
other event (a role, a tool call, a finish reason, usage, a ping), kept as it came.
``EventPacer`` is the stage that paces them: each lane's text runs through a pipeline
of its own (so every choice is paced), and comes back as the format's own text
events; each kept event goes out exactly where it stood, after all text before it in
its lane (in every lane, for an event of no lane such as the usage chunk) and before
any text after it.

A text event groups the paced text shown at one instant by the upstream event it came
from: text of one kind (content, reasoning, ...) is one event, on that upstream
event's fields; the per-token data of an upstream event (its logprobs) goes with the
event that completes its text, so each field's concatenation on the client equals the
upstream's. ``paced_event_frames`` drives it over an SSE byte stream.

Cost: O(1) amortised per piece and per emitted chunk, plus the lane pipelines' own
work; memory: the text fed and not yet shown, and the kept events waiting behind it.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Hashable
from typing import Any

import anyio

from ._aio import aclose_source
from ._core import CheckingStage, Chunk, Pipeline, Stage, closed_error
from ._text import join_pairs
from .adapters import UpstreamError, asse_events
from .clock import Clock
from .metrics import StreamMetrics
from .run import AsyncRun
from .sse import ServerSentEvent

__all__ = ["EventFormat", "EventPacer", "Keep", "Text", "dumps", "frame", "paced_event_frames"]


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
    for formats that renumber events; ``end``: the stream's own end event."""

    __slots__ = ("body", "end", "frame", "lane")

    def __init__(self, lane: int | None, frame: str, body: Any = None, end: bool = False) -> None:
        self.lane = lane
        self.frame = frame
        self.body = body
        self.end = end  # the stream's own end ([DONE]): none is added after a block

    def __repr__(self) -> str:
        return f"Keep(lane={self.lane}, frame={self.frame!r})"


def dumps(body: Any) -> str:
    """Compact JSON; a lone surrogate (which UTF-8 cannot carry) as JSON's ``\\u`` escape."""
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    try:
        data.encode("utf-8")
    except UnicodeEncodeError:
        data = json.dumps(body, separators=(",", ":"))
    return data


def frame(data: str, event: str | None = None) -> str:
    """An SSE frame for one line of ``data`` (JSON never holds a raw line break)."""
    return f"data: {data}\n\n" if event is None else f"event: {event}\ndata: {data}\n\n"


class EventFormat:
    """One API's event stream: how it splits into pieces and how paced text goes back.

    Stateful (sequence numbers, the end seen): make one per stream. ``parse`` raises
    ``UpstreamError`` for what cannot be read or for an error the API reports by
    ending the stream; ``complete`` turns true at the stream's own end (``[DONE]``,
    ``message_stop``), ``ended`` when nothing after it may be read.
    """

    name = "events"
    #: The ``pacer.transcript`` format that reads this format's frames.
    transcript = "text"

    def __init__(self) -> None:
        self.complete = False
        self.ended = False

    def parse(self, event: ServerSentEvent) -> list[Text | Keep]:
        raise NotImplementedError

    def keep_frame(self, keep: Keep) -> str:
        """The frame of a kept event as it goes out."""
        return keep.frame

    def text_frame(self, first: Text, text: str, extras: list[Any]) -> str:
        """A text event like ``first``'s upstream event, carrying ``text`` and the per-token
        data of the upstream events it completes."""
        raise NotImplementedError

    def filtered(self, last: Text) -> list[str]:
        """Frames that end a lane a check blocked (``last``: its last text piece): the
        API's own content-filter ending. None by default."""
        return []

    def closing(self) -> list[str]:
        """Frames that end a stream whose source was stopped because checks blocked every
        lane before its own end event came. None by default."""
        return []

    def truncated(self) -> UpstreamError:
        return UpstreamError(
            f"upstream {self.name} stream ended before its end event; the answer may be cut short",
            type="upstream_truncated",
        )


class _Global:
    """A kept event of no lane, waiting for every lane to reach it."""

    __slots__ = ("keep",)

    def __init__(self, keep: Keep) -> None:
        self.keep = keep


class _Lane:
    """One lane's pipeline and where its text stands: fed, shown, and what waits."""

    __slots__ = ("anchors", "fed", "filtered", "high", "last", "out", "pieces", "pipeline", "shown")

    def __init__(self, globals_waiting: deque[_Global]) -> None:
        self.pipeline: Pipeline | None = None
        self.fed = 0  # characters fed to the pipeline
        self.shown = 0  # characters sent as text events
        self.out = ""  # the pipeline's output not yet sent (a kept event waits before it)
        self.pieces: deque[tuple[int, Text]] = deque()  # (end offset, piece), not wholly shown
        # (offset, what): kept events that go out once the text before them is shown.
        self.anchors: deque[tuple[int, Keep | _Global]] = deque((0, g) for g in globals_waiting)
        self.high: Text | None = None  # a piece ending in a high surrogate, held for its pair
        self.last: Text | None = None  # the last text piece (the template of a filtered ending)
        # A check blocked the lane: 1 while its approved text drains, 2 once it has ended.
        self.filtered = 0


class EventPacer(CheckingStage):
    """The stage that paces an API's event stream: pieces in, SSE frames (``str``) out.

    ``pipeline_factory()`` makes each lane's pipeline (a ``Pacer``, say). Takes the
    ``Text`` and ``Keep`` pieces of ``fmt.parse``; emits chunks whose text is one SSE
    frame each, in the order described in the module's docstring.
    """

    timed = True

    def __init__(self, fmt: EventFormat, pipeline_factory: Callable[[], Stage]) -> None:
        super().__init__()
        self.fmt = fmt
        self.pipeline_factory = pipeline_factory
        self.lanes: dict[int, _Lane] = {}
        self.waiting: deque[_Global] = deque()  # kept events of no lane, in order
        self.ended = False  # the stream's own end event came
        self._asked: dict[int, _Lane] = {}  # id(request) -> its lane

    # -- stage protocol --------------------------------------------------------------

    def ingest(self, item: object, now: float) -> list[Chunk]:
        if self.input_ended:
            raise closed_error(self)
        if isinstance(item, Text):
            self._text(self._lane(item.lane), item, now)
        elif isinstance(item, Keep):
            self._keep(item, now)
        else:
            raise TypeError(f"EventPacer takes Text or Keep pieces, got {type(item).__name__}")
        return self._release(now)

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        raise TypeError("EventPacer takes Text or Keep pieces (from an EventFormat), not chunks")

    def poll(self, now: float) -> list[Chunk]:
        for lane in self.lanes.values():
            p = lane.pipeline
            if p is not None and (d := p.deadline) is not None and d <= now:
                self._out(lane, p.poll(now), now)
        return self._release(now)

    def finish(self, now: float) -> list[Chunk]:
        self.end_input()
        for lane in self.lanes.values():
            self._feed_held(lane, now)
            if lane.pipeline is not None and not lane.filtered:
                self._out(lane, lane.pipeline.finish(now), now)
        if self.blocked is not None and not self.ended:
            for closing in self.fmt.closing():  # after every lane's ending
                self._keep(Keep(None, closing), now)
        return self._release(now)

    # -- checks (a Guard in the lanes' pipelines) --------------------------------------

    def take_requests(self, now: float) -> list[Any]:
        """Every lane's checks not yet handed to the driver."""
        out: list[Any] = []
        for lane in self.lanes.values():
            if lane.pipeline is not None and not lane.filtered:
                for request in lane.pipeline.take_requests(now):
                    self._asked[id(request)] = lane
                    out.append(request)
        return out

    def answer(self, request: Any, result: object, now: float) -> list[Chunk]:
        """A check's result: the lane's released text goes out (or the lane ends, blocked)."""
        lane = self._asked.pop(id(request), None)
        if lane is None:
            return []
        if lane.pipeline is not None and not lane.filtered:
            self._out(lane, lane.pipeline.answer(request, result, now), now)
        return self._release(now)

    @property
    def blocked(self) -> Any:
        """The first lane's ``Blocked`` once checks have blocked every lane, else ``None``."""
        lanes = [lane for lane in self.lanes.values() if lane.pipeline is not None]
        if not lanes or not all(lane.filtered for lane in lanes):
            return None
        return lanes[0].pipeline.blocked  # type: ignore[union-attr]

    def _out(self, lane: _Lane, chunks: list[Chunk], now: float) -> None:
        """The lane pipeline's output; a lane a check has just blocked drains what was approved."""
        lane.out += "".join(c.text for c in chunks)
        p = lane.pipeline
        if not lane.filtered and p is not None and p.blocked is not None:
            lane.filtered = 1
            if not p.input_ended:
                lane.out += "".join(c.text for c in p.finish(now))

    def cancel(self, now: float) -> list[Chunk]:
        out = [] if self.input_ended else self.finish(now)
        self.end_input(cancelled=True)
        for lane in self.lanes.values():
            if lane.pipeline is not None and not lane.pipeline.done:
                lane.out += "".join(c.text for c in lane.pipeline.cancel(now))
        return out + self._release(now)

    @property
    def deadline(self) -> float | None:
        best: float | None = None
        for lane in self.lanes.values():
            p = lane.pipeline
            if p is not None and (d := p.deadline) is not None and (best is None or d < best):
                best = d
        return best

    # -- internals -------------------------------------------------------------------

    def _lane(self, index: int) -> _Lane:
        lane = self.lanes.get(index)
        if lane is None:
            lane = self.lanes[index] = _Lane(self.waiting)
        return lane

    def _text(self, lane: _Lane, piece: Text, now: float) -> None:
        if lane.high is not None:
            held, lane.high = lane.high, None
            if held.kind == piece.kind:
                text = join_pairs(held.text + piece.text)
                piece = Text(piece.lane, piece.kind, text, piece.template, piece.extra)
            else:
                self._feed(lane, held, now)
        if piece.text and "\ud800" <= piece.text[-1] <= "\udbff":
            # JSON may split an emoji's surrogate pair over two events: wait for the rest.
            lane.high = piece
            return
        self._feed(lane, piece, now)

    def _feed_held(self, lane: _Lane, now: float) -> None:
        if lane.high is not None:
            held, lane.high = lane.high, None
            self._feed(lane, held, now)

    def _feed(self, lane: _Lane, piece: Text, now: float) -> None:
        if not piece.text or lane.filtered:
            return  # a blocked lane takes nothing more
        if lane.pipeline is None:
            made = self.pipeline_factory()
            lane.pipeline = made if isinstance(made, Pipeline) else Pipeline(made)
            if self.driven:
                lane.pipeline.drive_checks()
        lane.fed += len(piece.text)
        lane.pieces.append((lane.fed, piece))
        lane.last = piece
        self._out(lane, lane.pipeline.ingest(Chunk(piece.text, now), now), now)

    def _keep(self, keep: Keep, now: float) -> None:
        self.ended = self.ended or keep.end
        if keep.lane is not None:
            lane = self._lane(keep.lane)
            self._feed_held(lane, now)
            if not lane.filtered:  # a blocked lane's own events end with it
                lane.anchors.append((lane.fed, keep))
            return
        waiting = _Global(keep)
        self.waiting.append(waiting)
        for lane in self.lanes.values():
            self._feed_held(lane, now)
            lane.anchors.append((lane.shown if lane.filtered == 2 else lane.fed, waiting))

    def _release(self, now: float) -> list[Chunk]:
        frames: list[str] = []
        while True:
            for lane in self.lanes.values():
                self._release_lane(lane, frames)
            if not self.waiting or not self._reached(self.waiting[0]):
                break
            waiting = self.waiting.popleft()
            for lane in self.lanes.values():
                lane.anchors.popleft()
            frames.append(self.fmt.keep_frame(waiting.keep))
        return [Chunk(f, now) for f in frames]

    def _reached(self, waiting: _Global) -> bool:
        """Whether every lane has shown all its text before ``waiting``."""
        for lane in self.lanes.values():
            at, what = lane.anchors[0]
            if what is not waiting or lane.shown != at:
                return False
        return True

    def _release_lane(self, lane: _Lane, frames: list[str]) -> None:
        fmt = self.fmt
        while True:
            limit = -1
            if lane.anchors:
                at, what = lane.anchors[0]
                if lane.shown == at:
                    if isinstance(what, _Global):
                        return  # waits for the other lanes
                    lane.anchors.popleft()
                    frames.append(fmt.keep_frame(what))
                    continue
                limit = at
            n = len(lane.out) if limit < 0 else min(len(lane.out), limit - lane.shown)
            if n <= 0:
                if lane.filtered == 1:
                    self._end_filtered(lane, frames)
                return
            text, lane.out = lane.out[:n], lane.out[n:]
            self._text_frames(lane, text, frames)

    def _end_filtered(self, lane: _Lane, frames: list[str]) -> None:
        """A blocked lane whose approved text is all out: its own events after that point
        are dropped, the format's filtered ending sent; events of no lane pass it."""
        p = lane.pipeline
        if p is None or not p.done or lane.out:
            return
        lane.anchors = deque((lane.shown, what) for _, what in lane.anchors if isinstance(what, _Global))
        lane.pieces.clear()
        lane.filtered = 2
        if lane.last is not None:
            frames.extend(self.fmt.filtered(lane.last))

    def _text_frames(self, lane: _Lane, text: str, frames: list[str]) -> None:
        """Frames for ``text``, the next characters of ``lane``: one per run of one kind."""
        fmt = self.fmt
        start, i = lane.shown, 0
        end = start + len(text)
        first: Text | None = None
        parts: list[str] = []
        extras: list[Any] = []
        while start < end:
            piece_end, piece = lane.pieces[0]
            if first is not None and piece.kind != first.kind:
                frames.append(fmt.text_frame(first, "".join(parts), extras))
                parts, extras = [], []
                first = None
            if first is None:
                first = piece
            take = min(piece_end, end) - start
            parts.append(text[i : i + take])
            i += take
            start += take
            if start == piece_end:
                lane.pieces.popleft()
                if piece.extra is not None:
                    extras.append(piece.extra)
        if first is not None:
            frames.append(fmt.text_frame(first, "".join(parts), extras))
        lane.shown = end


async def _pieces(events: AsyncIterator[ServerSentEvent], fmt: EventFormat) -> AsyncIterator[Text | Keep]:
    try:
        async for event in events:
            for piece in fmt.parse(event):
                yield piece
            if fmt.ended:
                break
    finally:
        with anyio.CancelScope(shield=True):
            await aclose_source(events)
    if not fmt.complete:
        raise fmt.truncated()


async def paced_event_frames(
    data: AsyncIterable[bytes],
    fmt: EventFormat,
    pipeline_factory: Callable[[], Stage],
    *,
    clock: Clock | None = None,
    max_line: int = 1 << 20,
    pipelines: list[StreamMetrics] | None = None,
) -> AsyncGenerator[bytes, None]:
    """Re-pace an SSE byte stream of ``fmt``'s API; yields SSE frames.

    Raises what the upstream raised (``UpstreamError``, ``SSEError``, transport errors)
    after the frames of everything before it, the held text sent at once. The metrics of
    each lane's pipeline are appended to ``pipelines`` when the stream ends.
    """
    events = asse_events(data, max_line=max_line, max_event=16 * max_line)
    stage = EventPacer(fmt, pipeline_factory)
    run: AsyncRun[str] = AsyncRun(stage, _pieces(events, fmt), clock=clock)
    try:
        async for text in run:
            yield text.encode("utf-8")
    finally:
        with anyio.CancelScope(shield=True):
            await run.aclose()
        if pipelines is not None:
            pipelines += [lane.pipeline.metrics for lane in stage.lanes.values() if lane.pipeline is not None]
