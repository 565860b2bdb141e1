"""Markdown block structure of a live text: what each line is, and where code is.

``line_kind`` classifies the line that starts at an offset, from that line's first
characters, or says it needs more text (``None``). ``MarkdownLines`` is the
sentence scanner's memory of lines: the current line, its kind and the previous
one's, an open fence. ``CodeSpans`` records inline code and fenced blocks, where
nothing is ever a sentence end or a cut point.

Cost: a line is classified once its first characters are known (a thematic break or
a list marker may need the whole line); a fence's closing line is checked as its
characters arrive. ``CodeSpans`` holds the spans of the pending unit only.
"""

from __future__ import annotations

import enum
import re
from typing import Final

__all__ = ["BLOCK_END", "BLOCK_START", "CodeSpans", "LineKind", "MarkdownLines", "line_kind"]


class LineKind(enum.Enum):
    """What a line of Markdown is, as far as unit boundaries go."""

    PARA = "paragraph"
    BLANK = "blank"
    HEADING = "heading"
    LIST = "list item"
    TABLE = "table row"
    QUOTE = "block quote"
    RULE = "thematic break"
    FENCE_OPEN = "fence opening"
    FENCE_CLOSE = "fence closing"
    CODE = "fenced code"


#: A unit ends after these lines, and before these.
BLOCK_END: Final = frozenset(
    {LineKind.HEADING, LineKind.TABLE, LineKind.RULE, LineKind.FENCE_CLOSE, LineKind.QUOTE, LineKind.BLANK}
)
BLOCK_START: Final = frozenset(
    {
        LineKind.BLANK,
        LineKind.HEADING,
        LineKind.LIST,
        LineKind.TABLE,
        LineKind.QUOTE,
        LineKind.RULE,
        LineKind.FENCE_OPEN,
    }
)

_RULE: Final = re.compile(r"[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t\r]*")
LABEL: Final = re.compile(r"[ \t]*(?:\d{1,9}|[ivxIVX]{1,4}|[A-Za-z])")  # a list item's label
_CJK_NUMERALS: Final = frozenset("一二三四五六七八九十百〇零")
#: After a label in Chinese or Japanese text ("1、"; also a fullwidth full stop or
#: closing parenthesis): an item label, no space needed.
_CJK_LABEL_END: Final = "、．）"
#: ① to ⑳, ⑴ to ⒇, ⒈ to ⒛, and ❶ to ❿: a label in one character.
_CIRCLED: Final = frozenset(map(chr, [*range(0x2460, 0x249C), *range(0x2776, 0x2780)]))


def indent_end(buf: str, line: int) -> int:
    """Where the indentation of the line starting at ``line`` ends."""
    f, n = line, len(buf)
    while f < n and buf[f] in " \t\r":
        f += 1
    return f


def line_kind(buf: str, line: int, eof: bool) -> LineKind | None:
    """The kind of the line starting at ``buf[line]`` outside a fence; ``None``: more text needed."""
    n = len(buf)
    f = indent_end(buf, line)
    if f == n:
        return LineKind.BLANK if eof else None
    c = buf[f]
    if c == "\n":
        return LineKind.BLANK
    if c in "#`~":
        return _heading_or_fence(buf, f, c, eof)
    if c in "-*+_":
        return _rule_or_item(buf, line, f, c, eof)
    if c == "|":
        return LineKind.TABLE
    if c == ">":
        return LineKind.QUOTE
    if c in "(（":
        return _parenthesised_label(buf, f, eof)
    if c.isascii() and c.isalnum():
        return _label(buf, line, f, eof)
    if c in _CJK_NUMERALS:
        return _cjk_label(buf, f, eof)
    return LineKind.LIST if c in _CIRCLED else LineKind.PARA


def _heading_or_fence(buf: str, f: int, c: str, eof: bool) -> LineKind | None:
    n = len(buf)
    j = f
    while j < n and buf[j] == c:
        j += 1
    if j == n and not eof:
        return None
    run = j - f
    if c == "#":
        return LineKind.HEADING if run <= 6 and (j == n or buf[j] in " \t\r\n") else LineKind.PARA
    return LineKind.FENCE_OPEN if run >= 3 else LineKind.PARA


def _rule_or_item(buf: str, line: int, f: int, c: str, eof: bool) -> LineKind | None:
    n = len(buf)
    nl = buf.find("\n", f)
    complete = nl >= 0 or eof
    segment = buf[line : nl if nl >= 0 else n]
    if _RULE.fullmatch(segment):
        return LineKind.RULE if complete else None
    if not complete and set(segment) <= {c, " ", "\t", "\r"}:
        return None  # may still become a thematic break or a list item
    if c != "_" and f + 1 < n and buf[f + 1] in " \t":
        return LineKind.LIST
    return LineKind.PARA


def _parenthesised_label(buf: str, f: int, eof: bool) -> LineKind | None:
    """``(a) ``, ``(iv) ``; in Chinese and Japanese text ``（1）``, ``（一）`` or ``(1)``
    followed directly by a word, since those scripts put no space after a label."""
    n = len(buf)
    j = f + 1
    while j < n and j - f <= 4 and (buf[j].isalnum() if buf[j].isascii() else buf[j] in _CJK_NUMERALS):
        j += 1
    if j == n and not eof:
        return None
    if j == f + 1 or j == n or buf[j] not in ")）":
        return LineKind.PARA
    if j + 1 == n:
        return LineKind.PARA if eof else None
    after = buf[j + 1]
    numbered = all(ch.isdigit() or ch in _CJK_NUMERALS for ch in buf[f + 1 : j])
    if after in " \t" or (numbered and not after.isascii() and not after.isspace()):
        return LineKind.LIST
    return LineKind.PARA


