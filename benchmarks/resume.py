"""Resumable streams: what resuming costs, in time, in Redis memory, and in proxy CPU.

Needs Debian's ``redis-server`` (started here on a free loopback port, no persistence);
without it the Redis rows say so and the rest still runs.

1. **Resume latency**: a client reconnects to ``GET /v1/streams/{id}`` with a
   ``Last-Event-ID`` halfway through a live stream; the time from opening the
   connection to the first replayed byte, p50 and p99. Through the proxy that produces
   the stream (its log in memory), and through a second proxy that replays it from
   Redis. The reference: a first byte of a new paced request to the same proxy.
2. **Redis memory per stream of 1,000 events** (``MEMORY USAGE`` of its stream and
   hash), beside the bytes of the events themselves.
3. **1,000 concurrent resumable streams over two proxy processes sharing one Redis**,
   against the same load on two proxies without resumable streams: CPU of the two
   proxies (user + system) per stream, and the ratio. Every client must get exactly
   the upstream's text with ``[DONE]`` last (``wrong/no [DONE]``).

The latency table also times a cancel sent to the proxy that does *not* run the
stream: the producing proxy closes the upstream request before it writes the stream's
end, and the cancel is answered after that end, so this bounds the time to close the
upstream. And a reader's controls (``POST /v1/streams/{id}/control``, a pause then a
resume on each live stream): sent to the producing proxy, and to the other one, whose
control travels over Redis to the producer, which hands it to the stream's run (applied
at its pacer's next decision, the same event-loop turn) and answers the state back;
the aim is at most 50 ms p99 from the other process.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import httpx

from pacer._metrics import percentile

from ._proxy_server import schedule
from ._table import print_table
from .proxy_load import CPS, _client, _cpu_s, _spawn, _stop


def _redis() -> tuple[object, str] | None:
    import socket
    import subprocess

    executable = shutil.which("redis-server")
    if executable is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


async def _first_byte(http: httpx.AsyncClient, method: str, url: str, **kwargs: object) -> tuple[float, str]:
    t0 = time.perf_counter()
    async with http.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
        async for _ in response.aiter_raw():
            return time.perf_counter() - t0, response.headers.get("x-pacer-stream-id", "")
    return time.perf_counter() - t0, ""


async def _latencies(producer: str, replayer: str, n: int) -> dict[str, list[float]]:
    body = {"model": "m", "messages": [], "stream": True, "user": "1"}
    out: dict[str, list[float]] = {
        "new": [],
        "here": [],
        "redis": [],
        "healthz": [],
        "control here": [],
        "control there": [],
        "cancel": [],
    }
    key = {"Authorization": "Bearer benchmark"}  # the streams' owner: its resumes and cancels carry it
    async with httpx.AsyncClient(timeout=60, headers=key) as http:
        for _ in range(n):
            took, stream_id = await _first_byte(http, "POST", f"{producer}/v1/chat/completions", json=body)
            out["new"].append(took)
            await asyncio.sleep(0.3)  # some events in
            headers = {"Last-Event-ID": "5"}
            for name, url in (("here", producer), ("redis", replayer)):
                took, _ = await _first_byte(http, "GET", f"{url}/v1/streams/{stream_id}", headers=headers)
                out[name].append(took)
            for _ in range(2):  # the reference: the cheapest request the other proxy answers
                t0 = time.perf_counter()
                await http.get(f"{replayer}/healthz")
                out["healthz"].append(time.perf_counter() - t0)
            for name, url in (("control here", producer), ("control there", replayer)):
                for action in ("pause", "resume"):
                    t0 = time.perf_counter()
                    state = await http.post(f"{url}/v1/streams/{stream_id}/control", json={"action": action})
                    out[name].append(time.perf_counter() - t0)
                    assert state.json()["live"] and state.json()["paused"] == (action == "pause"), state.text
            t0 = time.perf_counter()  # sent to the other process: the upstream is closed before it answers
            answer = await http.post(f"{replayer}/v1/streams/{stream_id}/cancel", json={})
            out["cancel"].append(time.perf_counter() - t0)
            assert answer.json()["outcome"] == "cancelled", answer.text
    return out


async def _memory(url: str, events: int) -> tuple[int, int]:
    from pacer.redislog import RedisLog
    from pacer.resumable import ResumableStreams

    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    frames = [
        f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {'content': 'word '}}]})}\n\n".encode()
        for _ in range(events)
    ]

    async def source():  # type: ignore[no-untyped-def]
        for frame in frames:
            yield frame

    log = RedisLog(url, prefix="bench:")
    async with ResumableStreams(log) as hub:
        stream_id = await hub.start(source(), fmt="chat.completions")
        async for _ in hub.follow(stream_id):
            pass
        await asyncio.sleep(0.3)  # the background writes
        return await log.memory_usage(stream_id), sum(len(f) for f in frames)


async def _channel(url: str, n: int) -> list[float]:
    """Controls over the Redis control channel alone (no HTTP): two ``ResumableStreams`` on
    two ``RedisLog``s (two processes' worth, in one event loop), a live stream produced by
    one, each control asked through the other until the producer's state comes back."""
    import anyio

    from pacer import Control, Mailbox
    from pacer.redislog import RedisLog
    from pacer.resumable import ResumableStreams

    async def silent():  # type: ignore[no-untyped-def]
        yield b"data: first\n\n"
        await anyio.sleep(3600)

    times: list[float] = []
    async with (
        ResumableStreams(RedisLog(url, prefix="chan:")) as producer,
        ResumableStreams(RedisLog(url, prefix="chan:")) as other,
    ):
        stream_id = await producer.start(silent(), fmt="text", controls=Mailbox())
        for i in range(n):
            t0 = time.perf_counter()
            state = await other.control(stream_id, Control("pause" if i % 2 == 0 else "resume"))
            times.append(time.perf_counter() - t0)
            assert state["live"] and state["paused"] == (i % 2 == 0), state
        await producer.cancel(stream_id)
    return times


async def _load(urls: list[str], pids: list[int], clients: int) -> tuple[list[object], list[float]]:
    cpu0 = [_cpu_s(pid) for pid in pids]
    hosts = [u.removeprefix("http://").split(":") for u in urls]
    streams = await asyncio.gather(
        *(_client(hosts[k % 2][0], int(hosts[k % 2][1]), k) for k in range(clients))
    )
    return list(streams), [_cpu_s(pid) - c for pid, c in zip(pids, cpu0, strict=True)]


#: The loads measured, and where each keeps its streams (``_proxy_server``'s STREAMS).
LOADS = {
    "not resumable (--resume never)": "off",
    "resumable, Redis shared by both (--redis)": "redis",
    "resumable, each in its own memory": "memory",
}


def _pair(
    up_url: str, streams: str, redis: tuple[object, str], clients: int
) -> tuple[list[object], float, float]:
    """One load over two proxies keeping their streams in ``streams``: the clients'
    streams, the proxies' CPU seconds, Redis's."""
    a, a_url = _spawn("paced", up_url, str(CPS), "grapheme", redis[1] if streams == "redis" else streams)
    b, b_url = _spawn("paced", up_url, str(CPS), "grapheme", redis[1] if streams == "redis" else streams)
    redis_pid = redis[0].pid  # type: ignore[attr-defined]
    try:
        redis0 = _cpu_s(redis_pid)
        got, cpu = asyncio.run(_load([a_url, b_url], [a.pid, b.pid], clients))
        return got, sum(cpu), _cpu_s(redis_pid) - redis0
    finally:
        _stop(a)
        _stop(b)


def main(quick: bool = False) -> None:
    clients, tokens, rate, n = (100, 40, 20.0, 10) if quick else (1000, 150, 10.0, 100)
    rounds = 1 if quick else 2
    redis = _redis()
    if redis is None:
        print("\nresume benchmark: no redis-server here (apt-get install redis-server); skipped\n")
        return
    up, up_url = _spawn("upstream", str(tokens), str(rate))
    loads: dict[str, tuple[list[object], float, float]] = {}
    try:
        a, a_url = _spawn("paced", up_url, str(CPS), "grapheme", redis[1])
        b, b_url = _spawn("paced", up_url, str(CPS), "grapheme", redis[1])
        try:
            lat = asyncio.run(_latencies(a_url, b_url, n))
            lat["channel"] = asyncio.run(_channel(redis[1], 10 * n))
            used, raw = asyncio.run(_memory(redis[1], 1000))
        finally:
            _stop(a)
            _stop(b)
        for _ in range(rounds):  # interleaved; the least disturbed round of each counts
            for name, streams in LOADS.items():
                result = _pair(up_url, streams, redis, clients)
                if name not in loads or result[1] + result[2] < loads[name][1] + loads[name][2]:
                    loads[name] = result
    finally:
        _stop(up)
        redis[0].terminate()  # type: ignore[attr-defined]
    rows = []
    ms = lambda v: f"{1000 * (v or 0.0):.1f}"  # noqa: E731
    for name, key in (
        ("first byte of a new paced request (reference)", "new"),
        ("resume on the producing proxy (log in memory)", "here"),
        ("resume on the other proxy (replayed from Redis)", "redis"),
        ("GET /healthz of the other proxy (reference: a request's round trip)", "healthz"),
        ("control (pause, resume) sent to the producing proxy: state answered", "control here"),
        ("control sent to the other proxy: over Redis to the producer and back", "control there"),
        ("the control channel alone: Redis to the producer's run and back, no HTTP", "channel"),
        ("cancel sent to the other proxy: upstream closed, text answered", "cancel"),
    ):
        rows.append([name, str(len(lat[key])), ms(percentile(lat[key], 50)), ms(percentile(lat[key], 99))])
    # What a control adds to a request's round trip: the other proxy's control beside its /healthz.
    extra = [percentile(lat["control there"], q) - percentile(lat["healthz"], q) for q in (50, 99)]  # type: ignore[operator]
    rows.append(
        ["control to the other proxy, beyond the /healthz round trip", "", ms(extra[0]), ms(extra[1])]
    )
    print_table(
        f"Resume and control latency: reconnect with Last-Event-ID to the first replayed byte, "
        f"{n} resumes; a control to its answer, {2 * n} of each (aim: <= 50 ms p99 from the other proxy)",
        ["connection", "n", "p50 ms", "p99 ms"],
        rows,
    )
    print_table(
        "Redis memory per stream of 1,000 events (OpenAI chunks, one word each)",
        ["events", "bytes of the events", "Redis bytes (MEMORY USAGE)", "per event", "ratio"],
        [["1000", str(raw), str(used), f"{used / 1000:.0f}", f"{used / raw:.2f}x"]],
    )
    expected = {k: "".join(w for _, w in schedule(k, tokens, rate)) for k in range(clients)}
    table = []
    base = loads["not resumable (--resume never)"][1]
    for name, (got, cpu, redis_cpu) in loads.items():
        wrong = sum(1 for s in got if s.text != expected[s.seed])  # type: ignore[attr-defined]
        not_done = sum(1 for s in got if not s.done_last)  # type: ignore[attr-defined]
        cells = [f"{wrong}/{not_done}", f"{1000 * cpu / clients:.1f}", f"{1000 * redis_cpu / clients:.1f}"]
        table.append([name, str(clients), *cells, f"{cpu / base:.2f}x", f"{(cpu + redis_cpu) / base:.2f}x"])
    print_table(
        f"{clients} concurrent streams over two proxy processes: {tokens} chunks per stream at ~{rate:g}/s, "
        f"paced at {CPS:g} cps (best of {rounds} interleaved rounds; aim: <= 1.3x CPU)",
        [
            "streams kept",
            "streams",
            "wrong/no [DONE]",
            "proxies' CPU ms/stream",
            "Redis CPU ms/stream",
            "proxies vs not resumable",
            "with Redis",
        ],
        table,
    )
