"""Resumable streams: the logs, the producer and its readers, cancel, the proxy's endpoints, the client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from pacer import Pacer
from pacer.client import ResumableStream, StreamEnded, streams_url
from pacer.formats import ROUTES as FORMATS
from pacer.formats import Transcript
from pacer.proxy import create_proxy
from pacer.resumable import ResumableStreams
from pacer.sse import ServerSentEvent, SSEDecoder
from pacer.streamlog import (
    Entry,
    EventsTrimmed,
    InvalidEventId,
    MemoryLog,
    StoreFull,
    StreamExists,
    StreamLost,
)
from pacer.testing import streams as scripts

from .hostile import content_of
from .servers import CONTENT, Relay, ScriptedUpstream, Upstream, serve
from .servers import wait_for as _wait

# -- the in-memory log ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _frames(n: int, start: int = 1) -> list[Entry]:
    return [Entry(i, b"data: %d\nid: %d\n\n" % (i, i)) for i in range(start, start + n)]


@pytest.mark.anyio
async def test_memory_log_reads_from_any_id_and_ends_with_its_mark() -> None:
    log = MemoryLog()
    await log.create("s", {"format": "text"})
    await log.append("s", _frames(3))
    assert [e.id for e in await log.read("s", 0, 0) or []] == [1, 2, 3]
    assert [e.id for e in await log.read("s", 2, 0) or []] == [3]
    assert await log.read("s", 3, 0) == []
    await log.append("s", [Entry(4, b"", "done")])
    assert await log.read("s", 3, 0) == [Entry(4, b"", "done")]
    with pytest.raises(InvalidEventId, match="ended after event 3; there is no event 9"):
        await log.read("s", 9, 0)
    assert await log.read("other", 0, 0) is None
    assert await log.meta("s") == {"format": "text"}
    with pytest.raises(StreamExists):
        await log.create("s", {})
    with pytest.raises(StreamLost):
        await log.append("other", _frames(1))


@pytest.mark.anyio
async def test_memory_log_wakes_a_waiting_reader_and_times_out_without_news() -> None:
    log = MemoryLog()
    await log.create("s", {})
    got: list[list[Entry] | None] = []

    async def reader() -> None:
        got.append(await log.read("s", 0, 5.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.sleep(0.01)
        await log.append("s", _frames(2))
    assert got == [_frames(2)]
    assert await log.read("s", 2, 0.01) == []


@pytest.mark.anyio
async def test_memory_log_wakes_every_waiting_reader_and_keeps_none_that_left() -> None:
    log = MemoryLog()
    await log.create("s", {})
    got: list[list[Entry] | None] = []

    async def reader(after: int) -> None:
        got.append(await log.read("s", after, float("inf")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader, 0)
        tg.start_soon(reader, 0)
        await anyio.sleep(0.01)
        await log.append("s", _frames(1))
    assert got == [_frames(1)] * 2
    assert await log.read("s", 1, 0.01) == []  # timed out
    with anyio.move_on_after(0.01):  # cancelled
        await log.read("s", 1, float("inf"))
    assert not log._logs["s"].waiters  # neither is left to be woken
    async with anyio.create_task_group() as tg:  # and the next write still wakes the next reader
        tg.start_soon(reader, 1)
        await anyio.sleep(0.01)
        await log.append("s", _frames(1, start=2))
    assert got[-1] == _frames(1, start=2)


@pytest.mark.anyio
async def test_memory_log_trims_to_max_events_and_says_so() -> None:
    log = MemoryLog(max_events=5)
    await log.create("s", {})
    await log.append("s", _frames(9))
    entries = await log.read("s", 5, 0)
    assert [e.id for e in entries or []] == [6, 7, 8, 9]
    with pytest.raises(EventsTrimmed, match="keeps events from id 4 on") as caught:
        await log.read("s", 0, 0)
    assert caught.value.first == 4


@pytest.mark.anyio
async def test_memory_log_expires_a_stream_retention_after_its_last_write() -> None:
    clock = Clock()
    log = MemoryLog(retention=10, clock=clock)
    await log.create("a", {})
    clock.now = 6
    await log.create("b", {})
    clock.now = 8
    await log.append("a", _frames(1))
    clock.now = 15.9
    assert len(log) == 2
    clock.now = 16.1  # b's last write was at 6, a's at 8
    assert "b" not in log and "a" in log
    assert await log.read("b", 0, 0) is None
    clock.now = 18.1
    assert len(log) == 0


def test_memory_log_checks_its_options() -> None:
    with pytest.raises(ValueError, match="MemoryLog: retention must be > 0"):
        MemoryLog(retention=0)
    with pytest.raises(TypeError, match="MemoryLog: max_events must be an int"):
        MemoryLog(max_events=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="MemoryLog: max_events must be >= 1"):
        MemoryLog(max_events=0)


@pytest.mark.anyio
async def test_memory_log_memory_is_what_its_options_say_not_one_record_per_write() -> None:
    """A long stream's writes over the retention window keep one expiry record per
    stream (they kept one per write: about 25 MiB held for a thousand-odd frames), and
    its frames stay within max_events and max_stream_bytes; measured with tracemalloc."""
    import gc
    import tracemalloc

    clock = Clock()
    log = MemoryLog(retention=600, max_events=50, max_stream_bytes=4000, clock=clock)
    await log.create("a", {})
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.take_snapshot()
        for n in range(1, 20_001):
            clock.now = n * 0.01  # every write at a time of its own, all within the retention
            log.append_now("a", [Entry(n, b"data: %05d\n\n" % n)])
        gc.collect()
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(base, "filename"))
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes held for 50 small frames"
    entries = await log.read("a", 19_950, 0)
    assert entries is not None and len(entries) == 50 and log.size <= 4000


@pytest.mark.anyio
async def test_memory_log_bounds_bytes_per_stream_and_in_all() -> None:
    log = MemoryLog(max_stream_bytes=100, max_bytes=250)
    await log.create("big", {})
    log.append_now("big", [Entry(n, b"x" * 30) for n in range(1, 11)])  # 300 bytes offered
    assert log.size <= 100
    with pytest.raises(EventsTrimmed):
        await log.read("big", 0, 0)
    await log.create("ended", {})
    log.append_now("ended", [Entry(1, b"y" * 90), Entry(2, b"", "done")])
    await log.create("third", {})
    log.append_now("third", [Entry(1, b"z" * 90)])  # past max_bytes: the ended stream goes first
    assert "ended" not in log and "big" in log and log.size <= 250
    log.append_now("third", [Entry(2, b"z" * 90)])  # past it again: this stream's oldest frame goes
    assert log.size <= 250
    last = MemoryLog(max_bytes=100)  # a write that ends a stream and fills the log
    await last.create("ending", {})
    last.append_now("ending", [Entry(1, b"a" * 30)])
    last.append_now("ending", [Entry(2, b"b" * 80), Entry(3, b"", "done")])
    assert "ending" in last and last.size <= 100  # its own oldest frame went, not the stream
    full = MemoryLog(max_bytes=100)
    await full.create("running", {})
    full.append_now("running", [Entry(1, b"r" * 100)])
    with pytest.raises(StoreFull, match="max_bytes 100"):  # nothing ended that could go
        await full.create("new", {})
    full.append_now("running", [Entry(2, b"", "done")])
    await full.create("new", {})  # the ended stream made room
    assert "running" not in full and full.size == 0


# -- transcripts: the text of what was written, and a clean end ------------------------------


def _script_bytes(events: list[Any]) -> list[bytes]:
    return [data for _, data in scripts.frames(events)]


@pytest.mark.parametrize(
    ("fmt", "events", "reasoning"),
    [
        ("chat.completions", scripts.chat(n=2), scripts.REASONING),
        ("completions", scripts.completions(), ""),
        ("responses", scripts.responses(), None),
        ("messages", scripts.messages(), None),
    ],
)
def test_a_transcript_reads_the_answer_and_ends_a_cut_stream_the_apis_way(
    fmt: str, events: list[Any], reasoning: str | None
) -> None:
    whole = Transcript(fmt)
    for data in _script_bytes(events):
        whole.feed(data)
    assert whole.text == scripts.ANSWERS[0]
    assert whole.complete and whole.stop_frames() == []
    if reasoning is not None:
        assert whole.reasoning == reasoning
    if fmt == "chat.completions":
        assert [c["text"] for c in whole.choices] == list(scripts.ANSWERS[:2])

    path = next(p for p, api in FORMATS.items() if api.transcript == fmt)
    cut = _script_bytes(events)[: len(events) // 2]
    part = Transcript(fmt)
    for data in cut:
        part.feed(data)
    assert part.text and scripts.ANSWERS[0].startswith(part.text)
    ending = part.stop_frames()
    assert ending and part.stop_frames() == []  # once
    api = FORMATS[path]()
    finished: set[int] = set()
    for event in SSEDecoder().feed(b"".join(cut + ending)):
        for piece in api.parse(event):
            if fmt in ("chat.completions", "completions") and '"finish_reason":"stop"' in getattr(
                piece, "frame", ""
            ):
                finished.add(json.loads(piece.frame[6:])["choices"][0]["index"])
    assert api.complete  # the API's own end event closes it
    if fmt == "chat.completions":
        assert finished == {0, 1}  # every choice ends


def test_a_transcript_takes_frames_split_anywhere_and_skips_errors() -> None:
    transcript = Transcript("text")
    data = b"data: Hel\n\ndata: lo\n\nevent: error\ndata: {}\n\ndata: [DONE]\n\n"
    for i in range(len(data)):
        transcript.feed(data[i : i + 1])
    assert transcript.text == "Hello" and transcript.complete
    with pytest.raises(ValueError, match="fmt must be one of"):
        Transcript("xml")


# -- the producer, its readers and cancel, in one process -----------------------------------------


async def _words(n: int, gap: float = 0.01) -> Any:
    for i in range(n):
        yield f"data: w{i} \n\n".encode()
        await anyio.sleep(gap)
    yield b"data: [DONE]\n\n"


@pytest.mark.anyio
async def test_readers_from_any_id_get_exactly_the_rest() -> None:
    async with ResumableStreams() as hub:
        stream_id = await hub.start(_words(30), fmt="text")
        first = [f async for f in hub.follow(stream_id)]
        events = SSEDecoder().feed(b"".join(first))
        assert [e.id for e in events] == [str(i) for i in range(1, 32)]
        for k in (0, 1, 17, 30):
            rest = SSEDecoder().feed(b"".join([f async for f in hub.follow(stream_id, k)]))
            assert rest == events[k:]


@pytest.mark.anyio
async def test_cancel_answers_exactly_what_readers_received_and_ends_them_cleanly() -> None:
    async with ResumableStreams() as hub:
        stream_id = await hub.start(_words(1000), fmt="text")
        received: list[list[ServerSentEvent]] = [[], []]

        async def reader(i: int) -> None:
            decoder = SSEDecoder()
            async for frame in hub.follow(stream_id):
                received[i] += decoder.feed(frame)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader, 0)
            tg.start_soon(reader, 1)
            await anyio.sleep(0.2)
            answer = await hub.cancel(stream_id)
        assert answer["outcome"] == "cancelled"
        for events in received:
            assert events[-1].data == "[DONE]"
            assert "".join(e.data for e in events[:-1]) == answer["text"]
            assert events[-1].id == answer["last_event_id"]
        assert 0 < len(answer["text"].split()) < 1000
        again = await hub.cancel(stream_id)  # an ended stream: the same text, how it ended
        assert again["text"] == answer["text"] and again["outcome"] == "cancelled"
        with pytest.raises(StreamLost):
            await hub.cancel("nope")


@pytest.mark.anyio
async def test_a_stream_with_no_reader_stops_after_the_orphan_timeout() -> None:
    closed: list[float] = []

    async def source() -> Any:
        try:
            async for frame in _words(10_000, gap=0.005):
                yield frame
        finally:
            closed.append(anyio.current_time())

    async with ResumableStreams(orphan_timeout=0.2, poll=0.05) as hub:
        stream_id = await hub.start(source(), fmt="text")
        async for _ in hub.follow(stream_id):
            left = anyio.current_time()
            break
        with anyio.fail_after(5):
            while not closed:
                await anyio.sleep(0.01)
        assert closed[0] - left >= 0.2
        events = SSEDecoder().feed(b"".join([f async for f in hub.follow(stream_id)]))
    assert events[-1].event == "error" and json.loads(events[-1].data)["error"]["type"] == "orphaned"


@pytest.mark.anyio
async def test_a_failing_source_ends_the_log_with_its_error_for_every_reader() -> None:
    async def source() -> Any:
        yield b"data: one\n\n"
        raise RuntimeError("model crashed")

    async with ResumableStreams() as hub:
        stream_id = await hub.start(source(), fmt="text")
        events = SSEDecoder().feed(b"".join([f async for f in hub.follow(stream_id)]))
    assert events[0].data == "one"
    assert events[-1].event == "error" and "model crashed" in events[-1].data


@pytest.mark.anyio
async def test_resumable_streams_check_what_they_are_given() -> None:
    with pytest.raises(ValueError, match="orphan_timeout must be >= 0"):
        ResumableStreams(orphan_timeout=-1)
    hub = ResumableStreams()
    with pytest.raises(RuntimeError, match="enter it"):
        await hub.start(_words(1), fmt="text")
    async with hub:
        with pytest.raises(ValueError, match="fmt must be one of"):
            await hub.start(_words(1), fmt="html")
        with pytest.raises(ValueError, match="stream_id must be"):
            await hub.start(_words(1), fmt="text", stream_id="a/b")
        stream_id = await hub.start(_frames_without_blank_line(), fmt="text")
        events = SSEDecoder().feed(b"".join([f async for f in hub.follow(stream_id)]))
    assert events[-1].event == "error" and "whole SSE events" in events[-1].data


async def _frames_without_blank_line() -> Any:
    yield b"data: no end"


# -- through the proxy, in one process ------------------------------------------------------------


@pytest.fixture(scope="module")
def scripted() -> Iterator[str]:
    with serve(ScriptedUpstream(speed=4.0).app) as url:
        yield url


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[Upstream, str]]:
    upstream = Upstream()
    with serve(upstream.app) as url:
        yield upstream, url


class _Reader:
    """The events of a streamed response, taken a few at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.data = response.iter_bytes()
        self.decoder = SSEDecoder()
        self.events: list[ServerSentEvent] = []

    def take(self, limit: int | None = None) -> list[ServerSentEvent]:
        while limit is None or len(self.events) < limit:
            data = next(self.data, None)
            if data is None:
                break
            self.events += self.decoder.feed(data)
        n = len(self.events) if limit is None else limit
        taken, self.events = self.events[:n], self.events[n:]
        return taken


