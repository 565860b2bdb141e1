"""Small async helpers the drivers share (``run``, ``hub``, ``server``): closing a source,
knowing the event loop, waking a future, starting a task nobody awaits.

Cost: O(1) each.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

import anyio

__all__ = ["aclose_source", "loop_clock", "on_asyncio", "spawn_detached", "wake", "woken"]


async def aclose_source(source: object) -> None:
    """Close an (async) iterator or generator the way its kind closes, if it can be closed
    (a ``close`` that returns an awaitable, as the ``openai`` and ``anthropic`` SDKs'
    ``AsyncStream`` has, is awaited)."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
    else:
        close = getattr(source, "close", None)
        if close is not None:
            result = close()
            if inspect.isawaitable(result):
                await result


def wake(future: asyncio.Future[None]) -> None:
    """Resolve ``future`` unless it already is."""
    if not future.done():
        future.set_result(None)


async def woken(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], delay: float | None) -> None:
    """Wait for ``future`` (resolved with ``wake``), or for ``delay`` seconds (``None``: no
    limit), whichever comes first: a loop's own timer, no task or cancel scope."""
    handle = None if delay is None else loop.call_later(delay, wake, future)
    try:
        await future
    finally:
        if handle is not None:
            handle.cancel()


def on_asyncio() -> bool:
    """Whether this runs inside a running asyncio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def loop_clock() -> Callable[[], float]:
    """``anyio.current_time``; on asyncio its loop's ``time`` itself (the same clock, read
    without finding the running backend and loop each call: 0.05 against 0.95 us)."""
    clock: Callable[[], float] = anyio.current_time
    with contextlib.suppress(RuntimeError):  # no asyncio loop running: anyio's
        clock = asyncio.get_running_loop().time
    return clock


def spawn_detached(fn: Any) -> None:
    """Start ``fn()`` as a task of the running loop (asyncio or trio) that nobody awaits."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        task = loop.create_task(fn())
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)
        return
    if "trio" in sys.modules:
        import trio

        trio.lowlevel.spawn_system_task(fn)
        return
    raise RuntimeError("pacer.arun needs a running asyncio or trio event loop")


_TASKS: set[asyncio.Task[None]] = set()  # strong references to detached asyncio tasks
