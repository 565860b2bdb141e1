"""Resumable streams on a real Redis, with real proxy processes: resume on another process,
a producer killed, Redis restarted, cancel from another process."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from pacer.redislog import RedisLog
from pacer.resumable import ResumableStreams
from pacer.sse import ServerSentEvent, SSEDecoder
from pacer.streamlog import EventsTrimmed

from .hostile import content_of
from .servers import CONTENT, RedisServer, Upstream, cli_proxy, serve

SLOW_TEXT = "".join(CONTENT * 40)  # the fake upstream's "slow" model: about 7 s


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[Upstream, str]]:
    upstream = Upstream()
    with serve(upstream.app) as url:
        yield upstream, url


@contextlib.contextmanager
def _proxy(upstream: str, redis: RedisServer) -> Iterator[tuple[str, Any]]:
    with cli_proxy("--upstream", f"{upstream}/v1", "--cps", "2000", "--redis", redis.url) as running:
        yield running


@pytest.fixture(scope="module")
def pair(fake: tuple[Upstream, str], redis: RedisServer) -> Iterator[tuple[str, str]]:
    """Two proxy processes sharing the Redis."""
    with _proxy(fake[1], redis) as (a, _), _proxy(fake[1], redis) as (b, _):
        yield a, b


def _start(proxy: str, user: str) -> tuple[str, Any, Any]:
    """POST a slow stream to ``proxy``; its id, the open response and its event reader."""
    body = {"model": "slow", "messages": [], "stream": True, "user": user}
    headers = {"X-Pacer-Resumable": "1", **OWNER}
    context = httpx.stream("POST", f"{proxy}/v1/chat/completions", json=body, headers=headers, timeout=30)
    response = context.__enter__()
    assert response.status_code == 200
    return response.headers["x-pacer-stream-id"], context, _events(response)


def _events(response: httpx.Response) -> Iterator[ServerSentEvent]:
    decoder = SSEDecoder()
    for data in response.iter_bytes():
        yield from decoder.feed(data)


#: The key every stream here is started with: its owner's, which every process sharing the Redis admits.
OWNER = {"Authorization": "Bearer owner-key"}


def _follow(proxy: str, stream_id: str, last: str | None = None) -> Any:
    headers = {"Last-Event-ID": last, **OWNER} if last else OWNER
    return httpx.stream("GET", f"{proxy}/v1/streams/{stream_id}", headers=headers, timeout=30)


def _ids_run_on(events: list[ServerSentEvent], first: int = 1) -> bool:
    return [e.id for e in events] == [str(i) for i in range(first, first + len(events))]


def test_a_client_that_drops_resumes_on_the_other_process_with_nothing_lost_or_twice(
    pair: tuple[str, str],
) -> None:
    a, b = pair
    stream_id, context, events = _start(a, "resume-on-b")
    head = [next(events) for _ in range(25)]
    context.__exit__(None, None, None)  # the client drops
    with _follow(b, stream_id, head[-1].id) as response:
        assert response.status_code == 200 and response.headers["x-pacer-stream-id"] == stream_id
        rest = list(_events(response))
    whole = head + rest
    assert _ids_run_on(whole)
    assert content_of(whole) == SLOW_TEXT and whole[-1].data == "[DONE]"
    with _follow(b, stream_id) as response:
        assert list(_events(response)) == whole  # B replays it all, after the end too


def _disrupted(
    producer: str, follower: str, user: str, before: int, disrupt: Any
) -> tuple[list[ServerSentEvent], list[ServerSentEvent], float, Any]:
    """A slow stream started on ``producer``: its first ``before`` events, then the events a
    reader on ``follower`` got from there on, ``disrupt()`` called after its first one; the
    seconds from the disruption to that reader's end; and a call that reads the rest
    of the first connection (and closes it)."""
    stream_id, context, events = _start(producer, user)
    head = [next(events) for _ in range(before)]
    with _follow(follower, stream_id, head[-1].id) as response:
        rest = _events(response)
        got = [next(rest)]
        disrupt()
        at = time.monotonic()
        got += list(rest)
        took = time.monotonic() - at

    def rest_here() -> list[ServerSentEvent]:
        try:
            return list(events)
        finally:
            context.__exit__(None, None, None)

    return head, got, took, rest_here


def test_readers_elsewhere_get_an_error_soon_after_the_producer_process_is_killed(
    fake: tuple[Upstream, str], pair: tuple[str, str], redis: RedisServer
) -> None:
    _, b = pair
    with _proxy(fake[1], redis) as (doomed, process):
        head, got, noticed, rest_here = _disrupted(doomed, b, "killed", 5, process.kill)
    with contextlib.suppress(httpx.TransportError):
        rest_here()
    assert got[-1].event == "error"
    assert json.loads(got[-1].data)["error"]["type"] == "producer_lost"
    assert _ids_run_on(head + got[:-1])
    assert SLOW_TEXT.startswith(content_of(head + got[:-1]))
    assert noticed < 10  # the liveness key lapses in 3 s; readers look every second
    print(f"producer loss noticed after {noticed:.2f} s")


def test_cancel_sent_to_one_process_stops_the_generation_running_in_the_other(
    fake: tuple[Upstream, str], pair: tuple[str, str]
) -> None:
    upstream, _ = fake
    a, b = pair
    stream_id, context, events = _start(a, "cancel-from-b")
    seen = [next(events) for _ in range(10)]
    with _follow(b, stream_id) as response:
        there = _events(response)
        other = [next(there) for _ in range(10)]
        sent = time.monotonic()
        answer = httpx.post(f"{b}/v1/streams/{stream_id}/cancel", json={}, headers=OWNER, timeout=30).json()
        other += list(there)
    seen += list(events)
    context.__exit__(None, None, None)
    assert answer["outcome"] == "cancelled"
    for got in (seen, other):
        assert content_of(got) == answer["text"]
        assert got[-1].data == "[DONE]" and got[-1].id == answer["last_event_id"]
        assert _ids_run_on(got)
    assert seen == other
    assert "cancel-from-b" in upstream.closed and "cancel-from-b" not in upstream.completed
    assert upstream.closed["cancel-from-b"] - sent < 5
    print(
        f"upstream closed {1000 * (upstream.closed['cancel-from-b'] - sent):.0f} ms after the cancel was sent"
    )


def test_a_redis_restart_mid_stream_is_a_clear_error_for_every_reader(
    fake: tuple[Upstream, str], redis: RedisServer
) -> None:
    with _proxy(fake[1], redis) as (a, _), _proxy(fake[1], redis) as (b, _):
        here, elsewhere, _, rest_here = _disrupted(a, b, "redis-restart", 10, redis.restart)
        here += rest_here()
    for got, first in ((here, 1), (elsewhere, int(elsewhere[0].id))):
        assert got[-1].event == "error"
        assert json.loads(got[-1].data)["error"]["type"] in ("stream_lost", "stream_store_unavailable")
        assert _ids_run_on(got[:-1], first)
        assert all(e.data != "[DONE]" for e in got)
    assert SLOW_TEXT.startswith(content_of(here[:-1]))


def test_a_stream_asked_for_while_redis_is_down_is_a_503_and_the_upstream_is_let_go(
    fake: tuple[Upstream, str], redis: RedisServer
) -> None:
    upstream, url = fake
    with _proxy(url, redis) as (proxy, _):
        redis.stop()
        try:
            body = {"model": "slow", "messages": [], "stream": True, "user": "redis-down"}
            response = httpx.post(f"{proxy}/v1/chat/completions", json=body, timeout=30)
        finally:
            redis.start()
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "stream_store_unavailable"
    deadline = time.monotonic() + 5  # the upstream's server sees its client go in its own time
    while "redis-down" not in upstream.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "redis-down" in upstream.closed and "redis-down" not in upstream.completed


def test_the_redis_log_keeps_a_stream_retention_long_and_bounds_its_entries(redis: RedisServer) -> None:
    async def main() -> tuple[list[bytes], int, int | None, int]:
        log = RedisLog(redis.url, retention=5, max_events=50, prefix="bounded:")

        async def frames() -> Any:
            for i in range(500):
                yield f"data: {i}\n\n".encode()

        async with ResumableStreams(log) as hub:
            stream_id = await hub.start(frames(), fmt="text")
            await anyio.sleep(0.3)  # the stream, and the background writes
            with pytest.raises(EventsTrimmed, match="keeps events from id"):
                [f async for f in hub.follow(stream_id)]
            local = [f async for f in hub.follow(stream_id, 480)]
            from redis.asyncio import Redis

            client = Redis.from_url(redis.url)
            length = await client.xlen(f"bounded:{stream_id}")
            ttl = await client.pttl(f"bounded:{stream_id}")
            usage = await log.memory_usage(stream_id)
            await client.aclose()
        return local, length, ttl, usage

    local, length, ttl, usage = anyio.run(main)
    assert local[-1] == b"data: 499\nid: 500\n\n" and len(local) == 20
    assert 51 <= length < 500  # MAXLEN ~ 50: trimmed, roughly
    assert ttl is not None and 0 < ttl <= 5000
    assert usage > 0


def test_redis_log_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="url must be a redis://"):
        RedisLog("localhost:6379")

    async def unreachable() -> None:
        with pytest.raises(Exception, match=r"cannot reach redis://127\.0\.0\.1:9/0"):
            async with ResumableStreams(RedisLog("redis://127.0.0.1:9/0")):
                pass

    anyio.run(unreachable)


def test_the_proxy_will_not_start_without_its_redis(fake: tuple[Upstream, str]) -> None:
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "pacer",
        "proxy",
        "--upstream",
        fake[1],
        "--redis",
        "redis://127.0.0.1:9/0",
    ]
    command += ["--port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "cannot reach redis://127.0.0.1:9/0" in done.stderr


def _unknown(response: httpx.Response, stream_id: str) -> bool:
    error = {"message": f"no stream {stream_id!r} (unknown, or expired)", "type": "not_found"}
    return response.status_code == 404 and response.json() == {"error": error}


def test_only_the_owner_resumes_or_cancels_on_either_process(pair: tuple[str, str]) -> None:
    """The owner's keyed hashes live in Redis: the other process admits the creator's key
    and the token, and answers anyone else the unknown stream's 404, running or finished."""
    a, b = pair
    strangers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer someone-else"},
        {"x-api-key": "owner-key"},
    ]
    for model in ("slow", "normal"):
        body = {"model": model, "messages": [], "stream": True, "user": f"owned-{model}"}
        headers = {"X-Pacer-Resumable": "1", **OWNER}
        with httpx.stream(
            "POST", f"{a}/v1/chat/completions", json=body, headers=headers, timeout=30
        ) as first:
            stream_id, token = first.headers["x-pacer-stream-id"], first.headers["x-pacer-stream-token"]
            events = _events(first)
            head = [next(events) for _ in range(5)]
            if model == "normal":
                head += list(events)  # finished
            for proxy in (a, b):
                url = f"{proxy}/v1/streams/{stream_id}"
                for stranger in strangers:
                    assert _unknown(httpx.get(url, headers=stranger, timeout=30), stream_id), (
                        proxy,
                        stranger,
                    )
                    refused = httpx.post(f"{url}/cancel", json={}, headers=stranger, timeout=30)
                    assert _unknown(refused, stream_id), (proxy, stranger)
            for mine in (OWNER, {"X-Pacer-Stream-Token": token}):
                with _follow(b, stream_id) as response:
                    assert response.status_code == 200  # the creator's key
                with httpx.stream(
                    "GET", f"{b}/v1/streams/{stream_id}", headers={"Last-Event-ID": "1", **mine}, timeout=30
                ) as response:
                    assert response.status_code == 200 and next(_events(response)).id == "2"
            answer = httpx.post(
                f"{b}/v1/streams/{stream_id}/cancel",
                json={},
                headers={"X-Pacer-Stream-Token": token},
                timeout=30,
            )
            assert answer.status_code == 200
            assert answer.json()["outcome"] == ("cancelled" if model == "slow" else "done")
