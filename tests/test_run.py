"""Drivers: sync, asyncio and trio. Ordering and counts are asserted, never durations."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

import pacer
from pacer import Chunk, Packetizer, Stage


class Passthrough(Stage):
    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        return [chunk]


class Boom(Exception):
    pass


def untimed() -> pacer.Pipeline:
    return Passthrough() | Passthrough() | Passthrough() | Passthrough()


def timed() -> pacer.Pipeline:
    return Passthrough() | Packetizer(4, 1, max_delay=0.01)


class SyncSource:
    """A generator-backed source that records what happened to it."""

    def __init__(self, items: list[str], fail_after: int | None = None) -> None:
        self.items, self.fail_after = items, fail_after
        self.produced = 0
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        try:
            for i, item in enumerate(self.items):
                if self.fail_after is not None and i == self.fail_after:
                    raise Boom("source broke")
                self.produced += 1
                yield item
        finally:
            self.closed.set()


@pytest.mark.parametrize("make", [untimed, timed])
def test_sync_run_delivers_everything(make: object) -> None:
    text = ["ab", "cd", "ef", "g"]
    assert "".join(pacer.run(make(), text)) == "abcdefg"  # type: ignore[operator]


def test_sync_run_chunks_carry_metadata() -> None:
    chunks = list(pacer.run(untimed(), ["ab", "c"], chunks=True, clock=pacer.VirtualClock(5.0)))
    assert [(c.text, c.arrival, c.emitted, c.offset) for c in chunks] == [
        ("ab", 5.0, 5.0, 0),
        ("c", 5.0, 5.0, 2),
    ]


def test_calling_a_pipeline_runs_it() -> None:
    assert list(untimed()(["x", "y"])) == ["x", "y"]


@pytest.mark.parametrize("make", [untimed, timed])
def test_sync_break_closes_source(make: object) -> None:
    source = SyncSource([str(i) * 4 for i in range(1000)])
    with pacer.run(make(), iter(source)) as run:  # type: ignore[operator]
        for _ in run:
            break
    assert source.closed.wait(5)
    assert source.produced < 1000


@pytest.mark.parametrize("make", [untimed, timed])
def test_sync_source_error_delivers_output_then_propagates(make: object) -> None:
    source = SyncSource(["ab", "cd", "never"], fail_after=2)
    got: list[str] = []
    with pytest.raises(Boom, match="source broke"):
        for text in pacer.run(make(), iter(source)):  # type: ignore[operator]
            got.append(text)
    assert "".join(got) == "abcd"


def test_sync_slow_consumer_bounds_what_is_read_ahead() -> None:
    source = SyncSource(["abcd"] * 500)
    run = pacer.run(timed(), iter(source), buffer=4)
    consumed = 0
    for _ in run:
        consumed += 1
        if consumed == 10:
            break
    # Reader can be at most the queue size plus the one item in hand ahead.
    assert source.produced <= consumed + 4 + 2
    run.close()


def test_sync_cancel_returns_text_not_shown() -> None:
    run = pacer.run(Packetizer(4, 4, max_delay=None), ["abcdef", "gh", "ijk"])
    assert next(run) == "abcd"
    assert run.cancel() == "ef"


def test_sync_timer_fires_while_source_is_silent() -> None:
    release = threading.Event()
    seen_before_release: list[str] = []

    def source() -> Iterator[str]:
        yield "ab"
        release.wait(10)
        yield "cd"

    run = pacer.run(Packetizer(64, 64, max_delay=0.01), source())
    first = next(run)
    if not release.is_set():
        seen_before_release.append(first)
    release.set()
    assert seen_before_release == ["ab"]
    assert list(run) == ["cd"]


# -- async, on asyncio and trio -------------------------------------------------------------


class AsyncSource:
    def __init__(self, items: list[str], fail_after: int | None = None, gap: float = 0.0) -> None:
        self.items, self.fail_after, self.gap = items, fail_after, gap
        self.produced = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            for i, item in enumerate(self.items):
                if self.fail_after is not None and i == self.fail_after:
                    raise Boom("source broke")
                if self.gap:
                    await anyio.sleep(self.gap)
                self.produced += 1
                yield item
        finally:
            self.closed = True


async def wait_for(predicate: object, limit: float = 5.0) -> bool:
    with anyio.move_on_after(limit):
        while not predicate():  # type: ignore[operator]
            await anyio.sleep(0.001)
        return True
    return False


@pytest.mark.anyio
@pytest.mark.parametrize("make", [untimed, timed])
async def test_async_run_delivers_everything(make: object) -> None:
    got = [t async for t in pacer.arun(make(), AsyncSource(["ab", "cd", "e"]).__aiter__())]  # type: ignore[operator]
    assert "".join(got) == "abcde"


@pytest.mark.anyio
async def test_async_run_accepts_sync_iterables() -> None:
    assert [t async for t in pacer.arun(untimed(), ["a", "b"])] == ["a", "b"]


@pytest.mark.anyio
@pytest.mark.parametrize("make", [untimed, timed])
async def test_async_with_block_closes_source_on_break(make: object) -> None:
    source = AsyncSource([str(i) * 4 for i in range(1000)])
    async with pacer.arun(make(), source.__aiter__()) as run:  # type: ignore[operator]
        async for _ in run:
            break
    assert await wait_for(lambda: source.closed)
    assert source.produced < 1000


@pytest.mark.anyio
@pytest.mark.parametrize("make", [untimed, timed])
async def test_async_aclose_closes_source(make: object) -> None:
    source = AsyncSource(["abcd"] * 1000, gap=0.001)
    run = pacer.arun(make(), source.__aiter__())  # type: ignore[operator]
    await run.__anext__()
    await run.aclose()
    assert await wait_for(lambda: source.closed)


@pytest.mark.anyio
@pytest.mark.parametrize("make", [untimed, timed])
async def test_async_consumer_task_cancellation_closes_source(make: object) -> None:
    source = AsyncSource(["abcd"] * 100000, gap=0.001)
    got: list[str] = []

    async def consume() -> None:
        async with pacer.arun(make(), source.__aiter__()) as run:  # type: ignore[operator]
            async for text in run:
                got.append(text)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        assert await wait_for(lambda: len(got) >= 3)
        tg.cancel_scope.cancel()
    assert await wait_for(lambda: source.closed)
    assert source.produced < 100000


@pytest.mark.anyio
@pytest.mark.parametrize("make", [untimed, timed])
async def test_async_source_error_delivers_output_then_propagates(make: object) -> None:
    source = AsyncSource(["ab", "cd", "never"], fail_after=2)
    got: list[str] = []
    with pytest.raises(Boom, match="source broke"):
        async for text in pacer.arun(make(), source.__aiter__()):  # type: ignore[operator]
            got.append(text)
    assert "".join(got) == "abcd"


@pytest.mark.anyio
async def test_async_slow_consumer_bounds_what_is_read_ahead() -> None:
    source = AsyncSource(["abcd"] * 500)
    consumed = 0
    async with pacer.arun(timed(), source.__aiter__(), buffer=4) as run:
        async for _ in run:
            consumed += 1
            await anyio.sleep(0.001)
            if consumed == 10:
                break
        assert source.produced <= consumed + 4 + 2


async def silent_after_first(release: anyio.Event, order: list[str]) -> AsyncIterator[str]:
    """Yields "ab", then waits for ``release`` (set by whoever received "ab"), then "cd"."""
    yield "ab"
    await release.wait()
    order.append("source resumed")
    yield "cd"


@pytest.mark.anyio
async def test_async_timer_fires_while_source_is_silent() -> None:
    release = anyio.Event()
    order: list[str] = []
    async with pacer.arun(Packetizer(64, 64, max_delay=0.01), silent_after_first(release, order)) as run:
        async for text in run:
            order.append(text)
            release.set()
    assert order == ["ab", "source resumed", "cd"]


@pytest.mark.anyio
async def test_async_cancel_returns_text_not_shown() -> None:
    run = pacer.arun(Packetizer(4, 4, max_delay=None), ["abcdef", "gh"])
    assert await run.__anext__() == "abcd"
    assert await run.cancel() == "ef"


@pytest.mark.anyio
async def test_paced_streams_leave_no_reference_cycles() -> None:
    # Everything a stream allocates is freed by reference counting alone, so servers
    # with thousands of streams can run with the cyclic GC off (or frozen) and never
    # pay its pauses. Checked with the collector off: it must find nothing to free.
    import gc

    async def source(n: int) -> AsyncIterator[str]:
        for i in range(n):
            await anyio.sleep(0.001 * (i % 3))
            yield f"Word {i}. "

    async def stream(n: int, out: list[str]) -> None:
        p = pacer.SentenceSplitter() | pacer.Pacer(cps=5000, max_lag=0.02) | Packetizer(16, 4)
        async with pacer.arun(p, source(n)) as run:
            async for text in run:
                out.append(text)
                if n == 7 and len(out) == 2:
                    break  # a consumer that stops early closes its stream too

    gc.collect()
    gc.disable()
    try:
        outs: list[list[str]] = [[] for _ in range(4)]
        for out, n in zip(outs, (30, 30, 7, 30), strict=True):
            await stream(n, out)
        found = gc.collect()
    finally:
        gc.enable()
    assert "".join(outs[0]) == "".join(f"Word {i}. " for i in range(30))
    assert len(outs[2]) == 2
    assert found == 0


def test_a_source_whose_close_is_async_is_closed_and_awaited() -> None:
    """The ``openai`` and ``anthropic`` SDKs' ``AsyncStream`` has an async ``close`` and no
    ``aclose``: a run that stops early awaits it."""

    class AsyncStream:
        def __init__(self) -> None:
            self.closed = False
            self.items = iter(["one ", "two ", "three "])

        def __aiter__(self) -> AsyncStream:
            return self

        async def __anext__(self) -> str:
            try:
                return next(self.items)
            except StopIteration:
                raise StopAsyncIteration from None

        async def close(self) -> None:
            self.closed = True

    async def main() -> tuple[str, bool]:
        stream = AsyncStream()
        async with pacer.arun(pacer.Pacer(cps=5000), stream) as run:
            first = await run.__anext__()
        return first, stream.closed

    first, closed = anyio.run(main)
    assert first and closed
