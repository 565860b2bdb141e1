"""Compressed event streams: every event decodes the moment it arrives, in every encoding,
read by httpx, the openai client through the proxy, and real Chromium's EventSource."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from pacer import Pacer
from pacer._compress import ENCODINGS, EventCompressor, available, negotiate
from pacer.proxy import create_proxy
from pacer.server import EventStreamResponse
from pacer.sse import SSEDecoder, encode
from pacer.testing import streams

from .servers import ScriptedUpstream, chromium, serve

pytestmark = pytest.mark.timeout(120)


def _decoder(encoding: str) -> Any:
    """An incremental decoder: ``.decompress(bytes) -> bytes``."""
    if encoding == "gzip":
        return zlib.decompressobj(31)
    if encoding == "deflate":
        return zlib.decompressobj(15)
    if encoding == "br":
        import brotli

        class Brotli:
            def __init__(self) -> None:
                self.d = brotli.Decompressor()

            def decompress(self, data: bytes) -> bytes:
                return self.d.process(data)  # type: ignore[no-any-return]

        return Brotli()
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("gzip, deflate, br, zstd", "gzip"),  # Chromium's: a tie goes to our order
        ("deflate, zstd, br", "br"),
        ("gzip, deflate", "gzip"),
        ("gzip;q=0.5, deflate", "deflate"),
        ("zstd;q=0.9, gzip;q=0.8", "zstd"),
        ("*", "gzip"),
        ("gzip;q=0, *;q=0.5", "br"),
        ("GZIP ; Q=1", "gzip"),
        ("identity", None),
        ("gzip;q=0", None),
        ("gzip;q=bad", None),
        ("", None),
        (None, None),
    ],
)
def test_negotiate_follows_the_clients_qualities(header: str | None, chosen: str | None) -> None:
    assert negotiate(header, ENCODINGS) == chosen


def test_every_encoding_is_available_with_the_compress_extra() -> None:
    assert available() == ENCODINGS  # the dev install has brotli and zstandard


@pytest.mark.parametrize("encoding", ENCODINGS)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_each_event_decodes_as_soon_as_it_arrives(encoding: str, events: list[bytes]) -> None:
    compressor = EventCompressor(encoding)
    decoder = _decoder(encoding)
    sent = b""
    for event in events:
        piece = compressor.event(event)
        sent += piece
        assert decoder.decompress(piece) == event  # nothing held back for the next event
    sent += compressor.end()
    if encoding == "gzip":
        assert gzip.decompress(sent) == b"".join(events)  # a whole, valid gzip stream


def test_compressor_rejects_bad_use() -> None:
    with pytest.raises(ValueError, match="encoding must be one of gzip, br, zstd, deflate, got 'lzma'"):
        EventCompressor("lzma")
    compressor = EventCompressor("gzip")
    compressor.end()
    with pytest.raises(ValueError, match="event after end"):
        compressor.event(b"x")


# -- a real server, where each event must be read before the next is sent ------------------------


class Lockstep:
    """An app whose stream sends event k+1 only after the client has acknowledged event k:
    a stream that held an event back would never finish (the test would time out)."""

    def __init__(self, count: int = 12) -> None:
        self.count = count
        self.acked = -1
        self.app = Starlette(
            routes=[
                Route("/events", self.events),
                Route("/ack", self.ack, methods=["POST"]),
                Route("/", self.page),
            ]
        )

    async def events(self, request: Request) -> EventStreamResponse:
        self.acked = -1
        compress = request.query_params.get("compress") != "0"

        async def frames() -> AsyncIterator[bytes]:
            for k in range(self.count):
                while self.acked < k - 1:
                    await anyio.sleep(0.005)
                yield encode(f"event {k}: " + "word " * (k % 4), id=str(k))

        return EventStreamResponse(frames(), heartbeat=None, compress=compress)

    async def ack(self, request: Request) -> PlainTextResponse:
        self.acked = int(request.query_params["k"])
        return PlainTextResponse("ok")

    async def page(self, request: Request) -> HTMLResponse:
        return HTMLResponse(
            """<!doctype html><body><script>
            const got = [];
            const source = new EventSource("/events");
            source.onmessage = (e) => {
              got.push(e.data);
              fetch("/ack?k=" + e.lastEventId, {method: "POST"});
              if (got.length === COUNT) { source.close(); document.body.dataset.got = JSON.stringify(got); }
            };
            </script></body>""".replace("COUNT", str(self.count))
        )


@pytest.fixture(scope="module")
def lockstep() -> Iterator[tuple[Lockstep, str]]:
    app = Lockstep()
    with serve(app.app) as url:
        yield app, url


@pytest.mark.parametrize("encoding", [*ENCODINGS, "identity"])
def test_httpx_decodes_every_event_on_arrival(encoding: str, lockstep: tuple[Lockstep, str]) -> None:
    app, url = lockstep
    got = []
    headers = {"accept-encoding": encoding}
    with (
        httpx.Client(timeout=20) as client,
        client.stream("GET", f"{url}/events", headers=headers) as response,
    ):
        assert response.headers.get("content-encoding", "identity") == encoding
        if encoding != "identity":
            assert response.headers["vary"] == "accept-encoding"
        decoder = SSEDecoder()
        for piece in response.iter_bytes():  # httpx decodes the encoding as bytes arrive
            for event in decoder.feed(piece):
                got.append(event.data)
                client.post(f"{url}/ack", params={"k": event.id})
    assert got == [f"event {k}: " + "word " * (k % 4) for k in range(app.count)]


def test_compress_off_sends_identity(lockstep: tuple[Lockstep, str]) -> None:
    _, url = lockstep
    with (
        httpx.Client(timeout=20) as client,
        client.stream("GET", f"{url}/events?compress=0", headers={"accept-encoding": "gzip"}) as response,
    ):
        assert "content-encoding" not in response.headers
        decoder = SSEDecoder()
        for piece in response.iter_bytes():
            for event in decoder.feed(piece):
                client.post(f"{url}/ack", params={"k": event.id})


def test_chromium_eventsource_decodes_each_compressed_event_on_arrival(
    lockstep: tuple[Lockstep, str],
) -> None:
    app, url = lockstep
    driver = chromium(("goog:loggingPrefs", {"performance": "ALL"}))
    try:
        driver.get(url)
        deadline = time.monotonic() + 30
        while (got := driver.execute_script("return document.body.dataset.got")) is None:
            assert time.monotonic() < deadline, "the browser did not get every event: one was held back"
            time.sleep(0.05)
        encodings = [
            entry["message"]
            for entry in driver.get_log("performance")
            if "Network.responseReceived" in entry["message"] and "/events" in entry["message"]
        ]
    finally:
        driver.quit()
    assert json.loads(got) == [f"event {k}: " + "word " * (k % 4) for k in range(app.count)]
    assert any('"content-encoding":"gzip"' in m.replace(" ", "").lower() for m in encodings), encodings


def test_openai_client_reads_a_compressed_paced_stream_through_the_proxy() -> None:
    with serve(ScriptedUpstream().app) as upstream:
        app = create_proxy(upstream, lambda: Pacer(cps=3000))
        with serve(app) as url:
            raw = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "stream": True})
            assert raw.headers["content-encoding"] == "gzip"  # httpx asks for gzip, deflate, br, zstd
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
            stream = client.chat.completions.create(model="m", messages=[], stream=True)
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == streams.ANSWERS[0]
