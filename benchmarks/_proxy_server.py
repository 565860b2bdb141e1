"""The servers of the proxy load benchmark, each run in a process of its own.

``python -m benchmarks._proxy_server upstream TOKENS RATE``: a fake OpenAI upstream
whose streams follow ``schedule(seed, TOKENS, RATE)`` (bursts of four content chunks,
about RATE chunks a second, the seed being the request's ``user``), each chunk written
on its own. A plain asyncio server, so that it stays on time while it feeds thousands
of streams to the proxy under test; its body is close-delimited.
``... bare UPSTREAM_URL``: the Python floor for a proxy that reads events: a plain
asyncio server that reads the upstream's SSE lines, parses each JSON and writes each
event to its client (chunked; gzip per event where asked), with no pacing.
``... paced UPSTREAM_URL CPS UNIT [STREAMS [WORKERS [TICK]]]``: pacer's proxy in front of it,
with its default pipeline at CPS (``UNIT``: ``grapheme``, the default, or ``word``);
``STREAMS`` is where its resumable streams live: ``memory`` (the default), ``off``
(none), or a ``redis://`` URL; ``WORKERS`` processes serve one socket (default 1);
``TICK``: the pacer's tick in seconds (default ``PacingConfig``'s). It is served as ``pacer proxy`` serves it
(``pacer._connections.ProxyHTTP``), with a header timeout longer than any run, so that
slowloris connections stay open through one.
``... passthrough UPSTREAM_URL``: the reference, a plain pass-through proxy (httpx and
Starlette, no pacing), built the way one usually is (gzip per piece where asked).

Each prints its port, then serves; ``GET /debug/tasks`` counts its asyncio tasks. The
upstream's ``GET /debug/late`` says how late it wrote its chunks against their
schedule since the last time it was asked (p50 and p99, seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from pacer._metrics import percentile

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]

WORDS = ["alpha ", "beta ", "gamma ", "δέλτα ", "中文", "👍🏽 ", "epsilon. "]


def schedule(seed: int, tokens: int, rate: float) -> list[tuple[float, str]]:
    """When (seconds after the request) the upstream sends each content chunk, and what."""
    words, gaps = random.Random(seed), random.Random(-seed)
    out, t = [], 0.0
    for k in range(tokens):
        if k % 4 == 0:
            t += 4 / rate * gaps.uniform(0.5, 1.5)
        out.append((t, words.choice(WORDS)))
    return out


def _socket() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    return s


async def _tasks(request: Request) -> Response:
    return JSONResponse({"tasks": len(asyncio.all_tasks())})


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """One HTTP/1.1 request with a ``content-length`` body: its target, headers (names
    lowercased) and body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    target = head[0].split(" ")[1]
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return target, headers, await reader.readexactly(int(headers.get("content-length") or 0))


def _json_response(value: object) -> bytes:
    body = json.dumps(value).encode()
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"connection: close\r\n\r\n" + body


def _tasks_response() -> bytes:
    return _json_response({"tasks": len(asyncio.all_tasks())})


async def _drained(writer: asyncio.StreamWriter) -> None:
    """Wait for the client only when it falls behind: a drain per write costs an await."""
    if writer.transport.get_write_buffer_size() > 1 << 16:
        await writer.drain()


