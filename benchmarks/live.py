"""Live equals simulated, on the real clock: the rhythm each live driver gives beside what
``simulate`` shows for the same arrival times.

Each trace is replayed in real time (the source sleeps until each piece's time), through
``Pacer()`` with ``run`` (sync), ``arun`` on asyncio and on trio, and a ``Hub``; a tap
before the pacer records when each piece really arrived, and ``simulate`` replays
exactly those arrivals on virtual time. The table gives, for both, the longest lag and
its p99 (characters, from arrival to emission), the smoothness (CV of characters per
100 ms) and when the last character left. "microseconds apart" is the answer that
arrives at once through a real source: a list read as fast as it can be. The shapes are
the pacing table's (``benchmarks.pacing``) on a text short enough to replay in real
time; its 10,000-token trace alone would take three minutes per driver.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import anyio

import pacer
from pacer import Chunk, Pipeline, simulate, traces
from pacer._simulate import Timeline
from pacer.testing.live import Tap

from ._table import print_table

TEXT = (
    "Dr. Patel is in. The rest left at 5 p.m., after the rain; nobody minded. "
    "Then, at last, the quiet came back to the street. 你好。再见！ The end is near. "
)


def _traces(quick: bool) -> dict[str, list[tuple[float, str]]]:
    pieces = [TEXT[i : i + 4] for i in range(0, len(TEXT), 4)]
    found = {
        "dump (one read)": traces.dump(["".join(pieces)]),
        "microseconds apart": traces.dump(pieces),
        "bursty 40 tok/s": traces.bursty(pieces, per_second=40),
        "steady 30 tok/s": traces.steady(pieces, per_second=30),
        "fast 150 tok/s": traces.bursty(pieces, per_second=150, burst=(4, 20), seed=2),
        "packets of 5 pieces / 50 ms": [
            (k * 0.05, "".join(pieces[i : i + 5])) for k, i in enumerate(range(0, len(pieces), 5))
        ],
        "first piece, rest 50 ms later": [(0.0, pieces[0]), (0.05, "".join(pieces[1:]))],
        "stall 1.5 s": traces.steady(pieces[:10], per_second=30)
        + [(t + 1.5 + 10 / 30, x) for t, x in traces.steady(pieces[10:], per_second=30)],
    }
    return {k: v for k, v in found.items() if not quick or k in ("microseconds apart", "bursty 40 tok/s")}


def _sync_source(trace: list[tuple[float, str]]) -> Iterator[str]:
    start = time.monotonic()
    for at, item in trace:
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield item


async def _async_source(trace: list[tuple[float, str]]) -> AsyncIterator[str]:
    start = anyio.current_time()
    for at, item in trace:
        await anyio.sleep_until(start + at)
        yield item


def _live(trace: list[tuple[float, str]], driver: str) -> Timeline:
    """``Pacer()`` over ``trace`` in real time with ``driver``: what arrived when, what left when."""
    tap = Tap()
    pipe = Pipeline(tap, pacer.Pacer())
    out: list[Chunk] = []
    if driver == "run":
        out.extend(pacer.run(pipe, _sync_source(trace), chunks=True))
    elif driver == "hub":

        async def hub() -> None:
            await pacer.Hub().pump(pipe, _async_source(trace), out.extend)

        anyio.run(hub)
    else:

        async def consume() -> None:
            async for chunk in pacer.arun(pipe, _async_source(trace), chunks=True):
                out.append(chunk)

        anyio.run(consume, backend=driver)
    return Timeline(list(tap.seen), out, pipe.metrics)


def _figures(timeline: Timeline, start: float) -> list[str]:
    lags = [lag for c in timeline.emissions if (lag := c.lag) is not None for _ in c.text]
    lags.sort()
    p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))] if lags else 0.0
    last = timeline.emissions[-1].emitted if timeline.emissions else start
    return [
        f"{max(lags, default=0.0):.3f}",
        f"{p99:.3f}",
        f"{timeline.smoothness():.3f}",
        f"{last - start:.2f}",
    ]


def main(quick: bool = False) -> None:
    rows = []
    drivers = ("run", "asyncio", "trio", "hub") if not quick else ("run", "asyncio")
    for name, trace in _traces(quick).items():
        for driver in drivers:
            live = _live(trace, driver)
            start = live.arrivals[0][0]
            virtual = simulate(live.arrivals, pacer.Pacer())
            rows.append([name, driver, *_figures(live, start), *_figures(virtual, start)])
    print_table(
        "Live (real clock) against simulate on the same arrival times, Pacer() defaults (lag per "
        "character, seconds; CV of characters per 100 ms; last character out, s after the first arrival)",
        ["trace", "driver", *(f"{w} {m}" for w in ("live", "sim") for m in ("max lag", "p99", "CV", "end"))],
        rows,
    )