def _read(response: httpx.Response, limit: int | None = None) -> list[ServerSentEvent]:
    return _Reader(response).take(limit)


@pytest.mark.parametrize("path", list(FORMATS))
def test_the_proxy_names_each_stream_and_resumes_it_after_any_event(scripted: str, path: str) -> None:
    app = create_proxy(scripted, lambda: Pacer(cps=2000))
    body = {"model": "m", "stream": True}
    asks = {"X-Pacer-Resumable": "1"}
    with serve(app) as proxy:
        with httpx.stream("POST", f"{proxy}{path}", json=body, headers=asks, timeout=30) as response:
            stream_id = response.headers["x-pacer-stream-id"]
            token = {"X-Pacer-Stream-Token": response.headers["x-pacer-stream-token"]}
            head = _read(response, 7)
        assert [e.id for e in head] == [str(i) for i in range(1, 8)]
        with httpx.stream(
            "GET", f"{proxy}/v1/streams/{stream_id}", headers={"Last-Event-ID": "7", **token}, timeout=30
        ) as response:
            assert response.headers["x-pacer-stream-id"] == stream_id
            rest = _read(response)
        whole = _read_all(f"{proxy}/v1/streams/{stream_id}", **token)
    assert head + rest == whole
    assert [e.id for e in whole] == [str(i) for i in range(1, len(whole) + 1)]
    transcript = Transcript(FORMATS[path].transcript)
    for event in whole:
        transcript.feed(event.encode())
    assert transcript.text == scripts.ANSWERS[0] and transcript.complete


