"""Real servers on loopback for the transport tests: uvicorn in a thread, and a fake OpenAI upstream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import threading
import time
import zlib
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
        if "continue_final_message" in body:  # as OpenAI's hosted API: no continuation
            error = {"message": "Unrecognized request argument supplied: continue_final_message"}
            return JSONResponse({"error": {**error, "type": "invalid_request_error"}}, status_code=400)
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


class ScriptedUpstream:
    """A fake upstream of every API pacer paces, replaying ``pacer.testing.streams`` at
    ``speed`` times their pace. The request's ``model`` picks a scenario: ``"error"``
    reports an error a few events in, ``"cut"`` stops before the stream's end event.
    ``requests`` holds each request's path and JSON body, as received."""

    def __init__(self, speed: float = 10.0) -> None:
        from pacer.testing import streams

        self.speed = speed
        self.requests: list[tuple[str, Any]] = []
        self.scripts = {
            "/v1/chat/completions": lambda body: streams.chat(
                n=body.get("n", 1), logprobs=bool(body.get("logprobs")), tools=bool(body.get("tools"))
            ),
            "/v1/completions": lambda body: streams.completions(logprobs=body.get("logprobs") is not None),
            "/v1/responses": lambda body: streams.responses(),
            "/v1/messages": lambda body: streams.messages(),
        }
        self.app = Starlette(routes=[Route(path, self.stream, methods=["POST"]) for path in self.scripts])

    async def stream(self, request: Request) -> Response:
        from pacer.testing.streams import frames

        body = await request.json()
        path = next(p for p in self.scripts if request.url.path.endswith(p))
        self.requests.append((path, body))
        messages = body.get("messages") or [{}]
        if body.get("continue_final_message") or messages[-1].get("role") == "assistant":
            error = {"message": "this fake replays its scripts and cannot continue an answer"}
            return JSONResponse({"error": {**error, "type": "invalid_request_error"}}, status_code=400)
        events = self.scripts[path](body)
        model = body.get("model")
        if model == "cut":
            events = events[: len(events) // 2]
        elif model == "error":
            t, name, _ = events[6]
            error = _API_ERRORS[path]
            events = [*events[:6], (t, name if name is None else "error", error)]
        speed = self.speed

        async def replay() -> AsyncIterator[bytes]:
            start = time.monotonic()
            for t, data in frames(events):
                delay = start + t / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield data

        return StreamingResponse(replay(), media_type="text/event-stream")


_CRASH = {"error": {"message": "model crashed", "type": "server_error"}}
_API_ERRORS = {
    "/v1/chat/completions": json.dumps(_CRASH),
    "/v1/completions": json.dumps(_CRASH),
    "/v1/responses": json.dumps(
        {
            "type": "error",
            "code": "server_error",
            "message": "model crashed",
            "param": None,
            "sequence_number": 6,
        }
    ),
    "/v1/messages": json.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    ),
}


def decompressed(data: bytes, encoding: str | None) -> bytes:
    """``data`` decoded from an HTTP content coding, as far as it goes (a cut stream too)."""
    if not encoding or encoding == "identity":
        return data
    if encoding in ("gzip", "deflate"):
        return zlib.decompressobj(31 if encoding == "gzip" else 15).decompress(data)
    if encoding == "br":
        import brotli

        return brotli.Decompressor().process(data)  # type: ignore[no-any-return]
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj().decompress(data)  # type: ignore[no-any-return]


@contextlib.contextmanager
def cli_proxy(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, Any]]:
    """``pacer proxy ARGS --port N`` in its own process (``env`` added to its environment),
    once it answers; yields its URL and the process (terminated on the way out; its
    stderr is then ``process.log``). The stderr goes to a file, not a pipe: a pipe
    nobody reads until the end fills after some 500 access-log lines, and the proxy
    then blocks on its next log write and answers nothing more."""
    import os
    import subprocess
    import sys
    import tempfile

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "pacer", "proxy", *args, "--port", str(port)]
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stderr=stderr, text=True, env={**os.environ, **(env or {})})
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{url}/v1/models", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and process.poll() is None, "the proxy did not start"
                    time.sleep(0.1)
            yield url, process
        finally:
            process.terminate()
            process.wait(timeout=30)
            stderr.seek(0)
            process.log = stderr.read()


