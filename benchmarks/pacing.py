"""Pacing quality against the reference smoothers, scale on asyncio, whole-pipeline throughput.

Quality: every smoother replays the same arrival traces on the virtual clock;
reported are the worst and p99 lag after the first second and smoothness (the
coefficient of variation of characters per 100 ms window while text is flowing:
lower is smoother).

Scale: N concurrent streams, each a paced pipeline over an async source that
sleeps between bursts, all on one asyncio event loop with the real clock;
lateness is how long after a pacer's deadline the text it released then reached
the stream's sink (or, for ``arun``, its consumer), read on the clock there. Two
drivers: ``arun`` (a consumer task per stream that wakes for every output, a
timer per stream) and ``Hub.pump`` (the output goes to a sink callable, one
timer for all streams). Loads run with the cyclic garbage collector off, as a
latency-minded server runs (pacer streams make no reference cycles, tests check
it, so nothing leaks), and some also with CPython's default collector, whose full
collections stop the loop for tens of milliseconds once thousands of streams are
alive. The 10,000-stream hub load then runs five more times, each in a fresh
process, for the spread across runs.

Throughput: detokenize | sentences | pace | packetize on the virtual clock, no
sleeping: tokens per second on one core.
"""

from __future__ import annotations

import asyncio
import gc
import re
import resource
import time
from typing import Any

from pacer import (
    Chunk,
    Detokenizer,
    Pacer,
    Packetizer,
    SentenceSplitter,
    Stage,
    arun,
    simulate,
    traces,
)
from pacer._hub import Hub
from pacer._metrics import percentile
from pacer._pacing import Unit
from pacer.clock import MonotonicClock
from pacer.testing.references import AdaptiveChars, FixedDelayWords
from pacer.testing.rhythm import TOKEN, flowing_cv

from ._table import builds as measured_builds
from ._table import print_table

PROSE = (
    "Streaming output needs a calm rhythm. A model sends many words at once, then stops for a "
    "moment; a reader cannot follow that, and a voice cannot speak it. Pacing spreads the words "
    "out, pauses briefly where a sentence ends, and catches up when it falls behind, so that the "
    "display never trails the model by more than half a second. "
)


