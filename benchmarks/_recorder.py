"""A streaming client that costs little: record during the run, parse after it.

During the run each connection only keeps ``(time, bytes)`` per read (one ``epoll``
loop: a ``recv`` and an append a read), so thousands of streams can be measured from
one process. After the run,
``parse`` rebuilds each response: the HTTP head, a chunked or close-delimited body,
gzip undone where the response says so, SSE decoded with ``pacer.sse.SSEDecoder``; each
event arrived at the time of the read that completed it. Requests say ``connection:
close``, so a response ends when its connection does and nothing is parsed on the way.
"""

from __future__ import annotations

import json
import select
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from pacer.sse import ServerSentEvent, SSEDecoder


@dataclass
class Stream:
    """What one client saw: its events' times and text, and how the stream ended."""

    seed: int
    times: list[float] = field(default_factory=list)  # when each event arrived (since the request)
    ends: list[int] = field(default_factory=list)  # the text length after each event
    text: str = ""
    done_last: bool = False
    error: str = ""  # the data of an ``event: error``, or what went wrong on the wire
    encoding: str = "identity"  # the response's content-encoding

    def take(self, sse: ServerSentEvent, at: float) -> None:
        """One SSE event the client read at ``at`` (seconds since the request)."""
        self.done_last = sse.data == "[DONE]"
        if self.done_last:
            return
        if sse.event == "error":
            self.error = sse.data
            return
        for choice in json.loads(sse.data)["choices"]:
            self.text += choice["delta"].get("content") or ""
        self.times.append(at)
        self.ends.append(len(self.text))


class Recording:
    """One connection's reads, ``(time, bytes)`` each (times from ``time.monotonic()``),
    and ``start``, when its request was sent."""

    __slots__ = ("reads", "request", "sock", "start")

    def __init__(self, request: bytes) -> None:
        self.request, self.sock = request, socket.socket()
        self.start = 0.0
        self.reads: list[tuple[float, bytes]] = []


def _request(host: str, port: int, seed: int, gzip: bool) -> bytes:
    body = json.dumps({"model": "m", "messages": [], "stream": True, "user": str(seed)}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(body)}\r\nconnection: close\r\n"
    head += "accept-encoding: gzip\r\n\r\n" if gzip else "\r\n"
    return head.encode() + body


def record(
    host: str,
    port: int,
    seeds: range,
    gzip: bool,
    timeout: float,
    ramp: float = 0.0,
    tick: Callable[[], object] = lambda: None,
) -> list[Recording]:
    """Open one stream per seed, their starts spread evenly over ``ramp`` seconds, and
    record every read until each closes, or until ``ramp + timeout`` seconds, when the
    ones still open are cut (and parse as wrong). ``tick`` is called about every 0.5 s.

    One ``epoll`` loop, no asyncio: a read costs a ``recv`` and an append, and every
    read one poll returns takes that poll's time.
    """
    poller = select.epoll()
    recordings = [Recording(_request(host, port, seed, gzip)) for seed in seeds]
    by_fd: dict[int, Recording] = {}
    connecting: set[int] = set()
    t0 = time.monotonic()
    deadline, next_tick, started, live = t0 + ramp + timeout, t0 + 0.5, 0, 0
    try:
        while started < len(recordings) or live:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_tick:
                tick()
                next_tick = now + 0.5
            next_start = t0 + ramp * started / len(recordings)
            while started < len(recordings) and now >= next_start:
                rec = recordings[started]
                rec.sock.setblocking(False)
                rec.sock.connect_ex((host, port))
                by_fd[rec.sock.fileno()] = rec
                connecting.add(rec.sock.fileno())
                poller.register(rec.sock.fileno(), select.EPOLLOUT)
                started, live = started + 1, live + 1
                next_start = t0 + ramp * started / len(recordings)
            wait = 0.05 if started == len(recordings) else min(0.05, max(0.0, next_start - now))
            ready = poller.poll(wait, len(recordings) + 1)  # every ready socket at once
            at = time.monotonic()
            for fd, _ in ready:
                rec = by_fd[fd]
                data = b""
                if fd in connecting:
                    connecting.discard(fd)
                    if rec.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        rec.start = time.monotonic()
                        rec.sock.send(rec.request)  # a few hundred bytes: an empty buffer takes them
                        poller.modify(fd, select.EPOLLIN)
                        continue
                else:
                    try:
                        data = rec.sock.recv(65536)
                    except OSError:  # reset: as closed
                        data = b""
                if data:
                    rec.reads.append((at, data))
                else:  # closed (or refused, or reset)
                    poller.unregister(fd)
                    rec.sock.close()
                    live -= 1
    finally:
        for rec in recordings:
            rec.sock.close()
        poller.close()
    return recordings


class _Body:
    """A response's head, then its body bytes, chunked or close-delimited, read by read."""

    def __init__(self) -> None:
        self.buffer = b""
        self.head: dict[str, str] | None = None
        self.chunked = False
        self.left = 0  # data bytes left in the current chunk; 0: a line is next
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        if self.head is None:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return b""
            lines = head.decode("latin-1").split("\r\n")
            if lines[0].split(" ")[1] != "200":
                raise ValueError(lines[0])
            self.head = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                self.head[name.strip().lower()] = value.strip()
            self.chunked = self.head.get("transfer-encoding", "").lower() == "chunked"
            self.buffer = rest
        if not self.chunked:
            out, self.buffer = self.buffer, b""
            return out
        out = []
        while not self.ended:
            if self.left:  # inside a chunk's data
                piece = self.buffer[: self.left]
                if not piece:
                    break
                out.append(piece)
                self.buffer, self.left = self.buffer[len(piece) :], self.left - len(piece)
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                break
            self.buffer = rest
            if line:  # a size line; an empty one is the CRLF that closes a chunk's data
                self.left = int(line.split(b";")[0], 16)
                self.ended = self.left == 0
        return b"".join(out)


def parse(seed: int, recording: Recording) -> Stream:
    """The events of one recorded response, each timed by the read it completed in."""
    stream = Stream(seed)
    body, decoder = _Body(), SSEDecoder()
    gunzip = None
    try:
        for at, data in recording.reads:
            plain = body.feed(data)
            if gunzip is None and body.head is not None and body.head.get("content-encoding") == "gzip":
                stream.encoding, gunzip = "gzip", zlib.decompressobj(16 + zlib.MAX_WBITS)
            if gunzip is not None:
                plain = gunzip.decompress(plain)
            for sse in decoder.feed(plain):
                stream.take(sse, at - recording.start)
        if body.chunked and not body.ended:
            stream.error = stream.error or "the chunked body did not end"
    except (ValueError, zlib.error) as exc:
        stream.error = f"{type(exc).__name__}: {exc}"
    return stream
