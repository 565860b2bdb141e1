"""Bytes on the wire for OpenAI-format SSE at one word per event, and what compressing costs.

The stream is what the proxy sends with ``--unit word``: one Chat Completions chunk per
word (the upstream's ``id``, ``model``, ``system_fingerprint``, ...), over the demo text
and the held-out sentences. pacer's ``EventCompressor`` flushes after every event; each
row checks that every event decodes completely from the bytes sent up to it ("events
held back": those that did not). Beside it, the same events through Starlette's
``GZipMiddleware``: as configured by default (it leaves ``text/event-stream`` alone)
and told to compress event streams (``exclude_content_types=()``), with the event
arriving one ASGI body message at a time, as ``EventStreamResponse`` sends them.
"""

from __future__ import annotations

import json
import time
import zlib
from importlib import resources
from typing import Any

import anyio

from pacer._compress import EventCompressor, available
from pacer.formats import ChatCompletions, Text
from pacer.testing import streams
from pacer.testing.cases import CASES, HELDOUT_FIRST

from ._table import print_table


def _frames(quick: bool) -> tuple[list[bytes], int]:
    """One chat-completion chunk per word, and the text's tokens (tekken)."""
    from pacer.tokenizers import load_tekken

    demo = (resources.files("pacer") / "data" / "demo.md").read_text(encoding="utf-8")
    cases = [*CASES, *HELDOUT_FIRST]
    text = demo + "".join("".join(units) + "\n" for lang, _, units in cases if lang in ("en", "md"))
    if quick:
        text = text[:2000]
    template = json.loads(next(d for _, _, d in streams.chat(n=1) if '"content": "' in d and "role" not in d))
    choice = template["choices"][0]
    choice["logprobs"] = None
    fmt = ChatCompletions()
    words = streams.tokens(text)
    frames = [fmt.text_frame(Text(0, "content", w, (template, choice, None)), w, []).encode() for w in words]
    return frames, len(load_tekken().encode(text))


def _decoder(encoding: str) -> Any:
    if encoding in ("gzip", "deflate"):
        return zlib.decompressobj(31 if encoding == "gzip" else 15)
    if encoding == "br":
        import brotli

        return type("B", (), {"d": brotli.Decompressor(), "decompress": lambda s, b: s.d.process(b)})()
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


def _held_back(encoding: str, pieces: list[bytes], frames: list[bytes]) -> int:
    """How many events did not decode completely from the bytes sent up to them."""
    if encoding == "identity":
        return sum(p != f for p, f in zip(pieces, frames, strict=True))
    decoder, out, held = _decoder(encoding), b"", 0
    want = b""
    for piece, frame in zip(pieces, frames, strict=True):
        out += decoder.decompress(piece)
        want += frame
        held += out != want
    return held


def _ours(encoding: str, frames: list[bytes], rounds: int) -> tuple[int, float, int]:
    """(bytes, seconds per event at best, events held back)."""
    best, pieces = float("inf"), []
    for _ in range(rounds):
        t0 = time.perf_counter()
        if encoding == "identity":
            pieces = list(frames)
        else:
            compressor = EventCompressor(encoding)
            pieces = [compressor.event(f) for f in frames]
            pieces.append(compressor.end())
        best = min(best, time.perf_counter() - t0)
    held = _held_back(encoding, pieces[: len(frames)], frames)
    return sum(map(len, pieces)), best / len(frames), held


def _starlette(frames: list[bytes], exclude: tuple[str, ...] | None) -> tuple[int, str, int]:
    """(bytes, content-encoding, events held back) through Starlette's GZipMiddleware."""
    from starlette.middleware.gzip import GZipMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for frame in frames:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    options = {} if exclude is None else {"exclude_content_types": exclude}
    middleware = GZipMiddleware(app, **options)  # type: ignore[arg-type]
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"accept-encoding", b"gzip")]}
    anyio.run(middleware, scope, receive, send)
    start = sent[0]
    encoding = dict(start["headers"]).get(b"content-encoding", b"identity").decode()
    bodies = [m["body"] for m in sent[1:]]
    held = _held_back(encoding, bodies[: len(frames)], frames)
    return sum(map(len, bodies)), encoding, held


def main(quick: bool = False) -> None:
    frames, tokens = _frames(quick)
    rounds = 2 if quick else 7
    identity = sum(map(len, frames))
    rows = []
    for encoding in ("identity", *available()):
        size, per_event, held = _ours(encoding, frames, rounds)
        rows.append(
            [
                f"pacer EventCompressor: {encoding}",
                f"{size / len(frames):.1f}",
                f"{size / tokens:.1f}",
                f"{identity / size:.1f}x",
                f"{per_event * 1e6:.1f}",
                str(held),
            ]
        )
    for label, exclude in (("default", None), ("exclude_content_types=()", ())):
        size, encoding, held = _starlette(frames, exclude)
        rows.append(
            [
                f"Starlette GZipMiddleware ({label}): {encoding}",
                f"{size / len(frames):.1f}",
                f"{size / tokens:.1f}",
                f"{identity / size:.1f}x",
                "",
                str(held),
            ]
        )
    print_table(
        f"OpenAI-format SSE, one word per event ({len(frames)} events, {tokens} tokens; "
        "aim: >= 8x fewer bytes with gzip, < 100 us added per event)",
        ["stream", "bytes/event", "bytes/token", "smaller by", "us/event to compress", "events held back"],
        rows,
    )
