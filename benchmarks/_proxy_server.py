"""The servers of the proxy load benchmark, run in a child process.

``python -m benchmarks._proxy_server TOKENS RATE`` serves a fake OpenAI upstream
(bursty streams of TOKENS content chunks at about RATE a second, the content a
function of the request's ``user`` seed) and the pacing proxy in front of it, and
prints the proxy's port. ``GET /debug/tasks`` on the proxy counts its asyncio tasks.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from pacer import Pacer
from pacer.proxy import create_proxy

WORDS = ["alpha ", "beta ", "gamma ", "δέλτα ", "中文", "👍🏽 ", "epsilon. "]


def content(seed: int, tokens: int) -> list[str]:
    rnd = random.Random(seed)
    return [rnd.choice(WORDS) for _ in range(tokens)]


def _socket() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    return s


async def main(tokens: int, rate: float) -> None:
    async def chat(request: Request) -> Response:
        seed = int((await request.json())["user"])

        async def gen() -> AsyncIterator[bytes]:
            base = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
            rnd = random.Random(-seed)
            for k, word in enumerate(content(seed, tokens)):
                if k % 4 == 0:
                    await asyncio.sleep(4 / rate * rnd.uniform(0.5, 1.5))
                chunk = {**base, "choices": [{"index": 0, "delta": {"content": word}}]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def tasks(request: Request) -> Response:
        return JSONResponse({"tasks": len(asyncio.all_tasks())})

    up_sock, px_sock = _socket(), _socket()
    upstream = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    url = f"http://127.0.0.1:{up_sock.getsockname()[1]}"
    proxy = create_proxy(url, lambda: Pacer(cps=200, unit="word"), heartbeat=5)
    proxy.router.routes.insert(0, Route("/debug/tasks", tasks))
    servers = [
        uvicorn.Server(uvicorn.Config(app, log_level="error", backlog=4096, timeout_keep_alive=60))
        for app in (upstream, proxy)
    ]
    print(px_sock.getsockname()[1], flush=True)
    await asyncio.gather(servers[0].serve([up_sock]), servers[1].serve([px_sock]))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
