"""The proxy and the server against hostile clients and broken upstreams (issue 20's defects).

Each test here failed on the code before the fix it names.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from pacer import Pacer
from pacer.proxy import ProxyTimeouts, create_proxy, end_to_end, upstream_path
from pacer.server import PacedEventSource, PacingMiddleware
from pacer.sse import ServerSentEvent, SSEDecoder

from .hostile import PIECES, HostileUpstream, content_of, raw_request, serve_raw, stream_bytes
from .servers import cli_proxy, serve

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[HostileUpstream, str]]:
    fake = HostileUpstream()
    with serve(fake.app) as url:
        yield fake, url


def _proxy(upstream: str, **options: Any) -> Any:
    options.setdefault("heartbeat", 5)
    return serve(create_proxy(upstream, lambda: Pacer(cps=5000, max_lag=0.1, unit="word"), **options))


@pytest.fixture(scope="module")
def proxy(hostile: tuple[HostileUpstream, str]) -> Iterator[str]:
    with _proxy(hostile[1], timeouts=ProxyTimeouts(idle=0.5), max_body=1 << 16) as url:
        yield url


def _stream(url: str, model: str, user: str = "", **kw: Any) -> tuple[int, list[ServerSentEvent]]:
    body = {"model": model, "messages": [], "stream": True, "user": user}
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30, **kw) as response:
        for piece in response.iter_bytes():
            events.extend(decoder.feed(piece))
        return response.status_code, events


# -- 1. nothing shared between clients ------------------------------------------------------


def test_a_cookie_set_for_one_client_never_reaches_the_upstream_for_another(proxy: str) -> None:
    first = httpx.get(f"{proxy}/v1/whoami?who=alice")
    assert first.headers["set-cookie"].startswith("session=secret-of-alice")  # relayed to alice
    second = httpx.get(f"{proxy}/v1/whoami?who=bob")
    assert "cookie" not in second.json()["headers"]
    # Alice's own cookie, sent by alice, does go upstream with alice's request.
    mine = httpx.get(f"{proxy}/v1/whoami", headers={"cookie": "session=secret-of-alice"})
    assert mine.json()["headers"]["cookie"] == "session=secret-of-alice"


def test_hop_by_hop_headers_and_those_connection_names_stop_at_the_proxy(proxy: str) -> None:
    headers = {
        "connection": "keep-alive, X-Internal-Token",
        "x-internal-token": "hop",
        "keep-alive": "timeout=5",
        "te": "trailers",
        "proxy-authorization": "Basic eA==",
        "x-end-to-end": "kept",
        "authorization": "Bearer the-clients-own",
    }
    seen = httpx.get(f"{proxy}/v1/echo", headers=headers).json()["headers"]
    for name in ("x-internal-token", "keep-alive", "te", "proxy-authorization"):
        assert name not in seen
    assert seen["x-end-to-end"] == "kept"
    assert seen["authorization"] == "Bearer the-clients-own"


def test_end_to_end_reads_every_connection_field() -> None:
    pairs = [("Connection", "a"), ("connection", " B , c"), ("A", "1"), ("b", "2"), ("C", "3"), ("d", "4")]
    assert end_to_end(pairs) == [("d", "4")]


# -- 2. a client that leaves cancels the upstream, from the start; timeouts ---------------


def test_a_client_that_leaves_before_the_upstream_answers_cancels_it(
    hostile: tuple[HostileUpstream, str], proxy: str
) -> None:
    fake, _ = hostile
    body = {"model": "slow-headers", "messages": [], "stream": True, "user": "leaver"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{proxy}/v1/chat/completions", json=body, timeout=httpx.Timeout(5, read=0.3))
    left_at = time.monotonic()
    deadline = left_at + 5
    while "leaver" not in fake.left and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "leaver" in fake.left  # before: held until the 600 s read timeout


def test_no_response_headers_within_first_byte_is_a_504(hostile: tuple[HostileUpstream, str]) -> None:
    with _proxy(hostile[1], timeouts=ProxyTimeouts(first_byte=0.3)) as url:
        body = {"model": "slow-headers", "messages": [], "stream": True, "user": "504"}
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "upstream_timeout"


def test_an_upstream_that_goes_quiet_past_idle_ends_the_stream_with_an_error(proxy: str) -> None:
    status, events = _stream(proxy, "stall")
    assert status == 200
    assert content_of(events) == "before "
    assert events[-1].event == "error"
    assert json.loads(events[-1].data)["error"]["type"] == "upstream_timeout"
    assert all(e.data != "[DONE]" for e in events)


def test_timeouts_are_checked() -> None:
    with pytest.raises(ValueError, match="idle must be > 0"):
        ProxyTimeouts(idle=0)
    with pytest.raises(ValueError, match="total must be > 0"):
        ProxyTimeouts(total=-1)


# -- 3. nothing unbounded -------------------------------------------------------------------


def test_a_request_body_over_the_limit_is_a_413_with_a_json_error(proxy: str) -> None:
    big = b'{"model": "m", "stream": true, "x": "' + b"x" * (1 << 17) + b'"}'
    response = httpx.post(f"{proxy}/v1/chat/completions", content=big)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(64):
            yield b"y" * 4096

    response = httpx.post(f"{proxy}/v1/anything", content=chunks())
    assert response.status_code == 413


def test_a_stream_request_answered_with_a_large_error_body_is_relayed_exactly(proxy: str) -> None:
    body = {"model": "big-error", "messages": [], "stream": True}
    with httpx.stream("POST", f"{proxy}/v1/chat/completions", json=body) as response:
        assert response.status_code == 500
        data = b"".join(response.iter_bytes())
    assert len(json.loads(data)["error"]["message"]) == 2 << 20


# -- 4. a cut stream never ends in [DONE] ---------------------------------------------------


def test_an_upstream_stream_that_stops_before_done_ends_with_an_error_event(proxy: str) -> None:
    _, events = _stream(proxy, "truncated")
    assert content_of(events) == "".join(PIECES[:3])
    assert events[-1].event == "error"
    assert json.loads(events[-1].data)["error"]["type"] == "upstream_truncated"
    assert all(e.data != "[DONE]" for e in events)


def test_a_connection_dropped_mid_chunk_ends_with_an_error_event() -> None:
    body = stream_bytes(PIECES)[:200]
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    script = head + f"{len(body) + 50:x}\r\n".encode() + body  # promises 50 bytes more, then closes
    with serve_raw(script) as upstream, _proxy(upstream) as url:
        _, events = _stream(url, "m")
    assert events[-1].event == "error"
    assert all(e.data != "[DONE]" for e in events)


def test_a_connection_closed_without_length_or_done_ends_with_an_error_event() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    with serve_raw(head + stream_bytes(PIECES[:2], done=False)) as upstream, _proxy(upstream) as url:
        _, events = _stream(url, "m")
    assert content_of(events) == "".join(PIECES[:2])
    assert json.loads(events[-1].data)["error"]["type"] == "upstream_truncated"


def _failing_app(pieces: list[bytes]) -> Starlette:
    async def chat(request: Request) -> StreamingResponse:
        async def gen() -> Any:
            for piece in pieces:
                yield piece
            raise RuntimeError("inner app crashed")

        return StreamingResponse(gen(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def test_middleware_over_an_app_that_raises_mid_stream_ends_with_an_error_event() -> None:
    app = PacingMiddleware(_failing_app([stream_bytes(PIECES[:2], done=False)]), lambda: Pacer(cps=5000))
    with serve(app) as url:
        _, events = _stream(url, "m")
    assert content_of(events) == "".join(PIECES[:2])
    assert events[-1].event == "error"
    assert "inner app crashed" in json.loads(events[-1].data)["error"]["message"]
    assert all(e.data != "[DONE]" for e in events)


# -- 5. compressed upstreams ----------------------------------------------------------------


def test_a_gzipped_json_answer_arrives_readable_and_described(proxy: str) -> None:
    body = {"model": "gzip", "messages": []}
    response = httpx.post(f"{proxy}/v1/chat/completions", json=body)
    assert response.headers["content-encoding"] == "gzip"  # relayed as it came, and said so
    assert response.json()["choices"][0]["message"]["content"] == "zipped"
    headers = {"accept-encoding": "gzip"}
    with httpx.stream("POST", f"{proxy}/v1/chat/completions", json=body, headers=headers) as raw:
        assert json.loads(gzip.decompress(b"".join(raw.iter_raw())))["object"] == "chat.completion"


def test_a_gzipped_event_stream_is_decoded_and_paced(proxy: str) -> None:
    status, events = _stream(proxy, "gzip")
    assert status == 200
    assert content_of(events) == "".join(PIECES)
    assert events[-1].data == "[DONE]"


# -- 6. requests stay under the base path ---------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        b"/../admin",
        b"/v1/../../admin",
        b"/%2e%2e/admin",
        b"/%2E%2e/admin",
        b"/..%2fadmin",
        b"/v1/..%5c..%5cadmin",
    ],
)
def test_a_path_that_climbs_out_of_the_base_is_refused(
    hostile: tuple[HostileUpstream, str], target: bytes
) -> None:
    with _proxy(f"{hostile[1]}/tenant-a") as url:
        status, body = raw_request(url, b"GET " + target + b" HTTP/1.1")
        assert status == 400, body
        ok = httpx.get(f"{url}/v1/models%20list?x=1").json()
    assert ok["path"] == "/tenant-a/v1/models%20list"


def test_upstream_path_refuses_dot_segments_in_any_spelling() -> None:
    assert upstream_path(b"/v1/models") == "/v1/models"
    assert upstream_path(b"/v1/a.b/..c") == "/v1/a.b/..c"  # dots inside a name are fine
    for bad in (b"/.", b"/./x", b"/%2E/x", b"relative", b"/a/%2e%2E"):
        assert upstream_path(bad) is None


# -- 7. bad input is a 4xx, and text survives any split ------------------------------------


@pytest.mark.parametrize("body", [b"\xff\xfe{}", b"[" * 30_000 + b"]" * 30_000, b'{"a": "\xc3"}'])
def test_a_body_that_is_not_json_text_is_a_400(proxy: str, body: bytes) -> None:
    response = httpx.post(f"{proxy}/v1/chat/completions", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_surrogate_pair_split_across_upstream_chunks_is_one_emoji(proxy: str) -> None:
    _, events = _stream(proxy, "surrogates")
    assert content_of(events) == "smile \U0001f600 done"
    assert events[-1].data == "[DONE]"


def test_the_middleware_joins_a_split_surrogate_pair() -> None:
    app = PacingMiddleware(HostileUpstream().app, lambda: Pacer(cps=5000))
    with serve(app) as url:
        _, events = _stream(url, "surrogates")
    assert content_of(events) == "smile \U0001f600 done"
    assert events[-1].data == "[DONE]"


def test_paced_event_source_joins_a_split_surrogate_pair() -> None:
    async def endpoint(request: Request) -> PacedEventSource:
        return PacedEventSource(["a \ud83d", "\ude00 b"], Pacer(cps=5000))

    decoder = SSEDecoder()
    with serve(Starlette(routes=[Route("/s", endpoint)])) as url, httpx.stream("GET", f"{url}/s") as response:
        events = [e for piece in response.iter_bytes() for e in decoder.feed(piece)]
    assert "".join(e.data for e in events[:-1]) == "a \U0001f600 b"
    assert events[-1].data == "[DONE]"


# -- the CLI: workers, timeouts and limits ----------------------------------------------------


def test_cli_proxy_runs_workers_with_its_timeouts_and_limits(hostile: tuple[HostileUpstream, str]) -> None:
    # Several workers keep resumable streams in Redis only (a usage error otherwise).
    args = ("--upstream", hostile[1], "--workers", "2", "--resume", "never", "--first-byte-timeout", "0.5")
    with cli_proxy(*args, "--max-body", "1000", "--cps", "5000") as (url, process):
        _, events = _stream(url, "m")
        assert content_of(events) == "".join(PIECES) and events[-1].data == "[DONE]"
        slow = {"model": "slow-headers", "stream": True, "user": "cli"}
        assert httpx.post(f"{url}/v1/chat/completions", json=slow, timeout=10).status_code == 504
        assert httpx.post(f"{url}/v1/x", content=b"x" * 1001).status_code == 413
    assert process.log.count("Started server process") == 2, process.log
