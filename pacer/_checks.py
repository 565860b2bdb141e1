"""Where checks run: a bounded pool of their own, fair across streams (``CheckPool``).

A ``Guard`` hands out a check per unit, as soon as the unit is complete; a fast source
hands out hundreds at once. Run as they come on a shared pool (anyio's threads, in
arrival order), a few such streams would make every other stream's checks wait behind
theirs. Here each check runs on its guard's ``CheckPool`` (``Guard(pool=...)``; by
default one pool shared by the process): at most ``workers`` checks at once, at most
``per_stream`` of them from one stream, and a free worker takes the next check of the
next stream in turn (``FairQueue``, sans-I/O), so a stream waits for at most one check
of each other stream with checks queued, whatever their number. A check's timeout
counts from when a worker starts it (``CheckRequest.started``), not from when it was
queued. A stream that ends (its client has gone, a check blocked it) drops its queued
checks and asks for no more (``PoolStream.close``).

Async checks go through the pool too: left to run as tasks, hundreds at once, they
would queue as unfairly wherever they wait (a moderation service, an HTTP client's
connection pool) while their timeouts ran. A worker runs one in the stream's own event
loop (``anyio.from_thread``) and waits for it, so the bound and the turns are the same.

The run's side is ``PooledChecks``: the driver core (``pacer._driver.Driver``) calls it
as ``start(request, now, reply)`` for each new request; ``reply(request, result)``
hands back the check's return value or the exception it raised, from a worker thread.

Cost: O(1) per check to queue and to pick (plus a thread hop); memory: the checks
queued, at most one per unit a stream's guard holds.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio.from_thread

from ._args import whole
from .guard import call_check

__all__ = ["PER_STREAM", "WORKERS", "CheckPool", "FairQueue", "PoolStream", "PooledChecks", "shared_pool"]

#: Checks a pool runs at once, by default.
WORKERS = 32
#: Checks one stream has running at once, by default.
PER_STREAM = 4
#: Seconds an idle worker thread waits for a check before it ends.
IDLE = 10.0

log = logging.getLogger("pacer.guard")

#: How a result goes back to the driver: ``reply(request, result)``, from any thread.
Reply = Callable[[Any, object], object]


class _Turn:
    """One stream's place in a ``FairQueue``: its queued items and how many run."""

    __slots__ = ("closed", "queued", "running", "waiting")

    def __init__(self) -> None:
        self.queued: deque[Any] = deque()
        self.running = 0
        self.waiting = False  # in the queue's ring of streams whose turn comes
        self.closed = False


class FairQueue:
    """Which queued item runs next, sans I/O: round-robin between the streams with items
    queued, at most ``per_stream`` running from one stream and ``workers`` in all.

    ``add`` queues an item of a stream (a ``_Turn`` from ``stream()``), ``next`` picks
    the one to run now (or ``None``), ``done`` says one of a stream's finished, ``drop``
    forgets a stream's queued items and any it adds later. A stream waits for at most
    one item of each other stream before its own next one runs.
    """

    def __init__(self, workers: int, per_stream: int) -> None:
        self.workers = workers
        self.per_stream = per_stream
        self.running = 0
        # Streams with items queued and room to run one; a stream at its limit is left
        # out until one of its items is done.
        self._ring: deque[_Turn] = deque()
        self._queued: set[_Turn] = set()  # every stream with items queued, in the ring or not

    def stream(self) -> _Turn:
        return _Turn()

    @property
    def ready(self) -> bool:
        """Whether ``next`` may have an item to run now."""
        return bool(self._ring) and self.running < self.workers

    def add(self, turn: _Turn, item: Any) -> None:
        if turn.closed:
            return
        turn.queued.append(item)
        self._queued.add(turn)
        self._enlist(turn)

    def next(self) -> tuple[_Turn, Any] | None:
        if self.running >= self.workers:
            return None
        ring = self._ring
        while ring:
            turn = ring.popleft()
            turn.waiting = False
            if turn.closed or not turn.queued:
                continue
            turn.running += 1
            self.running += 1
            item = turn.queued.popleft()
            if not turn.queued:
                self._queued.discard(turn)
            self._enlist(turn)  # back at the end of the ring, if it has more
            return turn, item
        return None

    def done(self, turn: _Turn) -> None:
        turn.running -= 1
        self.running -= 1
        self._enlist(turn)

    def drop(self, turn: _Turn) -> list[Any]:
        """Forget ``turn``'s queued items (returned) and any it adds later."""
        turn.closed = True
        dropped = list(turn.queued)
        turn.queued.clear()
        self._queued.discard(turn)
        return dropped

    def clear(self) -> list[Any]:
        """Forget every stream's queued items (returned) and any they add later."""
        dropped = []
        for turn in list(self._queued):
            dropped += self.drop(turn)
        self._ring.clear()
        return dropped

    def _enlist(self, turn: _Turn) -> None:
        if not turn.waiting and not turn.closed and turn.queued and turn.running < self.per_stream:
            turn.waiting = True
            self._ring.append(turn)