def wait_for(probe: Any, timeout: float = 60) -> Any:
    """``probe()``'s first true value, asked every 20 ms (a browser page getting somewhere)."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, "the page did not get there"
        time.sleep(0.02)
    return value


def chromium(*capabilities: tuple[str, Any]) -> Any:
    """A headless Chromium driven by Selenium; skips (fails under CI) when none is installed."""
    import os
    import shutil

    import pytest

    webdriver = pytest.importorskip("selenium.webdriver")
    browser, driver_path = (
        shutil.which("chromium") or shutil.which("chromium-browser"),
        shutil.which("chromedriver"),
    )
    if not (browser and driver_path):
        if os.environ.get("CI"):
            pytest.fail("CI must have chromium and chromedriver (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium/chromedriver here: apt-get install chromium chromium-driver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,800")
    for name, value in capabilities:
        options.set_capability(name, value)
    return webdriver.Chrome(service=Service(driver_path), options=options)


class RedisServer:
    """Debian's ``redis-server`` on a free loopback port, no persistence; ``restart()``
    brings it back empty on the same port."""

    def __init__(self, executable: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.executable = executable
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Any = None

    def start(self) -> None:
        import subprocess

        command = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline and self.process.poll() is None, "redis-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A ``RedisServer`` for a test; skips (fails under CI) without redis-server or redis-py."""
    import os
    import shutil

    import pytest

    executable = shutil.which("redis-server")
    missing = None
    if executable is None:
        missing = "no redis-server here: apt-get install redis-server"
    else:
        try:
            import redis  # noqa: F401
        except ModuleNotFoundError:
            missing = "no redis package here: pip install 'pacer-llm[redis]'"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have Redis: {missing}")
        pytest.skip(missing)
    assert executable is not None
    server = RedisServer(executable)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Relay:
    """A TCP relay on a free loopback port to ``target`` (host, port), in a thread;
    ``cut()`` drops every connection it carries, as a network that fails would."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self.lock:
            connections, self.connections = self.connections, []
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.shutdown(socket.SHUT_RDWR)  # wakes the relay's threads, and ends mid-body
            conn.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


class SentencesUpstream:
    """A fake OpenAI upstream whose answers are short sentences, by model name:
    ``"flood"`` sends 600 of them as fast as it can (one event each), any other model
    sends ``CLEAN`` in a few events."""

    CLEAN = "The weather is mild today. A light wind comes from the west. Take a coat anyway."

    def __init__(self) -> None:
        self.closed: list[str] = []  # the models of the streams closed (finished or cancelled)
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> Response:
        model = (await request.json()).get("model", "clean")
        return StreamingResponse(self.stream(model), media_type="text/event-stream")

    async def stream(self, model: str) -> AsyncIterator[bytes]:
        base = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(body)}\n\n".encode()

        if model == "flood":
            pieces = [f"Line {i} is short. " for i in range(600)]
        else:
            pieces = [word + " " for word in self.CLEAN.split(" ")]
            pieces[-1] = pieces[-1].rstrip()
        try:
            yield chunk({"role": "assistant", "content": ""})
            for piece in pieces:
                yield chunk({"content": piece})
                await asyncio.sleep(0)
            yield chunk({}, finish="stop")
            yield b"data: [DONE]\n\n"
        finally:
            self.closed.append(model)


class StatusUpstream:
    """A fake OpenAI upstream for failover: each chat request (counted in ``requests``)
    is answered with ``status`` (and ``headers``) and a JSON error, or, for 200, a short
    chat answer (streamed when asked); ``delay``: seconds before the response headers;
    ``cut``: the stream stops before its end; ``hold``: the stream waits halfway until the
    event is set. ``GET /v1/models`` answers 200 (or ``probe_status``)."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        self.delay = 0.0
        self.cut = False
        self.hold: threading.Event | None = None
        self.probe_status = 200
        self.requests = 0
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
            ]
        )

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": []}, status_code=self.probe_status)

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            error = {"error": {"message": f"status {self.status} from here", "type": "fake"}}
            return JSONResponse(error, status_code=self.status, headers=self.headers)
        if not body.get("stream"):
            message = {"role": "assistant", "content": TEXT}
            return JSONResponse(
                {"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": message}]}
            )
        return StreamingResponse(self.stream(), media_type="text/event-stream")

    async def stream(self) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            body = {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}
            return f"data: {json.dumps(body)}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""})
        for i, piece in enumerate(CONTENT):
            if i == len(CONTENT) // 2:
                if self.cut:
                    return
                while self.hold is not None and not self.hold.is_set():
                    await asyncio.sleep(0.01)
            yield chunk({"content": piece})
        yield chunk({}, finish="stop")
        yield b"data: [DONE]\n\n"
