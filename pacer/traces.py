"""Arrival traces: when each item of a stream reaches the pipeline.

A trace is a list of ``(seconds, item)`` pairs in non-decreasing time, the input of
``pacer.simulate`` and of the demo's replay. The generators here are seeded and
pure, so a trace is the same on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, TypeVar

__all__ = ["bursty", "dump", "jittery", "stalled", "steady"]

T = TypeVar("T")


def steady(items: Sequence[T], per_second: float, start: float = 0.0) -> list[tuple[float, T]]:
    """One item every ``1 / per_second`` seconds."""
    if not per_second > 0:
        raise ValueError(f"steady: per_second must be > 0, got {per_second}")
    return [(start + k / per_second, item) for k, item in enumerate(items)]


def bursty(
    items: Sequence[T],
    *,
    per_second: float = 50.0,
    burst: tuple[int, int] = (1, 12),
    stall_every: float = 40.0,
    stall: tuple[float, float] = (0.3, 1.2),
    seed: int = 0,
    start: float = 0.0,
) -> list[tuple[float, Any]]:
    """Items in bursts, as a model behind a busy server delivers them.

    On average ``per_second`` items a second, arriving in groups of ``burst`` items
    at the same instant; about every ``stall_every`` items, a silence drawn from
    ``stall`` seconds.
    """
    if not per_second > 0:
        raise ValueError(f"bursty: per_second must be > 0, got {per_second}")
    if not 1 <= burst[0] <= burst[1]:
        raise ValueError(f"bursty: burst must be (low, high) with 1 <= low <= high, got {burst}")
    rnd = random.Random(seed)
    out: list[tuple[float, Any]] = []
    t, k = start, 0
    while k < len(items):
        n = rnd.randint(*burst)
        for item in items[k : k + n]:
            out.append((t, item))
        k += n
        t += n / per_second * rnd.uniform(0.5, 1.5)
        if rnd.random() < n / stall_every:
            t += rnd.uniform(*stall)
    return out


def jittery(
    items: Sequence[T], per_second: float, *, spread: float = 1.0, seed: int = 0, start: float = 0.0
) -> list[tuple[float, T]]:
    """One item at a time, ``per_second`` on average, with uneven gaps between them.

    The gaps are drawn from a gamma distribution whose mean is ``1 / per_second`` and
    whose standard deviation is ``spread`` times that: 1 gives exponential gaps (items
    at random moments, as tokens reach a client over a busy network), 0.3 a slightly
    uneven steady stream.
    """
    if not per_second > 0:
        raise ValueError(f"jittery: per_second must be > 0, got {per_second}")
    if not spread > 0:
        raise ValueError(f"jittery: spread must be > 0, got {spread}")
    rnd = random.Random(seed)
    shape = 1.0 / (spread * spread)
    scale = 1.0 / (per_second * shape)
    out: list[tuple[float, T]] = []
    t = start
    for item in items:
        out.append((t, item))
        t += rnd.gammavariate(shape, scale)
    return out


def dump(items: Sequence[T], at: float = 0.0) -> list[tuple[float, T]]:
    """Everything at once, as a cached or very fast model delivers it."""
    return [(at, item) for item in items]


def stalled(
    items: Sequence[T], per_second: float, *, after: int, pause: float, start: float = 0.0
) -> list[tuple[float, T]]:
    """Steady items with one silence of ``pause`` seconds after the first ``after`` items."""
    if not pause >= 0:
        raise ValueError(f"stalled: pause must be >= 0, got {pause}")
    head = steady(items[:after], per_second, start)
    resume = (head[-1][0] if head else start) + pause
    return head + steady(items[after:], per_second, resume)
