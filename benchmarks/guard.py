"""What output checks cost the reader: ``Guard(check) | Pacer(cps=40)`` against the same
pacer with no guard, and against the anchors' approaches, on the virtual clock.

The source is a model at 30 tokens a second (about 120 characters a second) answering
with the held-out English text; checks answer 0, 20, 100 and 300 ms after each unit is
complete (``simulate(check_latency=...)``). Lag is from the pipeline's input (when each
character reached it), as ``pacer demo`` reports it. The references:

- *buffer, then check* (langchain4j, gateways that check at all): the whole answer
  is checked when it is complete, then paced;
- *200-character chunks* (NeMo Guardrails' streaming output rails): each chunk of
  200 characters is checked once it is complete, one after the other, then paced.

``fairness``: on the real clock, how long a victim stream's checks wait for a worker
(from the guard handing one out to the check starting) while ten other streams each
hand out 600 checks at once: on the checks' own ``CheckPool`` (streams take turns)
against anyio's default thread limiter, one task per check in arrival order (how
checks ran before the pool), and against the pool with no flood.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.to_thread

from pacer import CheckPool, Pacer, arun, simulate
from pacer._aio import spawn_detached
from pacer._metrics import percentile
from pacer._simulate import Timeline
from pacer.guard import CheckRequest, Guard, call_check
from pacer.testing.cases import HELDOUT_FIRST
from pacer.testing.streams import tokens

from ._table import print_table

LATENCIES = (0.0, 0.02, 0.1, 0.3)
CPS = 40.0


def _trace(quick: bool) -> list[tuple[float, str]]:
    text = "".join("".join(units) + " " for lang, _, units in HELDOUT_FIRST if lang == "en")
    if quick:
        text = text[:600]
    return [(0.2 + i / 30, token) for i, token in enumerate(tokens(text))]


def _lags(timeline: Timeline, trace: list[tuple[float, str]]) -> tuple[float, float, float]:
    """(time to first output, lag p99, lag p99 after the first sentence), from the input."""
    arrival_of: list[float] = []  # the input time of each character
    for t, piece in trace:
        arrival_of += [t] * len(piece)
    lags, after, at = [], [], 0
    first_end = next(i for i, ch in enumerate("".join(p for _, p in trace)) if ch in ".?!") + 1
    for chunk in timeline.emissions:
        assert chunk.emitted is not None
        lag = chunk.emitted - arrival_of[at]
        lags.append(lag)
        if at >= first_end:
            after.append(lag)
        at += len(chunk.text)
    first = (timeline.emissions[0].emitted or 0.0) - trace[0][0]
    return first, percentile(lags, 99) or 0.0, percentile(after, 99) or 0.0


def _held(
    trace: list[tuple[float, str]],
    cuts: Callable[[str], list[int]],
    latency: float,
    first: float | None = None,
) -> list[tuple[float, str]]:
    """The trace as a checker that releases at ``cuts`` (one check at a time) passes it on;
    ``first``: the first check's latency, if not ``latency``."""
    text = "".join(p for _, p in trace)
    arrival_end: list[float] = []
    for t, piece in trace:
        arrival_end += [t] * len(piece)
    out, free, start = [], 0.0, 0
    for k, end in enumerate(cuts(text)):
        wait = first if k == 0 and first is not None else latency
        free = max(arrival_end[end - 1], free) + wait  # complete, then checked, in turn
        out.append((free, text[start:end]))
        start = end
    return out


def _row(
    label: str, latency: float, every: Timeline, later: Timeline, trace: list[tuple[float, str]]
) -> list[str]:
    first, p99, _ = _lags(every, trace)
    after = _lags(later, trace)[2]
    return [label, f"{latency * 1000:.0f}", f"{first:.2f}", f"{p99:.2f}", f"{after:.2f}"]