def _read_all(url: str, **headers: str) -> list[ServerSentEvent]:
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        return _read(response)


def test_the_proxy_answers_bad_stream_requests_with_json_errors(fake: tuple[Upstream, str]) -> None:
    app = create_proxy(fake[1], lambda: Pacer(cps=5000))
    with serve(app) as proxy:
        missing = httpx.get(f"{proxy}/v1/streams/0123abcd")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
        assert httpx.post(f"{proxy}/v1/streams/0123abcd/cancel", json={}).status_code == 404
        body = {"model": "normal", "messages": [], "stream": True}
        created = httpx.post(f"{proxy}/v1/chat/completions", json=body)
        stream_id = created.headers["x-pacer-stream-id"]
        token = {"X-Pacer-Stream-Token": created.headers["x-pacer-stream-token"]}
        for bad_id in (b"x1", b"-1", b"1.5", b"\xb2"):  # the last: "²" (latin-1), a digit to str.isdigit
            bad = httpx.get(f"{proxy}/v1/streams/{stream_id}", headers={"Last-Event-ID": bad_id})
            assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["error"]["message"]
            assert bad.json()["error"]["type"] == "invalid_last_event_id"  # as one past the end
        beyond = httpx.get(f"{proxy}/v1/streams/{stream_id}", headers={"Last-Event-ID": "100000", **token})
        assert beyond.status_code == 400 and beyond.json()["error"]["type"] == "invalid_last_event_id"
    off = create_proxy(fake[1], lambda: Pacer(cps=5000), resume="never")
    with serve(off) as proxy:
        response = httpx.post(f"{proxy}/v1/chat/completions", json=body)
        assert "x-pacer-stream-id" not in response.headers
        assert all(e.id == "" for e in SSEDecoder().feed(response.content))
        assert httpx.get(f"{proxy}/v1/streams/{stream_id}").status_code == 404


