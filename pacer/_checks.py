"""How drivers run a pipeline's checks (a ``Guard``'s): on virtual time for ``simulate``,
on worker threads for ``run``, as tasks for ``arun``.

A driver calls ``Pipeline.drive_checks()`` once, takes requests after every step
(``Pipeline.take_requests``), runs them, and hands each result back
(``Pipeline.answer``), the check's return value or the exception it raised. While
checks are in flight a live driver wakes every ``POLL`` seconds to collect them.

Cost: one call per check; the virtual-time driver keeps a heap of checks in flight.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import anyio

from ._core import Chunk, Pipeline

#: How often a live driver looks for finished checks while some are in flight (seconds).
POLL = 0.005

Latency = float | Callable[[Any], float]


def call_check(
    request: Any, sync_only: str = "this driver runs plain checks only; use arun for an async check"
) -> object:
    """Run one check here and now: its result, or the exception it raised (an async
    check, which cannot be awaited here, is a ``TypeError`` saying ``sync_only``)."""
    try:
        result = request.guard.call(request)
    except Exception as exc:
        return exc
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()
        return TypeError(sync_only)
    return result


async def acall_check(request: Any) -> object:
    """Run one check in an event loop (a plain one on a worker thread): result or exception."""
    guard = request.guard
    try:
        if inspect.iscoroutinefunction(guard.check):
            return await guard.call(request)  # type: ignore[no-any-return]
        result = await anyio.to_thread.run_sync(guard.call, request)
        if inspect.isawaitable(result):
            return await result
        return result
    except Exception as exc:
        return exc


def simulate_checked(
    trace: Iterable[tuple[float, Any]], p: Pipeline, latency: Latency
) -> tuple[list[tuple[float, Any]], list[Chunk]]:
    """``simulate`` for a pipeline with checks: each check answers ``latency`` seconds (a
    number, or a function of the request) after its unit is complete, on virtual time."""
    if callable(latency):
        delay = latency
    else:
        seconds = float(latency)

        def delay(request: Any) -> float:
            return seconds

    arrivals: list[tuple[float, Any]] = []
    emissions: list[Chunk] = []
    heap: list[tuple[float, int, int, Any, object]] = []  # (due, order, stage, request, result)
    order = itertools.count()
    p.drive_checks()

    def step(out: list[Chunk], now: float) -> None:
        emissions.extend(out)
        for index, request in p.take_requests(now):
            due = now + max(0.0, float(delay(request)))
            heapq.heappush(heap, (due, next(order), index, request, call_check(request)))

    def advance(until: float) -> None:
        """Deadlines and answers due by ``until``, in time order."""
        while True:
            d = p.deadline
            v = heap[0][0] if heap else math.inf
            if (d is None and not heap) or min(v, math.inf if d is None else d) > until:
                return
            if d is None or v <= d:
                due, _, index, request, result = heapq.heappop(heap)
                step(p.answer(index, request, result, due), due)
            else:
                step(p.poll(d), d)

    last = 0.0
    for t, item in trace:
        t = float(t)
        if t < last:
            raise ValueError(f"simulate: trace goes back in time ({t} < {last})")
        advance(t)
        if p.blocked is not None:
            break  # the driver stops the source
        step(p.ingest(item, t), t)
        arrivals.append((t, item))
        last = t
    step(p.finish(last), last)
    advance(math.inf)
    _ = p.blocked  # noted in the metrics, if a check blocked
    return arrivals, emissions


class NoChecks:
    """What a driver consults when its pipeline has no checks: nothing to do."""

    def timeout(self, timeout: float | None) -> float | None:
        return timeout

    def answered(self, out: list[Chunk], now: float) -> list[Chunk]:
        return out

    def stop(self) -> bool:
        return False

    def wake_at(self, deadline: float, now: float) -> float:
        return deadline

    def close(self) -> None:
        pass


NO_CHECKS = NoChecks()


class LiveChecks(NoChecks):
    """The checks a live driver has in flight: ``start`` hands new requests to ``spawn``
    (which calls ``finished`` from any thread or task), ``answered`` applies the answers.
    ``executor`` (for threads) is shut down by ``close``."""

    def __init__(
        self, p: Pipeline, spawn: Callable[[LiveChecks, int, Any], None], executor: Any = None
    ) -> None:
        self.p = p
        self.spawn = spawn
        self.executor = executor
        self.in_flight = 0
        self.done: deque[tuple[int, Any, object]] = deque()  # appended from threads: deque is safe

    def start(self, now: float) -> None:
        for index, request in self.p.take_requests(now):
            self.in_flight += 1
            self.spawn(self, index, request)

    def finished(self, index: int, request: Any, result: object) -> None:
        self.done.append((index, request, result))

    def answered(self, out: list[Chunk], now: float) -> list[Chunk]:
        """``out``, then what the checks that finished meanwhile release; new checks start."""
        while self.done:
            index, request, result = self.done.popleft()
            self.in_flight -= 1
            out = out + self.p.answer(index, request, result, now)
            _ = self.p.blocked  # noted in the metrics, if this answer blocked
        self.start(now)
        return out

    def stop(self) -> bool:
        """Whether a check blocked the stream (the driver stops reading the source)."""
        return self.p.blocked is not None

    def timeout(self, timeout: float | None) -> float | None:
        """``timeout``, shortened to ``POLL`` while checks are in flight."""
        if not self.in_flight:
            return timeout
        return POLL if timeout is None else min(timeout, POLL)

    def wake_at(self, deadline: float, now: float) -> float:
        """When a finishing driver wakes: at ``deadline``, or sooner to collect checks."""
        return deadline if not self.in_flight else min(deadline, now + POLL)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


def checks_for(p: Pipeline, threads: bool) -> NoChecks:
    """What a driver runs ``p``'s checks with: worker threads (``run``) or tasks (``arun``)."""
    if not p.drive_checks():
        return NO_CHECKS
    if threads:
        from concurrent.futures import ThreadPoolExecutor

        executor = ThreadPoolExecutor(8, "pacer-check")
        return LiveChecks(p, spawn_thread(executor), executor)
    return LiveChecks(p, spawn_task)


def spawn_thread(executor: Any) -> Callable[[LiveChecks, int, Any], None]:
    """Run each check on ``executor`` (a ``concurrent.futures`` executor)."""

    def spawn(checks: LiveChecks, index: int, request: Any) -> None:
        future = executor.submit(call_check, request)
        future.add_done_callback(lambda f: checks.finished(index, request, f.result()))

    return spawn


def spawn_task(checks: LiveChecks, index: int, request: Any) -> None:
    """Run a check as a detached task of the running loop (asyncio or trio)."""
    from ._aio import spawn_detached

    async def task() -> None:
        checks.finished(index, request, await acall_check(request))

    spawn_detached(task)
