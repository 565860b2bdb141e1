"""Many pipelines behind one wake-up: the sans-I/O core of a server that paces many streams.

Each stream is a pipeline and a *sink*, a plain callable that takes the chunks the
pipeline emits. ``Mux.open`` makes a stream; ``stream.feed(item, now)`` pushes an
item into it and hands its output to the sink at once, and ``stream.finish(now)`` or
``stream.cancel(now)`` ends it (a ``HubStream`` has the same verbs and reads its
clock). ``Mux.deadline`` is the earliest deadline of all streams, and
``Mux.poll(now)`` polls every stream due by ``now`` and hands each its output. A
driver therefore keeps *one* timer for all streams instead of one per stream, and a
stream's output reaches its sink without a task of its own waking up: the cheapest
shape for thousands of streams whose sinks can take data synchronously (a transport's
``write``, a queue's ``put_nowait``, a TTS engine's ``push``). ``pacer.Hub`` is
that driver for asyncio and trio.

A stream's emissions are exactly those ``simulate`` gives for its pipeline and the
same arrivals (tested): each stream is the one driver core (``pacer._driver.Driver``)
around its pipeline, and the mux only decides *when* it is woken, at each deadline,
in deadline order.

Cost: O(log n) per deadline change (n: scheduled deadlines, at most a few per
stream), plus the pipelines' own work; memory O(n). A deadline that moves leaves its
old heap entry behind, skipped when it comes up.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from ._control import Control
from ._core import Chunk, Pipeline, StageClosedError
from ._driver import Driver, Start, as_pipeline
from ._metrics import StreamMetrics

__all__ = ["Mux", "MuxStream", "Sink"]

#: Where a stream's output goes: called with the chunks, in order, as they are emitted.
Sink = Callable[[list[Chunk]], Any]


class MuxStream:
    """One stream of a ``Mux``: its pipeline, its sink, and where it stands.

    ``error`` holds an exception the sink raised during ``Mux.poll`` (the stream was
    then cancelled, and the poll went on with the other streams). ``due``, while the sink
    takes output a deadline released, is that deadline (``None`` otherwise): how late the
    wake-up came is the clock's reading minus it.
    """

    __slots__ = (
        "_at",
        "_counted",
        "_mux",
        "_seq",
        "driver",
        "due",
        "error",
        "finished",
        "on_done",
        "pipeline",
        "sink",
    )

    def __init__(self, mux: Mux, driver: Driver, sink: Sink, on_done: Callable[[], Any] | None) -> None:
        # The mux until the stream is done: then dropped, so that no done stream and its
        # mux hold each other (the mux's heap may still hold the stream for a while).
        self._mux: Mux | None = mux
        self.driver = driver  # the one driver core: the mux decides only when it runs
        self.pipeline: Pipeline = driver.pipeline
        self.sink = sink
        self.on_done = on_done
        self.finished = False  # finish or cancel was called
        self.error: BaseException | None = None
        self._seq = -1  # the sequence number of this stream's live heap entry; -1: none
        self._at = 0.0  # the live entry's deadline
        self._counted = True  # still counted in Mux.streams
        # While the sink takes output a deadline released (in Mux.poll): that deadline, so
        # the sink can tell how late the wake-up came; None for output an item released.
        self.due: float | None = None

    @property
    def metrics(self) -> StreamMetrics:
        return self.pipeline.metrics

    def feed(self, item: object, now: float) -> None:
        """Push one source item into the stream; its output goes to the sink now."""
        if self.finished or self._mux is None:
            raise StageClosedError("MuxStream.feed: the stream has finished or was cancelled")
        self._mux._feed(self, item, now)

    def finish(self, now: float) -> None:
        """End of input; what is still held follows at its deadlines."""
        if not self.finished and self._mux is not None:
            self._mux._finish(self, now)

    def answer(self, request: object, result: object, now: float) -> None:
        """A check's result for the stream's pipeline (a ``Guard``); what it releases goes
        to the sink now."""
        if self._mux is not None:
            self._released(self.driver.answer(request, result, now))  # the last answer may end it

    def control(self, control: Control, now: float) -> None:
        """A reader's control (``pacer.Control``: pause, resume, show all, rate), applied
        now; what it releases goes to the sink now. A paused stream has no deadline
        until a control resumes it, and is not done while paused."""
        if self._mux is not None:
            self._released(self.driver.control(control, now))  # showing all may end it

    def _released(self, out: list[Chunk]) -> None:
        """``out``, released off the timer, goes to the sink; the stream is scheduled anew
        and counted done if that ended it."""
        mux = self._mux
        assert mux is not None
        mux._schedule(self)
        try:
            if out:
                self.sink(out)
        finally:
            mux._count_done(self)

    def cancel(self, now: float) -> list[Chunk]:
        """Stop at once and return what the stream held, *not* given to the sink."""
        mux = self._mux
        if mux is None:
            return []  # done: nothing held
        return mux._cancel(self, now)

    @property
    def done(self) -> bool:
        """True once input has ended and everything has gone to the sink (or was cancelled)."""
        return self.finished and self._seq < 0 and not (self._mux is not None and self.driver.waiting)

    def __repr__(self) -> str:
        state = "done" if self.done else "finishing" if self.finished else "open"
        return f"MuxStream({self.pipeline!r}, {state})"


class Mux:
    """Streams, each a pipeline with a sink, scheduled together on one clock.

    Time is an argument, as for every stage; ``deadline``/``poll`` is the same
    wake-up shape a single stage has. ``streams`` counts the streams not yet done.
    """

    def __init__(self) -> None:
        # (deadline, sequence number, stream); an entry is live while its number is
        # the stream's _seq. Numbers are unique, so streams are never compared.
        self._heap: list[tuple[float, int, MuxStream]] = []
        self._order = itertools.count()
        self._stale = 0
        self.streams = 0

    def __repr__(self) -> str:
        return f"Mux(streams={self.streams}, deadline={self.deadline!r})"

    def open(
        self, stage: object, sink: Sink, on_done: Callable[[], Any] | None = None, checks: Start | None = None
    ) -> MuxStream:
        """A new stream: ``stage`` (a ``Stage`` or ``Pipeline``, fresh) emitting into ``sink``.

        ``on_done`` is called once, when the stream is done (drained or cancelled).
        ``checks`` runs the checks of a ``Guard`` in it (``pacer._driver.Start``), and
        sets each request's ``started`` when its check begins (its timeout counts from
        then); their results come back through ``MuxStream.answer``. Without it a
        ``Guard`` checks inline.
        """
        if not callable(sink):
            raise TypeError(f"Mux.open: sink must be callable, got {type(sink).__name__}")
        p = as_pipeline(stage, "Mux.open")
        self.streams += 1
        return MuxStream(self, Driver(p, checks), sink, on_done)

    def _feed(self, stream: MuxStream, item: object, now: float) -> None:
        # Read before a due poll (its timer, or the loop, was late): that poll goes first.
        late = stream._seq >= 0 and stream._at < now
        out = stream.driver.late(item, now) if late else stream.driver.item(item, now)
        self._schedule(stream)
        if out:
            stream.sink(out)

    def _finish(self, stream: MuxStream, now: float) -> None:
        stream.finished = True
        out = stream.driver.end(now)
        self._schedule(stream)
        try:
            if out:
                stream.sink(out)
        finally:
            self._count_done(stream)  # after the sink: on_done means all has gone out

    def _cancel(self, stream: MuxStream, now: float) -> list[Chunk]:
        out = stream.driver.stop(now)
        stream.finished = True
        if stream._seq >= 0:
            stream._seq = -1
            self._stale += 1
        self._count_done(stream)
        return out

    @property
    def deadline(self) -> float | None:
        """The earliest time some stream must be polled, or ``None``."""
        heap = self._heap
        while heap and heap[0][2]._seq != heap[0][1]:
            heapq.heappop(heap)
            self._stale -= 1
        return heap[0][0] if heap else None

    def poll(self, now: float) -> int:
        """Poll every stream due by ``now``, in deadline order; return how many were polled.

        A sink that raises does not stop the others: its stream is cancelled and the
        exception kept in ``stream.error`` for the stream's owner to raise.
        """
        heap = self._heap
        polled = 0
        while heap and heap[0][0] <= now:
            at, seq, stream = heap[0]
            if stream._seq != seq:
                heapq.heappop(heap)
                self._stale -= 1
                continue
            polled += 1
            out = stream.driver.wake(now)  # touches no stream's schedule: the head stays this one
            deadline = stream.pipeline.deadline
            if deadline is None:
                heapq.heappop(heap)
                stream._seq = -1
            else:  # its next deadline takes the head's place: one sift instead of a pop and a push
                heapq.heapreplace(heap, self._entry(stream, deadline))
            if out:
                stream.due = at
                try:
                    stream.sink(out)
                except Exception as exc:  # one stream's sink must not stop every stream
                    stream.error = exc
                    self._cancel(stream, now)
                finally:
                    stream.due = None
            self._count_done(stream)
        return polled

    def _schedule(self, stream: MuxStream) -> None:
        deadline = stream.pipeline.deadline
        if stream._seq >= 0:
            # The live entry: keep it if the deadline has not moved.
            if stream._at == deadline:
                return
            stream._seq = -1
            self._stale += 1
        if deadline is None:
            return
        heapq.heappush(self._heap, self._entry(stream, deadline))
        if self._stale > 64 and self._stale > len(self._heap) // 2:
            self._heap = [e for e in self._heap if e[2]._seq == e[1]]
            heapq.heapify(self._heap)
            self._stale = 0

    def _entry(self, stream: MuxStream, deadline: float) -> tuple[float, int, MuxStream]:
        """A new live heap entry for ``stream``: the one its ``_seq`` names from now on."""
        seq = stream._seq = next(self._order)
        stream._at = deadline
        return deadline, seq, stream

    def _count_done(self, stream: MuxStream) -> None:
        if stream._counted and stream.done:
            stream._counted = False
            stream._mux = None
            stream.driver.release()
            self.streams -= 1
            if stream.on_done is not None:
                stream.on_done()