def upstream(tokens: int, rate: float) -> Handler:
    late: list[float] = []  # how late each chunk was written, in seconds, since the last ``/debug/late``

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target, _, body = await _read_request(reader)
            if target == "/debug/tasks":
                writer.write(_tasks_response())
                return
            if target == "/debug/late":  # p50 and p99 of ``late``, which starts afresh
                p50, p99 = percentile(late, 50) or 0.0, percentile(late, 99) or 0.0
                writer.write(_json_response({"p50": p50, "p99": p99, "chunks": len(late)}))
                late.clear()
                return
            seed = int(json.loads(body)["user"])
            loop = asyncio.get_running_loop()
            start = loop.time()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
            base = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
            for at, word in schedule(seed, tokens, rate):
                if (wait := start + at - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if writer.is_closing():  # the client left
                    return
                chunk = {**base, "choices": [{"index": 0, "delta": {"content": word}}]}
                writer.write(f"data: {json.dumps(chunk)}\n\n".encode())
                late.append(loop.time() - start - at)
                await _drained(writer)
            writer.write(b"data: [DONE]\n\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return serve


def bare(base: str) -> Handler:
    """Read the upstream's SSE lines, parse each JSON, write each event: nothing more."""
    host, port = base.removeprefix("http://").split(":")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target, headers, body = await _read_request(reader)
            if target == "/debug/tasks":
                writer.write(_tasks_response())
                return
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            try:
                head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\n"
                head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                up_writer.write(head.encode() + body)
                await up_reader.readuntil(b"\r\n\r\n")  # the upstream's head; its body is close-delimited
                gzip = "gzip" in headers.get("accept-encoding", "")
                codec = zlib.compressobj(9, zlib.DEFLATED, 31) if gzip else None
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                    + (b"content-encoding: gzip\r\n" if gzip else b"")
                    + b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                )
                async for line in up_reader:
                    if writer.is_closing():  # the client left
                        return
                    if not line.startswith(b"data: "):
                        continue
                    data = line[6:].rstrip()
                    event = (
                        b"data: [DONE]\n\n"
                        if data == b"[DONE]"
                        else b"data: %b\n\n" % json.dumps(json.loads(data)).encode()
                    )
                    if codec is not None:
                        event = codec.compress(event) + codec.flush(zlib.Z_SYNC_FLUSH)
                    writer.write(b"%x\r\n%b\r\n" % (len(event), event))
                    await _drained(writer)
                if codec is not None:
                    tail = codec.flush()
                    writer.write(b"%x\r\n%b\r\n" % (len(tail), tail))
                writer.write(b"0\r\n\r\n")
                await writer.drain()
            finally:
                up_writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return serve


def passthrough(base: str) -> Starlette:
    """A proxy as one is usually written: forward the body, stream the answer back."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
    client = httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits)

    async def chat(request: Request) -> Response:
        body = await request.body()
        headers = {"content-type": "application/json"}
        upstream = await client.send(
            client.build_request("POST", f"{base}/v1/chat/completions", content=body, headers=headers),
            stream=True,
        )

        gzip = "gzip" in request.headers.get("accept-encoding", "")
        codec = zlib.compressobj(9, zlib.DEFLATED, 31) if gzip else None

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for piece in upstream.aiter_raw():
                    yield piece if codec is None else codec.compress(piece) + codec.flush(zlib.Z_SYNC_FLUSH)
                if codec is not None:
                    yield codec.flush()
            finally:
                await upstream.aclose()

        media = upstream.headers.get("content-type", "application/octet-stream")
        encoded = {"content-encoding": "gzip"} if gzip else None
        return StreamingResponse(relay(), status_code=upstream.status_code, media_type=media, headers=encoded)

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/debug/tasks", _tasks)]
    )


def paced(base: str, cps: float, unit: str, streams: str = "memory", tick: float | None = None) -> Starlette:
    from pacer.config import PacingConfig, ProxyConfig, StreamConfig
    from pacer.proxy import create_proxy

    config = ProxyConfig(
        pacing=PacingConfig(cps=cps, unit=unit, **({} if tick is None else {"tick": tick})),
        stream=StreamConfig(heartbeat=5),
        resume="never" if streams == "off" else "always",
        replays_per_stream=0,  # the resume benchmark replays on purpose
        replays_per_client=0,
        streams_per_client=0,  # every stream of the run comes from one client address
        redis=None if streams in ("memory", "off") else streams,
    )
    app = create_proxy(base, config)
    app.router.routes.insert(0, Route("/debug/tasks", _tasks))
    return app


def main(argv: list[str]) -> None:
    role = argv[0]
    sock = _socket()
    print(sock.getsockname()[1], flush=True)
    if role in ("upstream", "bare"):
        serve = upstream(int(argv[1]), float(argv[2])) if role == "upstream" else bare(argv[1])

        async def run() -> None:
            server = await asyncio.start_server(serve, sock=sock, backlog=4096)
            await server.serve_forever()

        asyncio.run(run())
        return

    def serve_app() -> None:
        app = (
            passthrough(argv[1])
            if role == "passthrough"
            else paced(argv[1], float(argv[2]), argv[3], *argv[4:5], *map(float, argv[6:7]))
        )
        served: Any = app
        options: dict[str, Any] = {}
        if role == "paced":  # as `pacer proxy` serves it: its bounded protocol (pacer._connections)
            from pacer._connections import ConnectionRules, ProxyHTTP, with_rules

            # Slowloris connections stay open for the whole run: their cost is what is measured.
            served = with_rules(
                app, ConnectionRules(header_timeout=600, connection_limit=16384, shutdown_grace=1)
            )
            options["http"] = ProxyHTTP
        config = uvicorn.Config(served, log_level="error", backlog=4096, timeout_keep_alive=60, **options)
        # As ``pacer proxy`` runs it (``uvicorn.run``): uvloop and httptools where installed.
        uvicorn.Server(config).run([sock])

    workers = int(argv[5]) if role == "paced" and len(argv) > 5 else 1
    if workers == 1:
        serve_app()
    else:
        _forked(workers, serve_app)


def _forked(workers: int, serve: Callable[[], None]) -> None:
    """Serve from ``workers`` child processes accepting on one socket (as ``pacer proxy
    --workers``: the kernel spreads the connections); this process only waits for them,
    and stops them when it is stopped."""
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            serve()
            os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main(sys.argv[1:])
