"""Many streams behind one wake-up: the sans-I/O Mux on virtual time, the Hub on asyncio and trio."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacer import Chunk, Pacer, Packetizer, SentenceSplitter, Stage, StageClosedError, VirtualClock, simulate
from pacer._hub import Hub
from pacer.mux import Mux
from pacer.testing.strategies import hard_text

from .test_run import silent_after_first

MAKERS: dict[str, Callable[[], Stage]] = {
    "pacer": lambda: Pacer(cps=30, max_lag=0.4),
    "sentences | pacer | packets": lambda: (
        SentenceSplitter(max_hold=0.2) | Pacer(cps=60, unit="grapheme") | Packetizer(12, 4, max_delay=0.05)
    ),
    "packets": lambda: Packetizer(8, 3, max_delay=0.03),
}


def drive(mux: Mux, traces: list[list[tuple[float, str]]], make: Callable[[], Stage]) -> list[list[Chunk]]:
    """Feed every trace into its own stream of ``mux`` in time order, polling at each deadline."""
    outs: list[list[Chunk]] = [[] for _ in traces]
    streams = [mux.open(make(), out.extend) for out in outs]
    events = sorted((t, i, k) for i, trace in enumerate(traces) for k, (t, _) in enumerate(trace))
    for t, i, k in events:
        while (d := mux.deadline) is not None and d <= t:
            mux.poll(d)
        streams[i].feed(traces[i][k][1], t)
        if k == len(traces[i]) - 1:
            streams[i].finish(t)
    while (d := mux.deadline) is not None:
        mux.poll(d)
    assert all(s.done for s in streams)
    return outs


def as_trace(pieces: list[tuple[float, str]]) -> list[tuple[float, str]]:
    t, trace = 0.0, []
    for gap, text in pieces:
        t += gap
        trace.append((t, text))
    return trace


def stamped(chunks: list[Chunk]) -> list[tuple[str, float, int, float | None, int | None]]:
    return [(c.text, c.arrival, c.boundary, c.emitted, c.offset) for c in chunks]


@settings(max_examples=80)
@given(
    st.lists(
        st.lists(st.tuples(st.floats(0, 0.3), hard_text.filter(bool)), min_size=1, max_size=12),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from(sorted(MAKERS)),
)
def test_each_stream_emits_exactly_what_simulate_gives(
    pieces: list[list[tuple[float, str]]], name: str
) -> None:
    traces = [as_trace(p) for p in pieces]
    mux = Mux()
    outs = drive(mux, traces, MAKERS[name])
    for trace, out in zip(traces, outs, strict=True):
        assert stamped(out) == stamped(simulate(trace, MAKERS[name]()).emissions)
    assert mux.streams == 0
    assert mux.deadline is None


def test_a_sink_that_raises_stops_only_its_own_stream() -> None:
    mux = Mux()
    good: list[Chunk] = []

    def bad(chunks: list[Chunk]) -> None:
        if any("three" in c.text for c in chunks):
            raise OSError("client went away")

    streams = [mux.open(Pacer(cps=10, unit="word"), good.extend), mux.open(Pacer(cps=10, unit="word"), bad)]
    for stream in streams:
        stream.feed("one two three four five ", 0.0)
        stream.finish(0.0)
    while (d := mux.deadline) is not None:
        mux.poll(d)
    assert "".join(c.text for c in good) == "one two three four five "
    assert streams[0].error is None and streams[0].done
    assert isinstance(streams[1].error, OSError) and streams[1].done
    assert mux.streams == 0


def test_the_sink_sees_the_deadline_a_timer_output_was_due_at() -> None:
    mux = Mux()
    seen: list[tuple[float | None, str]] = []
    stream = mux.open(
        Pacer(cps=10, unit="word"), lambda chunks: seen.append((stream.due, "".join(c.text for c in chunks)))
    )
    stream.feed("one two three four five six ", 0.0)  # the first word goes at once: an item released it
    stream.finish(0.0)  # the rest goes at its deadlines
    deadlines = []
    while (d := mux.deadline) is not None:
        deadlines.append(d)
        mux.poll(d + 0.001)  # each wake-up 1 ms late
    assert seen[0] == (None, "one ")
    assert [due for due, _ in seen[1:]] == deadlines  # exactly the deadline each came due at
    assert len(seen) > 2 and "".join(text for _, text in seen) == "one two three four five six "
    assert stream.due is None  # outside the sink: nothing


def test_cancel_returns_what_the_sink_never_got() -> None:
    mux = Mux()
    got: list[Chunk] = []
    stream = mux.open(Pacer(cps=5), got.extend)
    stream.feed("alpha beta gamma delta ", 0.0)
    mux.poll(mux.deadline or 0.0)
    rest = stream.cancel(0.5)
    assert got and rest
    assert "".join(c.text for c in got + rest) == "alpha beta gamma delta "
    assert stream.done and mux.streams == 0 and mux.deadline is None
    assert stream.cancel(1.0) == []  # a second cancel has nothing left


def test_bad_use_is_a_clear_error() -> None:
    mux = Mux()
    with pytest.raises(TypeError, match="sink must be callable"):
        mux.open(Pacer(), "not a sink")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a Stage or Pipeline"):
        mux.open("not a stage", print)  # type: ignore[arg-type]
    stream = mux.open(Pacer(), print)
    stream.finish(0.0)
    with pytest.raises(StageClosedError, match=r"MuxStream\.feed: the stream has finished or was cancelled"):
        stream.feed("late", 1.0)
    with pytest.raises(ValueError, match="real clock"):
        Hub(clock=VirtualClock())


def test_moved_deadlines_do_not_pile_up() -> None:
    mux = Mux()
    streams = [mux.open(Pacer(cps=2, max_lag=5.0), lambda chunks: None) for _ in range(10)]
    t = 0.0
    for step in range(3000):
        t += 0.0001  # every feed moves the stream's deadline and leaves an old entry behind
        streams[step % 10].feed("w ", t)
    assert len(mux._heap) <= 2 * len(streams) + 130


class AsyncSource:
    def __init__(self, items: list[str], gap: float = 0.0, fail_after: int | None = None) -> None:
        self.items, self.gap, self.fail_after = items, gap, fail_after
        self.closed = False
        self.produced = 0

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            for i, item in enumerate(self.items):
                if self.fail_after is not None and i == self.fail_after:
                    raise RuntimeError("source broke")
                await anyio.sleep(self.gap)
                self.produced += 1
                yield item
        finally:
            self.closed = True


WORDS = [f"word{i} " for i in range(40)]


@pytest.mark.anyio
async def test_hub_runs_many_streams_losslessly_with_one_timer() -> None:
    hub = Hub()
    outs: list[list[str]] = [[] for _ in range(30)]
    metrics: list[Any] = []

    async def one(i: int) -> None:
        source = AsyncSource(WORDS[: 10 + i], gap=0.001 * (i % 4))
        sink = outs[i]
        metrics.append(
            await hub.pump(
                Pacer(cps=4000, max_lag=0.05), source.__aiter__(), lambda cs: sink.extend(c.text for c in cs)
            )
        )
        assert source.closed

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(one, i)
    for i, out in enumerate(outs):
        assert "".join(out) == "".join(WORDS[: 10 + i])
    assert [m.chars_out for m in sorted(metrics, key=lambda m: m.chars_out)] == sorted(
        len("".join(WORDS[: 10 + i])) for i in range(30)
    )
    assert hub.mux.streams == 0


@pytest.mark.anyio
async def test_hub_timer_fires_while_the_source_is_silent() -> None:
    hub = Hub()
    release = anyio.Event()
    order: list[str] = []

    def sink(chunks: list[Chunk]) -> None:
        order.extend(c.text for c in chunks)
        release.set()

    await hub.pump(Packetizer(64, 64, max_delay=0.01), silent_after_first(release, order), sink)
    assert order == ["ab", "source resumed", "cd"]


@pytest.mark.anyio
async def test_hub_source_error_delivers_output_then_propagates() -> None:
    hub = Hub()
    got: list[str] = []
    source = AsyncSource(["ab ", "cd ", "never "], fail_after=2)
    with pytest.raises(RuntimeError, match="source broke"):
        await hub.pump(Pacer(cps=1), source.__aiter__(), lambda cs: got.extend(c.text for c in cs))
    assert "".join(got) == "ab cd "  # the paced-out rest went out at once, before the error
    assert hub.mux.streams == 0


def failing_sink(chunks: list[Chunk]) -> None:
    # Streams with this sink pace by words, so "word5" comes in one chunk.
    if any("word5" in c.text for c in chunks):
        raise OSError("client went away")


@pytest.mark.anyio
async def test_hub_sink_error_at_a_deadline_stops_its_stream_and_propagates() -> None:
    hub = Hub()
    fine: list[str] = []

    async def good() -> None:
        await hub.pump(
            Pacer(cps=4000), AsyncSource(WORDS).__aiter__(), lambda cs: fine.extend(c.text for c in cs)
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(good)
        # The source arrives as fast as the loop reads it; word5 goes out at a deadline, in
        # the timer's poll, 75 ms in: before or after the source is read to its end,
        # depending on the loop's speed. Either way the pump stops reading and raises it.
        source = AsyncSource(WORDS)
        with pytest.raises(OSError, match="client went away"):
            await hub.pump(Pacer(cps=400, unit="word", max_lag=0.5), source.__aiter__(), failing_sink)
    assert source.closed
    assert "".join(fine) == "".join(WORDS)
    assert hub.mux.streams == 0


class _PausingSource:
    """Ten words at once, then a silence, then the rest."""

    def __init__(self) -> None:
        self.produced = 0

    async def __aiter__(self) -> AsyncIterator[str]:
        for i, word in enumerate(WORDS):
            if i == 10:
                await anyio.sleep(0.3)
            self.produced += 1
            yield word


@pytest.mark.anyio
async def test_hub_sink_error_at_a_deadline_while_the_source_is_read_raises_the_sinks_error() -> None:
    # word5 fails in the timer's poll during the silence; the next item then must not be
    # fed to the failed stream (that was a StageClosedError in place of the sink's error).
    hub = Hub()
    source = _PausingSource()
    with pytest.raises(OSError, match="client went away"):
        await hub.pump(Pacer(cps=400, unit="word", max_lag=0.5), source.__aiter__(), failing_sink)
    assert source.produced == 11
    assert hub.mux.streams == 0


@pytest.mark.anyio
async def test_hub_sink_error_on_arrival_stops_the_source() -> None:
    hub = Hub()
    source = AsyncSource(WORDS, gap=0.01)
    # Words arrive slower than they are shown: each goes to the sink as it arrives.
    with pytest.raises(OSError, match="client went away"):
        await hub.pump(Pacer(cps=4000, unit="word"), source.__aiter__(), failing_sink)
    assert source.closed and source.produced == 6


@pytest.mark.anyio
async def test_hub_cancelled_task_closes_the_source() -> None:
    hub = Hub()
    source = AsyncSource(["abcd "] * 100000, gap=0.001)
    got: list[str] = []

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            hub.pump, Pacer(cps=1000), source.__aiter__(), lambda cs: got.extend(c.text for c in cs)
        )
        with anyio.fail_after(5):
            while len(got) < 3:
                await anyio.sleep(0.001)
        tg.cancel_scope.cancel()
    assert source.closed and source.produced < 100000
    assert hub.mux.streams == 0


@pytest.mark.anyio
async def test_hub_takes_sync_sources_and_rejects_others() -> None:
    hub = Hub()
    got: list[str] = []
    await hub.pump(Pacer(cps=5000), ["a ", "b ", "c "], lambda cs: got.extend(c.text for c in cs))
    assert "".join(got) == "a b c "
    with pytest.raises(TypeError, match="must be an \\(async\\) iterable"):
        await hub.pump(Pacer(), 42, print)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_hub_streams_leave_no_reference_cycles() -> None:
    hub = Hub()

    async def source(n: int) -> AsyncIterator[str]:
        for i in range(n):
            await anyio.sleep(0.001 * (i % 3))
            yield f"Word {i}. "

    gc.collect()
    gc.disable()
    try:
        outs: list[list[str]] = [[] for _ in range(4)]
        for out in outs:
            stage = SentenceSplitter() | Pacer(cps=5000, max_lag=0.02) | Packetizer(16, 4)
            await hub.pump(stage, source(20), lambda cs, out=out: out.extend(c.text for c in cs))  # type: ignore[misc]
        found = gc.collect()
    finally:
        gc.enable()
    assert all("".join(out) == "".join(f"Word {i}. " for i in range(20)) for out in outs)
    assert found == 0


def test_a_hub_serves_one_event_loop() -> None:
    hub = Hub()

    async def one() -> None:
        await hub.pump(Pacer(cps=5000), ["a ", "b "], lambda chunks: None)

    anyio.run(one)
    with pytest.raises(RuntimeError, match="belongs to another event loop"):
        anyio.run(one)  # a new loop: the hub's timer lives on the first one


def test_on_done_comes_after_the_last_output() -> None:
    mux = Mux()
    events: list[str] = []
    for on_end in ("flush", "drain"):
        stream = mux.open(
            Pacer(cps=10, unit="word", on_end=on_end),  # type: ignore[arg-type]
            lambda chunks: events.extend(c.text for c in chunks),
            on_done=lambda: events.append("done"),
        )
        stream.feed("one two three ", 0.0)
        stream.finish(0.0)  # flush: all goes out here; drain: at the deadlines
        while (d := mux.deadline) is not None:
            mux.poll(d)
        assert events == ["one ", "two ", "three ", "done"]
        events.clear()
    assert mux.streams == 0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_hub_stream_takes_a_readers_controls_as_they_are_sent(backend: str) -> None:
    """A control sent to a pumped stream's ``Mailbox`` applies at once on the hub's loop:
    show all sends what is held, pause holds the rest until resume, with the source
    silent or over (nothing but the control wakes the stream)."""
    from pacer._control import Control, Mailbox

    text = "The first sentence is here. The second follows it, slowly, word by word."
    more = anyio.Event()

    async def source() -> AsyncIterator[str]:
        yield text
        await more.wait()
        yield " End."

    async def main() -> None:
        hub, mailbox, got = Hub(), Mailbox(), []
        first = anyio.Event()

        def sink(chunks: list[Chunk]) -> None:
            got.extend(c.text for c in chunks)
            first.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: hub.pump(Pacer(cps=2, max_lag=60), source(), sink, controls=mailbox))
            await first.wait()
            mailbox.send(Control("show_all"))
            with anyio.fail_after(10):
                while "".join(got) != text:
                    await anyio.sleep(0.01)
            mailbox.send(Control("pause"))
            mailbox.send(Control("rate", 2.0))
            more.set()
            await anyio.sleep(0.2)
            assert "".join(got) == text  # paused: " End." waits
            mailbox.send(Control("show_all"))
        assert "".join(got) == text + " End."

    anyio.run(main, backend=backend)


def test_a_hub_refuses_controls_that_are_not_a_mailbox() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="controls must be a pacer Mailbox, got dict"):
            await Hub().pump(Pacer(), ["x"], lambda chunks: None, controls={})  # type: ignore[arg-type]

    anyio.run(main)


def test_a_hub_on_a_grid_wakes_on_its_multiples_never_before_a_deadline() -> None:
    """``Hub(grid=g)`` arms its one timer at the first multiple of ``g`` at or after the
    earliest deadline: the streams due within one step go out at one wake-up."""
    with pytest.raises(ValueError, match="grid must be a number of seconds >= 0, got -1"):
        Hub(grid=-1)
    with pytest.raises(ValueError, match="got inf"):
        Hub(grid=float("inf"))

    async def main() -> None:
        hub = Hub(grid=0.05)
        got: list[list[Chunk]] = [[] for _ in range(5)]
        streams = [hub.open(Pacer(cps=40 + 7 * i), got[i].extend) for i in range(5)]
        for stream in streams:
            stream.feed("Some text to pace out. ")
            deadline = hub.mux.deadline
            assert deadline is not None
            steps = hub._armed_at / 0.05
            assert abs(steps - round(steps)) < 1e-6 and deadline <= hub._armed_at < deadline + 0.05 + 1e-9
        from pacer._control import Control

        lone = Hub(grid=0.05)
        paused = lone.open(Pacer(cps=40), lambda chunks: None)
        paused.feed("Held while paused. ")
        paused.control(Control("pause"))  # no deadline now: nothing to arm on the grid
        assert lone.mux.deadline == float("inf")
        paused.control(Control("show_all"))
        for stream in streams:
            stream.finish()
        with anyio.fail_after(10):
            for stream in streams:
                await stream.wait()
        assert all("".join(c.text for c in chunks) == "Some text to pace out. " for chunks in got)

    anyio.run(main)
