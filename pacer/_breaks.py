"""Where units end in a live text: a scanner that reads each character once and records breaks.

A candidate (a terminal mark, a line end) is decided as soon as the text after it
proves or refutes the break, using a bounded lookahead: the next non-space
character, the next word when Punkt must judge an abbreviation, the start of the
next line for Markdown. Every decision is a function of the text alone, so the
breaks never depend on how the input was fragmented. The rules are listed in
``pacer._sentences``; Markdown lines are classified by ``_markdown``, periods judged
by ``punkt.period_ends_sentence``.

Cost: every character is scanned once; a pending decision re-reads at most its
bounded lookahead when more text comes (ten characters after a Chinese quote, a
word after a period or a title); a number and period inside a Chinese sentence look
back at most 200 characters for the list label before it. Memory is the text not yet emitted (the
splitter trims the buffer as units go out) and the breaks not yet used.
"""

from __future__ import annotations

import re
from typing import Final

import regex

from ._markdown import CodeSpans, LineKind, MarkdownLines, closing_fence, fence_marker, label_dot, line_kind
from ._punkt import PunktModel, period_ends_sentence

__all__ = ["Breaks", "Scanner", "quiet", "space_end"]

# Final: a compiled build (setup.py) inlines these or keeps them in C statics.
_EN_MARKS: Final = ".?!…‼⁇⁈⁉"
CJK_MARKS: Final = "。！？｡．"
_MARKS: Final = frozenset(_EN_MARKS + CJK_MARKS)
_OPEN_BRACKETS: Final = frozenset("「『“（《〈【〔")
_CLOSE_BRACKETS: Final = frozenset("」』”）》〉】〕")
_CLOSERS: Final = frozenset("\"'’»)]}*_") | _CLOSE_BRACKETS
_CONTINUATION: Final = frozenset("とっ、，,")
_INTERESTING: Final = re.compile(r"[\n`()\].?!…‼⁇⁈⁉。！？｡．「『“（《〈【〔」』”）》〉】〕]")
_CJK: Final = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\u3000-\u303f\uff00-\uffef]")
_HAN: Final = regex.compile(r"\p{Han}")
_PAREN_SPAN: Final = 200  # an ASCII "(" keeps sentences open this many characters at most
_EYES: Final = frozenset(":;=")  # before a "(" or ")", a face: ":(", ";-)", "=)", ":'("
_NOSES: Final = frozenset("-'^")
_FACE_HINTS: Final = _EYES | _NOSES | frozenset("()")  # what a face's mouth may follow
# Chinese quoted speech followed by who said it is one sentence. After a quoted
# exclamation or question, Han characters that say who spoke are the attribution: a
# verb of saying within the first ten ("妈妈问", "他高兴地说", "张老师笑着说",
# "站在门口的保安说"), not as part of a word that is no saying ("知道", "问题").
# Anything else (a kana, a mark, ten Han characters with no such verb) is a new
# sentence, so a reader waits at most ten characters to know.
_SPEECH_VERBS: Final = frozenset("说问道喊叫答嚷吼骂")
_NOT_SAYING: Final = frozenset(
    ("知道", "味道", "街道", "频道", "难道", "道路", "道理", "问题", "答案", "叫声", "小说")
)
_ATTRIBUTION_SPAN: Final = 10
_QUOTE_CLOSERS: Final = frozenset('”」』"')
_INTRODUCERS: Final = frozenset("：:")  # a quote after a colon has its speaker before it
_LABEL_SPAN: Final = 200  # how far back a Chinese sentence's list label "1. " is looked for
_MAX_SPACE_RUN: Final = 256  # a whitespace run this long decides a pending break
_COMPILED: Final = not __file__.endswith(".py")


def quiet(text: str) -> bool:
    """True when ``text`` has no character that could end a unit or change what follows."""
    if _COMPILED and text.isascii():  # a native loop beats a regex call on a token's few characters
        for ch in text:
            code = ord(ch)
            if code == 10 or code == 33 or code == 46 or code == 63 or code == 96 or code == 40 or code == 41:
                return False  # \n ! . ? ` ( )
            if code == 93:
                return False  # ]
        return True
    return _INTERESTING.search(text) is None


