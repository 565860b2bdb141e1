"""Load on one proxy process, the upstream in a process of its own.

The servers (``_proxy_server``, each in its own process): a fake OpenAI upstream whose
streams follow a known schedule, and in front of it, one at a time, the proxies
compared: the bare asyncio re-emitter (reads the upstream's SSE lines, parses each
JSON, writes each event: the Python floor for this job), nginx with
``proxy_buffering off`` (where installed), the httpx + Starlette pass-through, and
pacer's proxy with and without its resumable log and with two worker processes; and
a row with no proxy at all, the harness's own floor. This process runs N concurrent
streams through each, for identity and gzip (``Accept-Encoding: gzip``, undone per
event by the client), with a client that records raw reads during the run and
parses them after (``_recorder``). Each run is preceded, on the same fresh proxy
process, by an unloaded run of a few streams, the reference for events per stream.
Per run it reports:

- whether every client got exactly the upstream's content and ``[DONE]`` last;
- events per stream against the unloaded run: a pacer under overload merges graphemes
  into fewer, larger events, which is a degradation, not a pass;
- the proxy's CPU (user + system, every process of it) per upstream event and per
  emitted event, emitted events per CPU-second, and its share of one core;
- each event's **lateness**: its arrival minus the time its text was due out, from the
  request being written (the first event included). For pacer, what is due when is
  the proxy's own pipeline run on a virtual clock over the upstream's send times
  (``simulate``); for the others, the upstream's send times;
- **beyond schedule**: each event's gap minus the scheduled gap between the same two
  points of the text (what the proxy and the machine added to the rhythm);
- memory per open stream (peak RSS growth), the proxy's tasks before and after, the
  upstream's share of a core and how late it wrote its chunks (an upstream that falls
  behind makes every proxy late), and the client's own CPU per event.

The servers and the clients share this machine's cores: on a machine with few cores
the figures include that contention, for every row alike.

``python -m benchmarks proxy`` runs the whole table (250, 1,000 and 2,000 streams);
``python -m benchmarks.proxy_load --help`` picks rows, sizes and encodings.
``--slowloris N`` runs instead each pacer row with N slowloris connections (request
heads trickled a byte a second, ``_slowloris``) held open through the run, against the
same run without them, with ``/healthz``'s latency during each: the ratio of the
streams' p99 gap beyond schedule, with over without, is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import h11
import httpx

import pacer
from pacer import simulate
from pacer._metrics import percentile
from pacer._pacing import TICK as PACER_TICK
from pacer.config import TICK, PacingConfig
from pacer.sse import SSEDecoder

from . import _nginx
from ._proxy_server import schedule
from ._recorder import Stream, parse, record
from ._slowloris import Slowloris
from ._table import print_table

CPS = 200.0


def _spawn(*args: str, tree: str | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start a ``_proxy_server`` role; ``tree``: from that checkout (its ``pacer`` and its
    ``benchmarks``) instead of this one."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([tree, *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, "-m", "benchmarks._proxy_server", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True, cwd=tree)
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


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


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


async def _client(host: str, port: int, seed: int) -> Stream:
    """One stream read through h11 as it arrives (``resume`` uses it; the load runs
    record raw reads instead, ``_recorder``, which costs far less an event)."""
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
                    stream.take(sse, now)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return stream
    finally:
        writer.close()


@dataclass(frozen=True)
class Proxy:
    """One row of the table: how to start the proxy (``_proxy_server``'s role and its
    arguments after the upstream's URL; ``nginx``; or ``direct``: no proxy) and how it
    paces (``unit``; ``None``: it does not)."""

    key: str
    name: str
    role: tuple[str, ...]
    unit: str | None
    tick: float = TICK  # the pacer's (``PacingConfig.tick``), for its schedule
    tree: str | None = None  # run from another checkout (``--against``)


PROXIES = (
    Proxy("direct", "none: clients straight to the upstream", ("direct",), None),
    Proxy("bare", "bare asyncio re-emitter", ("bare",), None),
    Proxy("nginx", "nginx (proxy_buffering off)", ("nginx",), None),
    Proxy("passthrough", "pass-through (httpx + Starlette)", ("passthrough",), None),
    Proxy(
        "pacer", "pacer proxy (resumable, in memory)", ("paced", str(CPS), "grapheme", "memory"), "grapheme"
    ),
    Proxy(
        "pacer-no-resume", "pacer proxy, no resumable log", ("paced", str(CPS), "grapheme", "off"), "grapheme"
    ),
    Proxy(
        "pacer-tick",
        "pacer proxy (resumable), tick 5 ms",
        ("paced", str(CPS), "grapheme", "memory", "1", str(PACER_TICK)),
        "grapheme",
        PACER_TICK,
    ),
    Proxy(
        "pacer-2-workers",
        "pacer proxy (resumable), 2 worker processes",
        ("paced", str(CPS), "grapheme", "memory", "2"),
        "grapheme",
    ),
)


class _Server:
    """A started proxy: its URL, its processes, and its task count where it has one."""

    def __init__(self, proxy: Proxy, upstream: str) -> None:
        self.kind = proxy.role[0]
        self.nginx: _nginx.Nginx | None = None
        self.proc: subprocess.Popen[str] | None = None
        if self.kind == "direct":
            self.url = upstream
        elif self.kind == "nginx":
            self.nginx = _nginx.Nginx(upstream)
            self.url = self.nginx.url
        else:
            self.proc, self.url = _spawn(self.kind, upstream, *proxy.role[1:], tree=proxy.tree)

    @property
    def pids(self) -> list[int]:
        if self.nginx is not None:
            return self.nginx.pids
        return [] if self.proc is None else [self.proc.pid, *_children(self.proc.pid)]

    def tasks(self) -> int | None:
        if self.proc is None:
            return None
        return int(httpx.get(f"{self.url}/debug/tasks", timeout=10).json()["tasks"])

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        if self.proc is not None:
            workers = _children(self.proc.pid)
            _stop(self.proc)
            for pid in workers:  # gone with their parent, unless it had to be killed
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@dataclass
class Run:
    """One load run's streams and what the processes spent on it."""

    streams: list[Stream]
    wall: float  # seconds
    cpu: float  # the proxy's CPU seconds over the run
    upstream_cpu: float
    upstream_late: float  # p99 of how late the upstream wrote its chunks, in seconds
    client_cpu: float  # this process's CPU seconds while it recorded (parsing after excluded)
    kib: float  # the proxy's peak RSS growth per stream
    tasks: tuple[int | None, int | None]


def _run(
    server: _Server, upstream: str, up_pid: int, streams: int, gzip: bool, timeout: float, ramp: float
) -> Run:
    tasks0 = server.tasks()
    httpx.get(f"{upstream}/debug/late", timeout=10)  # the upstream's lateness starts afresh
    pids = server.pids
    rss0 = sum(map(_rss_kib, pids))
    cpu0, up0, client0 = sum(map(_cpu_s, pids)), _cpu_s(up_pid), time.process_time()
    peak = rss0

    def watch() -> None:
        nonlocal peak
        peak = max(peak, sum(map(_rss_kib, pids)))

    t0 = time.monotonic()
    host, port = server.url.removeprefix("http://").split(":")
    seeds = range(streams)
    recordings = record(host, int(port), seeds, gzip, timeout, ramp, watch)
    wall = time.monotonic() - t0
    cpu, up_cpu = sum(map(_cpu_s, pids)) - cpu0, _cpu_s(up_pid) - up0
    client = time.process_time() - client0
    up_late = float(httpx.get(f"{upstream}/debug/late", timeout=10).json()["p99"])
    parsed = [parse(seed, r) for seed, r in zip(seeds, recordings, strict=True)]
    time.sleep(1.0)  # let the proxy end its streams' tasks
    return Run(parsed, wall, cpu, up_cpu, up_late, client, (peak - rss0) / streams, (tasks0, server.tasks()))


@functools.cache
def _planned(
    seed: int, tokens: int, rate: float, unit: str | None, tick: float = TICK
) -> tuple[list[int], list[float]]:
    """The schedule of one stream: text lengths and the times they are due to be out
    (``unit`` and ``tick``: the proxy's pacing unit and tick; ``None``: not paced)."""
    trace = schedule(seed, tokens, rate)
    ends, times, length = [], [], 0
    if unit is not None:
        for chunk in simulate(trace, PacingConfig(cps=CPS, unit=unit, tick=tick).pipeline()()).emissions:
            length += len(chunk.text)
            ends.append(length)
            times.append(chunk.emitted)
    else:
        for at, word in trace:
            length += len(word)
            ends.append(length)
            times.append(at)
    return ends, times


def _due(plan: tuple[list[int], list[float]], end: int) -> float:
    """When the text up to ``end`` characters is due out."""
    ends, times = plan
    return times[min(bisect.bisect_left(ends, end), len(times) - 1)]


def _lateness(stream: Stream, plan: tuple[list[int], list[float]]) -> list[float]:
    """Each event's arrival after the time its text was due out."""
    return [at - _due(plan, end) for at, end in zip(stream.times, stream.ends, strict=True)]


def _excess(stream: Stream, plan: tuple[list[int], list[float]]) -> list[float]:
    """Each event's gap beyond the scheduled gap between the same two points of the text."""
    due = [_due(plan, end) for end in stream.ends]
    return [
        (stream.times[k] - stream.times[k - 1]) - (due[k] - due[k - 1]) for k in range(1, len(stream.times))
    ]


def _of_plan(run: Run, tokens: int, rate: float, proxy: Proxy) -> float:
    """A run's events over its streams' planned events: streams differ in length, so a
    run is compared with another through their own plans."""
    return sum(len(s.times) for s in run.streams) / sum(
        len(_planned(s.seed, tokens, rate, proxy.unit, proxy.tick)[0]) for s in run.streams
    )


def _row(proxy: Proxy, gzip: bool, run: Run, unloaded: Run, tokens: int, rate: float) -> list[str]:
    streams = run.streams
    n = len(streams)
    expected = {s.seed: "".join(word for _, word in schedule(s.seed, tokens, rate)) for s in streams}
    wrong = sum(1 for s in streams if s.text != expected[s.seed] or s.error)
    not_done = sum(1 for s in streams if not s.done_last)
    plans = {s.seed: _planned(s.seed, tokens, rate, proxy.unit, proxy.tick) for s in streams}
    late = [x for s in streams for x in _lateness(s, plans[s.seed])]
    first = [s.times[0] - _due(plans[s.seed], s.ends[0]) for s in streams if s.times]
    excess = [x for s in streams for x in _excess(s, plans[s.seed])]
    events = sum(len(s.times) for s in streams)
    per_stream = events / n
    reference = _of_plan(unloaded, tokens, rate, proxy)
    encodings = {s.encoding for s in streams}
    encoding = "gzip" if gzip else "identity"
    if encodings != {encoding}:  # the proxy did not answer as asked: say what came back
        encoding += f" (got {'/'.join(sorted(encodings))})"
    us = lambda seconds, count: f"{1e6 * seconds / count:.0f}" if count else "-"  # noqa: E731
    ms = lambda v: f"{1000 * (v or 0.0):.1f}"  # noqa: E731
    tasks = "/".join("-" if t is None else str(t) for t in run.tasks)
    cpu = ["-"] * 4  # no proxy, no proxy CPU
    if proxy.key != "direct":
        rate_k = f"{events / run.cpu / 1000:.1f}" if run.cpu else "-"
        cpu = [us(run.cpu, n * tokens), us(run.cpu, events), rate_k, f"{100 * run.cpu / run.wall:.0f}%"]
    return [
        proxy.name,
        encoding,
        str(n),
        f"{run.wall:.1f}",
        f"{wrong}/{not_done}",
        f"{per_stream:.0f} ({100 * _of_plan(run, tokens, rate, proxy) / reference:.0f}%)"
        if reference
        else f"{per_stream:.0f}",
        *cpu,
        ms(percentile(late, 50)),
        ms(percentile(late, 99)),
        ms(percentile(first, 99)),
        ms(percentile(excess, 99)),
        f"{run.kib:.0f}" if proxy.key != "direct" else "-",
        tasks,
        f"{100 * run.upstream_cpu / run.wall:.0f}%",
        ms(run.upstream_late),
        us(run.client_cpu, events),
    ]


HEADER = [
    "proxy",
    "encoding",
    "streams",
    "wall s",
    "wrong/no [DONE]",
    "events/stream (of unloaded)",
    "CPU µs/upstream event",
    "CPU µs/emitted event",
    "k events/CPU-s",
    "of a core",
    "late p50 ms",
    "late p99 ms",
    "first event late p99 ms",
    "beyond schedule p99 ms",
    "KiB/stream",
    "tasks before/after",
    "upstream of a core",
    "upstream late p99 ms",
    "client µs/event",
]


def main(
    quick: bool = False,
    sizes: Sequence[int] | None = None,
    rows: Sequence[str] | None = None,
    encodings: Sequence[str] = ("identity", "gzip"),
    ramp: float | None = None,
    against: str | None = None,
) -> None:
    """Print the table. ``ramp``: the seconds over which a run's streams start, evenly
    spread (thousands of connections in the same millisecond measure the accept queue,
    not the proxy's steady state); default 1 s, 0.5 s quick. ``against``: another
    checkout (a path), whose pacer rows run just before this one's, in the same run."""
    ramp = ramp if ramp is not None else 0.5 if quick else 1.0
    tokens, rate, unloaded = (40, 20.0, 5) if quick else (150, 10.0, 10)
    sizes = sizes or ([100] if quick else [250, 1000, 2000])
    chosen = [p for p in PROXIES if rows is None or p.key in rows]
    if against is not None:
        tree = os.path.abspath(against)
        named = lambda p: dataclasses.replace(p, name=f"{p.name} [{tree}]", tree=tree)  # noqa: E731
        chosen = [q for p in chosen for q in ([named(p), p] if p.unit is not None else [p])]
    length = schedule(0, tokens, rate)[-1][0]  # about every stream's length, in seconds
    timeout = 30 + 8 * length  # a run still going then is cut; its cut streams count as wrong
    notes = []
    if any(p.key == "nginx" for p in chosen) and not _nginx.installed():
        chosen = [p for p in chosen if p.key != "nginx"]
        notes.append("nginx is not installed here: its row is left out.")
    up, up_url = _spawn("upstream", str(tokens), str(rate))
    table = []
    try:
        for proxy in chosen:
            # The upstream never compresses: the row without a proxy has no gzip run. Quick
            # runs check that two workers serve, not their gzip (CI keeps under 2 minutes).
            one = proxy.key == "direct" or (quick and proxy.key == "pacer-2-workers")
            for encoding in ["identity"] if one else encodings:
                for n in sizes:
                    server = _Server(proxy, up_url)  # a fresh process each run: memory from one start
                    try:
                        reference = _run(server, up_url, up.pid, unloaded, encoding == "gzip", timeout, ramp)
                        run = _run(server, up_url, up.pid, n, encoding == "gzip", timeout, ramp)
                    finally:
                        server.stop()
                    table.append(_row(proxy, encoding == "gzip", run, reference, tokens, rate))
                    print(" | ".join(table[-1]), file=sys.stderr, flush=True)  # progress: a full run is long
    finally:
        _stop(up)
    print_table(
        f"One proxy process under load, upstream in its own process: {tokens} content chunks "
        f"per stream at ~{rate:g}/s in bursts of 4, streams starting over {ramp:g} s; "
        f"pacer paces at {CPS:g} cps ({'compiled' if pacer.compiled else 'pure Python'} build)",
        HEADER,
        table,
    )
    for note in notes:
        print(f"\n{note}")


def _with_slowloris(
    server: _Server, up: tuple[int, str], n: int, gzip: bool, timeout: float, ramp: float, count: int
) -> tuple[Run, list[float], int]:
    """A load run of ``n`` streams with ``count`` slowloris connections held open through
    it (``_slowloris``: ``count=0`` still probes ``/healthz``): the run, the probes'
    latencies, and how many slowloris connections the proxy closed meanwhile."""
    host, port = server.url.removeprefix("http://").split(":")
    slow = Slowloris(host, int(port), count)
    try:
        run = _run(server, up[1], up[0], n, gzip, timeout, ramp)
    finally:
        latencies, closed = slow.stop()
    return run, latencies, closed


def slowloris_main(
    count: int,
    quick: bool = False,
    sizes: Sequence[int] | None = None,
    rows: Sequence[str] | None = None,
    encoding: str = "identity",
    ramp: float | None = None,
) -> None:
    """Print the slowloris table: each pacer row's streams with ``count`` slowloris
    connections held open, against the same load without them (each run on a fresh
    proxy process, with its own unloaded reference run), and ``/healthz``'s latency
    during each."""
    ramp = ramp if ramp is not None else 0.5 if quick else 1.0
    tokens, rate, unloaded = (40, 20.0, 5) if quick else (150, 10.0, 10)
    sizes = sizes or ([100] if quick else [250])
    chosen = [p for p in PROXIES if p.key.startswith("pacer") and (rows is None or p.key in rows)]
    timeout = 30 + 8 * schedule(0, tokens, rate)[-1][0]
    up, up_url = _spawn("upstream", str(tokens), str(rate))
    table, ratios = [], []
    try:
        for proxy in chosen:
            for n in sizes:
                excess = []
                for slow in (0, count):
                    server = _Server(proxy, up_url)
                    try:
                        reference = _run(server, up_url, up.pid, unloaded, encoding == "gzip", timeout, ramp)
                        run, health, closed = _with_slowloris(
                            server, (up.pid, up_url), n, encoding == "gzip", timeout, ramp, slow
                        )
                    finally:
                        server.stop()
                    row = _row(proxy, encoding == "gzip", run, reference, tokens, rate)
                    ms = lambda v: f"{1000 * (v or 0.0):.1f}"  # noqa: E731
                    health_ms = [
                        ms(percentile(health, 50)),
                        ms(percentile(health, 99)),
                        ms(max(health, default=0)),
                    ]
                    table.append(
                        [
                            proxy.name,
                            str(n),
                            str(slow),
                            f"{slow - closed}/{slow}",
                            *row[4:6],
                            *row[10:14],
                            *health_ms,
                        ]
                    )
                    excess.append(float(row[13]))
                    print(" | ".join(table[-1]), file=sys.stderr, flush=True)
                ratios.append(f"{proxy.name}, {n} streams: {excess[1] / excess[0]:.2f}" if excess[0] else "-")
    finally:
        _stop(up)
    print_table(
        f"Slowloris: {count} connections trickling a request head a byte a second, held open through "
        f"a run of streams ({tokens} content chunks each at ~{rate:g}/s, starting over {ramp:g} s; "
        f"pacer at {CPS:g} cps, {encoding}), against the same run without them; /healthz probed "
        "four times a second on a fresh connection during each run",
        SLOWLORIS_HEADER,
        table,
    )
    print("\nbeyond schedule p99, with slowloris / without: " + "; ".join(ratios))


SLOWLORIS_HEADER = [
    "proxy",
    "streams",
    "slowloris",
    "slowloris still open",
    "wrong/no [DONE]",
    "events/stream (of unloaded)",
    "late p50 ms",
    "late p99 ms",
    "first event late p99 ms",
    "beyond schedule p99 ms",
    "/healthz p50 ms",
    "/healthz p99 ms",
    "/healthz max ms",
]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxy_load")
    parser.add_argument("--quick", action="store_true", help="short streams, 100 of them")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="concurrent streams per run (default: 250 1000 2000)"
    )
    keys = [p.key for p in PROXIES]
    parser.add_argument("--rows", nargs="+", choices=keys, help="proxies to run (default: all)")
    parser.add_argument("--encodings", nargs="+", choices=["identity", "gzip"], default=["identity", "gzip"])
    parser.add_argument("--ramp", type=float, help="seconds over which a run's streams start (default 1)")
    parser.add_argument(
        "--against",
        metavar="CHECKOUT",
        help="another checkout of pacer (say, main's, built alike) whose pacer rows run beside these",
    )
    parser.add_argument(
        "--slowloris",
        type=int,
        metavar="N",
        help="instead of the table: each pacer row's run with N slowloris connections held open against "
        "the same run without them, and /healthz's latency during each (default size 250, 100 quick; "
        "the first of --encodings)",
    )
    args = parser.parse_args()
    if args.slowloris is not None:
        slowloris_main(args.slowloris, args.quick, args.sizes, args.rows, args.encodings[0], args.ramp)
    else:
        main(args.quick, args.sizes, args.rows, args.encodings, args.ramp, args.against)
