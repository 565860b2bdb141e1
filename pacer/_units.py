"""What a pacer paces: how its input is cut into units, and the queue of units waiting.

A unit strategy is chosen once, when the pacer is built: ``Graphemes`` (each
character as a reader would count it), ``Words`` (a word with the space after it;
one CJK character is a word), ``Lines`` (a line with its line feed), ``Matches`` (text
up to each match of a pattern), ``Detected`` (what a function says the next unit
is), ``Sentences`` (a ``SentenceSplitter`` composed in front) or ``Chunks`` (the
input as it comes). ``UnitQueue`` holds one entry per arrival, not one object per
unit.

Cost: cutting text into units is linear in the text (none for ASCII graphemes,
whose units are its characters); the queue is O(1) amortized per entry.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from typing import Final

import regex

from ._core import Chunk
from ._sentences import SentenceSplitter
from ._text import GRAPHEME

__all__ = [
    "Chunks",
    "Detected",
    "Graphemes",
    "Lines",
    "Matches",
    "Sentences",
    "UnitQueue",
    "Units",
    "Words",
    "bound_start",
]

_CJK: Final = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
# A word: a run of non-space, non-CJK characters with the space after it; one CJK
# character with the punctuation and space after it; either with any space before it
# (there is some only at the start of the text: a word takes the space after it); or,
# at the end, a run of space (as Vercel's smoothStream, no unit is space alone while a
# word follows).
_WORD: Final = regex.compile(rf"\s*[^\s{_CJK}]+\s*|\s*[{_CJK}][\p{{M}}\p{{P}}\p{{S}}\s]*|\s+")
# The same pieces as _WORD on ASCII text (where regex's \s is [\t\n\v\f\r ]), found by
# the standard library's engine, which is several times cheaper per call on short text.
_ASCII_WORD: Final = re.compile(r"\s*\S+\s*|\s+", re.ASCII)
_COMPILED: Final = not __file__.endswith(".py")
_LINE: Final = re.compile(r"[^\n]*\n|[^\n]+")


class Units:
    """How a pacer cuts its input into units; this base takes each input chunk as one unit.

    ``whole``: every chunk ``ready`` returns is one unit, queued as it is (never held).
    ``runs``: units due together go out as one chunk (graphemes), not a chunk each.
    ``ready``, ``poll``, ``finish`` and ``cancel`` give each unit with when its text
    entered the pacer, from which the lag bound counts.
    """

    def __init__(self, whole: bool = True, runs: bool = False) -> None:
        self.whole = whole
        self.runs = runs
        self.choice: object = None  # what the pacer was given as its unit (a name, pattern or function)

    def ready(self, chunk: Chunk, now: float) -> list[tuple[Chunk, float]]:
        """The text ``chunk`` makes ready to queue."""
        return [(chunk, now)]

    def restart(self, now: float) -> None:
        """After a pause: text held back counts its wait from ``now``, not from when it came."""

    def due(self) -> float | None:
        """When text held back (not yet a unit) must be let go, if any is."""
        return None

    def poll(self, now: float) -> list[tuple[Chunk, float]]:
        """What is held past ``due``, let go as units."""
        return []

    def finish(self, now: float) -> list[tuple[Chunk, float]]:
        """End of input: what is still held, to queue."""
        return []

    def cancel(self, now: float) -> list[tuple[Chunk, float]]:
        """Stop: what is still held, to queue at once."""
        return []

    def pieces(self, text: str) -> list[str] | None:
        """The units of ``text``, in order; ``None``: each character is one."""
        return [text]

    def holds(self, last: str) -> bool:
        """Whether the last unit so far may still grow with the next text, and must wait for it."""
        return False

    def settled(self, last: str) -> bool:
        """Whether a held last unit can grow only by a mark a model hardly ever writes."""
        return False


class Chunks(Units):
    """The input chunks as they come."""


class Sentences(Units):
    """Whole sentences (and clauses under a budget), as a ``SentenceSplitter`` cuts them.

    Text waits in the splitter at most ``hold`` seconds from when it entered: then what
    is pending goes out as a ``FORCED`` unit, so the pacer's lag bound holds for text
    that never reaches a sentence end.
    """

    def __init__(self, splitter: SentenceSplitter, hold: float) -> None:
        super().__init__()
        self.splitter = splitter
        self.hold = hold
        self.taken = 0  # characters given to the splitter
        self.given = 0  # characters it has let go
        self.entries: deque[tuple[int, float]] = deque()  # (offset, entered) of each held input

    def ready(self, chunk: Chunk, now: float) -> list[tuple[Chunk, float]]:
        self.entries.append((self.taken, now))
        self.taken += len(chunk.text)
        return self._entered(self.splitter.push(chunk, now))

    def due(self) -> float | None:
        return self.entries[0][1] + self.hold if self.given < self.taken else None

    def restart(self, now: float) -> None:
        self.entries = deque((offset, entered if entered > now else now) for offset, entered in self.entries)

    def poll(self, now: float) -> list[tuple[Chunk, float]]:
        due = self.due()
        return self._entered(self.splitter.poll(now)) if due is not None and now >= due else []

    def finish(self, now: float) -> list[tuple[Chunk, float]]:
        return self._entered(self.splitter.finish(now))

    def cancel(self, now: float) -> list[tuple[Chunk, float]]:
        return self._entered(self.splitter.cancel(now))

    def _entered(self, units: list[Chunk]) -> list[tuple[Chunk, float]]:
        """Each unit with when its first character entered; entries passed are dropped."""
        out = []
        for unit in units:
            self._drop_passed()
            out.append((unit, self.entries[0][1]))
            self.given += len(unit.text)
        self._drop_passed()
        return out

    def _drop_passed(self) -> None:
        entries = self.entries
        while len(entries) > 1 and entries[1][0] <= self.given:
            entries.popleft()


class Words(Units):
    """A word with the space after it; one CJK character with the punctuation after it.
    Space is never a unit alone while a word follows: it goes with the next word."""

    def __init__(self) -> None:
        super().__init__(whole=False)

    def pieces(self, text: str) -> list[str] | None:
        if not text.isascii():
            found: list[str] = _WORD.findall(text)
            return found
        if _COMPILED:
            return _ascii_words(text)
        return _ASCII_WORD.findall(text)

    def holds(self, last: str) -> bool:
        # A word is whole once a space follows it; space alone waits for its word.
        return not last[-1].isspace() or last.isspace()


class Lines(Units):
    """A line with its line feed (``\\n`` only: not the other separators ``str.splitlines``
    knows); the last line waits for its line feed."""

    def __init__(self) -> None:
        super().__init__(whole=False)

    def pieces(self, text: str) -> list[str] | None:
        found: list[str] = _LINE.findall(text)
        return found

    def holds(self, last: str) -> bool:
        return not last.endswith("\n")


class Matches(Units):
    """Text up to and including each match of ``pattern`` (as Vercel's ``smoothStream``
    chunks by a RegExp); the text after the last match waits for one. Empty matches
    are skipped."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__(whole=False)
        self.pattern = pattern

    def pieces(self, text: str) -> list[str] | None:
        out = []
        cut = 0
        for m in self.pattern.finditer(text):
            end = m.end()
            if end > cut:
                out.append(text[cut:end])
                cut = end
        if cut < len(text):
            out.append(text[cut:])
        return out

    def holds(self, last: str) -> bool:
        return not any(m.end() == len(last) and m.end() > 0 for m in self.pattern.finditer(last))