def main(quick: bool = False) -> None:
    trace = _trace(quick)
    text = "".join(p for _, p in trace)
    rows: list[list[str]] = []
    # The default pacer keeps within half a second of the model (it types as fast as the
    # model writes); a steady reader (a voice, or adaptive=False) types at 40 characters
    # a second and falls behind a faster model, so it is still typing one sentence when
    # the next is checked.
    readers = {
        "default": lambda: Pacer(cps=CPS),
        "steady": lambda: Pacer(cps=CPS, adaptive=False, max_lag=60),
    }
    for reader, make in readers.items():
        plain = simulate(trace, make())
        rows.append(_row(f"Pacer(cps=40), {reader}, no guard", 0.0, plain, plain, trace))
        for latency in LATENCIES:
            every = simulate(trace, Guard(_true) | make(), check_latency=latency)
            later = simulate(
                trace, Guard(_true) | make(), check_latency=lambda r, s=latency: s if r.id > 1 else 0
            )
            assert every.text == later.text == text
            rows.append(_row(f"Guard | Pacer(cps=40), {reader}", latency, every, later, trace))
        for label, cuts in (("buffer, then check", _whole), ("200-character chunks", _chunks)):
            for latency in LATENCIES:
                every = simulate(_held(trace, cuts, latency), make())
                later = simulate(_held(trace, cuts, latency, first=0.0), make())
                rows.append(_row(f"{label}, then {reader} pace", latency, every, later, trace))
    print_table(
        f"Output checks at {CPS:g} characters/s, model at 30 tokens/s ({len(text)} characters), virtual "
        "clock: seconds from the input; the last column with the first check instant, to show what "
        "the later checks add (aim: nothing, for checks shorter than typing the sentence before)",
        ["pipeline", "check ms", "first output s", "lag p99 s", "lag p99 after the first unit s"],
        rows,
    )
    fairness(quick)
    live(quick)


def _true(unit: str) -> bool:
    return True


# -- fairness: a victim's checks among ten floods -------------------------------------------

CHECK = 0.02  # seconds each check works (a plain function: it holds a worker thread)
# The live check: not a whole number of the driver's 5 ms collection period, which would
# favour whichever way of running it adds no hop (its answer would land just on a tick).
LIVE_CHECK = 0.023
FLOODS = 10


class _TimedGuard(Guard):
    """A guard that notes, for each check, how long it waited from being handed out to
    starting (``waits``)."""

    def __init__(self, waits: list[float] | None, **options: Any) -> None:
        super().__init__(_working, timeout=600.0, max_hold=None, **options)
        self.waits = waits
        self.handed: dict[int, float] = {}

    def take_requests(self, now: float) -> list[CheckRequest]:
        requests = super().take_requests(now)
        for request in requests:
            self.handed[request.id] = time.monotonic()
        return requests

    def call(self, request: CheckRequest) -> Any:
        if self.waits is not None:
            self.waits.append(time.monotonic() - self.handed[request.id])
        return super().call(request)


def _working(unit: str) -> bool:
    time.sleep(CHECK)
    return True


def _live_working(unit: str) -> bool:
    time.sleep(LIVE_CHECK)
    return True


class _DefaultLimiter:
    """How checks ran before ``CheckPool``: each a task of its own, a plain one on anyio's
    default thread limiter (40 threads, shared by everything on the loop, in arrival
    order), an async one awaited at once."""

    def stream(self, now: Callable[[], float] = time.monotonic, token: Any = None) -> _DefaultLimiter:
        return self

    def start(self, request: Any, now: float, reply: Callable[[Any, object], object]) -> None:
        request.started = now  # its timeout ran from the hand-out then

        async def task() -> None:
            if inspect.iscoroutinefunction(request.guard.check):  # an async check: a task, at once
                reply(request, await request.guard.call(request))
            else:
                reply(request, await anyio.to_thread.run_sync(call_check, request))

        spawn_detached(task)

    def close(self) -> None:
        pass


async def _sentences(count: int, every: float, name: str) -> AsyncIterator[str]:
    for i in range(count):
        yield f"{name} line {i} is short. "
        if every:
            await anyio.sleep(every)


