"""The cost of a continuation seam (issue #41): ``python -m benchmarks continuation``.

Two tiny real model servers (``pacer.testing.model_server``, separate processes), A
and B; pacer's proxy (in this process, default pacing: ``max_lag`` 0.5 s) in front of
A, its continuation seam (``continuation_upstream``, where the proxy's upstream pool
chooses) pointed at B. ``STREAMS`` streams start; once each has shown text, A is
killed. Every stream is continued on B from exactly the text produced.

Measured in the same run:

- **seam at the proxy**: from the failure seen to the continuation's first event
  (the stream-end line's ``seam_max_s``);
- **reference: B's first-token time**: ``STREAMS`` continuation requests sent to B
  directly, at once, as the proxy sends them: the time to their first text chunk;
- **reader's max gap across the seam**: the longest wait between two text events the
  client received after the kill, against its longest wait before it (the same
  streams' own rhythm).

The seam's added cost is the first line against the second: what the proxy adds to
asking B anew. The reader's gap shows how much of it the pacer's backlog hides.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import statistics
import time
from typing import Any

import httpx
import uvicorn

from ._table import print_table

QUESTION = "Tell me about pacing."


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _first_tokens(url: str, bodies: list[dict[str, Any]]) -> list[float]:
    """Each body's time to its first text chunk, all sent at once."""

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> float:
        start = time.monotonic()
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {") and '"content": "' in line and '"content": ""' not in line:
                    return time.monotonic() - start
        return float("nan")

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=len(bodies) + 5)) as client:
        return list(await asyncio.gather(*(one(client, b) for b in bodies)))


async def _read(client: httpx.AsyncClient, url: str, started: list[int]) -> list[float]:
    """The arrival times of a stream's text events."""
    body = {"messages": [{"role": "user", "content": QUESTION}], "stream": True}
    times: list[float] = []
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"content":"' in line:
                if not times:
                    started.append(1)
                times.append(time.monotonic())
    return times


async def _run(app: Any, streams: int, kill: Any) -> tuple[list[list[float]], float]:
    """The proxy served on loopback in this event loop while ``streams`` streams read it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="on"))
    serving = asyncio.create_task(server.serve([sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        return await _streams(url, streams, kill)
    finally:
        server.should_exit = True
        await serving


async def _streams(url: str, streams: int, kill: Any) -> tuple[list[list[float]], float]:
    started: list[int] = []
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=streams + 5)) as client:
        reads = [asyncio.create_task(_read(client, url, started)) for _ in range(streams)]
        while len(started) < streams:
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)
        killed = time.monotonic()
        kill()
        return list(await asyncio.gather(*reads)), killed


class _Seams(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        figures = getattr(record, "stream", None)
        if isinstance(figures, dict) and figures.get("seam_max_s") is not None:
            self.waits.append(figures["seam_max_s"])


def _gaps(times: list[float], killed: float) -> tuple[float, float]:
    """The longest wait between two text events before the kill, and across it."""
    before = [b - a for a, b in itertools.pairwise(times) if b < killed]
    after = [b - a for a, b in itertools.pairwise(times) if b >= killed]
    return max(before, default=0.0), max(after, default=0.0)


def main(quick: bool = False) -> None:
    from pacer.proxy import create_proxy
    from pacer.testing.model_server import ModelProcess
    from pacer.upstreams import Breaker, Upstream

    streams = 8 if quick else 40
    args = ("--token-delay", "0.03", "--answer-chars", "60" if quick else "160")
    with ModelProcess(*args) as a, ModelProcess(*args) as b:
        app = create_proxy(a.url, resume="never")
        proxy = next(r.endpoint.func.__self__ for r in app.routes if hasattr(r.endpoint, "func"))
        other = Upstream(1, b.url, "b", Breaker())  # every continuation goes to B, whatever its pool says
        proxy.continuation_upstream = lambda failed: other
        seams = _Seams()
        logging.getLogger("pacer.proxy").addHandler(seams)
        logging.getLogger("pacer.proxy").setLevel(logging.INFO)
        reads, killed = asyncio.run(_run(app, streams, a.kill))
        answer = httpx.post(
            f"{b.url}/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}]}
        ).json()
        text = answer["choices"][0]["message"]["content"]
        cuts = [text[: max(1, len(t) // 2)] for t in reads]  # a cut in mid-answer, as the proxy asks
        bodies = [
            {
                "messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": cut}],
                "continue_final_message": True,
                "add_generation_prompt": False,
                "stream": True,
            }
            for cut in cuts
        ]
        firsts = asyncio.run(_first_tokens(b.url, bodies))
    logging.getLogger("pacer.proxy").removeHandler(seams)
    gaps = [_gaps(t, killed) for t in reads]
    rows = []
    for name, values in (
        ("seam at the proxy: failure seen -> continuation's first event", seams.waits),
        (f"reference: B's first-token time, {streams} continuation requests at once", firsts),
        ("reader: longest gap between text events across the seam (max_lag 0.5 s)", [g[1] for g in gaps]),
        ("reader: longest gap between text events before the kill", [g[0] for g in gaps]),
    ):
        rows.append(
            [
                name,
                str(len(values)),
                f"{statistics.median(values) * 1000:.0f}" if values else "-",
                f"{_percentile(values, 99) * 1000:.0f}" if values else "-",
                f"{max(values) * 1000:.0f}" if values else "-",
            ]
        )
    print_table(
        f"Continuation seam: {streams} streams, upstream A killed mid-answer, continued on B",
        ["measure", "streams", "p50 ms", "p99 ms", "max ms"],
        rows,
    )
    print(json.dumps({"continued": len(seams.waits), "streams": streams}))
