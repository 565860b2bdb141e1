"""Per-item overhead of a 4-stage pass-through pipeline through each driver.

References: a bare chain of 4 async generators on asyncio (for ``arun``) and of 4
sync generators (for ``run`` and the sans-I/O loop), the usual hand-written ways to
compose stream transformers. The "floor" rows are what no driver of this design can
go below: the source, one generator hop to the consumer, and 4 plain method calls
that each return a one-item list (a stage's ``push``), with no ``Chunk``, clock or
metrics at all; beside it, the same with calls that return their one item (what a
one-in, one-out form of a stage would cost).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import trio

import pacer
from pacer import Chunk, Stage

from ._table import best_of_each, builds, print_table


class Passthrough(Stage):
    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        return [chunk]


class _Plain:
    def push(self, item: str, now: float) -> list[str]:
        return [item]

    def map(self, item: str) -> str:
        return item


def four() -> pacer.Pipeline:
    return Passthrough() | Passthrough() | Passthrough() | Passthrough()


async def _gen_source(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def _gen_stage(src: AsyncIterator[str]) -> AsyncIterator[str]:
    async for item in src:
        yield item


async def _bare_chain(items: list[str]) -> int:
    stream = _gen_source(items)
    for _ in range(4):
        stream = _gen_stage(stream)
    n = 0
    async for _ in stream:
        n += 1
    return n


def _sync_source(items: list[str]) -> Iterator[str]:
    yield from items


def _sync_stage(src: Iterator[str]) -> Iterator[str]:
    for item in src:  # noqa: UP028 (a stage that transforms items loops; yield from would not)
        yield item


def _bare_sync_chain(items: list[str]) -> int:
    stream = _sync_source(items)
    for _ in range(4):
        stream = _sync_stage(stream)
    return sum(1 for _ in stream)


async def _floor_async(src: AsyncIterator[str]) -> AsyncIterator[str]:
    a, b, c, d = (_Plain().push for _ in range(4))
    async for item in src:
        for x in a(item, 0.0):
            for y in b(x, 0.0):
                for z in c(y, 0.0):
                    for out in d(z, 0.0):
                        yield out


async def _floor(items: list[str]) -> int:
    n = 0
    async for _ in _floor_async(_gen_source(items)):
        n += 1
    return n


async def _floor_one_to_one_async(src: AsyncIterator[str]) -> AsyncIterator[str]:
    a, b, c, d = (_Plain().map for _ in range(4))
    async for item in src:
        yield d(c(b(a(item))))


async def _floor_one_to_one(items: list[str]) -> int:
    n = 0
    async for _ in _floor_one_to_one_async(_gen_source(items)):
        n += 1
    return n


def _floor_sync(items: list[str]) -> Iterator[str]:
    a, b, c, d = (_Plain().push for _ in range(4))
    for item in _sync_source(items):
        for x in a(item, 0.0):
            for y in b(x, 0.0):
                for z in c(y, 0.0):
                    yield from d(z, 0.0)


async def _pacer_async(items: list[str]) -> int:
    n = 0
    async for _ in pacer.arun(four(), _gen_source(items)):
        n += 1
    return n


async def _source_only(items: list[str]) -> int:
    n = 0
    async for _ in _gen_source(items):
        n += 1
    return n


ASYNC_REF = "bare chain of 4 async generators (asyncio) [reference]"
SYNC_REF = "bare chain of 4 sync generators [sync reference]"


def _items(quick: bool) -> int:
    return 20_000 if quick else 200_000


def measure(quick: bool = False) -> dict[str, float]:
    """Microseconds per item of each case, in this process's build."""
    n = _items(quick)
    items = ["tok"] * n

    def feed_loop() -> None:
        p = four()
        for item in items:
            p.feed(item)
        p.flush()

    cases = {
        ASYNC_REF: lambda: asyncio.run(_bare_chain(items)),
        "async source alone, no stages (asyncio)": lambda: asyncio.run(_source_only(items)),
        "floor: async source, one hop, 4 plain calls (asyncio)": lambda: asyncio.run(_floor(items)),
        "the same, each call returning its item, no list (asyncio)": lambda: asyncio.run(
            _floor_one_to_one(items)
        ),
        "pacer.arun, 4 stages (asyncio)": lambda: asyncio.run(_pacer_async(items)),
        "pacer.arun, 4 stages (trio)": lambda: trio.run(_pacer_async, items),
        SYNC_REF: lambda: _bare_sync_chain(items),
        "floor: sync source, one hop, 4 plain calls": lambda: sum(1 for _ in _floor_sync(items)),
        "pacer.run, 4 stages (sync iterator)": lambda: sum(1 for _ in pacer.run(four(), items)),
        "Pipeline.feed loop, 4 stages (sans-I/O)": feed_loop,
    }
    return {name: t / n * 1e6 for name, t in best_of_each(cases, 3 if quick else 7).items()}


def main(quick: bool = False) -> None:
    measured = builds("overhead", "measure", quick)
    header = ["driver"]
    for build, _ in measured:
        header += [f"us/item, {build}", f"ratio, {build}"]
    rows = []
    for name in measured[0][1]:
        ref = ASYNC_REF if "asyncio" in name or "trio" in name else SYNC_REF
        row = [name]
        for _, times in measured:
            row += [f"{times[name]:.3f}", f"{times[name] / times[ref]:.2f}"]
        rows.append(row)
    print_table(
        f"Pipeline overhead: {_items(quick):,} items through 4 pass-through stages "
        "(ratio to the bare chain of the same kind, async or sync)",
        header,
        rows,
    )