class Detected(Units):
    """Units a function finds: ``detect(buffer)`` returns the next unit, a non-empty prefix
    of ``buffer``, or ``None`` while no unit is complete (Vercel's ``ChunkDetector``)."""

    def __init__(self, detect: Callable[[str], str | None]) -> None:
        super().__init__(whole=False)
        # Kept as returning object: a compiled build checks a declared return type itself,
        # in its own words; this class says what was wrong, and where.
        self.detect: Callable[[str], object] = detect

    def _next(self, rest: str) -> str | None:
        unit = self.detect(rest)
        if unit is None:
            return None
        if not isinstance(unit, str):
            raise TypeError(f"Pacer: the unit function must return str or None, got {type(unit).__name__}")
        if not unit or not rest.startswith(unit):
            raise ValueError(
                f"Pacer: the unit function must return a non-empty prefix of the text it is given, "
                f"got {unit[:40]!r} for {rest[:40]!r}"
            )
        return unit

    def pieces(self, text: str) -> list[str] | None:
        out = []
        cut = 0
        while cut < len(text):
            unit = self._next(text[cut:])
            if unit is None:
                out.append(text[cut:])
                break
            out.append(unit)
            cut += len(unit)
        return out

    def holds(self, last: str) -> bool:
        return self._next(last) != last


class Graphemes(Units):
    """Extended grapheme clusters; those due together go out as one chunk."""

    def __init__(self) -> None:
        super().__init__(whole=False, runs=True)

    def pieces(self, text: str) -> list[str] | None:
        if text.isascii() and "\r" not in text:
            return None  # every ASCII character but CR (CR LF) is a grapheme of its own
        found: list[str] = GRAPHEME.findall(text)
        return found

    def holds(self, last: str) -> bool:
        return True  # the next text may extend it (an emoji sequence cut between tokens)

    def settled(self, last: str) -> bool:
        return _settled(last)


