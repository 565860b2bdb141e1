"""A stream belongs to whoever started it: resume and cancel as an attacker meets them.

Through a real proxy (uvicorn) in front of the fake upstream: another key, or none,
gets the unknown stream's 404 on a running and on a finished stream; the creator's key
and the stream's token work; a cross-site ``text/plain`` cancel is refused; preflights
are the proxy's own; a client that did not ask to be resumable stops its upstream when
it leaves; replays are limited.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pacer import Pacer
from pacer.proxy import create_proxy
from pacer.sse import ServerSentEvent, SSEDecoder

from .hostile import content_of
from .servers import CONTENT, Upstream, serve

ALICE = {"Authorization": "Bearer alice-key"}
MALLORY = {"Authorization": "Bearer mallory-key"}
ASKS = {"X-Pacer-Resumable": "1"}


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[Upstream, str]]:
    upstream = Upstream()
    with serve(upstream.app) as url:
        yield upstream, url


@pytest.fixture(scope="module")
def proxy(fake: tuple[Upstream, str]) -> Iterator[str]:
    with serve(create_proxy(fake[1], lambda: Pacer(cps=3000), orphan_timeout=30)) as url:
        yield url


def _reader(response: httpx.Response) -> Iterator[ServerSentEvent]:
    decoder = SSEDecoder()
    for data in response.iter_bytes():
        yield from decoder.feed(data)


def _events(events: Iterator[ServerSentEvent], limit: int | None = None) -> list[ServerSentEvent]:
    return list(itertools.islice(events, limit))


def _body(model: str, user: str) -> dict[str, Any]:
    return {"model": model, "messages": [], "stream": True, "user": user}


def _is_unknown(response: httpx.Response, stream_id: str) -> bool:
    """The answer an unknown stream gets, exactly: no hint that this one exists."""
    error = {"message": f"no stream {stream_id!r} (unknown, or expired)", "type": "not_found"}
    return response.status_code == 404 and response.json() == {"error": error}


def _refused_everywhere(proxy: str, stream_id: str, token: str) -> None:
    """Another key, or none (with a wrong token too), gets the unknown stream's 404 on
    resume, cancel and control."""
    url = f"{proxy}/v1/streams/{stream_id}"
    wrong = {"X-Pacer-Stream-Token": token[:-2] + ("AA" if not token.endswith("AA") else "BB")}
    for headers in ({}, MALLORY, {"x-api-key": "alice-key"}, wrong, {**MALLORY, **wrong}):
        assert _is_unknown(httpx.get(url, headers=headers), stream_id), headers
        assert _is_unknown(httpx.post(f"{url}/cancel", json={}, headers=headers), stream_id), headers
        pause = {"action": "pause"}
        assert _is_unknown(httpx.post(f"{url}/control", json=pause, headers=headers), stream_id), headers
    unknown = f"{stream_id[:-4]}ffff" if not stream_id.endswith("ffff") else f"{stream_id[:-4]}eeee"
    assert _is_unknown(httpx.get(f"{proxy}/v1/streams/{unknown}", headers=ALICE), unknown)


def test_another_key_or_none_gets_404_for_a_running_stream_and_the_creators_key_works(
    proxy: str,
) -> None:
    headers = {**ASKS, **ALICE}
    body = _body("slow", "owned-running")
    with httpx.stream(
        "POST", f"{proxy}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as first:
        stream_id, token = first.headers["x-pacer-stream-id"], first.headers.get("x-pacer-stream-token", "")
        events = _reader(first)
        head = _events(events, 5)
        _refused_everywhere(proxy, stream_id, token)
        with httpx.stream(
            "GET",
            f"{proxy}/v1/streams/{stream_id}",
            headers={"Last-Event-ID": head[-1].id, **ALICE},
            timeout=30,
        ) as second:
            assert second.status_code == 200
            assert _events(_reader(second), 1)[0].id == str(int(head[-1].id) + 1)
        answer = httpx.post(f"{proxy}/v1/streams/{stream_id}/cancel", json={}, headers=ALICE)
        assert answer.status_code == 200 and answer.json()["outcome"] == "cancelled"
        rest = _events(events)
    assert rest[-1].data == "[DONE]" and content_of(head + rest) == answer.json()["text"]


def test_another_key_or_none_gets_404_for_a_finished_stream_and_the_token_works(proxy: str) -> None:
    created = httpx.post(f"{proxy}/v1/chat/completions", json=_body("normal", "owned-done"), headers=ALICE)
    stream_id, token = created.headers["x-pacer-stream-id"], created.headers.get("x-pacer-stream-token", "")
    assert content_of(SSEDecoder().feed(created.content)) == "".join(CONTENT)
    _refused_everywhere(proxy, stream_id, token)
    url = f"{proxy}/v1/streams/{stream_id}"
    for headers in ({"X-Pacer-Stream-Token": token}, {"X-Pacer-Stream-Token": token, **MALLORY}, ALICE):
        replay = httpx.get(url, headers=headers)
        assert replay.status_code == 200 and content_of(SSEDecoder().feed(replay.content)) == "".join(CONTENT)
    answer = httpx.post(f"{url}/cancel", json={}, headers={"X-Pacer-Stream-Token": token, **MALLORY})
    assert answer.status_code == 200 and answer.json()["outcome"] == "done"


def test_a_creator_with_no_key_can_use_only_the_token(proxy: str) -> None:
    created = httpx.post(f"{proxy}/v1/chat/completions", json=_body("normal", "keyless"))
    stream_id, token = created.headers["x-pacer-stream-id"], created.headers.get("x-pacer-stream-token", "")
    assert "X-Pacer-Stream-Token" in created.headers["access-control-expose-headers"]
    url = f"{proxy}/v1/streams/{stream_id}"
    assert _is_unknown(httpx.get(url), stream_id)  # no key is no credential, not a shared one
    assert _is_unknown(httpx.post(f"{url}/cancel", json={}), stream_id)
    assert httpx.get(url, headers={"X-Pacer-Stream-Token": token}).status_code == 200
    assert httpx.post(f"{url}/cancel", json={}, headers={"X-Pacer-Stream-Token": token}).status_code == 200


def test_a_cross_site_form_cannot_cancel_and_the_stream_runs_on(proxy: str) -> None:
    headers = {**ASKS, **ALICE}
    body = _body("slow", "form-cancel")
    with httpx.stream(
        "POST", f"{proxy}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as first:
        url = f"{proxy}/v1/streams/{first.headers['x-pacer-stream-id']}/cancel"
        events = _reader(first)
        head = _events(events, 3)
        form = {"Content-Type": "text/plain", **ALICE}  # what a form or a simple fetch can send
        assert httpx.post(url, content=b"{}", headers=form).status_code == 415
        assert httpx.post(url, headers=ALICE).status_code == 415
        as_json = {"Content-Type": "application/json", **ALICE}
        for bad in (b"", b"[]", b"not json", b'"{}"'):
            refused = httpx.post(url, content=bad, headers=as_json)
            assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request_error"
        rest = _events(events)
    whole = head + rest
    assert rest[-1].data == "[DONE]" and content_of(whole) == "".join(CONTENT * 40)


@pytest.mark.parametrize("route", ["cancel", "control"])
def test_a_cancel_or_control_body_over_64_kib_is_a_413_and_each_error_names_its_request(
    proxy: str, route: str
) -> None:
    url = f"{proxy}/v1/streams/0123abcd/{route}"
    as_json = {"Content-Type": "application/json", **ALICE}
    big = httpx.post(url, content=b'{"x": "' + b"x" * (64 << 10) + b'"}', headers=as_json)
    assert big.status_code == 413  # as every other route of the proxy answers a body too big
    error = {"message": f"{route} request body is over the limit of 65536 bytes", "type": "request_too_large"}
    assert big.json() == {"error": error}
    refused = httpx.post(url, content=b"[]", headers=as_json)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == f'{route} request body must be a JSON object ("{{}}")'
    form = httpx.post(url, content=b"{}", headers={"Content-Type": "text/plain", **ALICE})
    assert form.status_code == 415 and f"a stream {route} request needs" in form.json()["error"]["message"]


def test_preflights_are_answered_by_the_proxy_with_allow_headers_only_for_its_origins() -> None:
    seen: list[str] = []

    async def anything(request: Request) -> Response:
        seen.append(request.method)
        return JSONResponse({"object": "list", "data": []}, headers={"Access-Control-Allow-Origin": "*"})

    upstream = Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST", "OPTIONS"])])
    with serve(upstream) as url, serve(create_proxy(url, Pacer, cors_origin="https://app.example")) as proxy:
        for path in ("/v1/chat/completions", "/v1/streams/abc/cancel", "/v1/models"):
            asked = {
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            }
            allowed = httpx.options(f"{proxy}{path}", headers={"Origin": "https://app.example", **asked})
            assert allowed.status_code == 204
            assert allowed.headers["access-control-allow-origin"] == "https://app.example"
            assert "POST" in allowed.headers["access-control-allow-methods"]
            allow = allowed.headers["access-control-allow-headers"].lower()
            for name in ("authorization", "content-type", "last-event-id", "x-pacer-stream-token"):
                assert name in allow
            assert "x-pacer-resumable" in allow and "x-api-key" in allow
            other = httpx.options(f"{proxy}{path}", headers={"Origin": "https://evil.example", **asked})
            assert not [k for k in other.headers if k.startswith("access-control-allow")]
        bare = httpx.options(f"{proxy}/v1/models", headers={"Origin": "https://evil.example"})
        assert bare.status_code == 204 and "access-control-allow-origin" not in bare.headers
        assert seen == []  # no preflight reached the upstream
        models = httpx.get(f"{proxy}/v1/models", headers={"Origin": "https://app.example"})
        assert models.headers["access-control-allow-origin"] == "https://app.example"
        elsewhere = httpx.get(f"{proxy}/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in elsewhere.headers  # the upstream's "*" is dropped
    with serve(upstream) as url, serve(create_proxy(url, Pacer)) as proxy:  # no origin configured
        asked = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        answer = httpx.options(f"{proxy}/v1/chat/completions", headers=asked)
        assert answer.status_code == 204 and "access-control-allow-origin" not in answer.headers
        assert "OPTIONS" not in seen


def test_a_client_that_did_not_ask_stops_its_upstream_when_it_leaves_and_one_that_asked_resumes(
    fake: tuple[Upstream, str], proxy: str
) -> None:
    upstream, _ = fake
    for user, headers in (("left-not-asked", ALICE), ("left-asked", {**ASKS, **ALICE})):
        body = _body("slow", user)
        with httpx.stream(
            "POST", f"{proxy}/v1/chat/completions", json=body, headers=headers, timeout=30
        ) as r:
            stream_id, token = r.headers["x-pacer-stream-id"], r.headers.get("x-pacer-stream-token", "")
            head = _events(_reader(r), 10)
            left = time.monotonic()
        deadline = left + 5
        while user not in upstream.closed and time.monotonic() < deadline:
            time.sleep(0.005)
        if user == "left-not-asked":
            assert user in upstream.closed and user not in upstream.completed
            assert upstream.closed[user] - left < 0.5
            continue
        assert user not in upstream.closed  # generating on, with nobody reading, for a resume
        with httpx.stream(
            "GET",
            f"{proxy}/v1/streams/{stream_id}",
            headers={"Last-Event-ID": head[-1].id, "X-Pacer-Stream-Token": token},
            timeout=30,
        ) as again:
            rest = _events(_reader(again))
        assert content_of(head + rest) == "".join(CONTENT * 40) and rest[-1].data == "[DONE]"


def test_replays_over_the_limits_get_429_with_retry_after(fake: tuple[Upstream, str]) -> None:
    app = create_proxy(fake[1], lambda: Pacer(cps=5000), replays_per_stream=2, replays_per_client=5)
    with serve(app) as proxy:
        ids = []
        for n in range(3):
            created = httpx.post(
                f"{proxy}/v1/chat/completions", json=_body("normal", f"replays-{n}"), headers=ALICE
            )
            ids.append(created.headers["x-pacer-stream-id"])
        first = f"{proxy}/v1/streams/{ids[0]}"
        assert httpx.get(first, headers=ALICE).status_code == 200
        assert httpx.post(f"{first}/cancel", json={}, headers=ALICE).status_code == 200
        for answer in (
            httpx.get(first, headers=ALICE),
            httpx.post(f"{first}/cancel", json={}, headers=ALICE),
        ):
            assert answer.status_code == 429 and int(answer.headers["retry-after"]) >= 1
            assert answer.json()["error"]["type"] == "rate_limited"
        # A stranger's tries spend its own client budget, never the owner's stream budget.
        second = f"{proxy}/v1/streams/{ids[1]}"
        assert [httpx.get(second, headers=MALLORY).status_code for _ in range(6)] == [404] * 5 + [429]
        assert httpx.get(second, headers=ALICE).status_code == 200
        sixth = httpx.get(f"{proxy}/v1/streams/{ids[2]}", headers=ALICE)  # the 6th by Alice this minute
        assert sixth.status_code == 429


def test_replay_limits_refill_over_the_minute_and_forget_idle_keys() -> None:
    from pacer._replays import ReplayLimits

    limits = ReplayLimits(per_stream=2, per_client=0, max_keys=3)
    assert [limits.take_stream("s", 0.0) for _ in range(2)] == [0.0, 0.0]
    assert limits.take_stream("s", 0.0) == pytest.approx(30.0)  # 2 a minute: one every 30 s
    assert limits.take_stream("s", 30.0) == 0.0
    assert all(limits.take_client(str(n), 0.0) == 0.0 for n in range(1000))  # 0: no limit
    for n in range(10):
        limits.take_stream(f"k{n}", 100.0 + n)
    assert len(limits._buckets) <= 3
    with pytest.raises(TypeError, match="per_stream"):
        ReplayLimits(per_stream=1.5, per_client=1)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_stream_with_no_orphan_time_stops_at_once_when_its_creator_leaves_unread() -> None:
    """The start grace (for a reader about to attach) does not outlive the creator's
    response: a client that left before reading anything stops the generation too."""
    from pacer.resumable import Owner, ResumableStreams

    closed = anyio.Event()

    async def frames() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"data: x\n\n"
                await anyio.sleep(0.01)
        finally:
            closed.set()

    async with ResumableStreams(orphan_timeout=30) as streams:
        stream_id = await streams.start(frames(), fmt="text", owner=Owner("Bearer k"), orphan_timeout=0)
        left = anyio.current_time()
        streams.creator_left(stream_id)
        with anyio.fail_after(1):
            await closed.wait()
        assert anyio.current_time() - left < 0.5
        assert not await streams.admits(stream_id, "Bearer other", None)
        assert await streams.admits(stream_id, "Bearer k", None)


@pytest.mark.anyio
async def test_the_stream_routes_answer_503_when_the_store_is_down_never_500() -> None:
    from pacer.resumable import ResumableStreams
    from pacer.streamlog import MemoryLog, StreamLogError
    from pacer.streamroutes import stream_routes

    class Down(StreamLogError):
        kind = "stream_store_unavailable"

    class DownLog(MemoryLog):
        async def meta(self, stream_id: str) -> dict[str, str] | None:
            raise Down("the store is down")

    streams = ResumableStreams(DownLog())
    app = Starlette(routes=stream_routes(streams))
    async with streams, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        resumed = await http.get("/v1/streams/abc", headers=ALICE)
        cancelled = await http.post("/v1/streams/abc/cancel", json={}, headers=ALICE)
    for answer in (resumed, cancelled):
        assert answer.status_code == 503 and answer.json()["error"]["type"] == "stream_store_unavailable"


@pytest.mark.anyio
async def test_the_stream_routes_answer_a_wrong_method_with_a_json_405_before_a_route_after_them() -> None:
    from pacer.resumable import ResumableStreams
    from pacer.streamlog import MemoryLog
    from pacer.streamroutes import stream_routes

    async def anything(request: Request) -> Response:
        return JSONResponse({"caught": request.url.path})

    streams = ResumableStreams(MemoryLog())
    catch_all = Route("/{path:path}", anything, methods=["GET", "POST", "PUT", "DELETE"])
    app = Starlette(routes=[*stream_routes(streams), catch_all])
    cases = [
        ("POST", "/v1/streams/abc", "GET, HEAD"),
        ("DELETE", "/v1/streams/abc", "GET, HEAD"),
        ("GET", "/v1/streams/abc/cancel", "POST"),
        ("PUT", "/v1/streams/abc/control", "POST"),
    ]
    async with streams, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        for method, path, allow in cases:
            answer = await http.request(method, path, json={})
            assert answer.status_code == 405 and answer.headers["allow"] == allow, (method, path)
            message = f"{method} is not allowed on {path}; it takes {allow}"
            assert answer.json() == {"error": {"message": message, "type": "method_not_allowed"}}
        assert (await http.get("/v1/streams/abc", headers=ALICE)).status_code == 404  # the route itself
