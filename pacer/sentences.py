"""Split a live text stream into sentences (and clauses), each as soon as it is certain.

A scanner walks the text once, left to right, and records *breaks*: positions where
a unit ends. A candidate (a terminal mark, a line end) is decided as soon as the
text after it proves or refutes the break, using a bounded lookahead: the next
non-space character, the next word when Punkt must judge an abbreviation, the
start of the next line for Markdown. Because every decision is a function of the
text alone, the output never depends on how the input was fragmented; ``flush``
decides what is left as if the text ended there. A unit keeps the whitespace that
follows it, so ``"".join`` of the output is the input.

Rules, by the script of the surrounding text (no language switch needed):

* English: a ``.``, ``?``, ``!``, ``…`` or a run of them, then closing quotes or
  brackets, then whitespace, then a character that is not lower case. A single
  ``.`` after an abbreviation, an initial or a number is judged by Punkt's
  orthographic heuristics with parameters shipped in the package
  (``pacer.punkt``); titles never end a sentence; list labels never do.
  Decimals, versions, URLs, e-mail addresses and file names have no space after
  their dots and so are never candidates.
* Chinese and Japanese: ``。！？｡．…`` (and an ASCII mark between CJK characters)
  end a sentence at once, after any closing ``」』”）》〉】〕``; not inside an open
  bracket or quote; not when a closing quote is followed by ``と``/``って`` or a
  comma, where the sentence goes on.
* Markdown: a blank line, a heading, a list item, a table row, a block quote line
  and a thematic break end a unit; a fenced code block is one unit; nothing inside
  inline code or a fence is ever a candidate or a cut point.

``max_chars`` (and ``first_max_chars`` for the first unit) cut an over-long unit at
the last clause mark (``, ; : — 、 ，；：``) in the budget, else at the last space,
else at the last grapheme boundary. ``max_hold`` sends what is pending when no
input has come for that long (a stalled model must not freeze a voice).

Cost: every character is scanned once; a pending decision re-reads at most its
bounded lookahead when more text comes. Memory is the pending unit plus 64
characters of context.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, SupportsFloat, SupportsIndex

import regex

from ._args import one_of, optional_seconds, whole
from ._core import Boundary, Chunk, Stage
from ._text import Arrivals
from .punkt import ORTHO_LC, ORTHO_MID_UC, PunktModel, english_punkt

__all__ = ["SentenceSplitter", "split_sentences"]

Lang = Literal["auto", "en", "zh", "ja"]

# Final: a compiled build (setup.py) inlines these or keeps them in C statics.
_EN_MARKS: Final = ".?!…‼⁇⁈⁉"
_CJK_MARKS: Final = "。！？｡．"
_MARKS: Final = frozenset(_EN_MARKS + _CJK_MARKS)
_OPEN_BRACKETS: Final = frozenset("「『“（《〈【〔")
_CLOSE_BRACKETS: Final = frozenset("」』”）》〉】〕")
_CLOSERS: Final = frozenset("\"'’»)]}*_") | _CLOSE_BRACKETS
_CONTINUATION: Final = frozenset("とっ、，,")
_CLAUSE_MARKS: Final = frozenset(",;:、，；：—–")
_WIDE_CLAUSE_MARKS: Final = frozenset("、，；：—–")  # need no space after them
_INTERESTING: Final = re.compile(r"[\n`.?!…‼⁇⁈⁉。！？｡．「『“（《〈【〔」』”）》〉】〕]")
_CJK: Final = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\u3000-\u303f\uff00-\uffef]")
_NUMBER: Final = re.compile(r"-?[.,]?\d[\d,.\-]*")
_NUMBER_START: Final = frozenset("-.,0123456789")
_DOTTED: Final = regex.compile(r"(?:\p{L}\.)+\p{L}")
_LABEL: Final = re.compile(r"[ \t]*(?:\d{1,9}|[ivxIVX]{1,4}|[A-Za-z])")
_GRAPHEME: Final = regex.compile(r"\X")
_NONSPACE: Final = re.compile(r"\S")
_WORD_CHARS: Final = re.compile(r"[\w'’\-]*")
_HR: Final = re.compile(r"[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t\r]*")
_LOOKAHEAD: Final = 40  # longest next word Punkt waits for, longest word before a period it reads
_LAST_WORD: Final = re.compile(r"\S+\Z")  # searched up to a period: the word the period ends
_MAX_SPACE_RUN: Final = 256  # a whitespace run this long decides a pending break
_CONTEXT: Final = 64  # characters kept before the pending unit, for look-behind

# Markdown line kinds.
_PARA: Final = 0
_BLANK: Final = 1
_HEADING: Final = 2
_LIST: Final = 3
_TABLE: Final = 4
_QUOTE: Final = 5
_HR_LINE: Final = 6
_FENCE_OPEN: Final = 7
_FENCE_CLOSE: Final = 8
_CODE: Final = 9
_BLOCK_END: Final = frozenset({_HEADING, _TABLE, _HR_LINE, _FENCE_CLOSE, _QUOTE, _BLANK})
_BLOCK_START: Final = frozenset({_BLANK, _HEADING, _LIST, _TABLE, _QUOTE, _HR_LINE, _FENCE_OPEN})

_NEED_MORE: Final = -1
_COMPILED: Final = not __file__.endswith(".py")


def _quiet(text: str) -> bool:
    """True when ``text`` has none of ``_INTERESTING``'s characters: nothing in it can end a unit."""
    if _COMPILED and text.isascii():  # a native loop beats a regex call on a token's few characters
        for ch in text:
            code = ord(ch)
            if code == 10 or code == 33 or code == 46 or code == 63 or code == 96:  # \n ! . ? `
                return False
        return True
    return _INTERESTING.search(text) is None


