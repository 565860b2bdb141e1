"""Load on one pacing proxy process, the upstream in a process of its own.

Three processes serve (``_proxy_server``): a fake OpenAI upstream whose streams follow
a known schedule, pacer's proxy in front of it, and the reference, a plain
pass-through proxy (httpx and Starlette, no pacing) in front of the same upstream.
This process runs N concurrent streaming clients (raw sockets and h11, so the clients
cost as little as they can) through each proxy in turn, at 1,000 and 2,000 streams,
and reports:

- whether every client got exactly the upstream's content and ``[DONE]`` last;
- event gaps as the clients saw them, and how far each goes **beyond its schedule**:
  for pacer, the schedule is the proxy's own pipeline run on a virtual clock over the
  upstream's own send times; for the pass-through, the upstream's send times. An
  event's excess is its observed gap minus the scheduled gap between the same two
  points of the text: what the proxy (and the machine) added;
- the proxy's CPU per stream (user + system time over the run), its share of one core,
  and its memory per open stream (peak RSS growth); its tasks before and after.

The three servers and the clients share this machine's cores: on a machine with few
cores the figures include that contention, for pacer and the reference alike.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import h11
import httpx

from pacer import simulate
from pacer.config import PacingConfig
from pacer.metrics import percentile
from pacer.sse import SSEDecoder

from ._proxy_server import schedule
from ._table import print_table

CPS = 200.0


def _spawn(*args: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "benchmarks._proxy_server", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None
    url = f"http://127.0.0.1:{int(proc.stdout.readline())}"
    for _ in range(100):
        try:
            httpx.get(f"{url}/debug/tasks", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, url


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # still draining streams: stop it
        proc.kill()
        proc.wait(10)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Stream:
    seed: int
    times: list[float] = field(default_factory=list)  # when each event arrived (since the request)
    ends: list[int] = field(default_factory=list)  # the text length after each event
    text: str = ""
    done_last: bool = False
    error: str = ""  # the data of an ``event: error``, if one came


async def _client(host: str, port: int, seed: int) -> Stream:
    stream = Stream(seed)
    reader, writer = await asyncio.open_connection(host, port)
    conn = h11.Connection(h11.CLIENT)
    body = json.dumps({"model": "m", "messages": [], "stream": True, "user": str(seed)}).encode()
    head = [("host", host), ("content-type", "application/json"), ("content-length", str(len(body)))]
    writer.write(
        conn.send(h11.Request(method="POST", target="/v1/chat/completions", headers=head))
        + conn.send(h11.Data(data=body))
        + conn.send(h11.EndOfMessage())
    )
    start = time.monotonic()
    decoder = SSEDecoder()
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(event, h11.Data):
                now = time.monotonic() - start
                for sse in decoder.feed(bytes(event.data)):
                    stream.done_last = sse.data == "[DONE]"
                    if stream.done_last:
                        continue
                    if sse.event == "error":
                        stream.error = sse.data
                        continue
                    for choice in json.loads(sse.data)["choices"]:
                        stream.text += choice["delta"].get("content") or ""
                    stream.times.append(now)
                    stream.ends.append(len(stream.text))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return stream
    finally:
        writer.close()


def _planned(seed: int, tokens: int, rate: float, unit: str | None) -> tuple[list[int], list[float]]:
    """The schedule of one stream: text lengths and the times they are due to be out
    (``unit``: the proxy's pacing unit; ``None``: not paced)."""
    trace = schedule(seed, tokens, rate)
    ends, times, length = [], [], 0
    if unit is not None:
        for chunk in simulate(trace, PacingConfig(cps=CPS, unit=unit).pipeline()()).emissions:
            length += len(chunk.text)
            ends.append(length)
            times.append(chunk.emitted)
    else:
        for at, word in trace:
            length += len(word)
            ends.append(length)
            times.append(at)
    return ends, times


def _excess(stream: Stream, plan: tuple[list[int], list[float]]) -> list[float]:
    """Each event's gap beyond the scheduled gap between the same two points of the text."""
    ends, times = plan

    def due(end: int) -> float:  # when the text up to ``end`` is due out
        return times[min(bisect.bisect_left(ends, end), len(times) - 1)]

    return [
        (stream.times[k] - stream.times[k - 1]) - (due(stream.ends[k]) - due(stream.ends[k - 1]))
        for k in range(1, len(stream.times))
    ]


async def _load(url: str, pid: int, clients: int) -> tuple[list[Stream], dict[str, float]]:
    async with httpx.AsyncClient() as http:
        tasks0 = (await http.get(f"{url}/debug/tasks")).json()["tasks"]
        rss0, cpu0 = _rss_kib(pid), _cpu_s(pid)
        peak = rss0

        async def watch() -> None:
            nonlocal peak
            while True:
                await asyncio.sleep(0.5)
                peak = max(peak, _rss_kib(pid))

        watcher = asyncio.create_task(watch())
        t0 = time.monotonic()
        host, port = url.removeprefix("http://").split(":")
        streams = await asyncio.gather(*(_client(host, int(port), seed) for seed in range(clients)))
        wall = time.monotonic() - t0
        watcher.cancel()
        cpu = _cpu_s(pid) - cpu0
        await asyncio.sleep(1.0)
        tasks1 = (await http.get(f"{url}/debug/tasks")).json()["tasks"]
    return list(streams), {
        "wall": wall,
        "cpu": cpu,
        "kib": (peak - rss0) / clients,
        "tasks0": tasks0,
        "tasks1": tasks1,
    }


def _row(
    name: str, clients: int, tokens: int, rate: float, unit: str | None, proc: subprocess.Popen[str], url: str
) -> list[str]:
    streams, r = asyncio.run(_load(url, proc.pid, clients))
    expected = {s.seed: "".join(word for _, word in schedule(s.seed, tokens, rate)) for s in streams}
    wrong = sum(1 for s in streams if s.text != expected[s.seed])
    not_done = sum(1 for s in streams if not s.done_last)
    gaps = [b - a for s in streams for a, b in zip(s.times, s.times[1:], strict=False)]
    excess = [e for s in streams for e in _excess(s, _planned(s.seed, tokens, rate, unit))]
    ms = lambda v: f"{1000 * (v or 0.0):.1f}"  # noqa: E731
    return [
        name,
        str(clients),
        f"{r['wall']:.1f}",
        f"{wrong}/{not_done}",
        ms(percentile(gaps, 50)),
        ms(percentile(gaps, 99)),
        ms(percentile(excess, 50)),
        ms(percentile(excess, 99)),
        f"{1000 * r['cpu'] / clients:.0f}",
        f"{100 * r['cpu'] / r['wall']:.0f}%",
        f"{r['kib']:.0f}",
        f"{int(r['tasks0'])}/{int(r['tasks1'])}",
    ]


def main(quick: bool = False) -> None:
    sizes, tokens, rate = ([100], 40, 20.0) if quick else ([250, 1000, 2000], 150, 10.0)
    up, up_url = _spawn("upstream", str(tokens), str(rate))
    rows = []
    try:
        for name, args, paced in (
            ("pacer proxy (default: graphemes)", ("paced", up_url, str(CPS), "grapheme"), "grapheme"),
            ("pacer proxy --unit word", ("paced", up_url, str(CPS), "word"), "word"),
            ("pass-through (httpx + Starlette)", ("passthrough", up_url), None),
        ):
            proc, url = _spawn(*args)
            try:
                rows += [_row(name, n, tokens, rate, paced, proc, url) for n in sizes]
            finally:
                _stop(proc)
    finally:
        _stop(up)
    print_table(
        f"One proxy process under load, upstream in its own process: {tokens} content chunks "
        f"per stream at ~{rate:g}/s in bursts of 4; pacer paces at {CPS:g} cps",
        [
            "proxy",
            "streams",
            "wall s",
            "wrong/no [DONE]",
            "gap p50 ms",
            "gap p99 ms",
            "beyond schedule p50 ms",
            "p99 ms",
            "CPU ms/stream",
            "of a core",
            "KiB/stream",
            "tasks before/after",
        ],
        rows,
    )