def space_end(buf: str, i: int, eof: bool) -> int | None:
    """The first non-space index at or after ``i``; ``None`` while the text may hold more space."""
    n = len(buf)
    j = i
    while j < n and buf[j].isspace():
        j += 1
        if j - i >= _MAX_SPACE_RUN:
            return j
    if j == n and not eof:
        return None
    return j


def _face(buf: str, i: int) -> bool:
    """Whether the ``(`` or ``)`` at ``i`` is the mouth of a face (``:(``, ``;-)``, ``:'(``,
    ``:((``), which opens or closes nothing."""
    if i == 0 or buf[i - 1] not in _FACE_HINTS:
        return False
    j = i
    while j > 0 and buf[j - 1] == buf[i]:
        j -= 1
    if j == 0:
        return False
    before = buf[j - 1]
    return before in _EYES or (before in _NOSES and j > 1 and buf[j - 2] in _EYES)


def _is_cjk(ch: str) -> bool:
    return not ch.isascii() and _CJK.match(ch) is not None


def _attribution(buf: str, k: int, eof: bool) -> bool | None:
    """Whether the Han text at ``k`` says who spoke ("他说", "小明大声喊道"); ``None``: read on."""
    n = len(buf)
    end = min(n, k + _ATTRIBUTION_SPAN)
    for p in range(k, end):
        ch = buf[p]
        if ch.isascii() or _HAN.match(ch) is None:
            return False
        if ch in _SPEECH_VERBS and buf[p - 1 : p + 1] not in _NOT_SAYING:
            if p + 1 == n and not eof:
                return None  # "问" may be "问题"
            if buf[p : p + 2] not in _NOT_SAYING:
                return True
    return None if end - k < _ATTRIBUTION_SPAN and not eof else False


def _cjk_list_label(buf: str, i: int, start: int) -> bool:
    """Whether the ``.`` at ``i`` closes an ASCII list label inside a Chinese sentence that
    began at ``start`` ("步骤：1. 下载；2. 安装。"): a ``1`` after Chinese punctuation or a
    space, or a later number whose predecessor labelled an item earlier in the sentence."""
    d = i
    while d > start and i - d < 3 and "0" <= buf[d - 1] <= "9":
        d -= 1
    if d == i or i - d > 2 or (d > start and buf[d - 1] in "0123456789."):
        return False
    p = d
    while p > start and buf[p - 1] in " \t":
        p -= 1
    if p == 0 or not _is_cjk(buf[p - 1]):
        return False
    number = int(buf[d:i])
    if number == 1:
        return p < d or _HAN.match(buf[p - 1]) is None  # "有 1." or after a mark, not "第1."
    previous = f"{number - 1}. "
    lo = max(start, d - _LABEL_SPAN)
    at = buf.rfind(previous, lo, d)
    while at > lo and "0" <= buf[at - 1] <= "9":
        at = buf.rfind(previous, lo, at)
    return at >= 0 and (at == 0 or not "0" <= buf[at - 1] <= "9")


def _cjk_verdict(marks: str, after: str, before: str, closed: bool) -> bool | None:
    """Chinese and Japanese rules for ``marks`` then ``after``; ``None``: they do not apply.

    ``closed``: closing quotes or brackets came between the marks and ``after``.
    """
    if (not marks.isascii() and any(c in CJK_MARKS for c in marks)) or (
        _is_cjk(after) and ("." not in marks or (before and _is_cjk(before)))
    ):
        # After a closing quote, と/って or a comma go on with the sentence.
        return not (after in _CONTINUATION and (closed or after in "、，,"))
    return None