def _cjk_label(buf: str, f: int, eof: bool) -> LineKind | None:
    """``一、``, ``十二．``: a label in Chinese numerals."""
    n = len(buf)
    j = f + 1
    while j < n and j - f <= 3 and buf[j] in _CJK_NUMERALS:
        j += 1
    if j == n:
        return LineKind.PARA if eof else None
    return LineKind.LIST if buf[j] in "、．" else LineKind.PARA


def _label(buf: str, line: int, f: int, eof: bool) -> LineKind | None:
    n = len(buf)
    m = LABEL.match(buf, line)
    if m is None or m.end() <= f:
        return LineKind.PARA
    j = m.end()
    if j < n and buf[j] in _CJK_LABEL_END:
        return LineKind.LIST
    if j == n or (j + 1 == n and buf[j] in ".)"):
        return LineKind.PARA if eof else None
    if buf[j] in ".)" and buf[j + 1] in " \t":
        return LineKind.LIST
    return LineKind.PARA


def fence_marker(buf: str, line: int) -> tuple[str, int]:
    """The character and length of the fence that opens the line at ``line``."""
    f = indent_end(buf, line)
    j = f
    while j < len(buf) and buf[j] == buf[f]:
        j += 1
    return buf[f], j - f


def label_dot(buf: str, line: int) -> int:
    """Index of the ``.`` after a list item's label at ``line`` (``1.``, ``iv.``), or -1."""
    m = LABEL.match(buf, line)
    if m and m.end() < len(buf) and buf[m.end()] == ".":
        return m.end()
    return -1


def closing_fence(segment: str, fence: tuple[str, int], complete: bool) -> bool | None:
    """Whether ``segment``, a line inside a fence, closes it: ``None`` while it still may.

    ``complete``: the line's end (or the text's) is known.
    """
    char, run = fence
    segment = segment.rstrip(" \t\r")
    stripped = segment.lstrip(" ")
    indent_ok = len(segment) - len(stripped) <= 3
    if indent_ok and stripped and set(stripped) == {char}:
        if not complete:
            return None
        return len(stripped) >= run
    if not complete and indent_ok and set(stripped) <= {char}:
        return None  # only spaces so far, or fence characters after at most three
    return False


class MarkdownLines:
    """The scanner's memory of Markdown lines: where the current one starts, what it is."""

    def __init__(self) -> None:
        self.start = 0  # offset of the current line's first character
        self.kind = LineKind.PARA
        self.prev: LineKind | None = None  # the previous line's kind; None at the start of the text
        self.pending = True  # the current line is not classified yet
        self.fence: tuple[str, int] | None = None  # the open fence's character and length
        self.fence_possible = False  # the current line in a fence may still close it
        self.label_dot = -1  # index of the '.' of the current line's list label

    def new_line(self, start: int) -> None:
        self.prev = self.kind
        self.start = start
        self.pending = True

    def unit_ends_before(self, kind: LineKind, buf: str) -> bool:
        """Whether a unit ends at the line break before the current line, now of ``kind``."""
        prev = self.prev
        if prev is None or self.start == 0:
            return False
        continues_item = prev is LineKind.LIST and kind is LineKind.PARA and buf[self.start] in " \t"
        return (prev in BLOCK_END or kind in BLOCK_START or prev is LineKind.LIST) and not continues_item

    def break_before_is_certain(self, buf: str) -> bool:
        """Whether the unclassified current line starts a unit whatever its kind turns out
        to be: after a block end, after a list item unless the line is indented (it may
        continue the item), or when its start already proves a list item or a fence."""
        prev, line = self.prev, self.start
        if prev is None or line == 0:
            return False
        if prev in BLOCK_END:
            return True
        if prev is LineKind.LIST and buf[line] not in " \t":
            return True
        f = indent_end(buf, line)
        if f + 1 >= len(buf):
            return False
        c = buf[f]
        return (c in "-*+" and buf[f + 1] in " \t") or (c in "`~" and buf.startswith(c * 3, f))

    def trim(self, cut: int) -> None:
        self.start = max(0, self.start - cut)
        self.label_dot -= cut


class CodeSpans:
    """Inline code and fenced blocks in the pending text, as ``[start, end]`` (end -1: open)."""

    def __init__(self) -> None:
        self.spans: list[list[int]] = []
        self.ticks = 0  # backtick run length of the open inline code span; 0: none open

    def backticks(self, i: int, run: int) -> None:
        """A run of ``run`` backticks at ``i``: opens a span, or closes the open one it matches."""
        if not self.ticks:
            self.ticks = run
            self.spans.append([i, -1])
        elif run == self.ticks:
            self.ticks = 0
            self.spans[-1][1] = i + run

    def line_end(self, nl: int) -> None:
        """Inline code does not run past the end of its line."""
        if self.ticks:
            self.ticks = 0
            self.spans[-1][1] = nl

    def open_fence(self, line: int) -> None:
        self.spans.append([line, -1])

    def close_fence(self, end: int) -> None:
        for span in reversed(self.spans):
            if span[1] < 0:
                span[1] = end
                return

    def inside(self, i: int) -> bool:
        """Whether a cut at ``i`` would fall inside code."""
        return any(s < i and (e < 0 or i < e) for s, e in self.spans)

    def open_start(self) -> int:
        """Where the first open span starts, or -1 when none is open."""
        for span in self.spans:
            if span[1] < 0:
                return span[0]
        return -1

    def drop_before(self, start: int) -> None:
        """Forget the spans that ended at or before ``start``."""
        self.spans = [s for s in self.spans if s[1] < 0 or s[1] > start]

    def trim(self, cut: int) -> None:
        self.spans = [[s - cut, e - cut if e >= 0 else -1] for s, e in self.spans if e < 0 or e > cut]
