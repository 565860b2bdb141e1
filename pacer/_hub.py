"""Many paced streams on one event loop, one timer for all of them (asyncio and trio).

``arun`` gives each stream a consumer task that wakes for every output and a timer of
its own; with thousands of streams those wake-ups are most of the work. A ``Hub``
instead hands each stream's output to a *sink*, a plain callable (a transport's
``write``, a queue's ``put_nowait``, a TTS engine's ``push``), and keeps one timer,
at the earliest deadline of all its streams (``pacer.mux.Mux`` is the sans-I/O core).
A stream costs the task that reads its source and nothing else::

    hub = Hub()

    async def handle(request, transport):
        await hub.pump(Pacer(cps=40, unit="word"), model_stream(request), lambda chunks: transport.write(...))

``pump`` reads the source in the calling task, feeds the stream, and returns when
everything has gone to the sink. A source that raises has everything it produced
delivered at once, then the error propagates; a sink that raises stops its own
stream (the error propagates from that stream's ``pump``), never the others.
Cancelling the calling task (a client that went away) stops the source and drops
what was held. A reader's controls (``pump(controls=Mailbox())``: pause, resume, show
all, rate) apply as soon as they are sent, from any thread, and always before the next
source item. ``Hub(grid=g)`` wakes only on multiples of ``g`` seconds: the streams due
within one step go out at one wake-up, each at most a step late (one timer callback per
step at most, however many streams). ``ResumableStreams`` paces the proxy's streams on
a hub of its own, on the pacer's tick.

Cost: O(log n) per deadline change for n streams, one timer callback per distinct
earliest deadline, plus the pipelines' own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._aio import aclose_source, on_asyncio
from ._checks import PooledChecks
from ._control import Control, Mailbox
from ._core import Stage
from ._metrics import StreamMetrics
from .clock import Clock, MonotonicClock
from .mux import Mux, MuxStream, Sink

__all__ = ["Hub", "HubStream"]


async def _checkpointed(source: Iterable[Any]) -> AsyncGenerator[Any, None]:
    """A sync source's items, with a checkpoint before each, so other tasks run between them."""
    for item in source:
        await anyio.lowlevel.checkpoint()
        yield item


def _applier(stream: HubStream, controls: Mailbox) -> Callable[[], None]:
    """What applies the controls waiting in ``controls`` to ``stream``, in order (on the
    hub's loop: a control's ``send``, on any thread, has the loop call it soon)."""

    pending = controls.pending

    def apply() -> None:
        while pending and not stream.done:
            stream.control(pending.popleft())

    return apply


def _unbound(call: Callable[[], None]) -> None:
    raise RuntimeError("Hub: not bound to an event loop yet")


class HubStream:
    """A stream opened on a ``Hub`` whose source the caller reads: ``feed`` each item,
    then ``finish`` and ``await wait()``; or ``cancel`` to stop and get what was held."""

    def __init__(self, hub: Hub, stream: MuxStream, event: anyio.Event) -> None:
        self._hub = hub
        self._stream = stream
        self._event = event

    @property
    def metrics(self) -> StreamMetrics:
        return self._stream.metrics

    @property
    def done(self) -> bool:
        return self._stream.done

    @property
    def due(self) -> float | None:
        """While the sink takes output the hub's timer released: the deadline it was due
        at (the clock's now minus this is how late the wake-up came); ``None`` while the
        sink takes output an item released."""
        return self._stream.due

    def feed(self, item: object) -> None:
        """Push one source item; its output goes to the sink now."""
        hub = self._hub
        self._stream.feed(item, hub.clock.now())
        hub._arm()

    def finish(self) -> None:
        """End of input; the rest reaches the sink at its deadlines."""
        hub = self._hub
        self._stream.finish(hub.clock.now())
        hub._arm()

    def cancel(self) -> str:
        """Stop at once; return the text held and not given to the sink."""
        return "".join(c.text for c in self._stream.cancel(self._hub.clock.now()))

    def control(self, control: Control) -> None:
        """A reader's control (``pacer.Control``), applied now: what it releases goes to
        the sink now."""
        hub = self._hub
        self._stream.control(control, hub.clock.now())
        hub._arm()

    def answer(self, request: object, result: object) -> None:
        """A check's result: what it releases goes to the sink now."""
        hub = self._hub
        self._stream.answer(request, result, hub.clock.now())
        hub._arm()

    async def wait(self) -> None:
        """Wait until everything has gone to the sink; raise what the sink raised, if anything."""
        if not self._stream.done:
            await self._event.wait()
        if self._stream.error is not None:
            raise self._stream.error


