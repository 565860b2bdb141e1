"""Drive ``EventPacer`` (``pacer._eventpacer``) over an API's live event stream.

``paced_event_frames`` paces the text inside an SSE byte stream of one API and keeps
every other event in its place (``PacedFrames``: the same frames, iterated, or pushed
from a ``Hub`` that paces every stream of a process); ``LiveLanes`` shows a running
stream's lanes.

Cost: O(1) per upstream event and per emitted frame beside ``EventPacer``'s work.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

from ._aio import aclose_source
from ._continue import Continuing
from ._control import Mailbox
from ._core import Chunk, Stage
from ._errors import typed_frame
from ._eventpacer import EventPacer
from ._hub import Hub
from ._metrics import StreamMetrics
from ._run import AsyncRun
from .adapters import asse_events
from .clock import Clock, MonotonicClock
from .config import MAX_LINE
from .formats import EventFormat, Keep, Text
from .sse import ServerSentEvent

__all__ = ["EventPacer", "LiveLanes", "PacedFrames", "paced_event_frames"]


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


class LiveLanes:
    """A view of a paced event stream's lanes while it runs (``paced_event_frames(live=)``):
    called, the metrics of each lane's pipeline so far, for figures read before the
    stream's end (a client that left, a shutdown); empty until the stream starts."""

    __slots__ = ("stage",)

    def __init__(self) -> None:
        self.stage: EventPacer | None = None

    def __call__(self) -> list[StreamMetrics]:
        return [] if self.stage is None else self.stage.metrics()


#: ``paced_event_frames``'s keyword options, which ``PacedFrames`` takes too.
_OPTIONS = frozenset({"clock", "max_line", "pipelines", "continuing", "controls", "live"})


class PacedFrames:
    """The frames of ``paced_event_frames``, made the way their consumer prefers.

    Iterated (an async iterator of frames), each frame is awaited: a run of its own per
    stream, which wakes a task for every frame it releases. Pushed (``push``), the
    stream is paced on a ``Hub`` with every other stream pushed on it, one timer for all,
    and each frame is handed to a plain callable the moment it is due (a stream log's
    ``append_now``): per frame, no task wakes but the one that writes it to a client.
    ``around`` (a callable giving an async context manager, such as
    ``pacer.failover.serving``) encloses the reading either way. The arguments are
    ``paced_event_frames``'s.
    """

    def __init__(
        self,
        data: AsyncIterable[bytes],
        fmt: EventFormat,
        pipeline_factory: Callable[[], Stage],
        *,
        around: Callable[[], AbstractAsyncContextManager[object]] | None = None,
        **options: Any,
    ) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise TypeError(f"PacedFrames: unknown option(s) {', '.join(sorted(unknown))}")
        self._args = (data, fmt, pipeline_factory)
        self._options = {"clock": None, "max_line": MAX_LINE, **options}
        self._around = around if around is not None else contextlib.nullcontext
        self._frames: AsyncGenerator[bytes, None] | None = None

    @property
    def pushable(self) -> bool:
        """Whether ``push`` may run it: on the real clock (a hub has no other)."""
        clock = self._options["clock"]
        return clock is None or type(clock) is MonotonicClock

    def __aiter__(self) -> PacedFrames:
        return self

    async def __anext__(self) -> bytes:
        if self._frames is None:
            self._frames = self._iterated()
        return await self._frames.__anext__()

    async def aclose(self) -> None:
        if self._frames is not None:
            await self._frames.aclose()

    async def _iterated(self) -> AsyncGenerator[bytes, None]:
        async with self._around():
            async for frame in paced_event_frames(*self._args, **self._options):
                yield frame

    async def push(self, hub: Hub, emit: Callable[[bytes], None]) -> None:
        """Pace the stream on ``hub`` (of this event loop), handing each frame to ``emit``
        when it is due; return when all have been handed over. Raises as iterating does,
        after the frames of everything before the error."""
        if self._frames is not None:
            raise RuntimeError("PacedFrames.push: the frames are being iterated already")
        data, fmt, pipeline_factory = self._args
        options = self._options
        pipelines, live, controls = options.get("pipelines"), options.get("live"), options.get("controls")
        stage = EventPacer(fmt, pipeline_factory)
        if live is not None:
            live.stage = stage
        if controls is not None:
            controls.report = stage.report

        def sink(chunks: list[Chunk]) -> None:
            for chunk in chunks:
                emit(typed_frame(chunk.text))

        try:
            async with self._around():
                events = _events(data, options["max_line"], options.get("continuing"))
                await hub.pump(stage, _pieces(events, fmt), sink, controls=controls)
        finally:
            if pipelines is not None:
                pipelines.extend(stage.metrics())


def _events(
    data: AsyncIterable[bytes], max_line: int, continuing: Continuing | None
) -> AsyncIterator[ServerSentEvent]:
    """The SSE events of ``data``, continued by ``continuing`` where it fails mid-answer."""
    limits = {"max_line": max_line, "max_event": 16 * max_line}
    events = asse_events(data, **limits)
    return events if continuing is None else continuing.events(events, **limits)


async def paced_event_frames(
    data: AsyncIterable[bytes],
    fmt: EventFormat,
    pipeline_factory: Callable[[], Stage],
    *,
    clock: Clock | None = None,
    max_line: int = MAX_LINE,
    pipelines: list[StreamMetrics] | None = None,
    continuing: Continuing | None = None,
    controls: Mailbox | None = None,
    live: LiveLanes | None = None,
) -> AsyncGenerator[bytes, None]:
    """Re-pace an SSE byte stream of ``fmt``'s API; yields SSE frames. ``controls``: where
    the reader's controls come in (``pacer._control.Mailbox``), applied to every lane.

    Raises what the upstream raised (``UpstreamError``, ``SSEError``, transport errors)
    after the frames of everything before it, the held text sent at once; with
    ``continuing``, an upstream that fails mid-answer is continued first
    (``pacer._continue``), the same pipelines paced on through the seam. The metrics of
    each lane's pipeline are appended to ``pipelines`` when the stream ends; ``live``
    shows them while it runs.
    """
    events = _events(data, max_line, continuing)
    stage = EventPacer(fmt, pipeline_factory)
    if live is not None:
        live.stage = stage
    run: AsyncRun[str] = AsyncRun(stage, _pieces(events, fmt), clock=clock, controls=controls)
    run.controls.report = stage.report
    try:
        async for text in run:
            yield typed_frame(text)
    finally:
        with anyio.CancelScope(shield=True):
            await run.aclose()
        if pipelines is not None:
            pipelines.extend(stage.metrics())
