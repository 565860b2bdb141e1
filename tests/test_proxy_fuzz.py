"""The proxy and the server against random clients and random upstreams, all at once.

Each example starts a few clients together against one proxy, each with its own
behaviour (reads everything, leaves early, never reads, sends garbage) and its own
scripted upstream answer (slow headers, error status, wrong content type, gzip, any
framing, cut, stalled, malformed or giant SSE, split anywhere on the wire). Whatever
the mix:

- a client that reads gets exactly what the upstream's answer entitles it to: the
  paced text of a whole stream and ``[DONE]``; a cut stream's text and an error event,
  never ``[DONE]``; a relayed body byte for byte (or cut short with the connection,
  when the upstream's was); 502/504 only for an upstream that is not HTTP or too slow;
- garbage gets a 4xx, never a 5xx;
- no upstream request carries another client's cookie or credentials;
- once the clients are gone, no upstream connection is left open;
- memory stays flat while hundreds of MiB go through, whatever the peer sends.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import socket
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from pacer import Pacer
from pacer.proxy import ProxyTimeouts, create_proxy
from pacer.server import PacingMiddleware
from pacer.sse import ServerSentEvent, SSEDecoder

from .hostile import content_of, stream_bytes
from .scripted import Script, ScriptedUpstream, scripted_upstream
from .servers import decompressed, serve

pytestmark = pytest.mark.timeout(300)

FIRST_BYTE = 1.0
MAX_LINE = 4096
MAX_BODY = 1 << 16
_users = itertools.count()


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with scripted_upstream() as server:
        yield server


@pytest.fixture(scope="module")
def proxy(upstream: ScriptedUpstream) -> Iterator[str]:
    app = create_proxy(
        upstream.url,
        lambda: Pacer(cps=20000, max_lag=0.05, unit="word"),
        heartbeat=5,
        timeouts=ProxyTimeouts(connect=2, first_byte=FIRST_BYTE, idle=0.4, total=20),
        max_body=MAX_BODY,
        max_line=MAX_LINE,
    )
    with serve(app) as url:
        yield url


# -- what the peers do ----------------------------------------------------------------------

pieces = st.lists(st.text(max_size=12), max_size=6)
scripts = st.builds(
    Script,
    pieces=pieces,
    delay=st.sampled_from([0.0, 0.0, 0.0, 3 * FIRST_BYTE]),
    status=st.sampled_from([200, 200, 200, 200, 0, 400, 500, 503]),
    ctype=st.sampled_from(
        ["text/event-stream", "text/event-stream; charset=utf-8", "application/json", "text/html"]
    ),
    gzip=st.booleans(),
    framing=st.sampled_from(["chunked", "length", "close"]),
    end=st.sampled_from(["done", "done", "none", "cut", "stall", "malformed", "giant"]),
    giant=st.just(MAX_LINE + 2000),
    splits=st.lists(st.integers(1, 40), max_size=12),
)
GARBAGE = [
    ("body", b"\xff\xfe{}"),
    ("body", b'{"a": "\xc3"}'),
    ("body", b"[" * 20_000 + b"]" * 20_000),
    ("body", b"{not json"),
    ("path", b"/v1/../../admin"),
    ("path", b"/%2e%2E/admin"),
    ("big", b"x" * (MAX_BODY + 1)),
    ("line", b"GET /\x00\x01 HTTP/1.1"),
    ("line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),  # a TLS hello, to a plain port
]
garbage = st.one_of(st.sampled_from(GARBAGE), st.tuples(st.just("body"), st.binary(max_size=64)))


@dataclass
class Client:
    kind: str  # read | leave | idle | garbage
    script: Script
    cookie: bool = True  # sends its own cookie and credentials
    leave_after: int = 0
    junk: tuple[str, bytes] = ("body", b"")


clients = st.builds(
    Client,
    kind=st.sampled_from(["read", "read", "read", "leave", "idle", "garbage"]),
    script=scripts,
    cookie=st.booleans(),
    leave_after=st.integers(0, 400),
    junk=garbage,
)


# -- running one client ---------------------------------------------------------------------


def _request(user: str, script: Script) -> tuple[dict[str, Any], dict[str, str]]:
    body = {"model": "m", "messages": [], "stream": True, "user": user, "script": script.as_json()}
    # A user named "u..." sends its own cookie and credentials; "n..." sends none.
    headers = {"cookie": f"c={user}", "authorization": f"Bearer {user}"} if user[0] == "u" else {}
    return body, headers


@dataclass
class Seen:
    status: int = 0
    raw: bytes = b""
    events: list[ServerSentEvent] | None = None
    error: Exception | None = None


def _read(url: str, user: str, script: Script) -> Seen:
    body, headers = _request(user, script)
    seen = Seen()
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30) as r:
            seen.status = r.status_code
            for piece in r.iter_raw():
                seen.raw += piece
    except httpx.HTTPError as exc:  # a relayed body cut short is cut short for us too
        seen.error = exc
    if seen.status == 200 and r.headers.get("content-type", "").startswith("text/event-stream"):
        decoder = SSEDecoder()
        data = decompressed(seen.raw, r.headers.get("content-encoding"))  # the proxy's, per event
        seen.events = decoder.feed(data) + decoder.flush()
    return seen


def _leave(url: str, user: str, script: Script, after: int) -> None:
    body, headers = _request(user, script)
    got = 0
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30) as r:
            for piece in r.iter_raw():
                got += len(piece)
                if got >= after:
                    break
    except httpx.HTTPError:
        pass


def _raw(url: str, data: bytes | Iterable[bytes], read: bool = True, linger: float = 0.0) -> int:
    """Send ``data`` (bytes, or pieces of them) as it is; the response's status (0: the
    connection closed, or was reset, before one could be read)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        with contextlib.suppress(OSError):  # refused partway (a 413 closes the connection)
            for piece in [data] if isinstance(data, bytes) else data:
                s.sendall(piece)
        time.sleep(linger)
        if not read:
            return 0
        answer = b""
        with contextlib.suppress(OSError):
            while piece := s.recv(65536):
                answer += piece
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _idle(url: str, user: str, script: Script) -> None:
    body, headers = _request(user, script)
    data = json.dumps(body).encode()
    head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head += f"content-length: {len(data)}\r\n\r\n"
    _raw(url, head.encode() + data, read=False, linger=0.2)


