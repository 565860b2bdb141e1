"""How a check runs, for the loops that hand checks out (a ``Guard``'s): here and now
(``call_check``: inline, and on virtual time), in an event loop (``acall_check``), on
worker threads (``ThreadChecks``, for ``run``), as detached tasks (``start_task``, for
``arun``).

The requests themselves belong to the driver core (``pacer._driver.Driver``): it calls
a loop's ``start(request, now, reply)`` for each new one, and ``reply(request,
result)`` hands the result back, the check's return value or the exception it raised.

Cost: one call (a thread hop, a task) per check.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import anyio

from ._aio import spawn_detached
from .guard import call_check

__all__ = ["ThreadChecks", "acall_check", "start_task"]

#: How a result goes back to the driver: ``reply(request, result)``, from any thread.
Reply = Callable[[Any, object], object]


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


class ThreadChecks:
    """Runs each check on a worker thread (up to 8 at once), made with the first check;
    ``close`` drops the checks not yet started."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    def __call__(self, request: Any, now: float, reply: Reply) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(8, "pacer-check")
        future = self._executor.submit(call_check, request)

        def done(f: Future[object]) -> None:
            reply(request, f.result())

        future.add_done_callback(done)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def start_task(request: Any, now: float, reply: Reply) -> None:
    """Run a check as a detached task of the running loop (asyncio or trio)."""

    async def task() -> None:
        reply(request, await acall_check(request))

    spawn_detached(task)
