"""Pace the text inside an API's event stream, and keep every other event in its place.

An ``EventFormat`` (one per stream, ``pacer.formats`` has those of the common APIs) splits
each upstream event into *pieces*: ``Text``, a text delta of one *lane* (a choice of an
``n > 1`` request; a Responses or Messages stream has one lane) and one *kind* (the
field it fills: content, reasoning, a tool call's arguments, ...), and ``Keep``, any
other event (a role, a finish reason, usage, a ping), kept as it came. ``EventPacer``
is the stage that paces them: each lane's text runs through a pipeline of its own (so
every choice is paced), and comes back as the format's own text events; each kept
event goes out exactly where it stood, after all text before it in its lane (in every
lane, for an event of no lane such as the usage chunk) and before any text after it.

Checks may replace text by text of any length, so no place is ever counted in the
upstream's characters. A pipeline is split after its last checking stage (a
``Guard``): the *checks* run per *segment*, a run of one kind of text between kept
events, each segment through checking stages of its own, one segment at a time (so a
check sees each field's text whole, never one field's end with the next's start);
the stages after (a ``Pacer``) run once per lane, fed the checked text of each
segment in turn, so the pace flows on across fields and events. A kept event is
placed at the count of checked characters before it, and goes out when the lane has
shown that many (pacing stages keep the text as it is). A ``floating`` event (a ping)
waits for the end of its segment rather than cut it in two.

A text event groups the paced text shown at one instant by segment: text of one kind,
on the fields of the upstream event it came from; the per-token data of an upstream
event (its logprobs) goes with the event that completes its text while the segment's
checked text is its input unchanged, so each field's concatenation on the client
equals the upstream's. Once a check has replaced text in a segment, its per-token data
is no longer sent (the lists are empty): it would spell out what was replaced.
``pacer._events`` drives it over an SSE byte stream. Compiled where the build allows
(``setup.py``): it runs for every frame of every paced stream.

Cost: O(1) amortised per piece and per emitted chunk, plus the pipelines' own work;
memory: the text fed and not yet shown, and the pieces and kept events waiting behind
the segment being checked.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Final

from ._control import Control, Flow
from ._core import CheckingStage, Chunk, Pipeline, Stage, closed_error
from ._metrics import StreamMetrics
from ._text import join_pairs
from .formats import EventFormat, Keep, Text, Unchecked

__all__ = ["EventPacer"]

log = logging.getLogger("pacer.events")

#: The high surrogates (mypyc takes no surrogate in a literal).
_HIGH_FIRST: Final = chr(0xD800)
_HIGH_LAST: Final = chr(0xDBFF)


class _Global:
    """A kept event of no lane, waiting for every lane to reach it."""

    __slots__ = ("keep",)

    def __init__(self, keep: Keep) -> None:
        self.keep = keep


class _Span:
    """One segment's checked text on its way through the lane's pacing stages: where it
    ends, and whether it is still its input unchanged (then its pieces' per-token data
    goes with the text that completes them)."""

    __slots__ = ("closed", "end", "fed", "last", "pieces", "same", "shown")

    def __init__(self, start: int) -> None:
        self.end = start  # the lane's checked-character count at its end, so far
        self.closed = False  # the segment has ended: ``end`` is final
        self.fed = 0  # characters of input
        self.shown = 0  # characters sent as text events
        self.pieces: deque[tuple[int, Text]] = deque()  # (end in the input, piece), not wholly shown
        self.last: Text | None = None  # the last piece (the template once the text changed)
        self.same = True  # what was shown so far is the input unchanged

    def add(self, piece: Text) -> None:
        self.fed += len(piece.text)
        self.last = piece
        if self.same:
            self.pieces.append((self.fed, piece))

    def shows(self, text: str) -> tuple[Text, list[Any]]:
        """The template of the event that shows ``text`` next, and the per-token data it completes."""
        extras: list[Any] = []
        first = self.pieces[0][1] if self.pieces else self.last
        assert first is not None
        if self.same and self._is_input(text):
            self.shown += len(text)
            while self.pieces and self.pieces[0][0] <= self.shown:
                extra = self.pieces.popleft()[1].extra
                if extra is not None:
                    extras.append(extra)
        elif self.same:
            self.same = False
            self.pieces.clear()
        return first, extras

    def _is_input(self, text: str) -> bool:
        """Whether ``text`` is the input from ``shown`` on (in O(len(text) + pieces it spans))."""
        at, i = self.shown, 0
        for end, piece in self.pieces:
            if i == len(text):
                return True
            start = end - len(piece.text)
            take = min(end - at, len(text) - i)
            if piece.text[at - start : at - start + take] != text[i : i + take]:
                return False
            at, i = at + take, i + take
        return i == len(text)


class _Sent:
    """A lane's output side: the checked text given to its tail, the tail's output not yet
    sent, and the kept events anchored in it."""

    __slots__ = ("anchors", "fed", "out", "shown", "spans")

    def __init__(self) -> None:
        self.fed = 0  # checked characters given to the tail
        self.shown = 0  # characters sent as text events
        self.out = ""  # the tail's output not yet sent (a kept event waits before it)
        self.spans: deque[_Span] = deque()  # the segments whose text is not all shown
        # (checked offset, what): kept events that go out once the text before them is shown.
        self.anchors: deque[tuple[int, Keep | _Global]] = deque()


class _Lane:
    """One lane: the segment being checked, the pacing stages, and what waits."""

    __slots__ = ("filtered", "floating", "high", "kind", "last", "pipeline", "queue", "sent", "tail")

    def __init__(self, globals_waiting: deque[_Global], tail: Pipeline | None) -> None:
        self.pipeline: Pipeline | None = None  # the checking stages of the segment (or the last one)
        self.tail = tail  # the stages after the checks (a Pacer), the lane's own
        self.kind: Hashable | None = None  # the open segment's kind; None: none open
        # Pieces, kept events and events of no lane after the open segment, in order.
        self.queue: deque[Text | Keep | _Global] = deque(globals_waiting)
        self.floating: list[Keep] = []  # events that go out after the open segment (a ping)
        self.sent = _Sent()  # what the tail produced, and how much of it went out
        self.high: Text | None = None  # a piece ending in a high surrogate, held for its pair
        self.last: Text | None = None  # the last text piece (the template of a filtered ending)
        # A check blocked the lane: 1 while its approved text drains, 2 once it has ended.
        self.filtered = 0


class EventPacer(CheckingStage):
    """The stage that paces an API's event stream: pieces in, SSE frames (``str``) out.

    ``pipeline_factory()`` makes the pipeline (a ``Pacer``, ``Guard(check) | Pacer()``,
    ...): its checking stages are made anew for each segment, the stages after them
    once per lane (see the module docstring). Takes the ``Text`` and ``Keep`` pieces of
    ``fmt.parse``; emits chunks whose text is one SSE frame each.
    """

    timed = True

    def __init__(self, fmt: EventFormat, pipeline_factory: Callable[[], Stage]) -> None:
        super().__init__()
        self.fmt = fmt
        self.pipeline_factory = pipeline_factory
        self.lanes: dict[int, _Lane] = {}
        self.waiting: deque[_Global] = deque()  # kept events of no lane, in order
        self.ended = False  # the stream's own end event came
        self.cancelling = False  # cancel: every stage sends what it holds at once
        self.checked: bool | None = None  # whether the pipelines check text (known at the first lane)
        self._asked: dict[int, _Lane] = {}  # id(request) -> its lane
        self.flow = Flow()  # the reader's controls so far: a lane opened later starts so

    def metrics(self) -> list[StreamMetrics]:
        """The metrics of each lane's pipeline so far (its pacing stages' where they are
        its own), live while the stream runs."""
        found = []
        for lane in self.lanes.values():
            p = lane.tail if lane.tail is not None else lane.pipeline
            if p is not None:
                found.append(p.metrics)
        return found

    # -- stage protocol --------------------------------------------------------------

    def ingest(self, item: object, now: float) -> list[Chunk]:
        if self.input_ended:
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
            t = lane.tail
            if t is not None and (d := t.deadline) is not None and d <= now:
                lane.sent.out += "".join(c.text for c in t.poll(now))
        return self._release(now)

    def finish(self, now: float) -> list[Chunk]:
        self.end_input()
        for lane in self.lanes.values():
            self._feed_held(lane)
        if self.blocked is not None and not self.ended:
            for closing in self.fmt.closing().frames:  # after every lane's ending
                self._keep(Keep(None, closing, blocked=True))
        return self._release(now)

    def control(self, control: Control, now: float) -> list[Chunk]:
        """A reader's control, for every lane's pacing stages (and those of lanes to come)."""
        self.flow.apply(control)
        for lane in self.lanes.values():
            if lane.tail is not None:
                lane.sent.out += "".join(c.text for c in lane.tail.control(control, now))
        return self._release(now)

    def report(self) -> dict[str, object]:
        """The stream's pace (the first lane's first ``Pacer``'s rate, ``None`` before any
        lane or without one) and the text characters sent so far, in every lane."""
        cps: float | None = None
        for lane in self.lanes.values():
            rates = [getattr(s, "rate", None) for s in lane.tail.stages] if lane.tail is not None else []
            cps = next((r for r in rates if isinstance(r, float)), None)
            break
        return {"cps": cps, "shown_chars": sum(lane.sent.shown for lane in self.lanes.values())}

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
    def awaiting(self) -> bool:
        """Whether a lane's check still waits for its answer."""
        return any(
            lane.pipeline is not None and not lane.filtered and lane.pipeline.awaiting
            for lane in self.lanes.values()
        )

    @property
    def blocked(self) -> Any:
        """The first lane's ``Blocked`` once checks have blocked every lane, else ``None``."""
        lanes = [lane for lane in self.lanes.values() if lane.pipeline is not None]
        if not lanes or not all(lane.filtered for lane in lanes):
            return None
        return lanes[0].pipeline.blocked  # type: ignore[union-attr]

    def _out(self, lane: _Lane, chunks: list[Chunk], now: float) -> None:
        """The checking stages' output goes on to the tail; a lane a check has just
        blocked drains what was approved."""
        for chunk in chunks:
            self._checked_text(lane, chunk, now)
        p = lane.pipeline
        if not lane.filtered and p is not None and p.blocked is not None:
            lane.filtered = 1
            if not p.input_ended:
                for chunk in p.finish(now):
                    self._checked_text(lane, chunk, now)
            if lane.tail is not None:
                lane.tail.metrics.blocked = p.metrics.blocked
            self._finish_tail(lane, now)

    def cancel(self, now: float) -> list[Chunk]:
        out = [] if self.input_ended else self.finish(now)
        self.end_input(cancelled=True)
        self.cancelling = True
        for lane in self.lanes.values():
            p = lane.pipeline
            if p is not None and not p.done:
                self._out(lane, p.cancel(now), now)
            if lane.filtered:
                self._finish_tail(lane, now)
        return out + self._release(now)

    @property
    def deadline(self) -> float | None:
        best: float | None = None
        for lane in self.lanes.values():
            for p in (lane.pipeline, lane.tail):
                if p is not None and (d := p.deadline) is not None and (best is None or d < best):
                    best = d
        return best

    # -- internals: taking pieces in -------------------------------------------------

    def _split(self) -> tuple[Pipeline | None, Pipeline | None]:
        """A fresh pipeline from the factory, as its checking stages and the stages after."""
        made = self.pipeline_factory()
        stages = made.stages if isinstance(made, Pipeline) else [made]
        workers = [
            i
            for i, stage in enumerate(stages)
            if isinstance(stage, CheckingStage) or (isinstance(stage, Pipeline) and stage.has_checks)
        ]
        cut = workers[-1] + 1 if workers else 0
        self.checked = bool(workers)
        checks = Pipeline(*stages[:cut]) if cut else None
        return checks, (Pipeline(*stages[cut:]) if stages[cut:] else None)

    def _lane(self, index: int) -> _Lane:
        lane = self.lanes.get(index)
        if lane is None:
            lane = self.lanes[index] = _Lane(self.waiting, self._split()[1])
            if lane.tail is not None:
                for control in self.flow.replay():
                    lane.tail.control(control, 0.0)  # nothing held yet: nothing released
        return lane

    def _text(self, lane: _Lane, piece: Text) -> None:
        if lane.high is not None:
            held, lane.high = lane.high, None
            if held.kind == piece.kind:
                text = join_pairs(held.text + piece.text)
                piece = Text(piece.lane, piece.kind, text, piece.template, piece.extra)
            else:
                self._queue(lane, held)
        if piece.text and _HIGH_FIRST <= piece.text[-1] <= _HIGH_LAST:
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

    # -- internals: checking, one segment at a time ----------------------------------

    def _check(self, lane: _Lane, now: float) -> None:
        """Take what waits in the lane's queue as far as the segment being checked allows:
        text into the segment, kept events placed after the text checked before them."""
        queue = lane.queue
        while True:
            if lane.filtered:
                self._anchor_the_rest(lane)
                return
            if lane.kind is not None:  # a segment is open
                if not self._step_segment(lane, now):
                    return
                continue
            if not queue:
                if self.input_ended:
                    self._finish_tail(lane, now)
                return
            head = queue.popleft()
            if isinstance(head, Text):
                self._open(lane, head.kind)
                self._feed(lane, head, now)
            elif isinstance(head, Unchecked) and self.checked:
                self._refuse(lane, head, now)
            else:
                lane.sent.anchors.append((lane.sent.fed, head))

    def _anchor_the_rest(self, lane: _Lane) -> None:
        """A blocked lane: only the events of no lane still go out, after what was shown."""
        at = lane.sent.shown if lane.filtered == 2 else lane.sent.fed
        queue = lane.queue
        while queue:
            what = queue.popleft()
            if isinstance(what, _Global):
                lane.sent.anchors.append((at, what))

    def _step_segment(self, lane: _Lane, now: float) -> bool:
        """One step of the open segment; ``False`` when it must wait (its checks, or more text)."""
        queue, p = lane.queue, lane.pipeline
        if lane.sent.spans[-1].closed:
            if p is not None and not p.done:
                return False  # its checks are still running
            self._end_segment(lane)
            return True
        head = queue[0] if queue else None
        if isinstance(head, Text) and head.kind == lane.kind:
            self._feed(lane, queue.popleft(), now)  # type: ignore[arg-type]
        elif isinstance(head, Keep) and head.floating:
            lane.floating.append(queue.popleft())  # type: ignore[arg-type]
        elif head is not None or self.input_ended:
            lane.sent.spans[-1].closed = True
            if p is not None and not p.input_ended:
                self._out(lane, p.cancel(now) if self.cancelling else p.finish(now), now)
        else:
            return False  # more of the segment may come
        return True

    def _refuse(self, lane: _Lane, head: Unchecked, now: float) -> None:
        """Text in a channel no check can see, with checks on: the lane ends as blocked."""
        reason = f"{head.channel} carries text no check can see"
        log.warning("pacer: %s: its lane ends as blocked", reason)
        if lane.tail is not None:
            lane.tail.metrics.blocked = reason
        lane.last = head.template
        lane.filtered = 1
        self._finish_tail(lane, now)

    def _open(self, lane: _Lane, kind: Hashable) -> None:
        if self.checked:
            lane.pipeline = self._split()[0]
            if self.driven and lane.pipeline is not None:
                lane.pipeline.drive_checks()
        lane.kind = kind
        lane.sent.spans.append(_Span(lane.sent.fed))

    def _feed(self, lane: _Lane, piece: Text, now: float) -> None:
        lane.sent.spans[-1].add(piece)
        lane.last = piece
        if lane.pipeline is None or not self.checked:
            self._checked_text(lane, Chunk(piece.text, now), now)
        else:
            self._out(lane, lane.pipeline.ingest(Chunk(piece.text, now), now), now)

    def _end_segment(self, lane: _Lane) -> None:
        lane.kind = None
        lane.sent.anchors.extend((lane.sent.fed, keep) for keep in lane.floating)
        lane.floating = []

    def _checked_text(self, lane: _Lane, chunk: Chunk, now: float) -> None:
        """Checked text of the open segment, on to the lane's pacing stages."""
        if not chunk.text:
            return
        lane.sent.fed += len(chunk.text)
        lane.sent.spans[-1].end = lane.sent.fed
        if lane.tail is None:
            lane.sent.out += chunk.text
        else:
            passed = Chunk(chunk.text, chunk.arrival, chunk.boundary)
            lane.sent.out += "".join(c.text for c in lane.tail.ingest(passed, now))

    def _finish_tail(self, lane: _Lane, now: float) -> None:
        t = lane.tail
        if t is None:
            return
        if self.cancelling:
            if not t.cancelled:
                lane.sent.out += "".join(c.text for c in t.cancel(now))
        elif not t.input_ended:
            lane.sent.out += "".join(c.text for c in t.finish(now))

    # -- internals: what goes out ----------------------------------------------------

    def _release(self, now: float) -> list[Chunk]:
        frames: list[str] = []
        while True:
            for lane in self.lanes.values():
                self._check(lane, now)
                self._release_lane(lane, frames)
            if not self.waiting or not self._reached(self.waiting[0]):
                break
            waiting = self.waiting.popleft()
            for lane in self.lanes.values():
                lane.sent.anchors.popleft()
            frames.append(self.fmt.sent_frame(waiting.keep))
        return [Chunk(f, now) for f in frames]

    def _reached(self, waiting: _Global) -> bool:
        """Whether every lane has shown all its text before ``waiting``."""
        for lane in self.lanes.values():
            if not lane.sent.anchors:
                return False
            at, what = lane.sent.anchors[0]
            if what is not waiting or lane.sent.shown != at or lane.filtered == 1:
                return False
        return True

    def _release_lane(self, lane: _Lane, frames: list[str]) -> None:
        fmt = self.fmt
        while True:
            limit = -1
            if lane.sent.anchors:
                at, what = lane.sent.anchors[0]
                if lane.sent.shown == at:
                    if isinstance(what, _Global):
                        if lane.filtered == 1:
                            self._end_filtered(lane, frames)  # a blocked lane's ending goes first
                        return  # waits for the other lanes
                    lane.sent.anchors.popleft()
                    frames.append(fmt.sent_frame(what))
                    continue
                limit = at
            n = len(lane.sent.out) if limit < 0 else min(len(lane.sent.out), limit - lane.sent.shown)
            if n <= 0:
                if lane.filtered == 1:
                    self._end_filtered(lane, frames)
                return
            text, lane.sent.out = lane.sent.out[:n], lane.sent.out[n:]
            self._text_frames(lane, text, frames)

    def _end_filtered(self, lane: _Lane, frames: list[str]) -> None:
        """A blocked lane whose approved text is all out: its own events after that point
        are dropped, the format's filtered ending sent; events of no lane pass it."""
        p, t = lane.pipeline, lane.tail
        if (p is not None and not p.done) or (t is not None and not t.done) or lane.sent.out:
            return
        sent = lane.sent
        sent.anchors = deque((sent.shown, what) for _, what in sent.anchors if isinstance(what, _Global))
        lane.sent.spans.clear()
        lane.kind = None
        lane.floating = []
        lane.filtered = 2
        if lane.last is not None:
            frames.extend(self.fmt.filtered(lane.last).texts())

    def _text_frames(self, lane: _Lane, text: str, frames: list[str]) -> None:
        """Frames for ``text``, the next characters the lane shows: one per segment."""
        at, i = lane.sent.shown, 0
        while i < len(text):
            while len(lane.sent.spans) > 1 and lane.sent.spans[0].end <= at + i:
                lane.sent.spans.popleft()
            span = lane.sent.spans[0]
            take = len(text) - i if len(lane.sent.spans) == 1 else min(len(text) - i, span.end - at - i)
            part = text[i : i + take]
            first, extras = span.shows(part)
            frames.append(self.fmt.text_frame(first, part, extras))
            i += take
        lane.sent.shown = at + len(text)