def _settled(tail: str) -> bool:
    """Whether ``tail``, the last grapheme so far, can grow only by an unlikely combining mark.

    ASCII but space and control characters (CR, which LF would join) and the keycap bases
    ``#``, ``*`` and digits (``1`` U+FE0F U+20E3 is one emoji), CJK punctuation, kana,
    ideographs and full-width forms: text a model writes is NFC, where these carry no mark
    after them. A held emoji, Hangul jamo or an Indic consonant (whose vowel sign may be
    the next token's) waits for more text, up to ``max_lag``.
    """
    if len(tail) != 1:
        return False
    code = ord(tail)
    if code < 128:
        # Not space either: it is invisible, and held it lets the chunk that ends a
        # sentence take it along when the next text (which decides the end) comes.
        return code > 32 and code != 35 and code != 42 and not 48 <= code <= 57
    return (
        0x3000 <= code <= 0x303F  # CJK punctuation
        or 0x3041 <= code <= 0x3096  # hiragana (not the combining voicing marks after it)
        or 0x30A1 <= code <= 0x30FA  # katakana
        or 0x4E00 <= code <= 0x9FFF  # CJK ideographs
        or 0xFF01 <= code <= 0xFF60  # full-width forms
    )


def _ascii_words(text: str) -> list[str]:
    """``_ASCII_WORD.findall(text)`` on ASCII ``text``: a loop a compiled build runs natively."""
    pieces = []
    size = len(text)
    start = i = 0
    while i < size:
        while i < size and _is_ascii_space(ord(text[i])):
            i += 1  # space before the word: only at the start of the text
        while i < size and not _is_ascii_space(ord(text[i])):
            i += 1
        while i < size and _is_ascii_space(ord(text[i])):
            i += 1
        pieces.append(text[start:i])
        start = i
    return pieces


def _is_ascii_space(code: int) -> bool:
    return code == 32 or 9 <= code <= 13


def bound_start(arrival: float, entered: float) -> float:
    """When a unit's lag bound starts: when its text reached the pipeline, or reached the
    pacer if that was earlier (an ``arrival`` from another clock)."""
    return arrival if arrival < entered else entered


class UnitQueue:
    """The units waiting, one entry per arrival: its text as a ``Chunk`` (with its arrival
    and the boundary after its last unit), its units (``None``: each character), and
    when it reached the pacer. Plain lists, which a compiled build indexes natively,
    compacted as the head moves."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.pieces: list[list[str] | None] = []
        self.entered: list[float] = []
        self.since: list[
            float
        ] = []  # when the entry's text reached the pipeline: the lag bound counts from it
        self.starts: list[int] = []  # the offset of each entry's first character in the pacer's input
        self.end = 0  # the offset after the last entry's text
        self.head = 0  # the entry whose units go out next
        self.sent = 0  # units of the head entry already sent
        self.sent_chars = 0  # and their characters
        self.cost = 0  # characters queued and not sent
        self.newest_cost = 0  # the newest unit's: it is not backlog, it just came

    def add(self, unit: Chunk, pieces: list[str] | None, entered: float) -> None:
        """Queue an entry: ``unit`` holds its text, ``pieces`` its units (``None``: each character).

        ``entered``: when it reached the pacer; the lag bound counts from the
        chunk's arrival at the pipeline, or from ``entered`` if that is earlier.
        """
        self.chunks.append(unit)
        self.pieces.append(pieces)
        self.entered.append(entered)
        self.since.append(bound_start(unit.arrival, entered))
        self.starts.append(self.end)
        size = len(unit.text)
        self.end += size
        self.cost += size
        self.newest_cost = 1 if pieces is None else len(pieces[-1])

    def sent_to(self) -> int:
        """The offset of the first character not yet sent."""
        return self.starts[self.head] + self.sent_chars if self.head < len(self.chunks) else self.end

    def waiting(self) -> bool:
        return self.head < len(self.chunks)

    def next_entry(self) -> None:
        """The head entry is all sent."""
        self.head += 1
        self.sent = 0
        self.sent_chars = 0

    def compact(self) -> None:
        """Drop the entries sent, once they are all or most of the lists."""
        head = self.head
        if head == len(self.chunks):
            self.chunks.clear()
            self.pieces.clear()
            self.entered.clear()
            self.since.clear()
            self.starts.clear()
            self.head = 0
        elif head > 64 and 2 * head > len(self.chunks):
            del self.chunks[:head]
            del self.pieces[:head]
            del self.entered[:head]
            del self.since[:head]
            del self.starts[:head]
            self.head = 0
