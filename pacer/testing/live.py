"""Live equals simulated: run a pipeline through a live driver on a clock that moves as a
real one does, and compare what came out with ``simulate`` on the same arrivals.

A real clock never stands still: every read of it is a little later than the one
before, so text read out of a buffer (a cached answer, a replay, several events in one
network read) reaches a pipeline microseconds apart, never at one instant. A
``SteppingClock`` is a virtual clock that advances by a small, irregular, seeded step
on every read, which makes that visible to a test without sleeping. ``live_run``
drives a pipeline with ``run`` (sync) or ``arun`` (asyncio or trio) on such a clock,
taps what entered the pipeline and what left it, when, and ``compare`` replays the
tapped arrivals through a fresh pipeline with ``simulate``: the text must be the same
and every character must leave at the time ``simulate`` says, within a tick and the
clock's steps. ``arriving`` makes a source that comes over time instead: each read
blocks until its item's time, so every timer the driver set meanwhile fires late, at
the next read (the worst a busy event loop does). ``mux_run`` does the same for
``pacer.mux.Mux`` (``Hub``'s core, whose real timers cannot run on a virtual clock),
with the arrival times and wake-ups jittered by such steps (or, with ``late``, every
wake-up due before an arrival after it).

Cost: the pipelines' own work, plus one list entry per chunk tapped.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from .. import Chunk, Pipeline, Stage, VirtualClock, arun, run, simulate
from ..mux import Mux

__all__ = [
    "DRIVERS",
    "Comparison",
    "SteppingClock",
    "Tap",
    "arriving",
    "compare",
    "live_run",
    "mux_run",
]

#: The live drivers ``live_run`` knows: ``run``, and ``arun`` on each anyio backend.
DRIVERS = ("run", "asyncio", "trio")


class SteppingClock(VirtualClock):
    """A virtual clock that moves forward by a random step in ``[0, max_step]`` seconds
    every time it is read, as a real clock does between two reads (seeded: the same
    ``seed`` gives the same steps)."""

    def __init__(self, max_step: float, seed: int = 0, start: float = 1000.0) -> None:
        super().__init__(start)
        self.max_step = max_step
        self._steps = random.Random(seed)

    def now(self) -> float:
        self.advance(self._steps.uniform(0.0, self.max_step))
        return super().now()


class Tap(Stage):
    """A pass-through stage that notes each chunk and the time it went through."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, str]] = []

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        self.seen.append((now, chunk.text))
        return [chunk]


@dataclass(frozen=True)
class Comparison:
    """What a live run gave beside what ``simulate`` gives for the same arrivals."""

    arrivals: list[tuple[float, str]]  # (time, text) as the pipeline received it
    live: list[tuple[float, str]]  # (time, text) as the live driver emitted it
    simulated: list[tuple[float, str]]  # (time, text) as ``simulate`` emits it

    @property
    def same_text(self) -> bool:
        return "".join(t for _, t in self.live) == "".join(t for _, t in self.simulated)

    @property
    def largest_shift(self) -> float:
        """The largest difference, over every character, between the time it left live
        and the time it leaves in ``simulate`` (seconds)."""
        live = [t for t, text in self.live for _ in text]
        simulated = [t for t, text in self.simulated for _ in text]
        return max((abs(a - b) for a, b in zip(live, simulated, strict=True)), default=0.0)

    @property
    def largest_lag(self) -> tuple[float, float]:
        """The longest any character waited between arriving and leaving (seconds): live,
        then simulated."""
        arrived = [t for t, text in self.arrivals for _ in text]
        return tuple(  # type: ignore[return-value]
            max(
                (b - a for a, b in zip(arrived, [t for t, text in out for _ in text], strict=True)),
                default=0.0,
            )
            for out in (self.live, self.simulated)
        )

    @property
    def duration(self) -> tuple[float, float]:
        """From the first arrival to the last character out: live, then simulated."""
        start = self.arrivals[0][0] if self.arrivals else 0.0
        ends = [(s[-1][0] - start) if s else 0.0 for s in (self.live, self.simulated)]
        return ends[0], ends[1]


def arriving(trace: Iterable[tuple[float, Any]], clock: VirtualClock) -> Iterator[Any]:
    """The items of ``trace`` ((seconds from the first read, item) pairs), each read at its
    time on ``clock``: a source whose reads block until the item comes. Nothing else moves
    a virtual clock, so a live driver's timers cannot fire between two reads: each
    deadline due meanwhile is seen late, when the next read returns."""
    start = clock.now()
    for at, item in trace:
        clock.sleep_until(start + at)
        yield item


def live_run(
    make: Callable[[], Stage], pieces: Iterable[Any], driver: str, clock: SteppingClock
) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """Drive ``make()`` over ``pieces`` (all available at once, as a buffer is, unless they
    come from ``arriving``) with ``driver`` (one of ``DRIVERS``) on ``clock``; return
    (arrivals, emissions)."""
    before, after = Tap(), Tap()
    pipe = Pipeline(before, make(), after)
    if driver == "run":
        for _ in run(pipe, pieces, clock=clock):
            pass
    elif driver in ("asyncio", "trio"):

        async def consume() -> None:
            async for _ in arun(pipe, pieces, clock=clock):
                pass

        anyio.run(consume, backend=driver)
    else:
        raise ValueError(f"live_run: driver must be one of {DRIVERS}, got {driver!r}")
    return before.seen, after.seen


def mux_run(
    make: Callable[[], Stage],
    trace: Sequence[tuple[float, Any]],
    max_step: float,
    seed: int = 0,
    *,
    late: bool = False,
) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """Run ``make()`` over ``trace`` in a ``Mux``, each arrival and each wake-up a random
    step in ``[0, max_step]`` late; return (arrivals, emissions). With ``late``, no
    wake-up due before an arrival comes before it: the loop reads first."""
    steps = random.Random(seed)
    before, after = Tap(), Tap()
    mux = Mux()
    stream = mux.open(Pipeline(before, make(), after), lambda chunks: None)
    now = 0.0
    for at, item in trace:
        while not late and (due := mux.deadline) is not None and due <= at:
            now = max(now, due) + steps.uniform(0.0, max_step)
            mux.poll(now)
        now = max(now, at) + steps.uniform(0.0, max_step)
        stream.feed(item, now)
    stream.finish(now)
    while (due := mux.deadline) is not None:
        now = max(now, due) + steps.uniform(0.0, max_step)
        mux.poll(now)
    return before.seen, after.seen


def compare(
    make: Callable[[], Stage], taps: tuple[list[tuple[float, str]], list[tuple[float, str]]]
) -> Comparison:
    """``taps`` (from ``live_run`` or ``mux_run``) beside ``simulate`` of a fresh ``make()``
    on the arrivals they recorded."""
    arrivals, live = taps
    timeline = simulate(arrivals, make())
    simulated = [(c.emitted, c.text) for c in timeline.emissions if c.emitted is not None]
    return Comparison(arrivals, live, simulated)