WRONG_METHODS = [
    ("POST", "/v1/streams/0123abcd", "GET, HEAD"),
    ("DELETE", "/v1/streams/0123abcd", "GET, HEAD"),
    ("GET", "/v1/streams/0123abcd/cancel", "POST"),
    ("PUT", "/v1/streams/0123abcd/control", "POST"),
    ("POST", "/healthz", "GET, HEAD"),
    ("PUT", "/readyz", "GET, HEAD"),
    ("DELETE", "/metrics", "GET, HEAD"),
]


@pytest.mark.parametrize("resume", ["always", "never"])
@pytest.mark.parametrize("upstream", ["live", "dead"])
def test_a_wrong_method_on_the_proxys_own_paths_is_a_json_405_never_sent_upstream(
    fake: tuple[Upstream, str], resume: str, upstream: str
) -> None:
    # A live upstream would answer these paths with its own 404, a dead one with the
    # proxy's 502: either means the request went past the proxy's own routes.
    url = fake[1] if upstream == "live" else "http://127.0.0.1:9"  # nothing listens on port 9
    with serve(create_proxy(url, lambda: Pacer(cps=5000), resume=resume)) as proxy:
        for method, path, allow in WRONG_METHODS:
            answer = httpx.request(method, f"{proxy}{path}", json={})
            assert answer.status_code == 405, (method, path, answer.text)
            assert answer.headers["allow"] == allow
            message = f"{method} is not allowed on {path}; it takes {allow}"
            assert answer.json() == {"error": {"message": message, "type": "method_not_allowed"}}


