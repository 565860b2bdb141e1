"""Pace the text inside an API's event stream, and keep every other event in its place.

An ``EventFormat`` (one per stream, ``pacer.formats`` has those of the common APIs) splits
each upstream event into *pieces*: ``Text``, a text delta of one *lane* (a choice of an
``n > 1`` request; a Responses or Messages stream has one lane) and one *kind* (the
field it fills: content, reasoning, a tool call's arguments, ...), and ``Keep``, any
other event (a role, a finish reason, usage, a ping), kept as it came. ``EventPacer``
is the stage that paces them, and it never counts characters across a check: each
lane's text is cut into *segments*, runs of one kind between kept events, and each
segment runs through a pipeline of its own (so a ``Guard`` in it sees each field's
text whole, and its replacement may be of any length). A kept event goes out once
the segment before it has ended and all its output is shown, and before the next
segment starts (in every lane, for an event of no lane such as the usage chunk); a
``floating`` one (a ping) waits for the end of the segment it came in instead of
cutting it in two.

A text event groups the paced text shown at one instant: text of one segment, on
the fields of the upstream event it came from; the per-token data of an upstream
event (its logprobs) goes with the event that completes its text while the segment's
output is its input unchanged, so each field's concatenation on the client equals the
upstream's. Once a check has replaced text in a segment, its per-token data is no
longer sent (its lists are empty): it would spell out what was replaced.
``paced_event_frames`` drives it over an SSE byte stream.

Cost: O(1) amortised per piece and per emitted chunk, plus the pipelines' own work;
memory: the text fed and not yet shown, and the pieces and kept events waiting behind
the segment being shown.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Hashable
from typing import Any

import anyio

from ._aio import aclose_source
from ._core import Chunk, Pipeline, Stage, closed_error
from ._text import join_pairs
from .adapters import asse_events
from .clock import Clock
from .config import MAX_LINE
from .formats import EventFormat, Keep, Text, Unchecked
from .metrics import StreamMetrics
from .run import AsyncRun
from .sse import ServerSentEvent

__all__ = ["EventPacer", "paced_event_frames"]

log = logging.getLogger("pacer.events")


class _Global:
    """A kept event of no lane, waiting for every lane to reach it."""

    __slots__ = ("keep",)

    def __init__(self, keep: Keep) -> None:
        self.keep = keep


class _Lane:
    """One lane: its open segment (a run of one kind of text through a pipeline of its
    own) and the pieces waiting for that segment to be shown."""

    __slots__ = (
        "filtered",
        "floating",
        "high",
        "kind",
        "last",
        "metrics",
        "out",
        "pieces",
        "pipeline",
        "queue",
        "segment",
    )

    def __init__(self, globals_waiting: deque[_Global]) -> None:
        self.pipeline: Pipeline | None = None  # the open segment's (or the last one's) pipeline
        self.kind: Hashable | None = None  # the open segment's kind; None: no segment open
        self.segment = _Segment()
        self.out = ""  # the open segment's output not yet sent
        self.pieces: deque[tuple[int, Text]] = deque()  # (end offset, piece) of the segment, not shown
        self.floating: list[Keep] = []  # events that go out when the segment ends (a ping)
        # Pieces, kept events and events of no lane after the open segment, in order.
        self.queue: deque[Text | Keep | _Global] = deque(globals_waiting)
        self.high: Text | None = None  # a piece ending in a high surrogate, held for its pair
        self.last: Text | None = None  # the last text piece (the template of a filtered ending)
        self.metrics: list[StreamMetrics] = []  # of each segment's pipeline, once ended
        # A check blocked the lane: 1 while its approved text drains, 2 once it has ended.
        self.filtered = 0


class _Segment:
    """Where a segment's text stands: fed, shown, and whether what was shown is what was
    fed (then each piece's per-token data goes with the event that completes it)."""

    __slots__ = ("closing", "fed", "same", "shown", "unseen")

    def __init__(self) -> None:
        self.fed = 0  # characters fed to the pipeline
        self.shown = 0  # characters sent as text events
        self.closing = False  # its pipeline was told the segment ended
        self.same = True  # the output so far equals the input (no redaction)
        self.unseen = ""  # the input not yet matched against the output (while ``same``)


class EventPacer(Stage):
    """The stage that paces an API's event stream: pieces in, SSE frames (``str``) out.

    ``pipeline_factory()`` makes each segment's pipeline (a ``Pacer``, say). Takes the
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
        self.driven = False  # a driver runs the lanes' checks (a Guard in the pipelines)
        self.ended = False  # the stream's own end event came
        self.cancelling = False  # cancel: each segment's pipeline sends what it holds at once
        self._asked: dict[int, tuple[_Lane, int]] = {}  # id(request) -> its lane and stage
        self._has_checks: bool | None = None  # whether the pipelines check text (made once)

    # -- stage protocol --------------------------------------------------------------

    def ingest(self, item: object, now: float) -> list[Chunk]:
        if self._ended:
            raise closed_error(self)
        if isinstance(item, Text):
            self._text(self._lane(item.lane), item)
        elif isinstance(item, Keep):
            self._keep(item)
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
        self._end_input()
        for lane in self.lanes.values():
            self._feed_held(lane)
        if self.blocked is not None and not self.ended:
            for closing in self.fmt.closing().frames:  # after every lane's ending
                self._keep(Keep(None, closing))
        return self._release(now)

    # -- checks (a Guard in the lanes' pipelines) --------------------------------------

    def take_requests(self, now: float) -> list[Any]:
        """Every lane's checks not yet handed to the driver."""
        out: list[Any] = []
        for lane in self.lanes.values():
            if lane.pipeline is not None and not lane.filtered:
                for index, request in lane.pipeline.take_requests(now):
                    self._asked[id(request)] = (lane, index)
                    out.append(request)
        return out

    def answer(self, request: Any, result: object, now: float) -> list[Chunk]:
        """A check's result: the lane's released text goes out (or the lane ends, blocked)."""
        asked = self._asked.pop(id(request), None)
        if asked is None:
            return []
        lane, index = asked
        if lane.pipeline is not None and not lane.filtered:
            self._out(lane, lane.pipeline.answer(index, request, result, now), now)
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
            if not p._ended:
                lane.out += "".join(c.text for c in p.finish(now))

    def cancel(self, now: float) -> list[Chunk]:
        out = [] if self._ended else self.finish(now)
        self._end_input(cancelled=True)
        self.cancelling = True
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

    # -- internals: taking pieces in -------------------------------------------------

    def _lane(self, index: int) -> _Lane:
        lane = self.lanes.get(index)
        if lane is None:
            lane = self.lanes[index] = _Lane(self.waiting)
        return lane

    def _text(self, lane: _Lane, piece: Text) -> None:
        if lane.high is not None:
            held, lane.high = lane.high, None
            if held.kind == piece.kind:
                text = join_pairs(held.text + piece.text)
                piece = Text(piece.lane, piece.kind, text, piece.template, piece.extra)
            else:
                self._queue(lane, held)
        if piece.text and "\ud800" <= piece.text[-1] <= "\udbff":
            # JSON may split an emoji's surrogate pair over two events: wait for the rest.
            lane.high = piece
            return
        self._queue(lane, piece)

    def _feed_held(self, lane: _Lane) -> None:
        if lane.high is not None:
            held, lane.high = lane.high, None
            self._queue(lane, held)

    def _queue(self, lane: _Lane, item: Text | Keep | _Global) -> None:
        if lane.filtered and not isinstance(item, _Global):
            return  # a blocked lane takes nothing more, and its own events end with it
        if not isinstance(item, Text) or item.text:
            lane.queue.append(item)

    def _keep(self, keep: Keep) -> None:
        self.ended = self.ended or keep.end
        if keep.lane is not None:
            lane = self._lane(keep.lane)
            self._feed_held(lane)
            self._queue(lane, keep)
            return
        waiting = _Global(keep)
        self.waiting.append(waiting)
        for lane in self.lanes.values():
            self._feed_held(lane)
            self._queue(lane, waiting)

    # -- internals: segments ---------------------------------------------------------

    def _open(self, lane: _Lane, kind: Hashable) -> None:
        made = self.pipeline_factory()
        lane.pipeline = made if isinstance(made, Pipeline) else Pipeline(made)
        if self.driven:
            lane.pipeline.drive_checks()
        lane.kind = kind
        lane.segment = _Segment()

    def _feed(self, lane: _Lane, piece: Text, now: float) -> None:
        segment = lane.segment
        segment.fed += len(piece.text)
        if segment.same:
            segment.unseen += piece.text
            lane.pieces.append((segment.fed, piece))
        else:
            lane.pieces = deque([(segment.fed, piece)])  # kept as the template of its events
        lane.last = piece
        assert lane.pipeline is not None
        self._out(lane, lane.pipeline.ingest(Chunk(piece.text, now), now), now)

    def _close(self, lane: _Lane, now: float) -> None:
        """The open segment has all its text: its pipeline is told so."""
        lane.segment.closing = True
        p = lane.pipeline
        if p is not None and not p._ended:
            self._out(lane, p.cancel(now) if self.cancelling else p.finish(now), now)

    def _end_segment(self, lane: _Lane, frames: list[str]) -> None:
        frames.extend(self.fmt.keep_frame(keep) for keep in lane.floating)
        lane.floating = []
        lane.kind = None
        lane.pieces.clear()
        if lane.pipeline is not None:
            lane.metrics.append(lane.pipeline.metrics)

    # -- internals: what goes out ----------------------------------------------------

    def _release(self, now: float) -> list[Chunk]:
        frames: list[str] = []
        while True:
            for lane in self.lanes.values():
                self._advance(lane, frames, now)
            if not self.waiting or not self._reached(self.waiting[0]):
                break
            waiting = self.waiting.popleft()
            for lane in self.lanes.values():
                lane.queue.popleft()
            frames.append(self.fmt.keep_frame(waiting.keep))
        return [Chunk(f, now) for f in frames]

    def _reached(self, waiting: _Global) -> bool:
        """Whether every lane has shown all its text before ``waiting``."""
        lanes = self.lanes.values()
        return all(lane.kind is None and lane.queue and lane.queue[0] is waiting for lane in lanes)

    def _advance(self, lane: _Lane, frames: list[str], now: float) -> None:
        """Send what the lane may send now: its segment's output, the segment's end, then
        what waited for it, up to the next segment still being paced (or a global event)."""
        while True:
            if lane.out:
                text, lane.out = lane.out, ""
                self._text_frames(lane, text, frames)
            p = lane.pipeline
            if lane.filtered:
                if lane.filtered == 1 and (p is None or p.done) and not lane.out:
                    self._end_filtered(lane, frames)
                return
            if lane.kind is not None:  # a segment is open
                if lane.segment.closing:
                    if p is None or not p.done or lane.out:
                        return
                    self._end_segment(lane, frames)
                    continue
                head = lane.queue[0] if lane.queue else None
                if isinstance(head, Text) and head.kind == lane.kind:
                    lane.queue.popleft()
                    self._feed(lane, head, now)
                elif isinstance(head, Keep) and head.floating:
                    lane.floating.append(lane.queue.popleft())  # type: ignore[arg-type]
                elif head is not None or self._ended:
                    self._close(lane, now)
                else:
                    return  # more of the segment may come
                continue
            if not lane.queue or isinstance(lane.queue[0], _Global):
                return
            head = lane.queue.popleft()
            if isinstance(head, Text):
                self._open(lane, head.kind)
                self._feed(lane, head, now)
            elif isinstance(head, Unchecked) and self._checked():
                log.warning("pacer: %s carries text no check can see: its lane ends as blocked", head.channel)
                lane.last = head.template
                lane.filtered = 1
            elif isinstance(head, Keep):
                frames.append(self.fmt.keep_frame(head))

    def _checked(self) -> bool:
        """Whether the pipelines check text (a ``Guard`` in them)."""
        if self._has_checks is None:
            made = self.pipeline_factory()
            self._has_checks = (made if isinstance(made, Pipeline) else Pipeline(made)).has_checks
        return self._has_checks

    def _end_filtered(self, lane: _Lane, frames: list[str]) -> None:
        """A blocked lane whose approved text is all out: its own events after that point
        are dropped, the format's filtered ending sent; events of no lane pass it."""
        lane.queue = deque(what for what in lane.queue if isinstance(what, _Global))
        lane.floating = []
        self._end_segment(lane, frames)
        lane.filtered = 2
        if lane.last is not None:
            frames.extend(self.fmt.filtered(lane.last).frames)

    def _text_frames(self, lane: _Lane, text: str, frames: list[str]) -> None:
        """The event for ``text``, the next output of the lane's segment. While the output
        is the input unchanged, the per-token data of each piece it completes goes with
        it; after a redaction, none does (it would spell out what was replaced)."""
        segment = lane.segment
        first = lane.pieces[0][1] if lane.pieces else lane.last
        assert first is not None
        extras: list[Any] = []
        if segment.same:
            if segment.unseen.startswith(text):
                segment.unseen = segment.unseen[len(text) :]
                end = segment.shown + len(text)
                while lane.pieces and lane.pieces[0][0] <= end:
                    _, piece = lane.pieces.popleft()
                    if piece.extra is not None:
                        extras.append(piece.extra)
            else:
                segment.same = False
                segment.unseen = ""
                while len(lane.pieces) > 1:
                    lane.pieces.popleft()
        segment.shown += len(text)
        frames.append(self.fmt.text_frame(first, text, extras))


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
    max_line: int = MAX_LINE,
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
            for lane in stage.lanes.values():
                pipelines += lane.metrics
                if lane.pipeline is not None and lane.pipeline.metrics not in lane.metrics:
                    pipelines.append(lane.pipeline.metrics)
