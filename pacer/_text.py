"""Text helpers every stage shares: UTF-8 sizes, grapheme clusters, and when each piece of a text arrived.

Cost: ``Arrivals`` is O(1) amortized per piece added and per lookup.
"""

from __future__ import annotations

from typing import Final

import regex

__all__ = ["GRAPHEME", "Arrivals", "SurrogatePairs", "graphemes", "join_pairs", "utf8_len"]

#: One extended grapheme cluster (UAX #29), as ``regex`` defines ``\X``.
GRAPHEME: Final = regex.compile(r"\X")


def utf8_len(text: str) -> int:
    """Length of ``text`` in UTF-8 bytes."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def graphemes(text: str) -> list[str]:
    """The grapheme clusters of ``text``, in order."""
    found: list[str] = GRAPHEME.findall(text)
    return found


class Arrivals:
    """When each input piece of a stage's text arrived, looked up by character offset.

    Offsets count from the start of the stream. Pieces are added in order, and the
    offsets looked up never decrease, so the pieces before the last lookup are dropped
    as lookups pass them: memory is the pieces not yet looked past.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []  # offset of each piece's first character, increasing
        self._times: list[float] = []  # and when it arrived
        self._head = 0  # the piece the last lookup fell in

    def add(self, start: int, arrival: float) -> None:
        """A piece starting at offset ``start`` arrived at ``arrival`` (a repeated time needs no entry)."""
        times = self._times
        if not times or times[-1] != arrival:
            self._starts.append(start)
            times.append(arrival)

    def at(self, offset: int) -> float:
        """When the piece holding character ``offset`` arrived; no later lookup may ask for less."""
        starts = self._starts
        head = self._head
        while head + 1 < len(starts) and starts[head + 1] <= offset:
            head += 1
        arrival = self._times[head]
        if head > 32 and 2 * head > len(starts):  # most entries are behind: drop them
            del starts[:head]
            del self._times[:head]
            head = 0
        self._head = head
        return arrival


class SurrogatePairs:
    """Joins a UTF-16 surrogate pair split across two texts into the one character it is.

    JSON producers that cut text at UTF-16 units send ``"\\ud83d"`` then ``"\\ude00"``;
    as Python strings these are two lone surrogates that UTF-8 cannot carry. A high
    surrogate at the end of a text is held until the next text shows whether a low one
    follows. A surrogate that has no partner stays as it is: the caller decides how to
    carry it. O(1) per text beyond the pair found.
    """

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        """``text``, with any held high surrogate in front, pairs joined, a new trailing high one held."""
        if self._held:
            text, self._held = self._held + text, ""
        if not text:
            return text
        if 0xD800 <= ord(text[-1]) <= 0xDBFF:
            text, self._held = text[:-1], text[-1]
        return join_pairs(text)

    def flush(self) -> str:
        """What is held (a high surrogate with nothing after it)."""
        held, self._held = self._held, ""
        return held


# Escapes the regex module reads, not surrogates in the source (mypyc refuses those).
_SURROGATE: Final = regex.compile(r"[\ud800-\udfff]")
_PAIR: Final = regex.compile(r"[\ud800-\udbff][\udc00-\udfff]")


def join_pairs(text: str) -> str:
    """``text`` with each surrogate pair in it joined into its character."""
    if _SURROGATE.search(text) is not None:
        text = _PAIR.sub(_join_pair, text)
    return text


def _join_pair(match: regex.Match[str]) -> str:
    high, low = match.group()
    return chr(0x10000 + ((ord(high) - 0xD800) << 10) + (ord(low) - 0xDC00))