def test_generation_goes_on_while_the_client_is_away_and_the_rest_is_there_on_return(
    fake: tuple[Upstream, str],
) -> None:
    upstream, url = fake
    app = create_proxy(url, lambda: Pacer(cps=5000), orphan_timeout=30)
    body = {"model": "normal", "messages": [], "stream": True, "user": "away"}
    asks = {"X-Pacer-Resumable": "1"}
    with serve(app) as proxy:
        with httpx.stream(
            "POST", f"{proxy}/v1/chat/completions", json=body, headers=asks, timeout=30
        ) as response:
            stream_id = response.headers["x-pacer-stream-id"]
            token = response.headers["x-pacer-stream-token"]
            head = _read(response, 2)
        deadline = time.monotonic() + 10
        while "away" not in upstream.completed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "away" in upstream.completed  # no reader, and the upstream ran to its end
        rest = _read_all(
            f"{proxy}/v1/streams/{stream_id}", **{"Last-Event-ID": head[-1].id, "X-Pacer-Stream-Token": token}
        )
    assert content_of(head + rest) == "".join(CONTENT)
    assert rest[-1].data == "[DONE]"


@pytest.mark.parametrize("path", list(FORMATS))
def test_cancel_through_the_proxy_ends_every_reader_with_exactly_its_text(scripted: str, path: str) -> None:
    app = create_proxy(scripted, lambda: Pacer(cps=40))
    body = {"model": "m", "stream": True}
    with serve(app) as proxy, httpx.stream("POST", f"{proxy}{path}", json=body, timeout=30) as first:
        stream_id = first.headers["x-pacer-stream-id"]
        token = {"X-Pacer-Stream-Token": first.headers["x-pacer-stream-token"]}
        reader = _Reader(first)
        seen, shown = [], Transcript(FORMATS[path].transcript)
        while not shown.text:  # until some of the answer is out
            seen += reader.take(1)
            shown.feed(seen[-1].encode())
        with httpx.stream("GET", f"{proxy}/v1/streams/{stream_id}", headers=token, timeout=30) as second:
            cancelled = httpx.post(f"{proxy}/v1/streams/{stream_id}/cancel", json={}, headers=token)
            other = _read(second)
        seen += reader.take()
    answer = cancelled.json()
    assert cancelled.status_code == 200 and answer["outcome"] == "cancelled"
    assert seen == other
    transcript = Transcript(FORMATS[path].transcript)
    for event in seen:
        transcript.feed(event.encode())
    assert transcript.text == answer["text"] and transcript.complete
    assert 0 < len(answer["text"]) < len(scripts.ANSWERS[0])
    assert seen[-1].id == answer["last_event_id"]
    if path == "/v1/chat/completions":
        assert seen[-1].data == "[DONE]" and '"finish_reason":"stop"' in seen[-2].data