def _garbage(url: str, junk: tuple[str, bytes]) -> int:
    kind, data = junk
    if kind == "line":
        return _raw(url, data + b"\r\nHost: x\r\n\r\n")
    if kind == "path":
        return _raw(url, b"GET " + data + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += f"content-length: {len(data)}"
    return _raw(url, head.encode() + b"\r\n\r\n" + data)


# -- what a reading client is entitled to ---------------------------------------------------


def _check_stream(script: Script, seen: Seen) -> None:
    assert seen.events is not None and seen.error is None
    events, whole = seen.events, "".join(script.pieces)
    text = content_of(events)
    if script.end == "done":
        assert text == whole
        assert events[-1].data == "[DONE]"
        assert all(e.event == "message" for e in events)
        return
    assert all(e.data != "[DONE]" for e in events), "a cut stream must never end in [DONE]"
    assert events and events[-1].event == "error"
    assert json.loads(events[-1].data)["error"]["type"]
    assert whole.startswith(text)
    if script.end in ("none", "malformed", "giant", "stall"):
        assert text == whole  # everything the upstream sent before failing was shown


def _check_relay(script: Script, seen: Seen) -> None:
    assert seen.status == script.status
    sent = script.body()
    if script.end == "cut":
        sent = sent[: len(sent) * 2 // 3]
    whole = script.end not in ("cut", "stall") or (script.framing == "length" and script.end == "stall")
    if whole or (script.framing == "close" and script.end == "cut"):
        assert seen.error is None, (script, seen)
        assert seen.raw == sent, (script, seen)
    else:  # the upstream's body never ended properly: neither does ours
        assert seen.error is not None and sent.startswith(seen.raw)


def check_read(script: Script, seen: Seen) -> None:
    if script.delay > FIRST_BYTE:
        assert seen.status == 504, seen
        return
    if script.status == 0:
        assert seen.status == 502, seen
        return
    if script.status == 200 and script.ctype.startswith("text/event-stream"):
        assert seen.status == 200
        _check_stream(script, seen)
    else:
        _check_relay(script, seen)


def _run(url: str, client: Client, user: str) -> None:
    if client.kind == "read":
        check_read(client.script, _read(url, user, client.script))
    elif client.kind == "leave":
        _leave(url, user, client.script, client.leave_after)
    elif client.kind == "idle":
        _idle(url, user, client.script)
    else:
        status = _garbage(url, client.junk)
        assert 400 <= status < 500 or (status == 0 and client.junk[0] == "line"), (client.junk, status)


@settings(max_examples=30)
@given(st.lists(clients, min_size=1, max_size=5))
def test_any_mix_of_clients_and_upstreams(proxy: str, upstream: ScriptedUpstream, mix: list[Client]) -> None:
    users = [f"{'u' if client.cookie else 'n'}{next(_users)}" for client in mix]
    with ThreadPoolExecutor(len(mix)) as pool:
        for done in [pool.submit(_run, proxy, client, user) for client, user in zip(mix, users, strict=True)]:
            done.result()
    assert upstream.settled() == 0, "upstream connections left open after every client left"
    for user in users:
        own = user[0] == "u"
        for headers in upstream.seen.get(user, []):
            assert headers.get("cookie") == (f"c={user}" if own else None)
            assert headers.get("authorization") == (f"Bearer {user}" if own else None)


# -- the server: PacingMiddleware over an app that misbehaves ------------------------------


def _inner(script: Script) -> Starlette:
    """An app that streams ``script``'s SSE (uncompressed), raising where the upstream would cut."""
    data = stream_bytes(script.pieces, done=script.end == "done")
    if script.end == "malformed":
        data += b"data: {not json\n\n"

    async def chat(request: Request) -> StreamingResponse:
        async def gen() -> Any:
            start = 0
            for size in script.splits:
                yield data[start : start + size]
                start += size
            yield data[start:]
            if script.end == "cut":
                raise RuntimeError("the app fell over")

        return StreamingResponse(gen(), media_type=script.ctype)

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@settings(max_examples=30)
@given(
    st.builds(
        Script,
        pieces=pieces,
        end=st.sampled_from(["done", "none", "cut", "malformed"]),
        ctype=st.sampled_from(["text/event-stream", "application/json"]),
        splits=st.lists(st.integers(1, 40), max_size=12),
    ),
    st.booleans(),
)
def test_middleware_over_any_stream(script: Script, leave: bool) -> None:
    app = PacingMiddleware(_inner(script), lambda: Pacer(cps=20000, max_lag=0.05, unit="word"))
    with serve(app) as url:
        if leave:
            _leave(url, "m", script, 50)
            return
        seen = _read(url, "m", script)
    if script.ctype == "application/json":
        if script.end == "cut":  # the app's body cut short: the connection is, too
            assert seen.error is not None
        else:
            assert seen.raw == stream_bytes(script.pieces, done=script.end == "done") + (
                b"data: {not json\n\n" if script.end == "malformed" else b""
            )
        return
    assert seen.status == 200
    _check_stream(script, seen)


# -- memory ---------------------------------------------------------------------------------

MiB = 1 << 20


def _peak(action: Any) -> int:
    """The most memory Python allocated (every thread) while ``action()`` ran, in bytes."""
    gc.collect()
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class _Flood:
    """An upstream whose answer is ``size`` bytes: a JSON body (``json``), or an SSE line
    that never ends (``line``)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> StreamingResponse:
        kind = (await request.json())["model"]
        block = b"x" * 65536

        async def gen() -> Any:
            if kind == "line":
                yield b"data: "
            for _ in range(self.size // len(block)):
                yield block

        media = "application/json" if kind == "json" else "text/event-stream"
        return StreamingResponse(gen(), media_type=media)


def _drain(url: str, model: str) -> tuple[int, list[ServerSentEvent]]:
    got, decoder, events = 0, SSEDecoder(), []
    body = {"model": model, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
        for piece in r.iter_bytes():
            got += len(piece)
            if model == "line":
                events += decoder.feed(piece)
    return got, events


def _upload(url: str, size: int) -> int:
    """POST ``size`` bytes whatever the proxy does meanwhile; its status (see ``_raw``)."""
    head = f"POST /v1/anything HTTP/1.1\r\nHost: x\r\ncontent-length: {size}\r\n\r\n".encode()
    block = b"z" * 65536
    return _raw(url, itertools.chain([head], itertools.repeat(block, size // len(block))))


def test_memory_stays_flat_whatever_a_peer_sends() -> None:
    size = 48 * MiB
    with serve(_Flood(size).app) as up:
        app = create_proxy(
            up, lambda: Pacer(cps=1e9, max_lag=0.01, unit="word"), max_body=MiB, max_line=MiB, heartbeat=5
        )
        with serve(app) as url:
            _drain(url, "json")  # warm: imports, pools, first allocations
            relayed: list[int] = []
            assert _peak(lambda: relayed.append(_drain(url, "json")[0])) < 16 * MiB
            assert relayed == [size]  # 48 MiB relayed, never held

            ended: list[list[ServerSentEvent]] = []
            assert _peak(lambda: ended.append(_drain(url, "line")[1])) < 16 * MiB
            assert ended[0][-1].event == "error"  # an endless line ends at max_line, with an error

            refused: list[int] = []
            assert _peak(lambda: refused.append(_upload(url, size))) < 16 * MiB
            assert refused[0] in (413, 0)
