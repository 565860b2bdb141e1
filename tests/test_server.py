"""Transport: the pacing proxy, PacedEventSource and PacingMiddleware on real uvicorn servers."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from pacer import Pacer, SentenceSplitter
from pacer.proxy import create_proxy
from pacer.server import EventStreamResponse, PacedEventSource, PacingMiddleware
from pacer.sse import ServerSentEvent, SSEDecoder

from .servers import CONTENT, TEXT, Upstream, serve

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Upstream, str]]:
    fake = Upstream()
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def proxy(upstream: tuple[Upstream, str]) -> Iterator[str]:
    app = create_proxy(
        upstream[1], lambda: Pacer(cps=3000, max_lag=0.2), heartbeat=0.3, send_timeout=5, max_line=1 << 16
    )
    with serve(app) as url:
        yield url


def _events(url: str, model: str, user: str = "") -> tuple[list[ServerSentEvent], bytes]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    raw = b""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True, "user": user}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        for piece in response.iter_bytes():
            raw += piece
            events.extend(decoder.feed(piece))
    return events + decoder.flush(), raw


def _content(events: list[ServerSentEvent]) -> str:
    text = ""
    for event in events:
        if event.data == "[DONE]" or event.event != "message":
            continue
        for choice in json.loads(event.data)["choices"]:
            text += choice["delta"].get("content") or ""
    return text


def test_paced_output_equals_upstream_content_with_done_last(proxy: str) -> None:
    events, _ = _events(proxy, "normal")
    assert _content(events) == TEXT
    assert events[-1].data == "[DONE]"
    chunks = [json.loads(e.data) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # role chunk kept first
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 11  # usage kept last
    assert {c["id"] for c in chunks} == {"chatcmpl-42"} and {c["model"] for c in chunks} == {"normal"}
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    # Re-chunked by the pacer (graphemes due together), not the upstream's pieces; how many
    # chunks depends on how the pieces' arrivals fall on the pacer's ticks.
    assert len(content) > 1 and content != CONTENT


def test_heartbeats_during_a_stall(proxy: str) -> None:
    events, raw = _events(proxy, "stall")
    assert _content(events) == TEXT
    assert b": ping\n\n" in raw  # a comment: clients ignore it, proxies keep the connection
    assert raw.index(b": ping") < raw.index(b"[DONE]")


def test_a_client_that_stops_reading_is_dropped_after_send_timeout() -> None:
    outcomes: list[str] = []

    async def endless() -> Any:
        block = b"data: " + b"x" * 65536 + b"\n\n"
        while True:
            yield block

    async def endpoint(request: Request) -> EventStreamResponse:
        return EventStreamResponse(endless(), send_timeout=0.3, on_close=outcomes.append)

    with serve(Starlette(routes=[Route("/s", endpoint)])) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
            deadline = time.monotonic() + 10
            while not outcomes and time.monotonic() < deadline:
                time.sleep(0.05)
    assert outcomes == ["send_timeout"]


def test_a_ping_follows_each_stretch_of_silence_not_a_fixed_timer() -> None:
    async def frames() -> Any:
        for pause in (0.05, 0.5, 0.05, 0.05, 0.05, 0.5):
            await anyio.sleep(pause)
            yield b"data: x\n\n"

    async def endpoint(request: Request) -> EventStreamResponse:
        return EventStreamResponse(frames(), heartbeat=0.3)

    with serve(Starlette(routes=[Route("/s", endpoint)])) as url:
        raw = httpx.get(f"{url}/s").content
    # One ping in each 0.5 s silence, none in the short ones.
    assert raw.split(b"data: x\n\n") == [b"", b": ping\n\n", b"", b"", b"", b": ping\n\n", b""]


def test_no_heartbeat_while_text_flows(proxy: str) -> None:
    _, raw = _events(proxy, "normal")
    assert b": ping" not in raw


@pytest.mark.parametrize("options", [{"resume": "never"}, {"orphan_timeout": 0}, {}])
def test_disconnect_cancels_the_upstream_request_at_once(
    upstream: tuple[Upstream, str], options: dict[str, Any]
) -> None:
    """Without resumable streams, with no orphan time, or (by default) for a request that did
    not ask to be resumable (no X-Pacer-Resumable: 1), its client leaving ends the generation."""
    fake, _ = upstream
    user = f"disconnect-{'-'.join(sorted(options)) or 'not-asked'}"
    body = {"model": "slow", "messages": [], "stream": True, "user": user}
    app = create_proxy(upstream[1], lambda: Pacer(cps=3000, max_lag=0.2), **options)
    with serve(app) as proxy:
        with httpx.stream("POST", f"{proxy}/v1/chat/completions", json=body, timeout=30) as response:
            for piece in response.iter_bytes():
                if b"content" in piece and b"Streaming" in piece:
                    break
            closed_at = time.monotonic()
        deadline = time.monotonic() + 5
        while user not in fake.closed and time.monotonic() < deadline:
            time.sleep(0.005)
    assert user in fake.closed
    assert user not in fake.completed
    assert fake.closed[user] - closed_at < 0.1


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("error", "model crashed"),
        ("malformed", "malformed JSON"),
        ("drop", ""),
        ("longline", "max_line"),
    ],
)
def test_upstream_failures_end_with_an_error_event_after_what_came_before(
    proxy: str, model: str, message: str
) -> None:
    events, _ = _events(proxy, model)
    assert events[-1].event == "error"
    error = json.loads(events[-1].data)["error"]
    assert message in error["message"]
    assert error["type"]
    assert _content(events[:-1]) == "".join(TEXT_PIECES_BEFORE_FAILURE)
    assert all(e.data != "[DONE]" for e in events)


TEXT_PIECES_BEFORE_FAILURE = ["Streaming ", "output ", "needs a ", "calm rhythm"]


def test_upstream_error_status_passes_through(proxy: str) -> None:
    body = {"model": "rate-limited", "messages": [], "stream": True}
    response = httpx.post(f"{proxy}/v1/chat/completions", json=body)
    assert response.status_code == 429
    assert response.json()["error"]["message"] == "slow down"


def test_non_streaming_and_other_routes_pass_through(proxy: str) -> None:
    response = httpx.post(f"{proxy}/v1/chat/completions", json={"model": "normal", "messages": []})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == TEXT
    models = httpx.get(f"{proxy}/v1/models")
    assert models.json()["data"][0]["id"] == "normal"


def test_bad_request_body_is_a_clear_400(proxy: str) -> None:
    response = httpx.post(
        f"{proxy}/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]["message"]


def test_official_openai_client_consumes_the_proxy(proxy: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{proxy}/v1", api_key="not-needed", max_retries=0)
    stream = client.chat.completions.create(
        model="normal", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = ""
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == TEXT
    assert finish == "stop"
    with pytest.raises(openai.APIError, match="model crashed"):
        for _ in client.chat.completions.create(model="error", messages=[], stream=True):
            pass


# -- PacedEventSource and PacingMiddleware ------------------------------------------------


async def _sentences(request: Request) -> PacedEventSource:
    mode = request.query_params.get("mode", "ok")

    async def source() -> Any:
        for piece in ["Hello there. ", "How are ", "you? ", "Fine."]:
            yield piece
        if mode == "fail":
            raise ValueError("the model went away")

    return PacedEventSource(source(), SentenceSplitter() | Pacer(cps=5000, unit="word"), heartbeat=1.0)


def test_paced_event_source_streams_sentences_then_done() -> None:
    app = Starlette(routes=[Route("/s", _sentences)])
    with serve(app) as url:
        with httpx.stream("GET", f"{url}/s") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            decoder = SSEDecoder()
            events = [e for piece in response.iter_bytes() for e in decoder.feed(piece)]
        assert [e.data for e in events] == ["Hello ", "there. ", "How ", "are ", "you? ", "Fine.", "[DONE]"]
        with httpx.stream("GET", f"{url}/s?mode=fail") as response:
            decoder = SSEDecoder()
            events = [e for piece in response.iter_bytes() for e in decoder.feed(piece)]
        assert "".join(e.data for e in events[:-1]) == "Hello there. How are you? Fine."
        assert events[-1].event == "error"
        assert json.loads(events[-1].data) == {
            "error": {"message": "the model went away", "type": "ValueError"}
        }


def test_middleware_repaces_an_existing_app(upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    app = PacingMiddleware(fake.app, lambda: Pacer(cps=3000, max_lag=0.2))
    with serve(app) as url:
        events, _ = _events(url, "normal")
        assert _content(events) == TEXT
        assert events[-1].data == "[DONE]"
        assert sum(1 for e in events if e.data.count("[DONE]")) == 1
        assert httpx.get(f"{url}/v1/models").json()["data"][0]["id"] == "normal"  # not SSE: untouched


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        PacedEventSource([], Pacer(), heartbeat=0)
    with pytest.raises(ValueError, match="send_timeout"):
        PacedEventSource([], Pacer(), send_timeout=-1)
    with pytest.raises(ValueError, match="upstream must be an http"):
        create_proxy("localhost:8000", Pacer)


def test_proxy_serves_more_concurrent_streams_than_a_default_connection_pool(
    proxy: str, upstream: tuple[Upstream, str]
) -> None:
    """110 long streams at once all start: no upstream pool queues one behind another."""
    import asyncio
    import contextlib

    n = 110
    body = {"model": "slow", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    async def first_event(client: httpx.AsyncClient, started: asyncio.Event, counter: list[int]) -> None:
        async with client.stream("POST", f"{proxy}/v1/chat/completions", json=body) as response:
            decoder = SSEDecoder()
            async for piece in response.aiter_bytes():
                if any(e.data != "[DONE]" for e in decoder.feed(piece)):
                    counter[0] += 1
                    if counter[0] == n:
                        started.set()
                    await started.wait()  # hold the stream open until every one has begun
                    return

    async def main() -> int:
        counter = [0]
        started = asyncio.Event()
        limits = httpx.Limits(max_connections=n + 10)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            tasks = [asyncio.create_task(first_event(client, started, counter)) for _ in range(n)]
            # Each upstream stream lasts over 20 s: a queued one could not begin in 10.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(started.wait(), 10)
            begun = counter[0]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return begun

    assert asyncio.run(main()) == n


@pytest.mark.anyio
async def test_behind_the_proxys_outer_layer_an_event_body_skips_the_middleware_but_not_its_start() -> None:
    # with_rules hands an event stream the server's own send: the middleware between (which
    # passes a body through untouched) sees the start, with the headers it adds, and no body.
    from pacer._connections import ConnectionRules, with_rules

    async def frames() -> Any:
        for i in range(3):
            yield f"data: {i}\n\n".encode()

    seen: list[str] = []

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        await EventStreamResponse(frames(), heartbeat=None)(scope, receive, send)

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        async def marked(message: Any) -> None:
            seen.append(message["type"])
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"x-marked", b"1")]}
            await send(message)

        await endpoint(scope, receive, marked)

    served: list[Any] = []

    async def receive() -> Any:
        await anyio.sleep_forever()

    async def send(message: Any) -> None:
        served.append(message)

    app = with_rules(middleware, ConnectionRules(header_timeout=5, connection_limit=10, shutdown_grace=1))
    await app({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    assert seen == ["http.response.start"]
    assert (b"x-marked", b"1") in served[0]["headers"]
    body = b"".join(m.get("body", b"") for m in served[1:])
    assert [e.data for e in SSEDecoder().feed(body)] == ["0", "1", "2"]
    assert served[-1]["more_body"] is False
    # Without the outer layer (an app of the user's), every message goes through it.
    seen.clear()
    await middleware({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    assert seen == ["http.response.start"] + ["http.response.body"] * 4
