"""Drivers: run a pipeline over a sync or async source, waiting only for deadlines.

A driver pulls items from the source, stamps them with the clock, pushes them
through the pipeline and yields what comes out. It sleeps only until the
pipeline's next ``deadline``. What to do next (read, until when; sleep; stop reading
after a blocked check; done) is the one driver core's answer (``pacer._driver``): the
loops here do the reading, sleeping and yielding, on threads, asyncio or trio.
A pipeline with a time-driven stage on a real clock must hear about deadlines while
the source is silent. On asyncio an async source is read from the consumer's own
task until a deadline first interrupts a read; from then on a reader task of its own
reads it; otherwise the source is read by a helper
(a thread for sync sources, a detached task on trio). Helpers read through a buffer
of ``buffer`` items, so a slow consumer stops the source instead of piling items up.
A stream makes no reference cycles: all it allocates is freed by reference counting,
so a server may run with the cyclic garbage collector off (tested).
Every other pipeline reads its source directly, one item per output request.

A reader's controls (``pacer._control``: pause, resume, show all, rate) go to a run's
``control(action, cps)`` (or the ``Mailbox`` given as ``controls=``) and are applied at
its next decision: a wait for the source or a deadline is cut short for them (on asyncio
the source is then read by a reader task from the start), and while the source is over
and the rest is paused the run waits for the next control.

Closing the run (``close``/``aclose``, leaving a ``with`` block, ``break`` and
garbage collection, task cancellation) closes the source. A source that raises
has everything already produced delivered first; then the error propagates.

Cost: O(1) per item on top of the stages' own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar, Union

import anyio

from ._aio import aclose_source, on_asyncio, spawn_detached, wake, woken
from ._checks import PooledChecks
from ._control import Control, Mailbox
from ._core import Chunk, Pipeline, Stage, set_runner
from ._driver import DONE, POLL, READ, SLEEP, WAIT, Driver, as_pipeline
from ._metrics import StreamMetrics
from ._pacing import Pacer
from .clock import Clock, MonotonicClock

__all__ = ["AsyncRun", "SyncRun", "arun", "run"]

_log = logging.getLogger("pacer")

T = TypeVar("T", str, Chunk)

_ITEM, _END, _ERROR, _TIMEOUT, _WAKE = range(5)

#: How many source items a reader may get ahead of the consumer.
DEFAULT_BUFFER = 16


class _RunBase(Generic[T]):
    def __init__(
        self,
        stage: Stage,
        source: Any,
        *,
        clock: Clock | None,
        chunks: bool,
        buffer: int,
        controls: Mailbox | None = None,
    ) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must be >= 1, got {buffer}")
        if controls is not None and not isinstance(controls, Mailbox):
            raise TypeError(f"run: controls must be a pacer Mailbox, got {type(controls).__name__}")
        self.pipeline = as_pipeline(stage, "run")
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._source = source
        self._chunks = chunks
        self._buffer = buffer
        self._unshown: list[Chunk] = []
        #: Where the reader's controls wait for the run's next decision.
        self.controls = controls if controls is not None else Mailbox()
        self._interruptible = controls is not None
        if self.controls.report is None:  # the pipeline's, not the run's: no reference cycle
            self.controls.report = functools.partial(_report, self.pipeline)

    def control(self, action: str, cps: float | None = None) -> None:
        """A reader's control (``"pause"``, ``"resume"``, ``"show_all"``, ``"rate"`` with
        ``cps`` characters per second), applied at the run's next decision."""
        self.controls.send(Control(action, cps))

    @property
    def metrics(self) -> StreamMetrics:
        """The pipeline's per-stream metrics, live while the run goes on."""
        return self.pipeline.metrics

    def _threaded(self) -> bool:
        return self.pipeline.timed and not self.clock.virtual

    def _outputs(self, chunks: list[Chunk]) -> list[T]:
        out: Any = chunks if self._chunks else [c.text for c in chunks]
        return out  # type: ignore[no-any-return]


