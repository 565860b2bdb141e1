"""The client writer, driven by hand: no network, no clock (``pacer._writer``)."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pytest

from pacer._errors import ErrorFrame, error_event, error_frame
from pacer._outcome import Outcome
from pacer._writer import PING, ClientWriter, Due


def test_a_heartbeat_is_due_after_the_silence_and_not_again_until_the_next() -> None:
    writer = ClientWriter(heartbeat=15.0, send_timeout=None)
    writer.opened(0.0)
    assert writer.tick(10.0) == (Due.NOTHING, 15.0)
    assert writer.tick(15.0) == (Due.PING, 30.0)
    assert writer.tick(20.0) == (Due.NOTHING, 30.0)
    body = writer.begin(b"data: x\n\n", 25.0)
    writer.wrote(b"data: x\n\n", len(body), 25.0)
    assert writer.tick(26.0) == (Due.NOTHING, 40.0)  # a frame restarts the silence


def test_a_send_that_waits_send_timeout_drops_the_stream_whatever_came_before() -> None:
    writer = ClientWriter(heartbeat=None, send_timeout=4.0)
    writer.opened(0.0)
    writer.begin(error_event("boom", "x"), 1.0)
    assert writer.tick(2.0) == (Due.NOTHING, 3.0)  # looks again at a quarter of the timeout
    assert writer.tick(5.0) == (Due.TIMEOUT, math.inf)
    assert writer.close() == Outcome.SEND_TIMEOUT


def test_the_outcome_is_recorded_where_it_happens_the_strongest_winning() -> None:
    closed: list[Outcome] = []
    done = ClientWriter(heartbeat=None, send_timeout=None, on_close=closed.append)
    done.completed()
    assert done.close() is Outcome.DONE and closed == ["done"]
    failed = ClientWriter(heartbeat=None, send_timeout=None)
    failed.begin(error_frame(RuntimeError("no")), 0.0)
    failed.completed()
    assert failed.close() is Outcome.ERROR
    cut = ClientWriter(heartbeat=None, send_timeout=None)
    cut.begin(b"data: x\n\n", 0.0)
    assert cut.close() is Outcome.DISCONNECT  # never completed, no error sent
    refused = ClientWriter(heartbeat=None, send_timeout=None)
    refused.begin(error_event("boom", "x"), 0.0)
    refused.write_failed()
    assert refused.close() is Outcome.DISCONNECT


def test_frames_say_they_are_errors_by_type_and_read_as_the_same_bytes() -> None:
    frame = error_event("gone", "not_found")
    assert isinstance(frame, ErrorFrame)
    assert frame == b'event: error\ndata: {"error": {"message": "gone", "type": "not_found"}}\n\n'
    assert not isinstance(PING, ErrorFrame)


def test_outcomes_are_the_strings_they_were() -> None:
    assert Outcome.DONE == "done" and f"{Outcome.SEND_TIMEOUT}" == "send_timeout"
    assert Outcome.CANCELLED in frozenset({"cancelled"}) and {"error": 1}[Outcome.ERROR] == 1


def test_an_upstream_error_event_passed_on_is_an_error_frame() -> None:
    import anyio

    from pacer import Pacer
    from pacer._events import paced_event_frames
    from pacer.formats import AnthropicMessages, Responses

    upstreams = {
        AnthropicMessages: b'event: message_start\ndata: {"type": "message_start", "message": {}}\n\n'
        b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}\n\n',
        Responses: b'event: response.created\ndata: {"type": "response.created", "sequence_number": 0}\n\n'
        b'event: error\ndata: {"type": "error", "code": "x", "message": "busy", "sequence_number": 1}\n\n',
    }

    async def frames(fmt: Any, data: bytes) -> list[bytes]:
        async def upstream() -> Any:
            yield data

        return [f async for f in paced_event_frames(upstream(), fmt(), lambda: Pacer(cps=1000))]

    for fmt, data in upstreams.items():
        out = anyio.run(frames, fmt, data)
        assert [isinstance(f, ErrorFrame) for f in out] == [False, True], fmt
        assert out[-1].startswith(b"event: error\n")


def test_a_response_records_its_outcome_from_typed_frames_and_from_a_log_end() -> None:
    import anyio

    from pacer.resumable import ResumableStreams
    from pacer.server import EventStreamResponse, log_frames

    async def frames(*items: bytes, fail: bool = False) -> Any:
        for item in items:
            yield item
        if fail:
            raise RuntimeError("model crashed")

    async def serve(response: EventStreamResponse) -> tuple[Outcome, bytes]:
        sent: list[bytes] = []

        async def receive() -> Any:
            await anyio.sleep_forever()

        async def send(message: Any) -> None:
            sent.append(message.get("body", b""))

        await response({"type": "http", "headers": []}, receive, send)
        return response.outcome, b"".join(sent)

    async def main() -> None:
        assert (await serve(EventStreamResponse(frames(b"data: a\n\n"))))[0] is Outcome.DONE
        outcome, body = await serve(EventStreamResponse(frames(b"data: a\n\n", fail=True)))
        assert outcome is Outcome.ERROR and body.startswith(b"data: a\n\nevent: error\n")
        async with ResumableStreams() as streams:
            stream_id = await streams.start(frames(b"data: a\n\n", fail=True), fmt="text")
            outcome, body = await serve(EventStreamResponse(log_frames(streams, stream_id)))
            assert outcome is Outcome.ERROR and b"event: error" in body  # the log's end mark says so
            stream_id = await streams.start(frames(b"data: a\n\n"), fmt="text")
            assert (await serve(EventStreamResponse(log_frames(streams, stream_id))))[0] is Outcome.DONE

    anyio.run(main)


def test_only_a_client_that_leaves_a_running_stream_is_logged_as_disconnected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client closes its connection after every complete stream too: that is no news."""
    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Route

    from pacer import Pacer
    from pacer.server import PacedEventSource

    from .servers import serve

    async def stream(request: Any) -> PacedEventSource:
        words = [f"w{i} " for i in range(int(request.query_params["n"]))]
        return PacedEventSource(words, Pacer(cps=200))

    caplog.set_level(logging.INFO, logger="pacer")
    with serve(Starlette(routes=[Route("/s", stream)])) as url:
        assert httpx.get(f"{url}/s?n=3", timeout=10).text.endswith("data: [DONE]\n\n")
        time.sleep(0.3)  # the server's side of the connection closes in its own time
        assert not [r for r in caplog.records if "disconnected" in r.getMessage()]
        with httpx.stream("GET", f"{url}/s?n=400", timeout=10) as response:
            next(response.iter_raw())  # one event, then leave mid-stream
        deadline = time.monotonic() + 5
        while not [r for r in caplog.records if "disconnected" in r.getMessage()]:
            assert time.monotonic() < deadline, "a client that left mid-stream was not logged"
            time.sleep(0.05)


