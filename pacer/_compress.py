"""Compression for event streams that never holds an event back.

A gzip middleware (Starlette's ``GZipMiddleware``, tower-http's ``CompressionLayer``,
Express ``compression``) hands each write to a compressor and sends what comes out:
the compressor keeps small writes in its window, so a stream of short events reaches
the client in lumps, and operators turn compression off for event streams and pay
150-200 bytes per token. ``EventCompressor`` instead *flushes* after each event (a
sync flush: the output so far ends on a byte boundary and decodes completely, while
the compression context, what makes the next event small, is kept), so every event
can be decoded the moment it arrives.

``negotiate`` picks an encoding from a request's ``Accept-Encoding``: ``gzip`` and
``deflate`` always, ``br`` and ``zstd`` when ``brotli`` and ``zstandard`` are installed
(``pip install 'pacer-llm[compress]'``).

Cost: the codec's own work per event, plus a flush (a few bytes) per event.
"""

from __future__ import annotations

import functools
import zlib
from typing import Any

__all__ = ["ENCODINGS", "EventCompressor", "available", "negotiate"]

#: Every encoding pacer can use, in its order of preference for a tie in the client's:
#: at one word per event gzip (level 9) sent the fewest bytes of all (``python -m
#: benchmarks wire``), then br and zstd; deflate last, as some clients misread it.
ENCODINGS = ("gzip", "br", "zstd", "deflate")


@functools.cache
def available() -> tuple[str, ...]:
    """The encodings usable here (``br`` and ``zstd`` need their packages), in ``ENCODINGS`` order."""
    found = []
    for name in ENCODINGS:
        if name == "br":
            try:
                import brotli  # noqa: F401
            except ImportError:
                continue
        elif name == "zstd":
            try:
                import zstandard  # noqa: F401
            except ImportError:
                continue
        found.append(name)
    return tuple(found)


def _qualities(accept_encoding: str) -> dict[str, float]:
    """Each coding of an ``Accept-Encoding`` value with its quality (RFC 9110 section 12.5.3)."""
    out: dict[str, float] = {}
    for part in accept_encoding.split(","):
        name, _, params = part.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    quality = 0.0  # a malformed weight: not acceptable
        out[name] = quality
    return out


def negotiate(accept_encoding: str | None, offered: tuple[str, ...] | None = None) -> str | None:
    """The encoding to use for a client that sent ``accept_encoding``, or ``None`` (identity).

    ``offered`` defaults to ``available()``. The client's highest quality wins; a tie
    goes to the earlier in ``offered``; ``*`` stands for any coding it does not name;
    quality 0 refuses.
    """
    if not accept_encoding:
        return None
    qualities = _qualities(accept_encoding)
    anything = qualities.get("*", 0.0)
    best, best_quality = None, 0.0
    for name in available() if offered is None else offered:
        quality = qualities.get(name, anything)
        if quality > best_quality:
            best, best_quality = name, quality
    return best


class EventCompressor:
    """Compresses a stream event by event, each event flushed so it decodes on arrival.

    ``EventCompressor("gzip")``; ``event(data)`` returns the bytes to send for one event
    (or a heartbeat), ``end()`` the stream's last bytes. ``level``: the codec's level
    (default: gzip and deflate 9, the fewest bytes for a few microseconds an event;
    brotli 5 and zstd 3, past which they gain a few percent for several times the time).
    """

    def __init__(self, encoding: str, level: int | None = None) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(
                f"EventCompressor: encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}"
            )
        self.encoding = encoding
        self._codec: Any
        if encoding in ("gzip", "deflate"):
            wbits = 31 if encoding == "gzip" else 15  # HTTP "deflate" is the zlib format
            self._codec = zlib.compressobj(9 if level is None else level, zlib.DEFLATED, wbits)
        elif encoding == "br":
            import brotli

            self._codec = brotli.Compressor(quality=5 if level is None else level)
        else:
            import zstandard

            self._codec = zstandard.ZstdCompressor(level=3 if level is None else level).compressobj()
        self._ended = False

    def event(self, data: bytes) -> bytes:
        """``data`` compressed and flushed: all sent so far decodes completely."""
        if self._ended:
            raise ValueError("EventCompressor: event after end()")
        codec = self._codec
        if self.encoding in ("gzip", "deflate"):
            return codec.compress(data) + codec.flush(zlib.Z_SYNC_FLUSH)  # type: ignore[no-any-return]
        if self.encoding == "br":
            return codec.process(data) + codec.flush()  # type: ignore[no-any-return]
        import zstandard

        return codec.compress(data) + codec.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)  # type: ignore[no-any-return]

    def end(self) -> bytes:
        """The end of the compressed stream (a gzip trailer, say)."""
        if self._ended:
            return b""
        self._ended = True
        if self.encoding == "br":
            return self._codec.finish()  # type: ignore[no-any-return]
        return self._codec.flush()  # type: ignore[no-any-return]