class SyncRun(_RunBase[T], Iterator[T]):
    """A pipeline applied to a sync iterable; iterate it, or use it as a context manager."""

    def __init__(
        self,
        stage: Stage,
        source: Iterable[Any],
        *,
        clock: Clock | None = None,
        chunks: bool = False,
        buffer: int = DEFAULT_BUFFER,
        controls: Mailbox | None = None,
    ) -> None:
        super().__init__(stage, source, clock=clock, chunks=chunks, buffer=buffer, controls=controls)
        if not isinstance(source, Iterable):
            raise TypeError(f"run: source must be iterable, got {type(source).__name__}")
        self._gen: Generator[T, None, None] = self._drive()

    def __iter__(self) -> Iterator[T]:
        return self._gen  # iterate the generator itself: one layer less per item

    def __next__(self) -> T:
        return next(self._gen)

    def __aiter__(self) -> AsyncIterator[T]:
        return AsyncRun(
            self.pipeline, self._source, clock=self.clock, chunks=self._chunks, buffer=self._buffer
        )

    def __enter__(self) -> SyncRun[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the run and close the source."""
        self._gen.close()

    def cancel(self) -> str:
        """Stop the run, close the source, and return the text not yet shown."""
        self._gen.close()
        return "".join(c.text for c in self._unshown)

    def _drive(self) -> Generator[T, None, None]:
        if not self.pipeline.timed and not self.pipeline.has_checks:
            return self._drive_untimed()
        return self._drive_timed()

    def _drive_untimed(self) -> Generator[T, None, None]:
        """No deadlines and no checks: read the source in this loop, one item at a time."""
        driver = Driver(self.pipeline)
        ingest, now = driver.feeder(), _now_of(self.clock)
        texts = not self._chunks
        source = iter(self._source)
        reading = False
        try:
            try:
                reading = True
                for item in source:
                    reading = False
                    for chunk in ingest(item, now()):
                        yield chunk.text if texts else chunk  # type: ignore[misc]
                    reading = True
            except Exception:
                if reading:  # the source failed: what the stages hold goes out first
                    yield from self._outputs(driver.fail(now()))
                raise
            for chunk in driver.end(now()):
                yield chunk.text if texts else chunk  # type: ignore[misc]
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
            self._unshown = driver.stop(now())

    def _drive_timed(self) -> Generator[T, None, None]:
        clock = self.clock
        puller = (
            _ThreadPuller(self._source, self._buffer) if self._threaded() else _DirectPuller(self._source)
        )
        checks = PooledChecks(clock.now)  # plain checks only: no event loop to run one in
        driver = Driver(self.pipeline, checks, POLL)
        mailbox = self.controls
        mailbox.waker = puller.interrupt
        try:
            while (need := driver.next(now := clock.now())) is not DONE:
                if mailbox.pending:
                    yield from self._outputs(_apply(driver, mailbox, clock.now()))
                    continue
                if need is READ:
                    until = driver.until
                    try:
                        kind, item = puller.get(None if until is None else max(0.0, until - now))
                    except Exception:
                        yield from self._outputs(driver.fail(clock.now()))
                        raise
                    if kind == _ITEM:
                        out = driver.read(item, clock.now(), until)
                    elif kind == _END:
                        out = driver.end(clock.now())
                    else:
                        out = driver.wake(clock.now())
                elif need is SLEEP:
                    until = driver.until
                    assert until is not None  # SLEEP says until when
                    if clock.virtual:
                        clock.sleep_until(until)
                    else:  # a control cuts the wait short, as it does a read's
                        puller.wait_control(max(0.0, until - now))
                    out = driver.wake(clock.now())
                elif need is WAIT:
                    puller.wait_control(None)
                    continue
                else:
                    out = driver.end(now)
                yield from self._outputs(out)
        finally:
            mailbox.waker = None
            puller.close()
            checks.close()
            self._unshown = driver.stop(clock.now())


def _report(pipeline: Pipeline) -> dict[str, object]:
    """A run's part of its state: its first pacer's rate, the characters sent so far."""
    pacers = [s for s in pipeline.stages if isinstance(s, Pacer)]
    return {"cps": pacers[0].rate if pacers else None, "shown_chars": pipeline.metrics.chars_out}


def _apply(driver: Driver, mailbox: Mailbox, now: float) -> list[Chunk]:
    """The controls waiting in ``mailbox``, applied in order: what they release."""
    out: list[Chunk] = []
    for control in mailbox.take():
        out.extend(driver.control(control, now))
    return out


class _DirectPuller:
    def __init__(self, source: Iterable[Any]) -> None:
        self._it = iter(source)
        self._control = threading.Event()  # a control came (from another thread)

    def interrupt(self) -> None:
        self._control.set()

    def wait_control(self, timeout: float | None) -> None:
        """After the source ended: wait for a control (from another thread), or at most
        ``timeout`` seconds (``None``: paused, no deadline)."""
        self._control.wait(timeout)
        self._control.clear()

    def get(self, timeout: float | None) -> tuple[int, Any]:
        try:
            return _ITEM, next(self._it)
        except StopIteration:
            return _END, None

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


class _ThreadPuller:
    """Reads a blocking iterable on a daemon thread into a bounded queue."""

    def __init__(self, source: Iterable[Any], maxsize: int) -> None:
        self._it = iter(source)
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="pacer-source", daemon=True)
        self._thread.start()

    def _put(self, message: tuple[int, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for item in self._it:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put((_ERROR, exc))
        finally:
            close = getattr(self._it, "close", None)
            if close is not None:
                close()

    def interrupt(self) -> None:
        """A control came: the consumer's wait ends (a full queue ends it anyway)."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait((_WAKE, None))

    def wait_control(self, timeout: float | None) -> None:
        """After the source ended (the reader thread is done): wait for a control, or at
        most ``timeout`` seconds (``None``: paused, no deadline)."""
        with contextlib.suppress(queue.Empty):
            self._queue.get(timeout=timeout)

    def get(self, timeout: float | None) -> tuple[int, Any]:
        try:
            kind, item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return _TIMEOUT, None
        if kind == _ERROR:
            raise item
        return kind, item

    def close(self) -> None:
        # A thread blocked inside the source's __next__ cannot be interrupted; it
        # sees the stop flag and closes the source as soon as that item returns.
        self._stop.set()


class AsyncRun(_RunBase[T], AsyncIterator[T]):
    """A pipeline applied to an async (or sync) iterable, on asyncio or trio.

    ``async with`` guarantees the source is closed when the block ends; plain
    ``async for`` closes it when the loop ends, or when the run is garbage
    collected after a ``break``.
    """

    def __init__(
        self,
        stage: Stage,
        source: AsyncIterable[Any] | Iterable[Any],
        *,
        clock: Clock | None = None,
        chunks: bool = False,
        buffer: int = DEFAULT_BUFFER,
        controls: Mailbox | None = None,
    ) -> None:
        super().__init__(stage, source, clock=clock, chunks=chunks, buffer=buffer, controls=controls)
        if not isinstance(source, (AsyncIterable, Iterable)):
            raise TypeError(f"arun: source must be an (async) iterable, got {type(source).__name__}")
        self._agen: Any = None
        self._reader: _Reader | None = None
        self._puller: _AsyncioPuller | None = None

    def __aiter__(self) -> AsyncIterator[T]:
        if self._agen is None:
            self._agen = self._drive()
        return self._agen  # type: ignore[no-any-return]  # one layer less per item

    async def __anext__(self) -> T:
        value: T = await self.__aiter__().__anext__()
        return value

    async def __aenter__(self) -> AsyncRun[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the run and close the source."""
        if self._agen is not None:
            await self._agen.aclose()
        else:
            await aclose_source(self._source)
        if self._reader is not None:
            self._reader.cancel()

    async def cancel(self) -> str:
        """Stop the run, close the source, and return the text not yet shown."""
        await self.aclose()
        return "".join(c.text for c in self._unshown)

    def __del__(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._puller is not None:
            self._puller.cancel()

    def _pull(self, source: Any) -> Any:
        """How this run reads its source: ``await pull(timeout)`` -> ``(kind, item)``."""
        if self._threaded() and isinstance(source, AsyncIterable) and on_asyncio():
            puller = self._puller = _AsyncioPuller(source, self._buffer, self._interruptible)
            return puller.get
        if self._threaded():
            reader = self._reader = _Reader(source, self._buffer)
            return reader.get
        return _direct_async_puller(source)

    def _interrupt(self, waiter: Waiter) -> Callable[[], None]:
        """What a control calls: the wait for the source (or for a control) ends."""

        def interrupt() -> None:
            waiter.set()
            if self._puller is not None:
                self._puller.interrupt()
            elif self._reader is not None:
                self._reader.interrupt()

        return interrupt

    def _drive(self) -> AsyncIterator[T]:
        p = self.pipeline
        if isinstance(self._source, AsyncIterable) and not p.timed and not p.has_checks:
            return self._drive_untimed()
        return self._drive_timed()

    async def _drive_untimed(self) -> AsyncIterator[T]:
        """An async source, no deadlines and no checks: read it in this loop, one item at a time."""
        driver = Driver(self.pipeline)
        ingest, now = driver.feeder(), _now_of(self.clock)
        texts = not self._chunks
        source = self._source
        reading = False
        try:
            try:
                reading = True
                async for item in source:
                    reading = False
                    for chunk in ingest(item, now()):
                        yield chunk.text if texts else chunk  # type: ignore[misc]
                    reading = True
            except Exception:
                if reading:  # the source failed: what the stages hold goes out first
                    for value in self._outputs(driver.fail(now())):
                        yield value
                raise
            for chunk in driver.end(now()):
                yield chunk.text if texts else chunk  # type: ignore[misc]
        finally:
            with anyio.CancelScope(shield=True):
                await aclose_source(source)
            self._unshown = driver.stop(now())

    async def _drive_timed(self) -> AsyncIterator[T]:
        clock = self.clock
        source = self._source
        checks = PooledChecks(clock.now, anyio.lowlevel.current_token())
        driver = Driver(self.pipeline, checks, POLL)
        mailbox = self.controls
        waiter = Waiter()
        mailbox.waker = self._interrupt(waiter)
        try:
            pull = self._pull(source)
            while (need := driver.next(now := clock.now())) is not DONE:
                if mailbox.pending:
                    for value in self._outputs(_apply(driver, mailbox, clock.now())):
                        yield value
                    continue
                if need is READ:
                    until = driver.until
                    try:
                        kind, item = await pull(None if until is None else max(0.0, until - now))
                    except Exception:
                        for value in self._outputs(driver.fail(clock.now())):
                            yield value
                        raise
                    if kind == _ITEM:
                        out = driver.read(item, clock.now(), until)
                    else:
                        out = driver.wake(clock.now()) if kind == _TIMEOUT else driver.end(clock.now())
                elif need is SLEEP:
                    await waiter.sleep_until(clock, driver.until)  # type: ignore[arg-type]
                    out = driver.wake(clock.now())
                elif need is WAIT:
                    await waiter.wait()
                    continue
                else:
                    out = driver.end(now)
                for value in self._outputs(out):
                    yield value
        finally:
            mailbox.waker = None
            if self._reader is not None:
                self._reader.cancel()
            else:
                with anyio.CancelScope(shield=True):
                    await (self._puller.aclose() if self._puller is not None else aclose_source(source))
            checks.close()  # the checks not started are dropped: nobody is left to show them to
            self._unshown = driver.stop(clock.now())


def _now_of(clock: Clock) -> Callable[[], float]:
    """The clock's ``now``; ``time.monotonic`` itself for the real clock (one call less per item)."""
    return time.monotonic if type(clock) is MonotonicClock else clock.now


class Waiter:
    """What an async run's sleep or pause waits on besides time: a control.

    On asyncio a wait is a future of the loop's, and a sleep adds a ``call_later``
    handle: about a tenth of what an anyio cancel scope and event cost per wait (1.6
    against 21 us on uvloop), and a paced stream sleeps once per emission. On any other
    loop (trio), an anyio event in a cancel scope."""

    __slots__ = ("_event", "_future", "_loop", "_poked")

    def __init__(self) -> None:
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._event = anyio.Event() if self._loop is None else None
        self._future: asyncio.Future[None] | None = None  # a wait in progress (asyncio)
        self._poked = False  # a control came (asyncio): the next wait returns at once

    def set(self) -> None:
        if self._event is not None:
            self._event.set()
            return
        self._poked = True
        if self._future is not None:
            wake(self._future)

    async def wait(self) -> None:
        if self._event is not None:
            await self._event.wait()
            self._event = anyio.Event()
            return
        if not self._poked:
            await self._await(None)
        self._poked = False

    async def sleep_until(self, clock: Clock, when: float) -> None:
        """``clock.asleep_until(when)``, cut short by a control."""
        event = self._event
        if (event is not None and event.is_set()) or self._poked:
            self._poked = False
            self._event = None if event is None else anyio.Event()
            return
        if clock.virtual:
            await clock.asleep_until(when)
            return
        delay = max(0.0, when - clock.now())
        if event is None:
            await self._await(delay)
            self._poked = False
            return
        with anyio.move_on_after(delay):
            await event.wait()
        if event.is_set():
            self._event = anyio.Event()

    async def _await(self, delay: float | None) -> None:
        """Wait (asyncio) for a control, or for ``delay`` seconds to pass."""
        assert self._loop is not None
        self._future = self._loop.create_future()
        try:
            await woken(self._loop, self._future, delay)
        finally:
            self._future = None


def _direct_async_puller(source: AsyncIterable[Any] | Iterable[Any]) -> Any:
    if isinstance(source, AsyncIterable):
        ait = source.__aiter__()

        async def pull_async(timeout: float | None) -> tuple[int, Any]:
            try:
                return _ITEM, await ait.__anext__()
            except StopAsyncIteration:
                return _END, None

        return pull_async
    it = iter(source)

    async def pull_sync(timeout: float | None) -> tuple[int, Any]:
        await anyio.lowlevel.checkpoint()
        try:
            return _ITEM, next(it)
        except StopIteration:
            return _END, None

    return pull_sync


class _Reader:
    """Reads a source in a detached task (asyncio task or trio system task).

    Detached so that no cancel scope or task group is left open across the
    consumer's ``yield``s; it is cancelled by ``cancel()`` and closes the source
    itself, in its own task.
    """

    def __init__(self, source: AsyncIterable[Any] | Iterable[Any], buffer: int) -> None:
        self._send, self._recv = anyio.create_memory_object_stream[tuple[int, Any]](buffer)
        self._scope = anyio.CancelScope()
        self._source = source
        self._waiting: anyio.CancelScope | None = None  # the consumer's wait for an item
        spawn_detached(self._work)

    def interrupt(self) -> None:
        """A control came: the consumer's wait for an item ends."""
        if self._waiting is not None:
            self._waiting.cancel()

    async def _work(self) -> None:
        with self._scope:
            try:
                async with self._send:
                    try:
                        if isinstance(self._source, AsyncIterable):
                            async for item in self._source:
                                await self._send.send((_ITEM, item))
                        else:
                            for item in self._source:
                                await self._send.send((_ITEM, item))
                        await self._send.send((_END, None))
                    except Exception as exc:  # handed to the consumer, re-raised there
                        await self._send.send((_ERROR, exc))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            finally:
                with anyio.CancelScope(shield=True):
                    try:
                        await aclose_source(self._source)
                    except Exception:  # the consumer may be gone: the log is all that is left
                        _log.exception("pacer: closing the source failed")

    async def get(self, timeout: float | None) -> tuple[int, Any]:
        timed_out = True
        with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
            self._waiting = scope
            message = await self._recv.receive()
            timed_out = False
        self._waiting = None
        if timed_out:
            return _TIMEOUT, None
        kind, item = message
        if kind == _ERROR:
            raise item
        return kind, item

    def cancel(self) -> None:
        self._scope.cancel()
        self._recv.close()


class _AsyncioPuller:
    """Reads an async source on asyncio, from the consumer's own task while it can.

    A read with no deadline is a plain ``await`` of the source: no helper task, no
    buffer, one event-loop step per item. The first read that a deadline interrupts
    hands the source to a reader task for the rest of the stream: it reads ahead at
    most ``buffer`` items (a slow consumer stops the source) and wakes the consumer
    with a future, which a ``call_later`` handle also wakes at the deadline. So each
    item costs the reader one step and the consumer one step, with no task made and
    none cancelled per item. This is what lets one loop carry thousands of paced
    streams.
    """

    def __init__(self, source: AsyncIterable[Any], buffer: int, interruptible: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        self._source = source
        self._ait = source.__aiter__()
        self._buffer = buffer
        self._reader: asyncio.Task[None] | None = None
        self._items: deque[tuple[int, Any]] = deque()  # read ahead by the reader, in order
        self._waiter: asyncio.Future[None] | None = None  # the consumer, waiting for an item
        self._space: asyncio.Future[None] | None = None  # the reader, waiting for room
        if interruptible:  # controls may come: never wait in the source itself, where none reaches
            self._reader = self._loop.create_task(self._read())

    def interrupt(self) -> None:
        """A control came: the consumer's wait for an item ends."""
        if self._waiter is not None:
            wake(self._waiter)

    async def get(self, timeout: float | None) -> tuple[int, Any]:
        if self._reader is None:
            if timeout is None:
                try:
                    return _ITEM, await self._ait.__anext__()
                except StopAsyncIteration:
                    return _END, None
            self._reader = self._loop.create_task(self._read())
        items = self._items
        if not items:
            if timeout is not None and timeout <= 0:
                await asyncio.sleep(0)  # a checkpoint, as every wait is
                if not items:
                    return _TIMEOUT, None
            else:
                self._waiter = self._loop.create_future()
                try:
                    await woken(self._loop, self._waiter, timeout)
                finally:
                    self._waiter = None
                if not items:
                    return _TIMEOUT, None
        kind, item = items.popleft()
        space = self._space
        if space is not None:
            wake(space)
        if kind == _ERROR:
            raise item
        return kind, item

    async def _read(self) -> None:
        items, ait = self._items, self._ait
        while True:
            try:
                entry: tuple[int, Any] = (_ITEM, await ait.__anext__())
            except StopAsyncIteration:
                entry = (_END, None)
            except Exception as exc:  # handed to the consumer, raised there
                entry = (_ERROR, exc)
            items.append(entry)
            waiter = self._waiter
            if waiter is not None:
                wake(waiter)
            if entry[0] != _ITEM:
                return
            if len(items) >= self._buffer:
                space = self._space = self._loop.create_future()
                try:
                    await space
                finally:
                    self._space = None

    def cancel(self) -> None:
        if self._reader is not None:
            self._reader.cancel()

    async def aclose(self) -> None:
        """Stop the reader, then close the source."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.wait([reader])
        await aclose_source(self._source)


SourceT = Union[Iterable[Any], AsyncIterable[Any]]  # noqa: UP007 (runtime alias on 3.10)


def run(
    stage: Stage,
    source: Iterable[Any],
    *,
    clock: Clock | None = None,
    chunks: bool = False,
    buffer: int = DEFAULT_BUFFER,
    controls: Mailbox | None = None,
) -> SyncRun[Any]:
    """Run ``stage`` over a sync iterable; yields ``str`` (or ``Chunk`` with ``chunks=True``).

    ``buffer`` is how many source items may wait for a slow consumer (time-driven
    pipelines only; others pull one item per output request). ``controls``: a ``Mailbox``
    another thread sends the reader's controls to (or call the run's ``control``).
    """
    return SyncRun(stage, source, clock=clock, chunks=chunks, buffer=buffer, controls=controls)


def arun(
    stage: Stage,
    source: SourceT,
    *,
    clock: Clock | None = None,
    chunks: bool = False,
    buffer: int = DEFAULT_BUFFER,
    controls: Mailbox | None = None,
) -> AsyncRun[Any]:
    """Run ``stage`` over an async (or sync) iterable; an async iterator of the output.
    ``controls``: a ``Mailbox`` the reader's controls come through (module docstring)."""
    return AsyncRun(stage, source, clock=clock, chunks=chunks, buffer=buffer, controls=controls)


def _over(stage: Stage, source: Any, options: dict[str, Any]) -> Any:
    """``stage(source, **options)``: ``arun`` for an async source, else ``run``."""
    if isinstance(source, AsyncIterable):
        return arun(stage, source, **options)
    return run(stage, source, **options)


set_runner(_over)  # what a stage called on a source runs with (pacer._core)