def test_the_openai_client_reads_a_cancelled_stream_to_a_clean_end(scripted: str) -> None:
    import openai

    app = create_proxy(scripted, lambda: Pacer(cps=40))
    with serve(app) as proxy:
        client = openai.OpenAI(base_url=f"{proxy}/v1", api_key="k", max_retries=0)
        stream = client.chat.completions.with_streaming_response.create(model="m", messages=[], stream=True)
        text, finish = "", None
        with stream as raw:
            stream_id = raw.headers["x-pacer-stream-id"]
            for n, chunk in enumerate(raw.parse()):
                if n == 5:  # the creator's own key is enough
                    mine = {"Authorization": "Bearer k"}
                    answer = httpx.post(
                        f"{proxy}/v1/streams/{stream_id}/cancel", json={}, headers=mine
                    ).json()
                for choice in chunk.choices:
                    if choice.index == 0:
                        text += choice.delta.content or ""
                        finish = choice.finish_reason or finish
    assert text == answer["text"] and finish == "stop"


# -- the Python client: reconnects with Last-Event-ID across a cut network -------------------------


def test_the_client_resumes_across_cut_connections_and_yields_each_event_once(
    fake: tuple[Upstream, str],
) -> None:
    app = create_proxy(fake[1], lambda: Pacer(cps=400))
    body = {"model": "slow", "messages": [], "stream": True, "user": "client-cut"}

    async def main(relay: Relay) -> tuple[list[ServerSentEvent], ResumableStream]:
        async with httpx.AsyncClient(timeout=30) as http:
            stream = ResumableStream(http, f"{relay.url}/v1/chat/completions", json=body, backoff=0.05)
            events: list[ServerSentEvent] = []
            async for event in stream:
                events.append(event)
                if len(events) in (20, 60, 61):
                    relay.cut()
        return events, stream

    with serve(app) as proxy:
        relay = Relay(("127.0.0.1", int(proxy.rsplit(":", 1)[1])))
        try:
            events, stream = anyio.run(main, relay)
        finally:
            relay.close()
        assert stream.reconnects >= 2
        assert stream.token is not None
        whole = _read_all(f"{proxy}/v1/streams/{stream.stream_id}", **{"X-Pacer-Stream-Token": stream.token})
    assert events == whole
    assert content_of(events) == "".join(CONTENT * 40)