class Hub:
    """Runs many pipelines, each into its sink, with one timer on the running event loop.

    One hub serves one event loop (asyncio or trio), the loop it is first used on.
    ``clock`` must be a real clock; virtual time is ``pacer.mux.Mux`` driven by hand
    (or ``simulate`` for one stream).
    """

    def __init__(self, *, clock: Clock | None = None, grid: float = 0.0) -> None:
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        if self.clock.virtual:
            raise ValueError("Hub needs a real clock; drive pacer.mux.Mux by hand for virtual time")
        if not (isinstance(grid, (int, float)) and 0.0 <= grid < math.inf):
            raise ValueError(f"Hub: grid must be a number of seconds >= 0, got {grid!r}")
        #: Wake-ups fall on multiples of this (seconds; 0: at each deadline): every stream due
        #: within one step goes out at one wake-up, each at most a step late.
        self.grid = float(grid)
        self.mux = Mux()
        self._armed_at = math.inf  # the earliest pending wake-up
        self._call_later: Any = None  # asyncio: the loop's call_later
        self._trio_scope: Any = None  # trio: the cancel scope the timer task sleeps in
        self._loop: object = None  # the event loop (trio: its root task) of the first open
        self._soon: Callable[[Callable[[], None]], object] = _unbound  # run on the loop, from any thread

    def __repr__(self) -> str:
        return f"Hub(streams={self.mux.streams})"

    def open(self, stage: Stage, sink: Sink) -> HubStream:
        """A stream into ``sink`` whose source the caller reads (see ``HubStream``); a
        ``Guard`` in ``stage`` checks inline."""
        return self._open(stage, sink, None)

    def _open(self, stage: Stage, sink: Sink, checks: PooledChecks | None) -> HubStream:
        """``open``; with ``checks``, a ``Guard``'s checks run on its pool, and each
        answer goes to the sink as it comes, in this event loop."""
        self._bind()
        event = anyio.Event()
        stream: HubStream | None = None
        token = anyio.lowlevel.current_token()

        def answered(request: Any, result: object) -> None:  # on a worker thread
            if stream is not None:
                with contextlib.suppress(RuntimeError):  # the loop has gone: nobody to answer
                    anyio.from_thread.run_sync(stream.answer, request, result, token=token)

        def start(request: Any, now: float, reply: Any) -> None:
            if checks is not None:
                checks(request, now, answered)

        inner = self.mux.open(stage, sink, on_done=event.set, checks=None if checks is None else start)
        stream = HubStream(self, inner, event)
        return stream

    async def pump(
        self,
        stage: Stage,
        source: AsyncIterable[Any] | Iterable[Any],
        sink: Sink,
        *,
        controls: Mailbox | None = None,
    ) -> StreamMetrics:
        """Run ``stage`` over ``source`` into ``sink``; return the stream's metrics when done.

        A sync ``source`` is read in this task and must not block. The checks of a
        ``Guard`` in ``stage`` run on its ``CheckPool`` (an async one in this event
        loop); a blocked stream stops reading its source, and a stream that ends drops
        its checks not yet started. ``controls``: the ``Mailbox`` a reader's controls
        come through (from any thread); each is applied on this loop as soon as it is
        sent, those already there first.
        """
        if not isinstance(source, (AsyncIterable, Iterable)):
            raise TypeError(f"Hub.pump: source must be an (async) iterable, got {type(source).__name__}")
        if controls is not None and not isinstance(controls, Mailbox):
            raise TypeError(f"Hub.pump: controls must be a pacer Mailbox, got {type(controls).__name__}")
        stream: HubStream | None = None
        wrapper: AsyncGenerator[Any, None] | None = None  # made for a sync source
        checks = PooledChecks(self.clock.now, anyio.lowlevel.current_token())
        try:
            if isinstance(source, AsyncIterable):
                items: AsyncIterator[Any] = source.__aiter__()
            else:
                items = wrapper = _checkpointed(source)
            stream = self._open(stage, sink, checks)
            apply = None
            if controls is not None:
                apply = _applier(stream, controls)
                controls.waker = functools.partial(self._call_soon, apply)
                apply()  # those sent before the stream opened
            await self._pump(stream, items, apply)
        finally:
            if controls is not None:
                controls.waker = None
            checks.close()  # checks answered too late: the guard has moved on
            if stream is not None and not stream.done:
                stream.cancel()  # cancelled: the client is gone; nobody to give it to
            with anyio.CancelScope(shield=True):
                if wrapper is not None:
                    await wrapper.aclose()
                await aclose_source(source)
        assert stream is not None  # opened, or the error was raised
        return stream.metrics

    async def _pump(
        self, stream: HubStream, items: AsyncIterator[Any], apply: Callable[[], None] | None
    ) -> None:
        """Read ``items`` into ``stream``; ``apply`` applies the controls sent, before each
        item and the end (a control sent before an item came is applied before it, even
        where the loop runs the item's task first)."""
        inner = stream._stream  # where poll puts what the sink raised
        driver = inner.driver
        while inner.error is None and driver.reading:
            try:
                item = await items.__anext__()
            except StopAsyncIteration:
                break
            except Exception:
                self._deliver_rest(stream, inner.sink)
                raise
            if inner.error is not None:
                break  # the sink failed at a deadline while the source was being read
            if apply is not None:
                apply()
            stream.feed(item)
        if inner.error is None:
            if apply is not None:
                apply()
            stream.finish()
        await stream.wait()

    def _call_soon(self, call: Callable[[], None]) -> None:
        """Have this hub's loop call ``call`` soon (from any thread)."""
        self._soon(call)

    def _deliver_rest(self, stream: HubStream, sink: Sink) -> None:
        rest = stream._stream.cancel(self.clock.now())
        if rest:
            sink(rest)  # everything produced goes out before the source's error

    # -- the one timer ------------------------------------------------------------------

    def _bind(self) -> None:
        if on_asyncio():
            loop: object = asyncio.get_running_loop()
        else:
            import trio  # anyio runs on asyncio or trio: not asyncio, so trio

            loop = trio.lowlevel.current_root_task()
        if self._loop is loop:
            return
        if self._loop is not None:
            raise RuntimeError("Hub: this hub belongs to another event loop; make one hub per loop")
        self._loop = loop
        if isinstance(loop, asyncio.AbstractEventLoop):
            self._call_later = loop.call_later
            self._soon = loop.call_soon_threadsafe
        else:
            self._soon = trio.lowlevel.current_trio_token().run_sync_soon
            trio.lowlevel.spawn_system_task(self._trio_timer)

    def _arm(self) -> None:
        """Make sure a wake-up is pending at or before the mux's deadline."""
        deadline = self.mux.deadline
        if deadline is None:
            return
        grid = self.grid
        if grid and deadline < math.inf:  # inf: paused, no wake-up
            due = math.ceil(deadline / grid) * grid
            deadline = due if due >= deadline else due + grid
        if deadline >= self._armed_at:
            return
        self._armed_at = deadline
        delay = max(0.0, deadline - self.clock.now())
        if self._call_later is not None:
            # A later wake-up still pending is left to fire and find nothing due:
            # cheaper than cancelling it, and the loop's handle is the only reference.
            self._call_later(delay, self._fire, deadline)
        elif self._trio_scope is not None:  # else the timer task, not started yet, reads _armed_at
            import trio

            self._trio_scope.deadline = trio.current_time() + delay

    def _fire(self, when: float) -> None:
        if when == self._armed_at:
            self._armed_at = math.inf
        elif when > self._armed_at:
            return  # superseded by an earlier wake-up, which polls for it
        self.mux.poll(self.clock.now())
        self._arm()

    async def _trio_timer(self) -> None:
        import trio

        while True:
            with trio.CancelScope() as scope:
                self._trio_scope = scope
                if self._armed_at < math.inf:  # armed before this scope existed
                    scope.deadline = trio.current_time() + max(0.0, self._armed_at - self.clock.now())
                await trio.sleep_forever()
            self._fire(self._armed_at)
