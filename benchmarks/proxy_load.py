"""Load on the pacing proxy: many concurrent SSE clients on loopback.

A child process serves a fake OpenAI upstream (each stream: ``tokens`` content
chunks at ``rate`` per second, bursty) and the proxy in front of it, both on
uvicorn. This process runs the clients with httpx on one event loop, checks that
every client received exactly the upstream's content (no byte lost or repeated)
and ``[DONE]`` last, and reports the gaps between a client's consecutive events,
the proxy's memory per open stream, and its task count before, during and after.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import httpx

from pacer.metrics import percentile
from pacer.sse import SSEDecoder

from ._table import print_table


def _expected(seed: int, tokens: int) -> str:
    from ._proxy_server import content

    return "".join(content(seed, tokens))


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _client(client: httpx.AsyncClient, url: str, seed: int, gaps: list[float]) -> tuple[str, bool]:
    body = {"model": "m", "messages": [], "stream": True, "user": str(seed)}
    decoder = SSEDecoder()
    text = ""
    done_last = False
    last = None
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        async for piece in response.aiter_raw():
            for event in decoder.feed(piece):
                now = time.monotonic()
                if last is not None:
                    gaps.append(now - last)
                last = now
                if event.data == "[DONE]":
                    done_last = True
                    continue
                done_last = False
                for choice in json.loads(event.data)["choices"]:
                    text += choice["delta"].get("content") or ""
    return text, done_last


async def _load(url: str, pid: int, clients: int, tokens: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
        tasks0 = (await client.get(f"{url}/debug/tasks")).json()["tasks"]
        rss0 = _rss_kib(pid)
        gaps: list[float] = []
        peak = {"rss": rss0, "tasks": tasks0}

        async def watch() -> None:
            while True:
                await asyncio.sleep(1.0)
                peak["rss"] = max(peak["rss"], _rss_kib(pid))

        watcher = asyncio.create_task(watch())
        t0 = time.monotonic()
        results = await asyncio.gather(*(_client(client, url, seed, gaps) for seed in range(clients)))
        wall = time.monotonic() - t0
        watcher.cancel()
        await asyncio.sleep(1.0)
        tasks1 = (await client.get(f"{url}/debug/tasks")).json()["tasks"]
    wrong = sum(1 for seed, (text, _) in enumerate(results) if text != _expected(seed, tokens))
    not_done = sum(1 for _, done in results if not done)
    return {
        "wall": wall,
        "wrong": wrong,
        "not_done": not_done,
        "gap_p50": percentile(gaps, 50) or 0.0,
        "gap_p99": percentile(gaps, 99) or 0.0,
        "gap_max": max(gaps, default=0.0),
        "kib_per_stream": (peak["rss"] - rss0) / clients,
        "tasks_before": tasks0,
        "tasks_after": tasks1,
    }


def main(quick: bool = False) -> None:
    clients, tokens, rate = (100, 60, 20.0) if quick else (1000, 300, 10.0)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._proxy_server", str(tokens), str(rate)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{url}/debug/tasks", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        r = asyncio.run(_load(url, proc.pid, clients, tokens))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # uvicorn still draining streams: stop it
            proc.kill()
            proc.wait(10)
    print_table(
        f"Pacing proxy under load: {clients} concurrent SSE clients, "
        f"{tokens} tokens each at ~{rate:g}/s, loopback",
        [
            "clients",
            "wall s",
            "streams wrong",
            "without [DONE] last",
            "event gap p50 ms",
            "p99 ms",
            "max ms",
            "proxy KiB/stream",
            "proxy tasks before/after",
        ],
        [
            [
                str(clients),
                f"{r['wall']:.1f}",
                str(int(r["wrong"])),
                str(int(r["not_done"])),
                f"{1000 * r['gap_p50']:.1f}",
                f"{1000 * r['gap_p99']:.1f}",
                f"{1000 * r['gap_max']:.0f}",
                f"{r['kib_per_stream']:.1f}",
                f"{int(r['tasks_before'])}/{int(r['tasks_after'])}",
            ]
        ],
    )