def test_the_clients_cancel_is_the_stop_button(scripted: str) -> None:
    app = create_proxy(scripted, lambda: Pacer(cps=40))

    async def main(proxy: str) -> tuple[list[ServerSentEvent], dict[str, Any]]:
        async with httpx.AsyncClient(timeout=30) as http:
            body = {"model": "m", "stream": True}
            stream = ResumableStream(http, f"{proxy}/v1/chat/completions", json=body)
            events: list[ServerSentEvent] = []
            answer: dict[str, Any] = {}
            async for event in stream:
                events.append(event)
                if content_of(events) and not answer:
                    answer = await stream.cancel()
        return events, answer

    with serve(app) as proxy:
        events, answer = anyio.run(main, proxy)
    assert answer["outcome"] == "cancelled" and content_of(events) == answer["text"]
    assert events[-1].data == "[DONE]" and events[-1].id == answer["last_event_id"]


def test_the_client_says_why_it_cannot_go_on() -> None:
    assert streams_url("http://h/gw/v1/chat/completions", "abc") == "http://h/gw/v1/streams/abc"
    with pytest.raises(ValueError, match="/v1/"):
        streams_url("http://h/chat", "abc")

    async def unknown() -> None:
        async with httpx.AsyncClient() as http:
            stream = ResumableStream(http, "http://127.0.0.1:9/v1/chat/completions")
            with pytest.raises(StreamEnded, match="no id yet"):
                await stream.cancel()

    anyio.run(unknown)


# -- the browser client, in a real Chromium, across a cut network ----------------------------------

_PAGE = """<!doctype html><meta charset="utf-8"><body><pre id="out"></pre><script>%s</script><script>
const ids = [];
let text = "";
const stream = new PacerStream("/v1/chat/completions",
  {model: "slow", messages: [], stream: true, user: "browser"},
  {backoff: 50, onEvent: (e) => ids.push(e.id),
   onText: (t) => { text += t; document.body.dataset.len = text.length; }});
stream.done.then(
  (end) => { document.body.dataset.result = JSON.stringify({text, ids, end, token: stream.token}); },
  (error) => { document.body.dataset.result = JSON.stringify({error: String(error)}); });
</script>"""