def test_a_blocked_stream_is_recorded_blocked_in_every_format_and_in_its_log() -> None:
    """A check's block goes out as the API's content-filter ending, typed where it is
    made (``BlockedFrame``), so the writer and a resumable stream's end mark record
    ``BLOCKED``: not ``DONE`` (OpenAI's finish chunk and ``[DONE]``), nor ``ERROR``
    (plain text's ``event: error`` of type ``content_filter``). An upstream's own error
    event passed on ends a resumable stream's log as ``ERROR``."""
    import anyio

    from pacer import Pacer
    from pacer._errors import BlockedFrame
    from pacer._events import paced_event_frames
    from pacer.formats import FORMATS
    from pacer.guard import Guard
    from pacer.resumable import ResumableStreams
    from pacer.server import EventStreamResponse, log_frames

    chat = (
        b'data: {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, '
        b'"delta": {"content": "Fine here. The secret is out. More."}, "finish_reason": null}]}\n\n'
        b'data: {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, '
        b'"delta": {}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    )
    upstreams = {
        "chat.completions": chat,
        "messages": b'event: message_start\ndata: {"type": "message_start", "message": {}}\n\n'
        b'event: content_block_start\ndata: {"type": "content_block_start", "index": 0, '
        b'"content_block": {"type": "text", "text": ""}}\n\n'
        b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, '
        b'"delta": {"type": "text_delta", "text": "Fine here. The secret is out."}}\n\n'
        b'event: content_block_stop\ndata: {"type": "content_block_stop", "index": 0}\n\n'
        b'event: message_stop\ndata: {"type": "message_stop"}\n\n',
    }

    def pipeline() -> Any:
        return Guard(lambda text: "secret" not in text) | Pacer(cps=10_000)

    async def upstream(data: bytes) -> Any:
        yield data

    async def serve(response: EventStreamResponse) -> Outcome:
        async def receive() -> Any:
            await anyio.sleep_forever()

        async def send(message: Any) -> None:
            pass

        await response({"type": "http", "headers": []}, receive, send)
        return response.outcome

    async def main() -> None:
        for name, data in upstreams.items():
            frames = [f async for f in paced_event_frames(upstream(data), FORMATS[name](), pipeline)]
            assert any(isinstance(f, BlockedFrame) for f in frames), name
            assert b"secret" not in b"".join(frames)
            paced = paced_event_frames(upstream(data), FORMATS[name](), pipeline)
            assert await serve(EventStreamResponse(paced)) is Outcome.BLOCKED, name
            async with ResumableStreams() as streams:
                paced = paced_event_frames(upstream(data), FORMATS[name](), pipeline)
                stream_id = await streams.start(paced, fmt=name)
                assert await serve(EventStreamResponse(log_frames(streams, stream_id))) is Outcome.BLOCKED
        error = upstreams["messages"].replace(
            b'event: message_stop\ndata: {"type": "message_stop"}\n\n',
            b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
            b'"message": "x"}}\n\n',
        )
        async with ResumableStreams() as streams:
            paced = paced_event_frames(upstream(error), FORMATS["messages"](), lambda: Pacer(cps=10_000))
            stream_id = await streams.start(paced, fmt="messages")
            assert await serve(EventStreamResponse(log_frames(streams, stream_id))) is Outcome.ERROR

    anyio.run(main)


def test_frames_pushed_on_a_hub_into_a_log_are_the_frames_a_run_of_their_own_gives() -> None:
    """A resumable stream of this process is paced on the streams' hub, each frame
    written to the log as it comes due (``PacedFrames.push``); one whose frames are
    iterated (a store elsewhere, a virtual clock) has a run of its own. Either way the
    log holds the same text, the same kept events in order, and the same ending: done, a
    check's block, the upstream's own error, a cut upstream's error."""
    import json

    import anyio

    from pacer import Pacer
    from pacer._events import PacedFrames, paced_event_frames
    from pacer.formats import FORMATS, Transcript
    from pacer.guard import Guard
    from pacer.resumable import ResumableStreams
    from pacer.sse import SSEDecoder

    def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    text = "Fine here. The secret is out. More text follows, word by word. " * 3
    done = b"".join(chunk({"content": text[i : i + 7]}) for i in range(0, len(text), 7))
    done += chunk({}, "stop") + b"data: [DONE]\n\n"
    upstreams = {
        "done": (done, lambda: Pacer(cps=5_000)),
        "blocked": (done, lambda: Guard(lambda t: "secret" not in t) | Pacer(cps=5_000)),
        "cut": (done[: len(done) // 2], lambda: Pacer(cps=5_000)),
        "error": (done.replace(b"data: [DONE]", b'data: {"error": {"message": "overloaded"}}'), Pacer),
    }

    async def upstream(data: bytes) -> Any:
        for i in range(0, len(data), 100):
            yield data[i : i + 100]
            await anyio.sleep(0)

    async def logged(streams: ResumableStreams, frames: Any) -> tuple[str, list[str], Outcome | None]:
        stream_id = await streams.start(frames, fmt="chat.completions")
        transcript, kept, end = Transcript("chat.completions"), [], None
        async for entry in streams.read(stream_id):
            if entry.end is not None:
                end = entry.end
                continue
            transcript.feed(entry.frame)
            for event in SSEDecoder().feed(entry.frame):
                if '"content"' not in event.data:
                    kept.append(event.data)
        return transcript.text, kept, end

    with pytest.raises(TypeError, match=r"PacedFrames: unknown option\(s\) colck"):
        PacedFrames(upstream(done), FORMATS["chat.completions"](), Pacer, colck=None)

    async def main() -> None:
        async with ResumableStreams() as streams:
            for name, (data, pipeline) in upstreams.items():
                pushed = PacedFrames(upstream(data), FORMATS["chat.completions"](), pipeline)
                assert pushed.pushable
                iterated = paced_event_frames(upstream(data), FORMATS["chat.completions"](), pipeline)
                got = await logged(streams, pushed), await logged(streams, iterated)
                assert got[0] == got[1], name
                assert got[0][2] is {"done": Outcome.DONE, "blocked": Outcome.BLOCKED}.get(
                    name, Outcome.ERROR
                )

    anyio.run(main)


def test_a_log_batch_goes_out_in_one_write_that_decodes_whole_and_counts_each_event() -> None:
    # A reader that comes late (a reconnect, a busy loop) finds several frames in the log:
    # they go out in one write, compressed as one flushed event, each counted.
    import zlib

    import anyio
    from prometheus_client import CollectorRegistry

    from pacer.prometheus import PacerMetrics
    from pacer.resumable import ResumableStreams
    from pacer.server import EventStreamResponse, log_frames
    from pacer.sse import SSEDecoder

    frames = [f"data: {i}\n\n".encode() for i in range(5)]

    async def produced() -> Any:
        for frame in frames:
            yield frame

    async def main() -> tuple[list[bytes], float]:
        metrics = PacerMetrics(CollectorRegistry())
        async with ResumableStreams() as streams:
            stream_id = await streams.start(produced(), fmt="text")
            while (last := streams.log.last(stream_id)) is None or last.end is None:  # type: ignore[attr-defined]
                await anyio.sleep(0.001)
            response = EventStreamResponse(
                log_frames(streams, stream_id), compress=True, observer=metrics.observer()
            )
            bodies = await _gzipped_bodies(response)
        return bodies, metrics.writes.events._value.get()

    bodies, events = anyio.run(main)
    assert len(bodies) == 2  # the batch, then the end of the gzip stream
    first = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(bodies[0])
    events_sent = SSEDecoder().feed(first)  # every event of the batch decodes from its one write
    assert [(e.data, e.id) for e in events_sent] == [(str(i), str(i + 1)) for i in range(5)]
    assert events == len(frames)


def test_a_batch_with_an_error_frame_stays_decodable_and_an_empty_one_sends_nothing() -> None:
    # Found from outside: an error frame in a batch was compressed twice (its bytes lost,
    # the gzip header with them), and an empty batch raised IndexError.
    import zlib

    import anyio

    from pacer.server import EventStreamResponse
    from pacer.sse import SSEDecoder

    async def frames() -> Any:
        yield []
        yield [b""]
        yield [b"data: one\n\n", error_frame(RuntimeError("model crashed"))]

    async def main() -> tuple[Outcome, list[bytes]]:
        response = EventStreamResponse(frames(), compress=True, heartbeat=None)
        bodies = await _gzipped_bodies(response)
        return response.outcome, bodies

    outcome, bodies = anyio.run(main)
    assert outcome is Outcome.ERROR
    assert len(bodies) == 2  # the batch in one write, then the gzip trailer: nothing for the empty ones
    events = SSEDecoder().feed(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(bodies[0]))
    assert len(events) == 2 and (events[0].event, events[0].data) == ("message", "one")
    assert events[1].event == "error" and "model crashed" in events[1].data


async def _gzipped_bodies(response: Any) -> list[bytes]:
    """The body messages of ``response`` served to a client that accepts gzip."""
    import anyio

    bodies: list[bytes] = []

    async def receive() -> Any:
        await anyio.sleep_forever()

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])

    await response({"type": "http", "headers": [(b"accept-encoding", b"gzip")]}, receive, send)
    return bodies


def test_a_long_replay_goes_out_in_bounded_writes_in_order() -> None:
    # A reconnect that finds a long log writes it in pieces of about BATCH_BYTES: a slow
    # reader's send waits on its share, and the replay is not held in memory twice.
    import anyio

    from pacer.resumable import ResumableStreams
    from pacer.server import BATCH_BYTES, log_frames
    from pacer.sse import SSEDecoder

    frames = [b"data: " + b"x" * 1000 + b"\n\n" for _ in range(200)]

    async def produced() -> Any:
        for frame in frames:
            yield frame

    async def main() -> list[Any]:
        async with ResumableStreams() as streams:
            stream_id = await streams.start(produced(), fmt="text")
            while (last := streams.log.last(stream_id)) is None or last.end is None:  # type: ignore[attr-defined]
                await anyio.sleep(0.001)
            return [item async for item in log_frames(streams, stream_id, after=3)]

    writes = anyio.run(main)
    assert all(isinstance(w, list) for w in writes) and len(writes) >= 3
    assert all(sum(map(len, w)) < BATCH_BYTES + len(w[-1]) for w in writes)
    ids = [e.id for w in writes for frame in w for e in SSEDecoder().feed(frame)]
    assert ids == [str(i) for i in range(4, 201)]  # exactly the rest, in order
