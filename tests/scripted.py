"""A raw TCP upstream whose every answer is scripted by the request: the fuzz tests' peer.

The request's JSON body carries ``script`` (a ``Script`` as a dict) and ``user``; the
server answers exactly as the script says, byte for byte, however badly, and records
what it saw of each request (the headers, per user). It counts the connections it has
open: once every client is gone, a proxy that cancels what it no longer needs leaves
that count at zero. Every answer closes its connection, so an open connection is an
upstream request still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .hostile import stream_bytes


@dataclass(frozen=True)
class Script:
    """One upstream answer. ``end``: ``done`` (a whole stream), ``none`` (no ``[DONE]``),
    ``cut`` (the connection drops mid-body), ``stall`` (goes quiet), ``malformed``
    (an event that is not JSON), ``giant`` (a line of ``giant`` bytes with no end)."""

    pieces: list[str] = field(default_factory=lambda: ["One ", "two. "])
    delay: float = 0.0
    status: int = 200
    ctype: str = "text/event-stream"
    gzip: bool = False
    framing: str = "chunked"  # chunked | length | close
    end: str = "done"
    giant: int = 0
    splits: list[int] = field(default_factory=list)

    def body(self) -> bytes:
        data = stream_bytes(self.pieces, done=self.end in ("done", "cut"))
        if self.end == "malformed":
            data += b"data: {not json\n\n"
        elif self.end == "giant":
            data += b"data: " + b"x" * self.giant
        if self.gzip:
            data = gzip.compress(data, mtime=0)  # the same bytes every time it is built
        return data

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _continued(script: Script, request: dict[str, Any]) -> Script:
    """``script``, or for a proxy's continuation request (the text produced so far as a
    final assistant message, ``continue_final_message``) the rest of its text after that
    prefix, as an upstream that continues answers (vLLM's reading of the fields)."""
    messages = request.get("messages") or []
    if not request.get("continue_final_message") or not messages or messages[-1].get("role") != "assistant":
        return script
    produced = messages[-1].get("content") or ""
    if not "".join(script.pieces).startswith(produced):
        return script
    rest, skip = [], len(produced)
    for piece in script.pieces:
        taken = min(skip, len(piece))
        skip -= taken
        if piece[taken:] or not taken:
            rest.append(piece[taken:])
    return dataclasses.replace(script, pieces=rest)


def _cut(data: bytes, splits: list[int]) -> list[bytes]:
    pieces, start = [], 0
    for size in splits:
        if start >= len(data):
            break
        pieces.append(data[start : start + max(size, 1)])
        start += max(size, 1)
    if start < len(data):
        pieces.append(data[start:])
    return pieces


class ScriptedUpstream:
    """The server, on its own event loop thread; ``url`` once started."""

    def __init__(self) -> None:
        self.open = 0
        self.seen: dict[str, list[dict[str, str]]] = {}
        self.lock = threading.Lock()
        self.url = ""

    def settled(self, timeout: float = 5.0) -> int:
        """The open connection count, once it is zero or ``timeout`` has passed."""
        deadline = time.monotonic() + timeout
        while self.open and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.open

    async def _head(self, reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n")[1:]:
            if b":" in line:
                name, value = line.split(b":", 1)
                headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        body = b""
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        return headers, body

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self.lock:
            self.open += 1
        try:
            headers, body = await self._head(reader)
            try:
                request = json.loads(body)
                script = _continued(Script(**request["script"]), request)
                user = str(request["user"])
            except (ValueError, KeyError, TypeError):
                writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                await writer.drain()
                return
            with self.lock:
                self.seen.setdefault(user, []).append(headers)
            await self._answer(script, user, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            with self.lock:
                self.open -= 1

    async def _until_closed(self, reader: asyncio.StreamReader, limit: float) -> None:
        """Wait for the proxy to close the connection (or ``limit`` seconds, then give up)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(), limit)

    async def _answer(
        self, script: Script, user: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if script.delay:
            await self._until_closed(reader, script.delay)
            if reader.at_eof():
                return
        if script.status == 0:  # not HTTP at all
            writer.write(b"SSH-2.0-nonsense\r\n\r\n")
            return
        body = script.body()
        head = [f"HTTP/1.1 {script.status} X", f"content-type: {script.ctype}", "connection: close"]
        head.append(f"set-cookie: leaked=secret-of-{user}")
        if script.gzip:
            head.append("content-encoding: gzip")
        if script.framing == "chunked":
            head.append("transfer-encoding: chunked")
        elif script.framing == "length":
            head.append(f"content-length: {len(body) + (50 if script.end == 'cut' else 0)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        if script.end == "cut":
            body = body[: len(body) * 2 // 3]
        for piece in _cut(body, script.splits):
            if script.framing == "chunked":
                piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.001)
        if script.end == "stall":
            await self._until_closed(reader, 30)
            return
        if script.framing == "chunked" and script.end != "cut":
            writer.write(b"0\r\n\r\n")
        await writer.drain()


@contextlib.contextmanager
def scripted_upstream() -> Iterator[ScriptedUpstream]:
    upstream = ScriptedUpstream()
    loop = asyncio.new_event_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)

    async def start() -> asyncio.Server:
        return await asyncio.start_server(upstream.handle, sock=sock)

    server = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    upstream.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield upstream
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
