"""Where time comes from: the real monotonic clock, or a virtual one for tests.

Stages never read a clock; drivers do, and pass ``now`` in. A ``VirtualClock``
makes a whole run deterministic and instant: sleeping just moves its time forward.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel

__all__ = ["Clock", "MonotonicClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything that tells the time in seconds and can wait until a time."""

    def now(self) -> float: ...

    def sleep_until(self, when: float) -> None: ...

    async def asleep_until(self, when: float) -> None: ...

    @property
    def virtual(self) -> bool: ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` seconds."""

    virtual = False

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, when: float) -> None:
        delay = when - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    async def asleep_until(self, when: float) -> None:
        await anyio.sleep(max(0.0, when - time.monotonic()))


class VirtualClock:
    """A clock that only moves when someone sleeps or calls ``advance``."""

    virtual = True

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError(f"VirtualClock.advance: seconds must be >= 0, got {seconds}")
        self._now += seconds

    def sleep_until(self, when: float) -> None:
        if when > self._now:
            self._now = when

    async def asleep_until(self, when: float) -> None:
        self.sleep_until(when)
        await anyio.lowlevel.checkpoint()
