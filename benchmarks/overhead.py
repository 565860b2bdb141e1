"""Per-item overhead of a 4-stage pass-through pipeline through each driver.

Reference: a bare chain of 4 async generators on asyncio, the usual hand-written
way to compose stream transformers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import trio

import pacer
from pacer import Chunk, Stage

from ._table import best_of_each, print_table


class Passthrough(Stage):
    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        return [chunk]


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


def main(quick: bool = False) -> None:
    n = 20_000 if quick else 200_000
    items = ["tok"] * n

    def feed_loop() -> None:
        p = four()
        for item in items:
            p.feed(item)
        p.flush()

    cases = {
        "bare chain of 4 async generators (asyncio) [reference]": lambda: asyncio.run(_bare_chain(items)),
        "async source alone, no stages (asyncio)": lambda: asyncio.run(_source_only(items)),
        "pacer.arun, 4 stages (asyncio)": lambda: asyncio.run(_pacer_async(items)),
        "pacer.arun, 4 stages (trio)": lambda: trio.run(_pacer_async, items),
        "pacer.run, 4 stages (sync iterator)": lambda: sum(1 for _ in pacer.run(four(), items)),
        "Pipeline.feed loop, 4 stages (sans-I/O)": feed_loop,
    }
    times = {name: t / n * 1e6 for name, t in best_of_each(cases, 3).items()}
    ref = times["bare chain of 4 async generators (asyncio) [reference]"]
    rows = [[name, f"{us:.3f}", f"{us / ref:.2f}"] for name, us in times.items()]
    print_table(
        f"Pipeline overhead: {n:,} items through 4 pass-through stages",
        ["driver", "us/item", "ratio to reference"],
        rows,
    )