def test_the_browser_client_resumes_after_a_cut_and_closes_at_done(fake: tuple[Upstream, str]) -> None:
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from pacer.resumable import javascript

    from .servers import chromium

    upstream, url = fake

    async def page(request: Any) -> HTMLResponse:
        return HTMLResponse(_PAGE % javascript())

    if not any(getattr(r, "path", "") == "/page" for r in upstream.app.routes):
        upstream.app.router.routes.append(Route("/page", page))
    driver = chromium()
    app = create_proxy(url, lambda: Pacer(cps=1000))
    try:
        with serve(app) as proxy:
            relay = Relay(("127.0.0.1", int(proxy.rsplit(":", 1)[1])))
            try:
                driver.get(f"{relay.url}/page")  # same origin as the proxy: the page comes through it
                for cut_after in (200, 1500):
                    _wait(lambda at=cut_after: int(driver.execute_script(_LENGTH)) > at)
                    relay.cut()
                result = json.loads(_wait(lambda: driver.execute_script(_RESULT)))
            finally:
                relay.close()
            stream_id = result.get("end", {}).get("streamId")
            token = {"X-Pacer-Stream-Token": result.get("token") or ""}
            whole = _read_all(f"{proxy}/v1/streams/{stream_id}", **token) if stream_id else []
    finally:
        driver.quit()
    assert "error" not in result, result
    assert result["end"]["outcome"] == "done" and result["end"]["reconnects"] >= 2
    assert result["text"] == "".join(CONTENT * 40)
    assert result["ids"] == [e.id for e in whole]  # every event once, in order


_LENGTH = "return document.body.dataset.len || 0"
_RESULT = "return document.body.dataset.result"


# -- what a listener heard ---------------------------------------------------------------------------


def test_heard_text_follows_audio_chunks_and_never_splits_a_word() -> None:
    from pacer._heard import HeardText

    heard = HeardText(start=10.0)
    heard.audio("Hello there. ", 1.0)
    heard.audio("How are you today? ", 2.0)
    heard.audio("我们很好。", 1.0)
    assert heard.at(9.0) == "" and heard.at(10.6) == "Hello "  # 7 of 13 characters: "Hello t"
    assert heard.at(10.99) == "Hello there." and heard.at(11.0) == "Hello there. "
    assert heard.at(12.0) == "Hello there. How are "  # 9 of 19 characters: "How are y"
    assert heard.at(13.5) == "Hello there. How are you today? 我们"
    assert heard.at(99) == heard.text
    for t in (9.0, 10.3, 11.7, 12.2, 13.9, 20.0):
        assert heard.at(t) + heard.unheard(t) == heard.text


def test_heard_text_counts_a_timestamped_word_once_it_is_all_out() -> None:
    from pacer._heard import HeardText

    heard = HeardText()
    for text, start, end in [("Stop ", 0.0, 0.3), ("right ", 0.35, 0.6), ("there.", 0.7, 1.1)]:
        heard.word(text, start, end)
    assert [heard.at(t) for t in (0.2, 0.3, 0.65, 1.0, 1.1)] == [
        "",
        "Stop ",
        "Stop right ",
        "Stop right ",
        heard.text,
    ]
    with pytest.raises(ValueError, match="in the order they play"):
        heard.word("again", 0.5, 0.9)
    with pytest.raises(ValueError, match=r"end .* is before start"):
        heard.word("x", 2.0, 1.0)
    with pytest.raises(ValueError, match="duration must be >= 0"):
        heard.audio("x", -1)
    with pytest.raises(TypeError, match="text must be a str"):
        heard.audio(b"x", 1)  # type: ignore[arg-type]
