"""Re-chunk text into packets bounded in UTF-8 bytes, never splitting a grapheme.

Held: the text not yet sent, which is less than ``max_bytes`` plus the last input
chunk. A push costs O(its own text) until ``min_bytes`` are held; then the held text
is scanned once and all of it goes out but less than ``min_bytes`` and the last
grapheme, so the work is O(bytes in) overall (one grapheme that keeps growing over
many pushes is not rescanned while what comes only extends it: marks, ZWJ and
spacing marks join any cluster that is not a control, so they are appended in
O(their length); a long cluster that grows by other characters, an emoji ZWJ chain
or an Indic conjunct chain, is still rescanned when it grows). The last grapheme of
the held text is kept back until more text (or the end, or the idle timer) shows it
is complete: a combining mark or a ZWJ may still extend it.
"""

from __future__ import annotations

from typing import Final, SupportsFloat, SupportsIndex

import regex

from ._args import optional_seconds, whole
from ._core import Boundary, Chunk, Stage, closed_error
from ._text import GRAPHEME, Arrivals, utf8_len

__all__ = ["Packetizer"]

# Characters that extend any cluster but a control (UAX #29 GB9, GB9a), whatever came before.
_EXTENDS: Final = regex.compile(r"[\p{GCB=Extend}\p{GCB=ZWJ}\p{GCB=SpacingMark}]+")
_LONG: Final = 32  # an open cluster this long is extended without a rescan


class Packetizer(Stage):
    """Packets of at most ``max_bytes`` UTF-8 bytes and, where the stream allows, at least ``min_bytes``.

    ``max_delay`` (seconds, or ``None`` for never) sends whatever is held once no
    input has come for that long. ``flush_on_sentence`` sends what is held whenever
    an input chunk ends a sentence. A single grapheme cluster larger than
    ``max_bytes`` (a long emoji ZWJ sequence, a base letter with many combining
    marks) goes out whole, in a packet of its own: splitting it would corrupt it.
    """

    timed = True

    def __init__(
        self,
        max_bytes: SupportsIndex = 256,
        min_bytes: SupportsIndex | None = None,
        *,
        max_delay: SupportsFloat | None = 0.05,
        flush_on_sentence: bool = False,
    ) -> None:
        super().__init__()
        most = whole(max_bytes, "Packetizer: max_bytes")
        if most < 4:
            raise ValueError(f"Packetizer: max_bytes must be >= 4 (one UTF-8 code point), got {most}")
        least = most // 2 if min_bytes is None else whole(min_bytes, "Packetizer: min_bytes")
        if not 1 <= least <= most:
            raise ValueError(f"Packetizer: min_bytes must be in 1..max_bytes ({most}), got {least}")
        self.max_bytes = most
        self.min_bytes = least
        self.max_delay = optional_seconds(max_delay, "Packetizer: max_delay")
        self.flush_on_sentence = flush_on_sentence
        self._held = ""
        self._held_bytes = 0
        self._simple = True  # _held is ASCII without CR: each character one byte and one grapheme
        self._base = 0  # offset of _held in the stream
        self._arrivals = Arrivals()
        self._last_input = 0.0
        self._open = 0  # length of the open last cluster, as the last scan found it
        self._marks = _Marks()  # text that only extends that cluster, not yet in _held

    def __repr__(self) -> str:
        return f"Packetizer(max_bytes={self.max_bytes}, min_bytes={self.min_bytes})"

    @property
    def deadline(self) -> float | None:
        if not (self._held or self._marks.size) or self.max_delay is None:
            return None
        return self._last_input + self.max_delay

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        if self.input_ended:
            raise closed_error(self)
        text = chunk.text
        if not text:
            return []
        self._last_input = now
        if self._open > _LONG and not text.isascii() and _EXTENDS.fullmatch(text) is not None:
            # It only grows the open cluster: no cut can change, so no rescan.
            self._arrivals.add(self._base + len(self._held) + self._marks.size, chunk.arrival)
            self._marks.add(text)
            self._open += len(text)
            self._held_bytes += utf8_len(text)
            if self.flush_on_sentence and chunk.boundary >= Boundary.SENTENCE:
                return self._cut(everything=True, boundary=chunk.boundary)
            return []
        self._join_marks()
        self._arrivals.add(self._base + len(self._held), chunk.arrival)
        self._held += text
        if text.isascii():
            self._held_bytes += len(text)
            if "\r" in text:
                self._simple = False
        else:
            self._held_bytes += utf8_len(text)
            self._simple = False
        if self.flush_on_sentence and chunk.boundary >= Boundary.SENTENCE:
            return self._cut(everything=True, boundary=chunk.boundary)
        if self._held_bytes < self.min_bytes:
            return []  # no packet can be cut yet, and nothing is over max_bytes
        return self._cut(everything=False)

    def poll(self, now: float) -> list[Chunk]:
        return self._cut(everything=True)

    def finish(self, now: float) -> list[Chunk]:
        self.end_input()
        return self._cut(everything=True)

    def _join_marks(self) -> None:
        if self._marks.size:
            self._held += self._marks.take()

    def _cut(self, everything: bool, boundary: Boundary = Boundary.NONE) -> list[Chunk]:
        self._join_marks()
        held = self._held
        self._open = 0
        if not held:
            return []
        max_bytes = self.max_bytes
        # Cut points (character offsets) that end a packet; the last grapheme is open.
        cuts: list[int] = []
        start = 0
        size = 0
        end = len(held)
        if self._simple:
            # Every character is one byte and one grapheme.
            usable = end if everything else end - 1
            while usable - start > max_bytes:
                start += max_bytes
                cuts.append(start)
            size = usable - start
            end = usable
        else:
            matches = list(GRAPHEME.finditer(held))
            if not everything:
                last = matches.pop()
                self._open = last.end() - last.start()
            for m in matches:
                g_bytes = utf8_len(m.group())
                if size + g_bytes > max_bytes and size:
                    cuts.append(start)
                    size = 0
                start = m.end()
                size += g_bytes
            end = start
            start = cuts[-1] if cuts else 0
            size = utf8_len(held[start:end])
        if end > start and (everything or size >= self.min_bytes):
            cuts.append(end)
        if not cuts:
            return []
        out: list[Chunk] = []
        prev = 0
        for cut in cuts:
            out.append(Chunk(held[prev:cut], self._arrivals.at(self._base + prev), Boundary.NONE))
            prev = cut
        if everything and prev == len(held):
            out[-1].boundary = boundary
        rest = self._held = held[prev:]
        self._base += prev
        self._held_bytes = utf8_len(rest)
        self._simple = rest.isascii() and "\r" not in rest
        return out


class _Marks:
    """Text that only extends the open cluster, kept as pieces: appending one is O(its length)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts.clear()
        self.size = 0
        return text
