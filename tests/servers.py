"""Real servers on loopback for the transport tests: uvicorn in a thread, and a fake OpenAI upstream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CONTENT = [
    "Streaming ",
    "output ",
    "needs a ",
    "calm rhythm",
    ". ",
    "模型",
    "一次吐出",
    "很多字。",
    " 👩\u200d👩\u200d👧 ",
    "and then",
    " it stops.",
]
TEXT = "".join(CONTENT)


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class Upstream:
    """A fake OpenAI-compatible server whose streams are bursty, with scenarios by model name.

    ``closed`` maps a request's ``user`` field to the monotonic time its stream generator
    was closed (finished or cancelled): the tests read it to see cancellation arrive.
    """

    def __init__(self) -> None:
        self.closed: dict[str, float] = {}
        self.completed: set[str] = set()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
            ]
        )

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "normal", "object": "model"}]})

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        model = body.get("model", "normal")
        if model == "rate-limited":
            return JSONResponse({"error": {"message": "slow down", "type": "rate_limit"}}, status_code=429)
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}}],
                }
            )
        return StreamingResponse(self.stream(model, body.get("user", "")), media_type="text/event-stream")

    async def stream(self, model: str, user: str) -> AsyncIterator[bytes]:
        rnd = random.Random(1)
        base = {"id": "chatcmpl-42", "object": "chat.completion.chunk", "created": 1, "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(body)}\n\n".encode()

        try:
            yield chunk({"role": "assistant", "content": ""})
            pieces = CONTENT * (40 if model == "slow" else 1)
            for i, piece in enumerate(pieces):
                if model == "stall" and i == 5:
                    await asyncio.sleep(1.0)
                if model == "error" and i == 4:
                    yield b'data: {"error": {"message": "model crashed", "type": "server_error"}}\n\n'
                    return
                if model == "malformed" and i == 4:
                    yield b"data: {not json\n\n"
                    return
                if model == "drop" and i == 4:
                    raise RuntimeError("upstream connection dropped")
                if model == "longline" and i == 4:
                    yield b"data: " + b"x" * 200_000
                    return
                if i % 3 == 0:
                    await asyncio.sleep(rnd.uniform(0.0, 0.03) if model != "slow" else 0.05)
                yield chunk({"content": piece})
            yield chunk({}, finish="stop")
            usage = {**base, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 11}}
            yield f"data: {json.dumps(usage)}\n\n".encode()
            yield b"data: [DONE]\n\n"
            self.completed.add(user)
        finally:
            self.closed[user] = time.monotonic()