def _tokens(n: int) -> list[str]:
    words = re.findall(r"\S+\s*", PROSE * (n // 40 + 2))
    return words[:n]


def _traces(quick: bool) -> dict[str, list[tuple[float, Any]]]:
    n = 2000 if quick else 10_000
    tokens = _tokens(n)
    short = tokens[:1500]
    return {
        "steady 30 tok/s": traces.steady(short, 30),
        "bursty 40 tok/s": traces.bursty(short, per_second=40, seed=1),
        "fast 150 tok/s": traces.bursty(short, per_second=150, burst=(4, 20), seed=2),
        "dump (all at once)": traces.dump(short[:400]),
        "packets of 20 words / 50 ms": [
            (k * 0.05, "".join(short[i : i + 20])) for k, i in enumerate(range(0, len(short), 20))
        ],
        "stall 4 s": traces.stalled(short[:600], 30, after=250, pause=4.0),
        f"{n // 1000}k tokens bursty": traces.bursty(tokens, per_second=60, seed=3),
    }


def quality(quick: bool = False) -> None:
    smoothers: dict[str, Any] = {
        "pacer Pacer() graphemes": lambda: Pacer(),
        "pacer Pacer(unit=word)": lambda: Pacer(unit="word"),
        "pacer sentences | Pacer()": lambda: SentenceSplitter(max_hold=0.3) | Pacer(),
        "fixed 10 ms/word (Vercel)": lambda: FixedDelayWords(0.010),
        "adaptive chars (chat-ui)": lambda: AdaptiveChars(),
    }
    rows = []
    for trace_name, trace in _traces(quick).items():
        for name, make in smoothers.items():
            timeline = simulate(trace, make())
            late = [
                c.emitted - c.arrival
                for c in timeline.emissions
                if c.emitted is not None and c.arrival >= 1.0
            ]
            worst = max(late, default=0.0)
            p99 = percentile(late, 99) or 0.0
            rows.append([trace_name, name, f"{worst:.3f}", f"{p99:.3f}", f"{flowing_cv(timeline):.3f}"])
    print_table(
        "Pacing on the virtual clock (lag in seconds after the first second; CV: lower is smoother)",
        ["trace", "smoother", "max lag", "p99 lag", "CV chars/100 ms"],
        rows,
    )


def _sweep_texts(quick: bool) -> dict[str, list[str]]:
    """Texts of different shapes, as tokens (a word with its space; CJK two characters at a time)."""
    from pacer.testing.cases import CASES

    def joined(lang: str) -> str:
        return "".join("".join(units) + "\n" for case_lang, _, units in CASES if case_lang == lang)

    texts = {"prose": PROSE * 40, "English cases": joined("en"), "Chinese cases": joined("zh")}
    if not quick:
        texts["Markdown cases"] = joined("md")
    return {name: TOKEN.findall(text)[:1500] for name, text in texts.items()}


def sweep_traces(quick: bool) -> list[tuple[str, int, str, list[tuple[float, Any]]]]:
    """(text, rate, shape, trace) for every trace of the sweep: three shapes at three rates."""
    out = []
    for text_name, tokens in _sweep_texts(quick).items():
        for rate in (30,) if quick else (15, 30, 60):
            head = tokens[:600]
            out += [
                (text_name, rate, "steady", traces.steady(tokens, rate)),
                (text_name, rate, "stall 4 s", traces.stalled(head, rate, after=len(head) // 2, pause=4.0)),
                (text_name, rate, "bursty", traces.bursty(tokens, per_second=rate, seed=rate)),
            ]
    return out


def sweep(quick: bool = False) -> None:
    """Smoothness over many traces: three shapes at three rates on several texts.

    The quality table shows one text; this one shows whether its ranking holds on
    texts of other shapes (short English sentences, Chinese, Markdown) and rates.
    """
    pacers: dict[str, Any] = {
        "Pacer() graphemes": lambda: Pacer(),
        "Pacer(unit=word)": lambda: Pacer(unit="word"),
    }
    references: dict[str, Any] = {
        "fixed (Vercel)": lambda: FixedDelayWords(0.010),
        "chat-ui": lambda: AdaptiveChars(),
    }
    rows = []
    wins = dict.fromkeys(pacers, 0)
    total = 0
    for text_name, rate, shape, trace in sweep_traces(quick):
        ours = {name: flowing_cv(simulate(trace, make())) for name, make in pacers.items()}
        theirs = [flowing_cv(simulate(trace, make())) for make in references.values()]
        total += 1
        for name, cv in ours.items():
            wins[name] += cv < min(theirs)
        cvs = [*ours.values(), *theirs]
        rows.append([text_name, f"{shape}, {rate} tok/s", *(f"{cv:.3f}" for cv in cvs)])
    print_table(
        "Smoothness on more texts and rates (CV of characters per 100 ms while flowing; lower is smoother)",
        ["text", "trace", *pacers, *references],
        rows,
    )
    print_table(
        "Traces where pacer is smoother than both references",
        ["pacer", "traces"],
        [[name, f"{count} of {total}"] for name, count in wins.items()],
    )


class _LatenessPacer(Pacer):
    """A Pacer that remembers the deadline of the timer wake-up whose output is on its way."""

    woken_for: float | None = None

    def poll(self, now: float) -> list[Chunk]:
        deadline = self.deadline
        out = super().poll(now)
        if out and deadline is not None and now >= deadline:
            self.woken_for = deadline
        return out

    def delivered(self, lateness: list[float], now: float) -> None:
        """Output reached the sink at ``now``: if a timer released it, record how late."""
        if self.woken_for is not None:
            lateness.append(now - self.woken_for)
            self.woken_for = None


async def _source(trace: list[tuple[float, Any]], start: float) -> Any:
    """Replay ``trace`` from ``start`` (monotonic seconds), like a model behind a server."""
    for t, token in trace:
        delay = start + t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield token


async def _hub_stream(hub: Hub, pacer: Pacer, source: Any, lateness: list[float]) -> int:
    """``hub.pump`` written out with ``Hub.open``, whose stream says, while its sink takes
    output the timer released, the deadline that output was due at (``HubStream.due``):
    a plain ``Pacer``, watched from outside. (A subclass that watched its own polls, as
    ``arun``'s rows do, would run every internal call of the compiled Pacer through Python.)"""
    clock = hub.clock
    delivered = 0

    def sink(chunks: list[Chunk]) -> None:
        nonlocal delivered
        if stream.due is not None:
            lateness.append(clock.now() - stream.due)
        for chunk in chunks:
            delivered += len(chunk.text)

    stream = hub.open(pacer, sink)
    async for item in source:
        stream.feed(item)
    stream.finish()
    await stream.wait()
    return delivered


async def _scale(
    streams: int, tokens_per_stream: int, per_second: float, ramp: float, driver: str, unit: Unit
) -> tuple[list[float], float, int]:
    """Run ``streams`` paced streams on this loop; stream ``i`` starts ``i / streams * ramp``
    seconds in (requests arrive over ``ramp`` seconds; 0: all at once)."""
    lateness: list[float] = []
    tokens = _tokens(tokens_per_stream)
    # The arrival traces are the benchmark's, not pacer's: made before the clock starts.
    plans = [traces.bursty(tokens, per_second=per_second, seed=seed) for seed in range(streams)]
    clock = MonotonicClock()
    hub = Hub(clock=clock)
    delivered = 0

    async def one(seed: int, start: float) -> None:
        nonlocal delivered
        delay = start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if driver == "hub":
            n = await _hub_stream(hub, Pacer(cps=40, unit=unit), _source(plans[seed], start), lateness)
            delivered += n  # not "+= await": that reads the total before the wait
        else:
            pacer = _LatenessPacer(cps=40, unit=unit)
            async for text in arun(pacer, _source(plans[seed], start), clock=clock):
                pacer.delivered(lateness, clock.now())
                delivered += len(text)

    cpu0 = time.process_time()
    t0 = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for seed in range(streams):
            tg.create_task(one(seed, t0 + ramp * seed / streams))
    cpu = time.process_time() - cpu0
    expected = len("".join(tokens)) * streams
    assert delivered == expected, (delivered, expected)
    return lateness, cpu, len(asyncio.all_tasks())


class _GCPauses:
    """Records how long each full (generation 2) collection stopped the program."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._start)


def measure_scale(
    driver: str, streams: int, tokens: int, rate: float, ramp: float, collector: str, unit: Unit = "word"
) -> dict[str, Any]:
    """One load of ``_scale`` with the collector as given; lateness in ms, CPU in us per stream-second."""
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pauses = _GCPauses()
    gc.callbacks.append(pauses)
    if collector == "off":
        gc.disable()
    t0 = time.perf_counter()
    try:
        lateness, cpu, tasks_left = asyncio.run(_scale(streams, tokens, rate, ramp, driver, unit))
    finally:
        gc.enable()
        gc.callbacks.remove(pauses)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    lat = sorted(lateness)
    return {
        "full_gcs": len(pauses.pauses),
        "longest_gc_ms": 1000 * max(pauses.pauses, default=0),
        "wall_s": wall,
        "p50_ms": 1000 * (percentile(lat, 50) or 0),
        "p99_ms": 1000 * (percentile(lat, 99) or 0),
        "max_ms": 1000 * lat[-1] if lat else None,
        "cpu_us": 1e6 * cpu / streams / (wall or 1),
        "kib": max(0, rss - rss0) / streams,
        "tasks_left": tasks_left - 1,
    }


def scale_runs(quick: bool = False) -> None:
    """The 10,000-stream hub load, several times, each in a fresh process: the spread across
    runs; with words (a few wake-ups a second per stream) and with graphemes (up to the rate's
    characters a second)."""
    import json
    import subprocess
    import sys

    import pacer

    runs, config = 5, ("hub", 10_000, 30, 2.0, 5.0, "off")
    if quick:
        runs, config = 2, ("hub", 200, 10, 2.0, 1.0, "off")
    rows = []
    for unit in ("word", "grapheme"):
        args = (*config, unit)
        code = f"import json, benchmarks.pacing as b; print(json.dumps(b.measure_scale(*{args!r})))"
        for run in range(1, runs + 1):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            m = json.loads(out.stdout)
            lateness = [f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}", f"{m['max_ms']:.1f}"]
            rows.append([unit, str(run), *lateness, f"{m['cpu_us']:.0f}"])
    driver, streams, tokens, rate, ramp, collector = config
    print_table(
        f"{streams:,} streams ({driver}, Pacer(cps=40), {rate:g} tok/s x {tokens}, started over {ramp:g} s, "
        f"cyclic GC {collector}, {'compiled' if pacer.compiled else 'pure Python'}), one fresh process per "
        "run (aim: p99 <= 10 ms)",
        ["unit", "run", "lateness p50 ms", "p99 ms", "max ms", "CPU us/s per stream"],
        rows,
    )


def scale(quick: bool = False) -> None:
    rows = []
    # (driver, streams, tokens each, tokens/s each, seconds over which the streams start, GC)
    configs = (
        [("arun", 200, 40, 10.0, 0.0, "off"), ("hub", 200, 40, 10.0, 0.0, "off")]
        if quick
        else [
            ("arun", 1000, 100, 10.0, 0.0, "default"),
            ("arun", 1000, 100, 10.0, 0.0, "off"),
            ("hub", 1000, 100, 10.0, 0.0, "off"),
            ("arun", 5000, 30, 2.0, 5.0, "off"),
            ("hub", 5000, 30, 2.0, 5.0, "off"),
            ("arun", 10_000, 30, 2.0, 5.0, "default"),
            ("arun", 10_000, 30, 2.0, 5.0, "off"),
            ("hub", 10_000, 30, 2.0, 5.0, "default"),
            ("hub", 10_000, 30, 2.0, 5.0, "off"),
            ("arun", 10_000, 20, 2.0, 0.0, "off"),
            ("hub", 10_000, 20, 2.0, 0.0, "off"),
        ]
    )
    for driver, streams, tokens, rate, ramp, collector in configs:
        m = measure_scale(driver, streams, tokens, rate, ramp, collector)
        rows.append(
            [
                driver,
                f"{streams:,}",
                f"{rate:g} tok/s x {tokens}",
                f"over {ramp:g} s" if ramp else "all at once",
                collector,
                f"{m['full_gcs']} / {m['longest_gc_ms']:.0f}",
                f"{m['wall_s']:.1f}",
                f"{m['p50_ms']:.2f}",
                f"{m['p99_ms']:.2f}",
                f"{m['max_ms']:.1f}" if m["max_ms"] is not None else "-",
                f"{m['cpu_us']:.0f}",
                f"{m['kib']:.1f}",
                str(m["tasks_left"]),
            ]
        )
    print_table(
        "Concurrent paced streams on one asyncio loop, real clock (aim: p99 <= 10 ms at 10,000)",
        [
            "driver",
            "streams",
            "each",
            "start",
            "cyclic GC",
            "full GCs / longest ms",
            "wall s",
            "lateness p50 ms",
            "p99 ms",
            "max ms",
            "CPU us/s per stream",
            "peak KiB/stream",
            "tasks left",
        ],
        rows,
    )


PIPELINES = (
    ("detokenize", ""),
    ("detokenize | sentences", "s"),
    ("detokenize | pace", "p"),
    ("detokenize | sentences | pace | packetize", "spk"),
)


def pipeline_rates(quick: bool = False) -> list[float]:
    """Tokens per second of each of ``PIPELINES``, in this process's build of pacer."""
    from pacer.tokenizers import load_tekken

    enc = load_tekken()
    text = PROSE * (30 if quick else 300)
    ids = enc.encode(text)
    trace = traces.steady(ids, 2000)  # 2,000 tokens a second of virtual time

    def make(stages: str) -> Stage:
        parts: list[Stage] = [Detokenizer(enc)]
        if "s" in stages:
            parts.append(SentenceSplitter())
        if "p" in stages:
            parts.append(Pacer())
        if "k" in stages:
            parts.append(Packetizer())
        out = parts[0]
        for part in parts[1:]:
            out = out | part
        return out

    rates = []
    for _, stages in PIPELINES:
        best = float("inf")
        for _ in range(7):  # the best of several: this machine's timings are noisy
            t0 = time.perf_counter()
            timeline = simulate(trace, make(stages))
            best = min(best, time.perf_counter() - t0)
        assert timeline.text == text
        rates.append(len(ids) / best)
    return rates


def throughput(quick: bool = False) -> None:
    """This build against the pure-Python one (``PACER_PURE=1``, in a child process)."""
    builds = measured_builds("pacing", "pipeline_rates", quick)
    rows = [
        [label, *(f"{rates[i] / 1000:.0f}k" for _, rates in builds)]
        + [f"{builds[0][1][i] / rates[i]:.2f}" for _, rates in builds[1:]]
        for i, (label, _) in enumerate(PIPELINES)
    ]
    print_table(
        "Whole pipeline on the virtual clock, tekken tokens (aim: >= 500k tokens/s)",
        ["pipeline", *(f"tokens/s, {name}" for name, _ in builds)]
        + [f"{builds[0][0]} / {name}" for name, _ in builds[1:]],
        rows,
    )


def main(quick: bool = False) -> None:
    quality(quick)
    sweep(quick)
    throughput(quick)
    scale(quick)
    scale_runs(quick)
