"""Broken and hostile upstreams for the proxy's hardening tests, on real loopback servers.

``HostileUpstream`` is a Starlette app whose chat behaviour is chosen by the request's
``model``, and whose every other path echoes what it received (path, headers) and
sets a cookie. ``serve_raw`` is a bare TCP server that answers every request with
scripted bytes and closes: what no framework would send.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from pacer.sse import ServerSentEvent

PIECES = ["One ", "two ", "three. ", "Four ", "five."]


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "model": "m"}
    body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return f"data: {json.dumps(body)}\n\n".encode()  # ensure_ascii: "\ud83d" as an escape


def stream_bytes(pieces: list[str], done: bool = True) -> bytes:
    out = chunk({"role": "assistant", "content": ""})
    out += b"".join(chunk({"content": p}) for p in pieces)
    out += chunk({}, finish="stop")
    return out + (b"data: [DONE]\n\n" if done else b"")


def content_of(events: list[ServerSentEvent]) -> str:
    """The text of a chat-completion event stream, as a client joins it."""
    text = ""
    for event in events:
        if event.event == "message" and event.data != "[DONE]":
            for choice in json.loads(event.data)["choices"]:
                text += choice["delta"].get("content") or ""
    return text


class HostileUpstream:
    """``left`` maps a request's ``user`` to when the upstream saw its client go."""

    def __init__(self) -> None:
        self.left: dict[str, float] = {}
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/{path:path}", self.echo, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )

    async def echo(self, request: Request) -> Response:
        body = await request.body()
        seen = {
            "path": request.scope["raw_path"].decode("latin-1"),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body_bytes": len(body),
        }
        response = JSONResponse(seen)
        who = request.query_params.get("who", "anon")
        response.set_cookie("session", f"secret-of-{who}")
        return response

    async def _wait_for_leave(self, request: Request, user: str) -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.01)
        self.left[user] = time.monotonic()

    async def chat(self, request: Request) -> Response:
        body = json.loads(await request.body())
        model, user = body.get("model", ""), body.get("user", "")
        if "continue_final_message" in body:  # as OpenAI's hosted API: no continuation
            return _unrecognized("continue_final_message")
        if model == "slow-headers":  # never answers; notes when the proxy gives up on it
            await self._wait_for_leave(request, user)
            return Response(status_code=204)
        if model == "gzip" and not body.get("stream"):
            answer = {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"content": "zipped"}}],
            }
            data = gzip.compress(json.dumps(answer).encode())
            return Response(data, media_type="application/json", headers={"content-encoding": "gzip"})
        if model == "gzip":
            data = gzip.compress(stream_bytes(PIECES))
            headers = {"content-encoding": "gzip"}
            return Response(data, media_type="text/event-stream", headers=headers)
        if model == "big-error":  # a stream request answered with a large non-SSE error body
            data = json.dumps({"error": {"message": "x" * (2 << 20), "type": "server_error"}}).encode()
            return Response(data, status_code=500, media_type="application/json")
        return StreamingResponse(self._stream(model), media_type="text/event-stream")

    async def _stream(self, model: str) -> AsyncIterator[bytes]:
        if model == "truncated":  # ends cleanly at the HTTP level, but before [DONE]
            yield stream_bytes(PIECES[:3], done=False)
            return
        if model == "surrogates":  # a UTF-16 unit per chunk, as some servers cut text
            yield stream_bytes(["smile ", "\ud83d", "\ude00", " done"])
            return
        if model == "stall":  # answers, then goes quiet
            yield chunk({"content": "before "})
            await asyncio.sleep(30)
        yield stream_bytes(PIECES)


def _unrecognized(name: str) -> Response:
    """OpenAI's answer to a request field it does not know."""
    error = {"message": f"Unrecognized request argument supplied: {name}", "type": "invalid_request_error"}
    return JSONResponse({"error": {**error, "param": None, "code": None}}, status_code=400)


@contextlib.contextmanager
def serve_raw(response: bytes) -> Iterator[str]:
    """A TCP server answering each request with ``response`` and closing; yields its URL."""
    loop = asyncio.new_event_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                await reader.readexactly(int(line.split(b":")[1]))
        writer.write(response)
        await writer.drain()
        writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(handle, sock=sock)

    server = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def raw_request(url: str, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` (request line and headers, no blank line) and ``body`` byte for byte,
    as no HTTP client would normalise them; return the status and the response body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head + b"\r\nHost: x\r\nConnection: close\r\n\r\n" + body)
        data = b""
        while piece := s.recv(65536):
            data += piece
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]
