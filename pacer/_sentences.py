"""Split a live text stream into sentences (and clauses), each as soon as it is certain.

A scanner (``pacer._breaks``) walks the text once, left to right, and records
*breaks*: positions where a unit ends, each decided as soon as the text after it
proves or refutes it. Because every decision is a function of the text alone, the
output never depends on how the input was fragmented; ``flush`` decides what is
left as if the text ended there. This module emits the units: at the breaks, at a
cut point when a unit outgrows its budget, and when the hold timer runs out. A
unit keeps the whitespace that follows it, so ``"".join`` of the output is the input.

Rules, by the script of the surrounding text (no language switch needed):

* English: a ``.``, ``?``, ``!``, ``…`` or a run of them, then closing quotes or
  brackets, then whitespace, then a character that is not lower case. A single
  ``.`` after an abbreviation, an initial or a number is judged by Punkt's
  orthographic heuristics with parameters shipped in the package
  (``pacer._punkt``); a common opener after one ends a sentence ("It was 5 p.m.
  Everyone left."). A title ends one only before a subject pronoun that a
  lower-case word follows ("He is a Pfc. He is brave.", not "Dr. He Jiankui"); an
  abbreviation that announces what follows (``cf.``, ``vs.``) only before a common
  opener; a list label never. A numbering word ends one only when no
  label follows it (``Fig. S1``, ``Vol. IV`` and ``No. 5`` go on; "The answer is
  no. Ask again" ends). After another abbreviation or an initial, an honorific
  (``Mr.``, ``Dr.``, ``Sir``) opens a new sentence ("I work at the U.S.A. Mr. Smith
  is here."); a rank does not ("Former U.S. Sen. Hollis"). Nothing ends a sentence
  inside an ASCII parenthesis (``(9th Cir. 1999)``) opened on the same line at most
  200 characters before; a face's mouth (``:(``, ``;-)``) opens and closes none, and
  a ``]`` closes one as interval notation does (``(0, 1]``). The
  abbreviation list is curated for pacer, its kinds and spellings
  after the U.S. GPO *Style Manual* (2016, chapter 9) and Cornell LII's
  *Introduction to Basic Legal Citation*, plus what Punkt learns from the Python
  documentation (``scripts/build_punkt.py``).
  Decimals, versions, URLs, e-mail addresses and file names have no space after
  their dots and so are never candidates.
* Chinese and Japanese: ``。！？｡．…`` (and an ASCII mark between CJK characters)
  end a sentence at once, after any closing ``」』”）》〉】〕``; not inside an open
  bracket or quote; not when a closing quote is followed by ``と``/``って`` or a
  comma, where the sentence goes on; not when a quoted exclamation or question is
  followed by who said it (``“太好了！”他高兴地说。``, ``"快跑！"他喊道。``: a verb
  of saying within ten Han characters, not inside a word such as ``知道`` or
  ``问题``), unless a colon introduced the quote; not after an ASCII list label
  inside a Chinese sentence (``步骤：1. 下载；2. 安装。``).
* Markdown: a blank line, a heading, a list item, a table row, a block quote line
  and a thematic break end a unit (list labels include the Chinese and Japanese
  ``一、``, ``1、``, ``（1）``, ``（一）`` and ``①``, with no space after them); a
  fenced code block is one unit; nothing inside inline code or a fence is ever a
  sentence end. The bounds you set win over keeping code whole: code longer than
  ``max_chars`` is cut (at a line end where it can be), and ``max_hold`` sends
  open code too, so a stray backtick or an unclosed fence never holds the rest of
  the stream.

``max_chars`` (and ``first_max_chars`` for the first unit) cut an over-long unit at
the last clause mark (``, ; : — 、 ，；：``) in the budget, else at the last space,
else at the last grapheme boundary. ``max_hold`` sends what is pending when no
input has come for that long (a stalled model must not freeze a voice).

Cost: every character is scanned once; a pending decision re-reads at most its
bounded lookahead when more text comes; emission is O(unit) per unit. Memory is the
pending unit plus 64 characters of context.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, SupportsFloat, SupportsIndex

from ._args import one_of, optional_seconds, whole
from ._breaks import Scanner, quiet, space_end
from ._core import Boundary, Chunk, Stage, closed_error
from ._markdown import CodeSpans
from ._punkt import PunktModel, english_punkt
from ._text import GRAPHEME, Arrivals

__all__ = ["SentenceSplitter", "cut_point", "split_sentences"]

Lang = Literal["auto", "en", "zh", "ja"]

# Final: a compiled build (setup.py) inlines these or keeps them in C statics.
_CLAUSE_MARKS: Final = frozenset(",;:、，；：—–")
_WIDE_CLAUSE_MARKS: Final = frozenset("、，；：—–")  # need no space after them
_NONSPACE: Final = re.compile(r"\S")
_CONTEXT: Final = 64  # characters kept before the pending unit, for look-behind


class SentenceSplitter(Stage):
    """Sentences (and, under a length budget, clauses) out of a stream of text.

    ``lang``: ``"auto"`` applies English, CJK and Markdown rules by the script of each
    stretch; ``"en"`` treats CJK marks as ordinary characters; ``"zh"`` and ``"ja"`` skip
    the English abbreviation model (every ``. `` before a capital ends a sentence).
    ``max_chars``/``first_max_chars`` (characters, or ``None``) bound unit length;
    ``min_chars`` merges a sentence shorter than that with the next (so a voice is not
    handed "Yes." alone, as LiveKit's ``min_sentence_len``), the last of the stream and
    what the hold timer lets go excepted; ``max_hold`` (seconds, or ``None``) sends
    pending text after that long without input. Each chunk says how it ended:
    ``SENTENCE``, ``CLAUSE`` (cut at a clause mark) or ``FORCED`` (cut at a space, a
    grapheme, or by the hold timer). ``punkt`` replaces the shipped English parameters.
    """

    timed = True

    def __init__(
        self,
        lang: Lang = "auto",
        *,
        max_chars: SupportsIndex | None = None,
        first_max_chars: SupportsIndex | None = None,
        min_chars: SupportsIndex = 0,
        max_hold: SupportsFloat | None = None,
        punkt: PunktModel | None = None,
    ) -> None:
        super().__init__()
        one_of(lang, "SentenceSplitter: lang", ("auto", "en", "zh", "ja"))
        most, first = _budget(max_chars, "max_chars"), _budget(first_max_chars, "first_max_chars")
        if first is not None and most is not None and first > most:
            raise ValueError(
                f"SentenceSplitter: first_max_chars ({first}) must not exceed max_chars ({most})"
            )
        self.lang: Lang = lang
        self.max_chars = most
        self.first_max_chars = first if first is not None else most
        self.max_hold = optional_seconds(max_hold, "SentenceSplitter: max_hold")
        self.min_chars = whole(min_chars, "SentenceSplitter: min_chars")
        if self.min_chars < 0 or (most is not None and self.min_chars > most):
            raise ValueError(
                f"SentenceSplitter: min_chars must be >= 0 and at most max_chars, got {min_chars!r}"
            )
        self._scanner = Scanner(None if lang in ("zh", "ja") else (punkt or english_punkt()), lang != "en")
        self._base = 0  # absolute offset of the scanner's buffer[0]
        self._start = 0  # first character not yet emitted
        self._first = True
        self._arrivals = Arrivals()  # by absolute offset
        self._hold_armed = False  # the hold timer runs (two fields, not an optional time:
        self._last_input = 0.0  # a compiled build keeps a float unboxed, an optional one boxed)

    def __repr__(self) -> str:
        return (
            f"SentenceSplitter(lang={self.lang!r}, max_chars={self.max_chars!r}, max_hold={self.max_hold!r})"
        )

    # -- stage protocol -----------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        if self._hold_armed and self.max_hold is not None:
            return self._last_input + self.max_hold
        return None

    def feed(self, item: Any, now: float | None = None) -> list[str]:
        """Give the splitter text; return the units it completes (no ``Chunk`` built on the way)."""
        if type(item) is str and now is None and not self.input_ended and self.max_hold is None:
            return [c.text for c in self._take(item, self.feed_time)]
        return super().feed(item, now)

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        if self.input_ended:
            raise closed_error(self)
        self._last_input = now
        return self._take(chunk.text, chunk.arrival)

    def _take(self, text: str, arrival: float) -> list[Chunk]:
        if not text:
            return []
        scanner = self._scanner
        buf = scanner.buf
        scanner.buf = ""
        self._arrivals.add(self._base + len(buf), arrival)
        caught_up = scanner.pos == len(buf)
        buf += text  # the only reference: CPython extends in place
        scanner.buf = buf
        self._hold_armed = True
        if caught_up and self.max_chars is None and scanner.idle() and quiet(text):
            scanner.pos = len(buf)  # nothing pending and nothing new to decide: the scanner just moves on
            return []
        scanner.scan(False)
        out: list[Chunk] = []
        self._emit(False, out)
        return out

    def poll(self, now: float) -> list[Chunk]:
        self._hold_armed = False
        scanner = self._scanner
        end = len(scanner.buf)  # open code too: the hold bound holds on every input
        out: list[Chunk] = []
        breaks = scanner.breaks
        if self.min_chars and breaks.first_after(self._start) >= 0:
            # Short sentences waiting to be merged: they are whole, and go as sentences.
            done = space_end(scanner.buf, breaks.ends[-1], False)
            breaks.next = len(breaks.ends)
            self._unit(breaks.ends[-1] if done is None else done, Boundary.SENTENCE, out)
        if end > self._start:
            self._unit(end, Boundary.FORCED, out)
        return out

    def finish(self, now: float) -> list[Chunk]:
        self.end_input()
        self._hold_armed = False
        self._scanner.scan(True)
        out: list[Chunk] = []
        self._emit(True, out)
        return out

    # -- emission -------------------------------------------------------------------

    def _unit(self, end: int, boundary: Boundary, out: list[Chunk]) -> None:
        start = self._start
        buf = self._scanner.buf
        out.append(Chunk(buf[start:end], self._arrivals.at(self._base + start), boundary))
        self._start = end
        self._first = False
        if end - _CONTEXT > len(buf) // 2 and end > 4096:
            cut = end - _CONTEXT
            self._scanner.trim(cut)
            self._base += cut
            self._start -= cut

    def _emit(self, eof: bool, out: list[Chunk]) -> None:
        breaks = self._scanner.breaks
        if not breaks.pending() and self.max_chars is None and not eof:
            return
        while True:
            start = self._start
            end = breaks.first_after(start)
            if end >= 0 and self.min_chars:
                end = self._long_enough(start, eof)
            limit = self.first_max_chars if self._first else self.max_chars
            if end >= 0 and (limit is None or end - start <= limit):
                if not self._unit_at_break(eof, out):
                    return
                continue
            if limit is not None:
                step = self._over_budget(start, limit, end >= 0, eof, out)
                if step is not None:
                    if step:
                        continue
                    return
            buf = self._scanner.buf
            if eof and len(buf) > self._start:
                self._unit(len(buf), Boundary.SENTENCE, out)
            return

    def _over_budget(self, start: int, limit: int, pending: bool, eof: bool, out: list[Chunk]) -> bool | None:
        """Cut the unit at ``start`` if it outgrew ``limit``: True, a unit went out; False, wait
        for more text; ``None``: it is within budget, or nothing can be cut before the end."""
        scanner = self._scanner
        buf = scanner.buf
        known = len(buf) if eof else scanner.pos
        # Over budget once text (not just trailing space) is known past the limit.
        if not _NONSPACE.search(buf, start + limit, known):
            return None
        scanner.code.drop_before(start)
        cut = cut_point(buf, start, limit, eof, scanner.code)
        if cut is None:
            return False
        if cut[0] > start:
            self._unit(cut[0], cut[1], out)
            return True
        if pending:  # the budget falls inside code: the code goes out whole
            return self._unit_at_break(eof, out)
        return None if eof else False

    def _long_enough(self, start: int, eof: bool) -> int:
        """The first break after ``start`` that ends a unit of at least ``min_chars``
        (the breaks before it are skipped: their sentences merge into it); -1 while no
        break yet does (at the end of the stream, the rest then goes as one unit)."""
        breaks = self._scanner.breaks
        ends = breaks.ends
        buf = self._scanner.buf
        k = breaks.next
        while _visible(buf, start, ends[k]) < self.min_chars and k + 1 < len(ends):
            k += 1
        if _visible(buf, start, ends[k]) < self.min_chars:
            return -1
        breaks.next = k
        return ends[k]

    def _unit_at_break(self, eof: bool, out: list[Chunk]) -> bool:
        """Emit the unit ending at the next break, with the space after it; False: wait for more."""
        breaks = self._scanner.breaks
        end = space_end(self._scanner.buf, breaks.ends[breaks.next], eof)
        if end is None:
            return False
        breaks.next += 1
        self._unit(end, Boundary.SENTENCE, out)
        return True


def _visible(buf: str, start: int, end: int) -> int:
    """Characters from ``start`` to the last one before ``end`` that is not a space (a
    break may come after the line end that closes its unit)."""
    while end > start and buf[end - 1].isspace():
        end -= 1
    return end - start


def cut_point(buf: str, start: int, limit: int, eof: bool, code: CodeSpans) -> tuple[int, Boundary] | None:
    """Where to cut the over-long unit at ``buf[start:]`` to at most ``limit`` characters.

    The last clause mark (``, ; : — 、 ，；：``) in the budget's last two thirds, with
    the space after it (``CLAUSE``); else the last space (``FORCED``); else the last
    grapheme boundary (``FORCED``); never inside ``code`` while anything else is
    there. When only code is, through the code (after a line end, else a space, else
    a grapheme). ``None`` while the space after the cut may go on.
    """
    hi = start + limit  # the unit may end at most here
    lo = start + limit // 3
    for p in range(hi - 1, lo - 1, -1):
        ch = buf[p]
        if ch in _CLAUSE_MARKS and (ch in _WIDE_CLAUSE_MARKS or buf[p + 1].isspace()):
            if code.inside(p + 1):
                continue
            end = space_end(buf, p + 1, eof)
            return None if end is None else (end, Boundary.CLAUSE)
    for p in range(hi, start, -1):
        if buf[p].isspace() and not buf[p - 1].isspace() and not code.inside(p):
            end = space_end(buf, p, eof)
            return None if end is None else (end, Boundary.FORCED)
    ends: list[int] = [m.end() for m in GRAPHEME.finditer(buf, start, hi + 1)]
    if len(ends) > 1:
        ends.pop()  # the last cluster may go on past the budget
    for end in reversed(ends):
        if not code.inside(end):
            return end, Boundary.FORCED
    return _cut_through_code(buf, start, lo, hi, ends), Boundary.FORCED


def _cut_through_code(buf: str, start: int, lo: int, hi: int, ends: list[int]) -> int:
    """Only code (or a stray backtick's text) in the budget: the bound wins over keeping
    code whole. After the last line end in the budget's last two thirds, else after the
    last space, else at the last grapheme boundary."""
    newline = buf.rfind("\n", lo, hi)
    if newline >= 0:
        return newline + 1
    for p in range(hi - 1, start, -1):
        if buf[p].isspace():
            return p + 1
    return ends[-1]


def split_sentences(
    text: object,
    lang: Lang = "auto",
    *,
    max_chars: SupportsIndex | None = None,
    first_max_chars: SupportsIndex | None = None,
) -> list[str]:
    """Split a whole text the way ``SentenceSplitter`` splits it streamed; ``"".join`` is ``text``.

    ``text`` must be a ``str``: anything else is a ``TypeError`` saying so.
    """
    if not isinstance(text, str):
        raise TypeError(f"split_sentences takes str, got {type(text).__name__}")
    splitter = SentenceSplitter(lang, max_chars=max_chars, first_max_chars=first_max_chars)
    return splitter.feed(text) + splitter.flush()


def _budget(value: SupportsIndex | None, name: str) -> int | None:
    """A unit length budget: an int >= 8 characters, or ``None`` for none."""
    budget = None if value is None else whole(value, f"SentenceSplitter: {name}")
    if budget is not None and budget < 8:
        raise ValueError(f"SentenceSplitter: {name} must be an int >= 8 or None, got {value!r}")
    return budget