async def _victim_waits(pool: Any, floods: int, flood_units: int, units: int) -> list[float]:
    """The victim's check waits, with ``floods`` streams of ``flood_units`` units at once."""
    waits: list[float] = []

    async def consume(guard: Guard, count: int, every: float, name: str) -> None:
        async for _ in arun(guard | Pacer(cps=1e6), _sentences(count, every, name)):
            pass

    async with anyio.create_task_group() as group:
        for k in range(floods):
            group.start_soon(consume, _TimedGuard(None, pool=pool), flood_units, 0.0, f"Flood {k}")
        await anyio.sleep(0.05)  # the floods' checks are handed out first
        await consume(_TimedGuard(waits, pool=pool), units, 0.05, "Victim")
        group.cancel_scope.cancel()
    return waits


async def _first_output(pool: Any, check: Callable[[str], Any]) -> float:
    """Seconds from the start of a lone stream to its first output, on the real clock."""

    async def source() -> AsyncIterator[str]:
        yield "A short first sentence. "
        yield "Then"  # proves the first sentence's end
        await anyio.sleep(0.2)
        yield " more."

    start = time.monotonic()
    async for _ in arun(Guard(check, pool=pool) | Pacer(cps=1e6), source()):
        return time.monotonic() - start
    raise AssertionError("no output")


async def _async_working(unit: str) -> bool:
    await anyio.sleep(LIVE_CHECK)
    return True


def live(quick: bool = False) -> None:
    """A lone stream's first output on the real clock: the pool's thread hops cost the
    reader nothing against how checks ran before."""
    repeats = 5 if quick else 25
    rows = []
    for kind, check in (("plain", _live_working), ("async", _async_working)):
        runners = (("anyio's default limiter (before)", _DefaultLimiter), ("CheckPool()", CheckPool))
        for label, make in runners:
            pool = make()
            times = [anyio.run(_first_output, pool, check) for _ in range(repeats)]
            if isinstance(pool, CheckPool):
                pool.close()
            rows.append([f"{kind} check, {label}", f"{percentile(times, 50) * 1000:.1f}"])
    print_table(
        "Live first output of one stream, a first sentence (and its end) at once, a "
        f"{LIVE_CHECK * 1000:.0f} ms check (real clock, median of {repeats}; the driver collects answers "
        "every 5 ms)",
        ["checks run on", "first output ms"],
        rows,
    )


def fairness(quick: bool = False) -> None:
    flood_units, units = (150, 10) if quick else (600, 30)
    cases = {
        "CheckPool(32, per_stream=4), no flood": (lambda: CheckPool(), 0),
        "anyio's default limiter (before), 10 floods": (_DefaultLimiter, FLOODS),
        "CheckPool(32, per_stream=4), 10 floods": (lambda: CheckPool(), FLOODS),
    }
    rows = []
    # A flood cancelled at the end drains its guard's clock: its checks then "time out".
    logging.getLogger("pacer.guard").setLevel(logging.ERROR)
    for label, (make, floods) in cases.items():
        pool = make()
        waits = anyio.run(_victim_waits, pool, floods, flood_units, units)
        if isinstance(pool, CheckPool):
            pool.close()
        p50, p99 = percentile(waits, 50) or 0.0, percentile(waits, 99) or 0.0
        rows.append([label, str(len(waits)), f"{p50 * 1000:.1f}", f"{p99 * 1000:.1f}"])
    print_table(
        f"Check queueing: a victim stream's {units} checks (one every 50 ms) while {FLOODS} other streams "
        f"each hand out {flood_units} at once; each check works {CHECK * 1000:.0f} ms on a worker thread; "
        "real clock, from a check handed out to its start",
        ["checks run on", "victim checks", "wait p50 ms", "wait p99 ms"],
        rows,
    )


def _whole(text: str) -> list[int]:
    return [len(text)]


def _chunks(text: str) -> list[int]:
    return [*range(200, len(text), 200), len(text)]
