"""The servers of the proxy load benchmark, each run in a process of its own.

``python -m benchmarks._proxy_server upstream TOKENS RATE``: a fake OpenAI upstream
whose streams follow ``schedule(seed, TOKENS, RATE)`` (bursts of four content chunks,
about RATE chunks a second, the seed being the request's ``user``).
``... paced UPSTREAM_URL CPS UNIT [STREAMS]``: pacer's proxy in front of it, with its
default pipeline at CPS (``UNIT``: ``grapheme``, the default, or ``word``); ``STREAMS``
is where its resumable streams live: ``memory`` (the default), ``off`` (none), or a
``redis://`` URL.
``... passthrough UPSTREAM_URL``: the reference, a plain pass-through proxy (httpx and
Starlette, no pacing), built the way one usually is.

Each prints its port, then serves; ``GET /debug/tasks`` counts its asyncio tasks.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

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


def upstream(tokens: int, rate: float) -> Starlette:
    async def chat(request: Request) -> Response:
        seed = int((await request.json())["user"])
        start = asyncio.get_running_loop().time()

        async def gen() -> AsyncIterator[bytes]:
            base = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
            loop = asyncio.get_running_loop()
            for at, word in schedule(seed, tokens, rate):
                if (wait := start + at - loop.time()) > 0:
                    await asyncio.sleep(wait)
                chunk = {**base, "choices": [{"index": 0, "delta": {"content": word}}]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/debug/tasks", _tasks)]
    )


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

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for piece in upstream.aiter_raw():
                    yield piece
            finally:
                await upstream.aclose()

        media = upstream.headers.get("content-type", "application/octet-stream")
        return StreamingResponse(relay(), status_code=upstream.status_code, media_type=media)

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/debug/tasks", _tasks)]
    )


def paced(base: str, cps: float, unit: str, streams: str = "memory") -> Starlette:
    from pacer.config import PacingConfig, ProxyConfig, StreamConfig
    from pacer.proxy import create_proxy

    config = ProxyConfig(
        pacing=PacingConfig(cps=cps, unit=unit),
        stream=StreamConfig(heartbeat=5),
        resumable=streams != "off",
        redis=None if streams in ("memory", "off") else streams,
    )
    app = create_proxy(base, config)
    app.router.routes.insert(0, Route("/debug/tasks", _tasks))
    return app


def main(argv: list[str]) -> None:
    role = argv[0]
    if role == "upstream":
        app = upstream(int(argv[1]), float(argv[2]))
    elif role == "passthrough":
        app = passthrough(argv[1])
    else:
        app = paced(argv[1], float(argv[2]), argv[3], *argv[4:5])
    sock = _socket()
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="error", backlog=4096, timeout_keep_alive=60)
    asyncio.run(uvicorn.Server(config).serve([sock]))


if __name__ == "__main__":
    main(sys.argv[1:])
