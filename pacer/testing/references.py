"""Re-implementations of the reference smoothers, as pacer stages so they replay on the same traces.

Written from the behaviour their projects document (not from their code):

- ``FixedDelayWords``: the Vercel AI SDK's ``smoothStream``: text is cut into words
  at whitespace, and every word sent is followed by a ``delay`` wait (the last
  word of an input chunk too); the stream hands it the next chunk only once that
  wait is over. So a word goes out ``delay`` after the one before or when it
  arrives, whichever is later, and lag grows without bound when the source is
  faster than one word per ``delay``. A partial word waits for whitespace or the end.
- ``AdaptiveChars``: HF chat-ui's smoother: characters go out one at a time at
  ``max(1.1 x arrival estimate, floor, catch-up)``; the floor is 0.3 characters
  per millisecond, and catch-up is the rate that shows every character within
  ``max_hold`` (0.4 s) of its arrival. The arrival estimate is characters arrived
  over the last second.
"""

from __future__ import annotations

import re
from collections import deque

from pacer import Chunk, Stage

_WORD = re.compile(r"\S*\s+")


class FixedDelayWords(Stage):
    """A fixed delay after each word, never catching up (Vercel's ``smoothStream``, delay 10 ms)."""

    timed = True

    def __init__(self, delay: float = 0.010) -> None:
        super().__init__()
        self.delay = delay
        self._buffer = ""
        self._arrival = 0.0
        self._pending: deque[tuple[float, Chunk]] = deque()  # scheduled (time, word)
        self._free_at = -float("inf")  # when the wait after the last word scheduled ends

    @property
    def deadline(self) -> float | None:
        return self._pending[0][0] if self._pending else None

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        if not self._buffer:
            self._arrival = chunk.arrival
        self._buffer += chunk.text
        end = 0
        for m in _WORD.finditer(self._buffer):
            self._schedule(m.group(), chunk.arrival if end else self._arrival, now)
            end = m.end()
        self._buffer = self._buffer[end:]
        return self.poll(now)

    def _schedule(self, word: str, arrival: float, now: float) -> None:
        t = max(now, self._free_at)
        self._pending.append((t, Chunk(word, arrival)))
        self._free_at = t + self.delay

    def poll(self, now: float) -> list[Chunk]:
        out = []
        while self._pending and self._pending[0][0] <= now + 1e-12:
            out.append(self._pending.popleft()[1])
        return out

    def finish(self, now: float) -> list[Chunk]:
        if self._buffer:  # streamText flushes the partial word at the step's end
            self._schedule(self._buffer, self._arrival, now)
            self._buffer = ""
        return self.poll(now)


class AdaptiveChars(Stage):
    """Characters at max(1.1 x arrival rate, 300/s, catch-up within 0.4 s) (HF chat-ui)."""

    timed = True

    def __init__(self, floor: float = 300.0, follow: float = 1.1, max_hold: float = 0.4) -> None:
        super().__init__()
        self.floor = floor
        self.follow = follow
        self.max_hold = max_hold
        self._chars: deque[tuple[str, float]] = deque()  # (character, arrival)
        self._arrivals: deque[tuple[float, int]] = deque()  # (time, characters) in the last second
        self._arrived_last_second = 0
        self._next = 0.0

    @property
    def deadline(self) -> float | None:
        return self._next if self._chars else None

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        if not self._chars:
            self._next = max(self._next, now)
        for ch in chunk.text:
            self._chars.append((ch, chunk.arrival))
        self._arrivals.append((now, len(chunk.text)))
        self._arrived_last_second += len(chunk.text)
        return self.poll(now)

    def _rate(self, now: float) -> float:
        while self._arrivals and self._arrivals[0][0] < now - 1.0:
            self._arrived_last_second -= self._arrivals.popleft()[1]
        rate = max(self.floor, self.follow * self._arrived_last_second)
        oldest = self._chars[0][1]
        room = oldest + self.max_hold - now
        return max(rate, len(self._chars) / room) if room > 1e-3 else float("inf")

    def poll(self, now: float) -> list[Chunk]:
        out = []
        while self._chars and self._next <= now + 1e-12:
            ch, arrival = self._chars.popleft()
            out.append(Chunk(ch, arrival))
            if self._chars:
                self._next += 1.0 / self._rate(self._next)
        return out

    def finish(self, now: float) -> list[Chunk]:
        return self.poll(now)