class Breaks:
    """The content ends of decided units, increasing; those before ``next`` are used."""

    def __init__(self) -> None:
        # A list and an index, not a deque: a compiled build indexes a list natively.
        self.ends: list[int] = []
        self.next = 0
        self.last = 0  # the latest break found: where the sentence being read began

    def add(self, end: int) -> None:
        if self.next == len(self.ends) or end > self.ends[-1]:
            self.ends.append(end)
        self.last = end

    def pending(self) -> bool:
        """Whether a break is found and not yet used."""
        return self.next < len(self.ends)

    def first_after(self, start: int) -> int:
        """The first unused break after ``start`` (those at or before it are used up), or -1."""
        ends = self.ends
        k = self.next
        while k < len(ends) and ends[k] <= start:
            k += 1
        if k == len(ends):
            ends.clear()
            k = 0
        self.next = k
        return ends[k] if k < len(ends) else -1

    def trim(self, cut: int) -> None:
        self.ends[:] = [b - cut for b in self.ends[self.next :]]  # in place: the splitter may hold it
        self.next = 0
        self.last = max(0, self.last - cut)


class Scanner:
    """The text seen so far, scanned once left to right into ``breaks``.

    ``punkt``: the English period model, or ``None`` (every ``. `` before a capital
    ends a sentence); ``cjk_rules``: whether Chinese and Japanese marks end sentences.
    """

    def __init__(self, punkt: PunktModel | None, cjk_rules: bool) -> None:
        self.buf = ""
        self.pos = 0  # the first character not yet scanned
        self.depth = 0  # open CJK brackets and curly quotes in this line
        self.introduced = False  # the outermost of them opened after a colon (its speaker came first)
        self.parens = 0  # open ASCII parentheses in this line
        self.paren_at = 0  # where the outermost of them opened
        self.breaks = Breaks()
        self.lines = MarkdownLines()
        self.code = CodeSpans()
        self.punkt = punkt
        self.cjk_rules = cjk_rules

    def idle(self) -> bool:
        """Whether nothing is pending: no unused break, no line to classify, no open fence."""
        lines = self.lines
        return not self.breaks.pending() and not lines.pending and lines.fence is None

    def trim(self, cut: int) -> None:
        """Drop the first ``cut`` characters, which nothing will read again."""
        self.buf = self.buf[cut:]
        self.pos -= cut
        self.paren_at -= cut
        self.lines.trim(cut)
        self.breaks.trim(cut)
        self.code.trim(cut)

    def scan(self, eof: bool) -> None:
        """Scan as far as the text allows (``eof``: it ends here), recording breaks."""
        buf = self.buf
        n = len(buf)
        pos = self.pos
        lines = self.lines
        while pos < n:
            if lines.pending:
                if not self._classify_line(eof):
                    break
                pos = self.pos
                continue
            if lines.fence is not None:
                after = self._scan_fenced(pos, eof)
                if after is None:
                    pos = self.pos
                    break
                pos = after
                continue
            m = _INTERESTING.search(buf, pos)
            if m is None:
                pos = n
                break
            i = m.start()
            after = self._at(i, eof)
            if after is None:
                pos = i
                break
            pos = after
        self.pos = pos

    def _at(self, i: int, eof: bool) -> int | None:
        """Take the character at ``i`` that may matter; return where to go on, ``None``: wait at ``i``."""
        buf = self.buf
        ch = buf[i]
        if ch in _MARKS:  # the most common: a terminal mark outside code
            if self.code.ticks or self.depth or (self.parens and i - self.paren_at <= _PAREN_SPAN):
                return i + 1  # inside code, brackets, quotes or parentheses
            if not self.cjk_rules and ch in CJK_MARKS:
                return i + 1
            j = i + 1
            while j < len(buf) and buf[j] in _MARKS:
                j += 1
            return self._decide(i, j, eof)
        if ch == "\n":
            self._end_line(i)
            return i + 1
        if ch == "`":
            return self._backticks(i, eof)
        if self.code.ticks:
            return i + 1
        if ch in _OPEN_BRACKETS:
            if not self.depth:
                self.introduced = i > 0 and self.buf[i - 1] in _INTRODUCERS
            self.depth += 1
            return i + 1
        if ch in _CLOSE_BRACKETS:
            return self._close_bracket(i, eof)
        if ch == "(":
            self._open_paren(i)
            return i + 1
        if ch in ")]":
            return self._close_paren(i, eof)
        return i + 1

    def _open_paren(self, i: int) -> None:
        """A ``(``: opens parentheses unless it is a face's mouth (``:(``)."""
        if _face(self.buf, i):
            return
        if not self._in_parens(i):
            self.parens = 0  # one opened too long ago was a stray
            self.paren_at = i
        self.parens += 1

    def _backticks(self, i: int, eof: bool) -> int | None:
        buf = self.buf
        n = len(buf)
        j = i
        while j < n and buf[j] == "`":
            j += 1
        if j == n and not eof:
            return None
        self.code.backticks(i, j - i)
        return j

    def _in_parens(self, i: int) -> bool:
        """Whether ``i`` lies inside an ASCII parenthesis opened at most ``_PAREN_SPAN`` before."""
        return self.parens > 0 and i - self.paren_at <= _PAREN_SPAN

    def _interval_end(self, i: int) -> bool:
        """Whether the ``]`` at ``i`` closes an open ``(`` as interval notation does
        (``(0, 1]``): no ``[`` opened since the parenthesis did."""
        return self._in_parens(i) and self.buf.rfind("[", max(0, self.paren_at), i) < 0

    def _close_paren(self, i: int, eof: bool) -> int | None:
        """A ``)`` (or the ``]`` of an interval): a mark just before the one that closes the
        parentheses is decided now."""
        if (self.buf[i] == "]" and not self._interval_end(i)) or _face(self.buf, i):
            return i + 1
        if not self._in_parens(i):
            self.parens = 0
            return i + 1
        self.parens -= 1
        if self.parens == 0 and not self.depth and self.buf[i - 1] in _MARKS:
            k = self._decide(i - 1, i, eof)
            if k is None:
                self.parens += 1
            return k
        return i + 1

    def _close_bracket(self, i: int, eof: bool) -> int | None:
        if self.depth:
            self.depth -= 1
            if self.depth == 0 and not self._in_parens(i) and i > 0 and self.buf[i - 1] in _MARKS:
                k = self._decide(i - 1, i, eof)
                if k is None:
                    self.depth += 1
                return k
        return i + 1

    def _closers_end(self, j: int) -> tuple[int, int, int]:
        """Skip closing quotes, brackets and further marks from ``j``; also count the closes
        of CJK brackets and of ASCII parentheses."""
        buf = self.buf
        n = len(buf)
        closes = parens = 0
        while j < n and (buf[j] in _CLOSERS or buf[j] in _MARKS):
            if buf[j] in _CLOSE_BRACKETS:
                closes += 1
            elif buf[j] == ")":
                parens += 1
            j += 1
        return j, closes, parens

    def _decide(self, i: int, j: int, eof: bool) -> int | None:
        """Judge the marks at ``buf[i:j]``; record a break if there is one; return where to go on."""
        buf = self.buf
        n = len(buf)
        if j < n and buf[j] not in _CLOSERS and buf[j] not in _MARKS:
            k, closes, parens = j, 0, 0  # the common case: nothing closes after the marks
        else:
            k, closes, parens = self._closers_end(j)
        if k == n and not eof:
            return None
        verdict = self._verdict(i, j, k, eof)
        if verdict is None:
            return None
        if closes:
            self.depth = max(0, self.depth - closes)
        if parens:
            self.parens = max(0, self.parens - parens)
        if verdict:
            self.breaks.add(k)
        return k

    def _verdict(self, i: int, j: int, k: int, eof: bool) -> bool | None:
        """Whether a sentence ends at ``k`` after the marks ``buf[i:j]``; ``None``: cannot tell yet."""
        buf = self.buf
        if k == len(buf):
            return True  # end of text
        marks = buf[i:j]
        after = buf[k]
        if self.cjk_rules:
            decided, verdict = self._cjk(i, j, k, marks, eof)
            if decided:
                return verdict
        if not after.isspace():
            return False
        return self._after_space(i, k, marks, eof)

    def _cjk(self, i: int, j: int, k: int, marks: str, eof: bool) -> tuple[bool, bool | None]:
        """The Chinese and Japanese rules' verdict, and whether they decided at all."""
        buf = self.buf
        cjk = _cjk_verdict(marks, buf[k], buf[i - 1] if i > 0 else "", k > j)
        if (
            cjk
            and buf[k - 1] in _QUOTE_CLOSERS
            and any(c in "！？!?" for c in marks)
            and not self._introduced(buf[k - 1], i)
        ):
            spoken = _attribution(buf, k, eof)  # the speaker's attribution goes on
            return True, (None if spoken is None else not spoken)
        return cjk is not None, cjk

    def _introduced(self, closer: str, i: int) -> bool:
        """Whether the quote that ``closer`` ends, around the marks at ``i``, opened after a
        colon (its speaker came first). Curly quotes and brackets are tracked as they open;
        an ASCII ``"`` is found by looking back to where the sentence began."""
        if closer != '"':
            return self.introduced
        buf = self.buf
        opening = buf.rfind('"', max(0, self.breaks.last), i)
        return opening > 0 and buf[opening - 1] in _INTRODUCERS

    def _after_space(self, i: int, k: int, marks: str, eof: bool) -> bool | None:
        """The verdict on marks followed by space at ``k``: what comes after the space decides."""
        buf = self.buf
        n = len(buf)
        m = space_end(buf, k, eof)
        if m is None:
            return None
        if m < n and buf[m].islower():
            return False  # a lower-case word goes on with the sentence
        if (
            self.cjk_rules
            and marks == "."
            and i > 0
            and "0" <= buf[i - 1] <= "9"
            and _cjk_list_label(buf, i, self.breaks.last)
        ):
            return False
        if m == n or marks not in (".", "．") or self.punkt is None:
            return True
        if i == self.lines.label_dot:
            return False
        return period_ends_sentence(self.punkt, buf, i, m, eof, self.breaks.last)

    # -- Markdown lines ---------------------------------------------------------------

    def _end_line(self, nl: int) -> None:
        self.code.line_end(nl)
        self.depth = 0
        self.parens = 0
        self.lines.new_line(nl + 1)
        self.pos = nl + 1

    def _classify_line(self, eof: bool) -> bool:
        """Classify the current line; decide the break at the line end before it. False: wait."""
        lines, buf = self.lines, self.buf
        line = lines.start
        kind = LineKind.CODE if lines.fence is not None else line_kind(buf, line, eof)
        if kind is None:
            if lines.break_before_is_certain(buf):
                self.breaks.add(line - 1)  # decided now; classifying later adds the same
            return False
        lines.pending = False
        lines.label_dot = label_dot(buf, line) if kind is LineKind.LIST else -1
        if kind is LineKind.FENCE_OPEN:
            lines.fence = fence_marker(buf, line)
            self.code.open_fence(line)
        if lines.unit_ends_before(kind, buf):
            self.breaks.add(line - 1)
        lines.kind = kind
        self.pos = line
        # Inside a fence a line is code unless it closes the fence: _scan_fenced finds out.
        lines.fence_possible = kind is LineKind.CODE
        return True

    def _scan_fenced(self, pos: int, eof: bool) -> int | None:
        """Inside a fence: skip to the closing line; return the new position, ``None``: wait."""
        buf, lines = self.buf, self.lines
        n = len(buf)
        nl = buf.find("\n", pos)
        end = nl if nl >= 0 else n
        if lines.kind is LineKind.FENCE_OPEN:
            # The opening line (its info string) is part of the fence.
            if nl < 0:
                self.pos = n
                return None
            self._end_line(nl)
            return nl + 1
        if lines.fence_possible:
            assert lines.fence is not None
            closes = closing_fence(buf[lines.start : end], lines.fence, nl >= 0 or eof)
            if closes:
                lines.fence = None
                lines.kind = LineKind.FENCE_CLOSE
                self.code.close_fence(end)
                if nl < 0:
                    self.pos = n
                    return n
                self._end_line(nl)
                return nl + 1
            if closes is not None:
                lines.fence_possible = False
        if nl < 0:
            self.pos = n if not lines.fence_possible else lines.start
            return n if eof else None
        self._end_line(nl)
        return nl + 1