def _indent_end(buf: str, line: int) -> int:
    """Where the indentation of the line starting at ``line`` ends."""
    f, n = line, len(buf)
    while f < n and buf[f] in " \t\r":
        f += 1
    return f


def _is_cjk(ch: str) -> bool:
    return not ch.isascii() and _CJK.match(ch) is not None


class SentenceSplitter(Stage):
    """Sentences (and, under a length budget, clauses) out of a stream of text.

    ``lang``: ``"auto"`` applies English, CJK and Markdown rules by the script of
    each stretch; ``"en"`` treats CJK marks as ordinary characters; ``"zh"`` and
    ``"ja"`` skip the English abbreviation model (every ``. `` before a capital
    ends a sentence). ``max_chars``/``first_max_chars`` (characters, or ``None``)
    bound unit length; ``max_hold`` (seconds, or ``None``) sends pending text
    after that long without input. Each chunk says how it ended: ``SENTENCE``,
    ``CLAUSE`` (cut at a clause mark) or ``FORCED`` (cut at a space, a grapheme, or
    by the hold timer). ``punkt`` replaces the shipped English parameters.
    """

    timed = True

    def __init__(
        self,
        lang: Lang = "auto",
        *,
        max_chars: SupportsIndex | None = None,
        first_max_chars: SupportsIndex | None = None,
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
        self._punkt = None if lang in ("zh", "ja") else (punkt or english_punkt())
        self._cjk_rules = lang != "en"
        self._buf = ""
        self._base = 0  # absolute offset of _buf[0]
        self._start = 0  # first character not yet emitted
        self._first = True
        self._arrivals = Arrivals()  # by absolute offset
        self._hold_armed = False
        self._last_input = 0.0
        # scanner state
        self._pos = 0
        # Content ends of decided breaks, increasing; those before _next_break are used.
        # (A list and an index, not a deque: a compiled build indexes a list natively.)
        self._breaks: list[int] = []
        self._next_break = 0
        self._last_break = 0
        self._spans: list[list[int]] = []  # [start, end] of code; end -1 while open
        self._line = 0  # start of the current line
        self._line_kind = _PARA
        self._prev_kind = -1  # kind of the previous line, -1 at the start of the text
        self._line_pending = True  # the current line has not been classified yet
        self._fence: tuple[str, int] | None = None
        self._fence_possible = False  # the current fenced line may still be the closer
        self._code_ticks = 0  # backtick run length of the open inline code span
        self._depth = 0  # open CJK brackets and curly quotes in this line
        self._label_dot = -1  # index of the '.' of a list label at the start of this line

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
        if type(item) is str and now is None and not self._closed and self.max_hold is None:
            return [c.text for c in self._take(item, self._now)]
        return super().feed(item, now)

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        self._last_input = now
        return self._take(chunk.text, chunk.arrival)

    def _take(self, text: str, arrival: float) -> list[Chunk]:
        if not text:
            return []
        buf = self._buf
        self._buf = ""
        self._arrivals.add(self._base + len(buf), arrival)
        caught_up = self._pos == len(buf)
        buf += text  # the only reference: CPython extends in place
        self._buf = buf
        self._hold_armed = True
        if (
            caught_up
            and self._next_break == len(self._breaks)
            and not self._line_pending
            and self._fence is None
            and self.max_chars is None
            and _quiet(text)
        ):  # nothing pending and nothing new to decide: the scanner just moves on
            self._pos = len(buf)
            return []
        self._scan(False)
        out: list[Chunk] = []
        self._emit(False, out)
        return out

    def poll(self, now: float) -> list[Chunk]:
        self._hold_armed = False
        end = len(self._buf)
        for span in self._spans:
            if span[1] < 0:  # never cut into open code
                end = min(end, max(span[0], self._start))
                break
        out: list[Chunk] = []
        if end > self._start:
            self._unit(end, Boundary.FORCED, out)
        return out

    def finish(self, now: float) -> list[Chunk]:
        self._hold_armed = False
        self._scan(True)
        out: list[Chunk] = []
        self._emit(True, out)
        return out

    # -- emission -------------------------------------------------------------------

    def _unit(self, end: int, boundary: Boundary, out: list[Chunk]) -> None:
        start = self._start
        out.append(Chunk(self._buf[start:end], self._arrivals.at(self._base + start), boundary))
        self._start = end
        self._first = False
        if end - _CONTEXT > len(self._buf) // 2 and end > 4096:
            self._trim(end - _CONTEXT)

    def _trim(self, cut: int) -> None:
        self._buf = self._buf[cut:]
        self._base += cut
        self._start -= cut
        self._pos -= cut
        self._line = max(0, self._line - cut)
        self._last_break = max(0, self._last_break - cut)
        self._label_dot -= cut
        self._breaks[:] = [b - cut for b in self._breaks[self._next_break :]]  # in place: _emit holds it
        self._next_break = 0
        self._spans = [[s - cut, e - cut if e >= 0 else -1] for s, e in self._spans if e < 0 or e > cut]

    def _space_end(self, i: int, eof: bool) -> int:
        """The first non-space index at or after ``i``, or ``_NEED_MORE``."""
        buf = self._buf
        n = len(buf)
        j = i
        while j < n and buf[j].isspace():
            j += 1
            if j - i >= _MAX_SPACE_RUN:
                return j
        if j == n and not eof:
            return _NEED_MORE
        return j

    def _emit(self, eof: bool, out: list[Chunk]) -> None:
        breaks = self._breaks
        if self._next_break == len(breaks) and self.max_chars is None and not eof:
            return
        while True:
            start = self._start
            k = self._next_break
            while k < len(breaks) and breaks[k] <= start:
                k += 1
            if k == len(breaks):
                breaks.clear()
                k = 0
            self._next_break = k
            pending = k < len(breaks)
            limit = self.first_max_chars if self._first else self.max_chars
            if pending and (limit is None or breaks[k] - start <= limit):
                if not self._unit_at_break(eof, out):
                    return
                continue
            known = len(self._buf) if eof else self._pos
            # Over budget once text (not just trailing space) is known past the limit.
            if limit is not None and _NONSPACE.search(self._buf, start + limit, known):
                cut = self._cut(start, limit, eof)
                if cut is None:
                    return
                if cut[0] > start:
                    self._unit(cut[0], cut[1], out)
                    continue
                if pending:  # the budget falls inside code: the code goes out whole
                    if not self._unit_at_break(eof, out):
                        return
                    continue
                if not eof:
                    return
            if eof and len(self._buf) > self._start:
                self._unit(len(self._buf), Boundary.SENTENCE, out)
            return

    def _unit_at_break(self, eof: bool, out: list[Chunk]) -> bool:
        """Emit the unit ending at the next break, with the space after it; False: wait for more."""
        end = self._space_end(self._breaks[self._next_break], eof)
        if end == _NEED_MORE:
            return False
        self._next_break += 1
        self._unit(end, Boundary.SENTENCE, out)
        return True

    def _in_code(self, i: int) -> bool:
        return any(s < i and (e < 0 or i < e) for s, e in self._spans)

    def _cut(self, start: int, limit: int, eof: bool) -> tuple[int, Boundary] | None:
        """Where to cut an over-long unit: (index, kind), (start, _) if only code, None to wait."""
        buf = self._buf
        hi = start + limit  # the unit may end at most here
        self._spans = [s for s in self._spans if s[1] < 0 or s[1] > start]
        lo = start + limit // 3
        for p in range(hi - 1, lo - 1, -1):
            ch = buf[p]
            if ch in _CLAUSE_MARKS and (ch in _WIDE_CLAUSE_MARKS or buf[p + 1].isspace()):
                if self._in_code(p + 1):
                    continue
                end = self._space_end(p + 1, eof)
                return None if end == _NEED_MORE else (end, Boundary.CLAUSE)
        for p in range(hi, start, -1):
            if buf[p].isspace() and not buf[p - 1].isspace() and not self._in_code(p):
                end = self._space_end(p, eof)
                return None if end == _NEED_MORE else (end, Boundary.FORCED)
        ends: list[int] = [m.end() for m in _GRAPHEME.finditer(buf, start, hi + 1)]
        if len(ends) > 1:
            ends.pop()  # the last cluster may go on past the budget
        for end in reversed(ends):
            if not self._in_code(end):
                return end, Boundary.FORCED
        return start, Boundary.FORCED

    # -- scanning -------------------------------------------------------------------

    def _scan(self, eof: bool) -> None:
        buf = self._buf
        n = len(buf)
        pos = self._pos
        interesting = _INTERESTING
        while pos < n:
            if self._line_pending:
                if not self._classify_line(eof):
                    break
                pos = self._pos
                continue
            if self._fence is not None:
                pos = self._scan_fenced(pos, eof)
                if pos < 0:
                    pos = self._pos
                    break
                continue
            m = interesting.search(buf, pos)
            if m is None:
                pos = n
                break
            i = m.start()
            ch = buf[i]
            if ch == "\n":
                self._end_line(i)
                pos = i + 1
            elif ch == "`":
                j = i
                while j < n and buf[j] == "`":
                    j += 1
                if j == n and not eof:
                    pos = i
                    break
                run = j - i
                if not self._code_ticks:
                    self._code_ticks = run
                    self._spans.append([i, -1])
                elif run == self._code_ticks:
                    self._code_ticks = 0
                    self._spans[-1][1] = j
                pos = j
            elif self._code_ticks:
                pos = i + 1
            elif ch in _OPEN_BRACKETS:
                self._depth += 1
                pos = i + 1
            elif ch in _CLOSE_BRACKETS:
                if self._depth:
                    self._depth -= 1
                    if self._depth == 0 and i > 0 and buf[i - 1] in _MARKS:
                        k = self._decide(i - 1, i, eof)
                        if k == _NEED_MORE:
                            self._depth += 1
                            pos = i
                            break
                        pos = k
                        continue
                pos = i + 1
            elif self._depth or (not self._cjk_rules and ch in _CJK_MARKS):
                pos = i + 1
            else:
                j = i
                while j < n and buf[j] in _MARKS:
                    j += 1
                k = self._decide(i, j, eof)
                if k == _NEED_MORE:
                    pos = i
                    break
                pos = k
        self._pos = pos

    def _closers_end(self, j: int) -> tuple[int, int]:
        """Skip closing quotes, brackets and further marks from ``j``; also count bracket closes."""
        buf = self._buf
        n = len(buf)
        closes = 0
        while j < n and (buf[j] in _CLOSERS or buf[j] in _MARKS):
            if buf[j] in _CLOSE_BRACKETS:
                closes += 1
            j += 1
        return j, closes

    def _decide(self, i: int, j: int, eof: bool) -> int:
        """Judge the marks at ``buf[i:j]``; record a break if there is one; return where to go on."""
        buf = self._buf
        n = len(buf)
        if j < n and buf[j] not in _CLOSERS and buf[j] not in _MARKS:
            k, closes = j, 0  # the common case: nothing closes after the marks
        else:
            k, closes = self._closers_end(j)
        if k == n and not eof:
            return _NEED_MORE
        verdict = self._verdict(i, j, k, eof)
        if verdict == _NEED_MORE:
            return _NEED_MORE
        self._depth = max(0, self._depth - closes)
        if verdict:
            self._add_break(k)
        return k

    def _add_break(self, end: int) -> None:
        if self._next_break == len(self._breaks) or end > self._breaks[-1]:
            self._breaks.append(end)
        self._last_break = end

    def _verdict(self, i: int, j: int, k: int, eof: bool) -> int:
        """1: a sentence ends at ``k``; 0: it does not; ``_NEED_MORE``: cannot tell yet."""
        buf = self._buf
        n = len(buf)
        if k == n:
            return 1  # end of text
        marks = buf[i:j]
        after = buf[k]
        before = buf[i - 1] if i > 0 else ""
        if self._cjk_rules and (
            (not marks.isascii() and any(c in _CJK_MARKS for c in marks))
            or (_is_cjk(after) and ("." not in marks or (before and _is_cjk(before))))
        ):
            if after in _CONTINUATION and (k > j or after in "、，,"):
                return 0
            return 1
        if not after.isspace():
            return 0
        m = self._space_end(k, eof)
        if m == _NEED_MORE:
            return _NEED_MORE
        if m < n and buf[m].islower():
            return 0  # a lower-case word goes on with the sentence
        if m == n or marks not in (".", "．") or self._punkt is None:
            return 1
        return self._period(i, m, eof)

    def _period(self, i: int, m: int, eof: bool) -> int:
        """A single period followed by space and a non-lower-case character at ``m``."""
        buf = self._buf
        n = len(buf)
        if i == self._label_dot:
            return 0
        last = _LAST_WORD.search(buf, max(0, i - _LOOKAHEAD), i)
        w = last.start() if last is not None else i
        word = buf[w:i].lstrip("([{\"'“‘*_`")
        if not word:
            return 1
        punkt = self._punkt
        assert punkt is not None
        typ = word.lower()
        nxt = buf[m]
        if word[0] in _NUMBER_START and _NUMBER.fullmatch(word):
            # A short number that opens its sentence or follows a colon is a list label.
            if len(word) <= 2 and word.isdigit():
                prev = buf[self._last_break : w]
                if not prev.strip() or prev.rstrip().endswith(":"):
                    return 0
            typ = "##number##"
        is_initial = len(word) == 1 and word.isalpha() and word != "I"
        is_abbrev = typ in punkt.abbreviations or ("." in word and _DOTTED.fullmatch(word) is not None)
        if typ in punkt.numeric_only and not nxt.isdigit():
            is_abbrev = False  # "No. 7" but "The answer is no. Ask again."
        if typ in punkt.titles:
            return 0
        if not (is_abbrev or is_initial or typ == "##number##"):
            return 1
        if nxt.isdigit():
            return 1 if typ == "##number##" and not is_abbrev else 0
        if not nxt.isalpha() or not nxt.isupper():
            return 1  # a symbol, or a letter of a script without case (你, 안)
        e = _WORD_CHARS.match(buf, m + 1).end()  # type: ignore[union-attr]
        if e == n and not eof and e - m < _LOOKAHEAD:
            # After a number only a few words keep the sentence going: decide as soon as
            # the next word cannot be one of them, whatever the rest of it is.
            start = buf[m:e]
            if (
                not (is_abbrev or is_initial)
                and start.isascii()
                and start.lower() not in punkt.after_number_prefixes
            ):
                return 1
            return _NEED_MORE
        next_word = buf[m:e]
        next_typ = next_word.lower()
        if (typ, next_typ) in punkt.collocations:
            return 0
        ctx = punkt.ortho_context.get(next_typ, 0)
        # Punkt's orthographic heuristic: a capitalised word seen lower case inside
        # sentences, and never capitalised there, starts a sentence.
        ortho_start = nxt.isupper() and bool(ctx & ORTHO_LC) and not ctx & ORTHO_MID_UC
        if is_abbrev or is_initial:
            # After an abbreviation or an initial a name or a noun is far more likely than
            # a new sentence ("Dr. Patel", "E. B. White"): only a common sentence opener
            # ends it, or, after a dotted abbreviation ("p.m.", "U.S."), Punkt's heuristic.
            if nxt.isupper() and next_typ in punkt.sentence_starters:
                return 1
            return 1 if ortho_start and "." in word else 0
        if ctx & ORTHO_MID_UC and not ctx & ORTHO_LC:
            return 0
        return 1

    # -- Markdown lines ---------------------------------------------------------------

    def _end_line(self, nl: int) -> None:
        if self._code_ticks:
            self._code_ticks = 0
            self._spans[-1][1] = nl
        self._depth = 0
        self._prev_kind = self._line_kind
        self._line = nl + 1
        self._line_pending = True
        self._pos = nl + 1

    def _classify_line(self, eof: bool) -> bool:
        """Classify the line at ``_line``; decide the break at the line end before it."""
        kind = self._line_kind_at(self._line, eof)
        if kind == _NEED_MORE:
            if self._prev_kind >= 0 and self._line > 0 and self._break_before_is_certain():
                self._add_break(self._line - 1)  # decided now; classifying later adds the same
            return False
        self._line_pending = False
        self._label_dot = -1
        prev = self._prev_kind
        line = self._line
        if kind == _LIST:
            m = _LABEL.match(self._buf, line)
            if m and m.end() < len(self._buf) and self._buf[m.end()] == ".":
                self._label_dot = m.end()
        if kind == _FENCE_OPEN:
            self._spans.append([line, -1])
        if prev >= 0 and line > 0:
            continues_item = prev == _LIST and kind == _PARA and self._buf[line] in " \t"
            if (prev in _BLOCK_END or kind in _BLOCK_START or prev == _LIST) and not continues_item:
                self._add_break(line - 1)
        self._line_kind = kind
        self._pos = line
        # Inside a fence a line is code unless it closes the fence: _scan_fenced finds out.
        self._fence_possible = kind == _CODE
        return True

    def _break_before_is_certain(self) -> bool:
        """Whether the unclassified line at ``_line`` starts a unit whatever its kind turns
        out to be: after a block end, after a list item unless the line is indented (it
        may continue the item), or when its start already proves a list item, a thematic
        break or a fence, all block starts."""
        prev, buf, line = self._prev_kind, self._buf, self._line
        if prev in _BLOCK_END:
            return True
        if prev == _LIST and buf[line] not in " \t":
            return True
        f = _indent_end(buf, line)
        if f + 1 >= len(buf):
            return False
        c = buf[f]
        return (c in "-*+" and buf[f + 1] in " \t") or (c in "`~" and buf.startswith(c * 3, f))

    def _line_kind_at(self, line: int, eof: bool) -> int:
        buf = self._buf
        n = len(buf)
        if self._fence is not None:
            return _CODE
        f = _indent_end(buf, line)
        if f == n:
            return _BLANK if eof else _NEED_MORE
        c = buf[f]
        if c == "\n":
            return _BLANK
        if c in "#`~":
            j = f
            while j < n and buf[j] == c:
                j += 1
            if j == n and not eof:
                return _NEED_MORE
            run = j - f
            if c == "#":
                return _HEADING if run <= 6 and (j == n or buf[j] in " \t\r\n") else _PARA
            if run >= 3:
                self._fence = (c, run)
                return _FENCE_OPEN
            return _PARA
        if c in "-*+_":
            nl = buf.find("\n", f)
            complete = nl >= 0 or eof
            segment = buf[line : nl if nl >= 0 else n]
            if _HR.fullmatch(segment):
                return _HR_LINE if complete else _NEED_MORE
            if not complete and set(segment) <= {c, " ", "\t", "\r"}:
                return _NEED_MORE  # may still become a thematic break or a list item
            if c != "_" and f + 1 < n and buf[f + 1] in " \t":
                return _LIST
            return _PARA
        if c == "|":
            return _TABLE
        if c == ">":
            return _QUOTE
        if c == "(":
            j = f + 1
            while j < n and j - f <= 4 and buf[j].isalnum():
                j += 1
            if j == n and not eof:
                return _NEED_MORE
            if j > f + 1 and j < n and buf[j] == ")":
                if j + 1 == n:
                    return _PARA if eof else _NEED_MORE
                return _LIST if buf[j + 1] in " \t" else _PARA
            return _PARA
        if c.isascii() and c.isalnum():
            m = _LABEL.match(buf, line)
            if m is None or m.end() <= f:
                return _PARA
            j = m.end()
            if j == n or (j + 1 == n and buf[j] in ".)"):
                return _PARA if eof else _NEED_MORE
            if buf[j] in ".)" and buf[j + 1] in " \t":
                return _LIST
            return _PARA
        return _PARA

    def _scan_fenced(self, pos: int, eof: bool) -> int:
        """Inside a fence: skip to the closing line; return the new position, or -1 to wait."""
        buf = self._buf
        n = len(buf)
        assert self._fence is not None
        char, run = self._fence
        nl = buf.find("\n", pos)
        end = nl if nl >= 0 else n
        if self._line_kind == _FENCE_OPEN:
            # The opening line (its info string) is part of the fence.
            if nl < 0:
                self._pos = n
                return -1
            self._end_line(nl)
            return nl + 1
        if self._fence_possible:
            segment = buf[self._line : end].rstrip(" \t\r")
            stripped = segment.lstrip(" ")
            closes = len(segment) - len(stripped) <= 3 and stripped and set(stripped) == {char}
            if not closes and not (nl < 0 and set(stripped) <= {char} and len(segment) - len(stripped) <= 3):
                self._fence_possible = False
            elif nl >= 0 or eof:
                if closes and len(stripped) >= run:
                    self._fence = None
                    self._line_kind = _FENCE_CLOSE
                    for span in reversed(self._spans):
                        if span[1] < 0:
                            span[1] = end
                            break
                    if nl < 0:
                        self._pos = n
                        return n
                    self._end_line(nl)
                    return nl + 1
                self._fence_possible = False
        if nl < 0:
            self._pos = n if not self._fence_possible else self._line
            return -1 if not eof else n
        self._end_line(nl)
        return nl + 1


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