class CheckPool:
    """Runs checks on ``workers`` threads of its own, at most ``per_stream`` at once from
    one stream, streams taking turns (see the module docstring). Threads start as checks
    need them and stay, idle, until ``close``. One pool serves any number of streams,
    runs and event loops; give it to each ``Guard`` that should use it
    (``Guard(check, pool=pool)``)."""

    def __init__(self, workers: int = WORKERS, *, per_stream: int = PER_STREAM) -> None:
        workers = whole(workers, "CheckPool: workers")
        per_stream = whole(per_stream, "CheckPool: per_stream")
        if workers < 1:
            raise ValueError(f"CheckPool: workers must be >= 1, got {workers}")
        if per_stream < 1:
            raise ValueError(f"CheckPool: per_stream must be >= 1, got {per_stream}")
        self._fair = FairQueue(workers, per_stream)
        self._lock = threading.Condition()
        self._threads = 0
        self._idle = 0
        self._closed = False

    @property
    def workers(self) -> int:
        return self._fair.workers

    @property
    def per_stream(self) -> int:
        return self._fair.per_stream

    def __repr__(self) -> str:
        return f"CheckPool(workers={self.workers}, per_stream={self.per_stream})"

    def stream(self, now: Callable[[], float] = time.monotonic, token: Any = None) -> PoolStream:
        """A stream's place in the pool: its checks are stamped with ``now()`` when they
        start; with ``token`` (``anyio.lowlevel.current_token()``) an async check runs in
        that event loop, without one it fails as a ``TypeError``."""
        with self._lock:
            return PoolStream(self, self._fair.stream(), now, token)

    def close(self) -> None:
        """Stop: each check not started, and any asked for later, fails at once (a
        ``RuntimeError``: the guard blocks it, or passes it with ``on_error="pass"``);
        the threads end once their check is done."""
        with self._lock:
            self._closed = True
            dropped = self._fair.clear()
            self._lock.notify_all()
        for request, reply, _ in dropped:
            reply(request, _closed_error())

    # -- internals (PoolStream's) -----------------------------------------------------

    def _add(self, turn: _Turn, item: tuple[Any, Reply, PoolStream]) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                self._fair.add(turn, item)
                self._wake()
        if closed:
            item[1](item[0], _closed_error())

    def _wake(self) -> None:
        """While a check can start: an idle thread takes it, or a new one while there is
        room (a thread that takes one wakes the next, so none is left waiting)."""
        if not self._fair.ready:
            return
        if self._idle:
            self._lock.notify()
        elif self._threads < self._fair.workers:
            self._threads += 1
            threading.Thread(target=self._work, name="pacer-check", daemon=True).start()

    def _drop(self, turn: _Turn) -> None:
        with self._lock:
            self._fair.drop(turn)

    def _work(self) -> None:
        while (picked := self._next()) is not None:
            turn, (request, reply, stream) = picked
            request.started = stream.now()  # its timeout runs from here
            result = _call(request, stream.token)
            with self._lock:
                self._fair.done(turn)
            try:
                reply(request, result)
            except Exception:  # a driver's reply only queues; nothing may end a worker
                log.exception("pacer: a check's result could not be handed back")

    def _next(self) -> tuple[_Turn, Any] | None:
        """The next check for this thread, waiting for one; ``None``: the thread ends
        (the pool is closed, or the thread was idle for ``IDLE`` seconds)."""
        with self._lock:
            idle = False
            while not self._closed:
                picked = self._fair.next()
                if picked is not None:
                    self._wake()  # more to run: another thread takes it
                    return picked
                if idle:
                    break
                self._idle += 1
                idle = not self._lock.wait(IDLE)
                self._idle -= 1
            self._threads -= 1
            return None


class PoolStream:
    """One stream's checks on a ``CheckPool``: ``start(request, now, reply)`` queues a
    check (the driver's ``Start``), ``close()`` drops those not started and ignores any
    more."""

    __slots__ = ("_pool", "_turn", "now", "token")

    def __init__(self, pool: CheckPool, turn: _Turn, now: Callable[[], float], token: Any) -> None:
        self._pool = pool
        self._turn = turn
        self.now = now
        self.token = token

    def start(self, request: Any, now: float, reply: Reply) -> None:
        self._pool._add(self._turn, (request, reply, self))

    def close(self) -> None:
        self._pool._drop(self._turn)


_shared: CheckPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> CheckPool:
    """The process's pool, for the guards given none (``WORKERS``, ``PER_STREAM``)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = CheckPool()
        return _shared


class PooledChecks:
    """A run's checks, each on its guard's pool (``shared_pool()`` for a guard with none),
    as one stream of that pool; ``close`` ends those streams. ``now``: the run's clock;
    ``token``: its event loop, for async checks (``None``: a sync run, plain checks only)."""

    def __init__(self, now: Callable[[], float], token: Any = None) -> None:
        self._now = now
        self._token = token
        self._streams: dict[CheckPool, PoolStream] | None = {}

    def __call__(self, request: Any, now: float, reply: Reply) -> None:
        streams = self._streams
        if streams is None:
            return  # the run is over: no more checks
        pool = getattr(request.guard, "pool", None) or shared_pool()
        stream = streams.get(pool)
        if stream is None:
            stream = streams[pool] = pool.stream(self._now, self._token)
        stream.start(request, now, reply)

    def close(self) -> None:
        streams, self._streams = self._streams, None
        for stream in (streams or {}).values():
            stream.close()


def _call(request: Any, token: Any) -> object:
    """Run one check on this worker thread (an async one in the loop ``token`` names,
    waiting for it): its result, or the exception it raised."""
    try:
        if token is None:
            return call_check(request)
        result = request.guard.call(request)
        if inspect.isawaitable(result):
            timeout = getattr(request.guard, "timeout", None)
            return anyio.from_thread.run(_awaited, result, timeout, token=token)
        return result
    except BaseException as exc:  # a worker outlives every check (and a loop that has gone)
        return exc


def _closed_error() -> RuntimeError:
    return RuntimeError("CheckPool: the pool is closed")


async def _awaited(awaitable: Any, timeout: float | None) -> object:
    """``awaitable``'s result; cancelled once its guard's ``timeout`` is over (the run has
    blocked its unit by then: nothing waits for the answer, so it should not run on)."""
    with anyio.fail_after(timeout):
        return await awaitable
