"""Where sentences and clauses end in a live text, as offsets, while the text flows on.

``BreakFinder`` reads a stream of text with the sentence scanner (``_breaks``, the
rules of ``SentenceSplitter``) and reports each boundary as an absolute character
offset with its kind, as soon as the text after it decides it. It holds no text
back: a stage that paces or forwards the text keeps sending it and applies the
boundaries that are known by the time it gets there (a pacer's pause goes before
the first visible character after the boundary). Sentence ends are the splitter's
breaks; clause ends are a ``, ; :`` followed by a space, or a ``、，；：—–``,
outside code.

``Breakpoints`` keeps the boundaries a pacer has not reached yet, and says where
sending must stop for a pause.

Cost: every character is scanned once by the sentence scanner and once by the
clause search; memory is the text whose decisions are pending plus 64 characters
of context (the buffer is trimmed as the scan moves on), and the boundaries in
the text not yet sent.
"""

from __future__ import annotations

import re
from typing import Final

from ._breaks import Scanner, quiet
from ._core import Boundary
from ._punkt import PunktModel
from ._units import UnitQueue

__all__ = ["BreakFinder", "Breakpoints"]

# A clause mark: an ASCII one needs a space after it (not "1,000", "10:30", "http://").
_CLAUSE: Final = re.compile(r"[,;:](?=\s)|[、，；：—–]")
_CLAUSE_CHAR: Final = re.compile(r"[,;:、，；：—–]")
_COMPILED: Final = not __file__.endswith(".py")
_CONTEXT: Final = 64  # characters kept behind the scan, for look-behind
_TRIM: Final = 256  # trimmed once this much lies behind the scan (a compiled build copies on append)


class BreakFinder:
    """Sentence and clause ends of a live text, by absolute offset, decided with bounded lookahead.

    ``add(text)`` appends text and returns the boundaries it decides, in order, as
    ``(offset, kind)``: the text before ``offset`` ends a sentence (``SENTENCE``) or a
    clause (``CLAUSE``); any whitespace after it belongs before the pause. ``finish()``
    decides what is left as if the text ended there.
    """

    def __init__(self, punkt: PunktModel | None, cjk_rules: bool) -> None:
        self._scanner = Scanner(punkt, cjk_rules)
        self._base = 0  # absolute offset of the scanner's buf[0]
        self._clause_pos = 0  # buffer index the clause search goes on from
        self._clause_next = -1  # buffer index of the first clause mark character not searched, -1: none
        self._last = -1  # the last offset reported (a break can be decided twice)
        self._last_kind = Boundary.NONE  # and its kind

    @property
    def end(self) -> int:
        """Absolute offset of the end of the text added so far."""
        return self._base + len(self._scanner.buf)

    def text(self, start: int, end: int) -> str:
        """The text between two absolute offsets, as far as it is still kept (from 64
        characters behind the scan on)."""
        base = self._base
        return self._scanner.buf[max(0, start - base) : max(0, end - base)]

    def add(self, text: str) -> list[tuple[int, Boundary]]:
        """Append ``text``; return the boundaries decided now."""
        if not text:
            return []
        scanner = self._scanner
        buf = scanner.buf
        scanner.buf = ""
        caught_up = scanner.pos == len(buf)
        clause = _has_clause_char(text)
        if clause and self._clause_next < 0:
            self._clause_next = len(buf)  # somewhere in text: the search finds where
        buf += text  # the only reference: CPython extends in place (a compiled build copies)
        scanner.buf = buf
        if caught_up and not clause and self._clause_next < 0 and scanner.idle() and quiet(text):
            # Nothing pending, and nothing in the text could end a sentence or a clause.
            scanner.pos = len(buf)
            self._clause_pos = len(buf) - 1
            self._trim()
            return []
        scanner.scan(False)
        return self._decided(False)

    def finish(self) -> list[tuple[int, Boundary]]:
        """The text ends here: the boundaries still undecided, decided."""
        self._scanner.scan(True)
        return self._decided(True)

    def _decided(self, eof: bool) -> list[tuple[int, Boundary]]:
        scanner = self._scanner
        buf = scanner.buf
        breaks = scanner.breaks
        out: list[tuple[int, Boundary]] = []
        limit = len(buf) if eof else min(scanner.pos, len(buf) - 1)  # a clause mark needs the next character
        if self._clause_next < 0:
            self._clause_pos = limit  # no clause mark character to search
        elif self._clause_pos < limit:
            self._clause_marks(buf, limit, breaks.ends[breaks.next :] if breaks.pending() else [], out)
            breaks.next = len(breaks.ends)
        if breaks.pending():
            for end in breaks.ends[breaks.next :]:
                self._report(end, Boundary.SENTENCE, out)
            breaks.next = len(breaks.ends)
        self._trim()
        return out

    def _trim(self) -> None:
        """Drop what lies far enough behind the scan (both scans) that nothing reads it again."""
        scanner = self._scanner
        cut = min(scanner.pos, self._clause_pos) - _CONTEXT
        if cut > _TRIM:
            scanner.trim(cut)
            self._base += cut
            self._clause_pos -= cut
            if self._clause_next >= 0:
                self._clause_next -= cut

    def _clause_marks(self, buf: str, limit: int, ends: list[int], out: list[tuple[int, Boundary]]) -> None:
        """Report clause marks before ``limit`` merged with the sentence ``ends``, in order."""
        code = self._scanner.code
        k = 0
        pos = limit
        for m in _CLAUSE.finditer(buf, self._clause_pos):  # to the end: the lookahead reads past limit
            at = m.end()
            if at > limit:
                pos = m.start()  # decided later, with the code around it known
                break
            while k < len(ends) and ends[k] <= at:
                self._report(ends[k], Boundary.SENTENCE, out)
                k += 1
            if not code.inside(at):
                self._report(at, Boundary.CLAUSE, out)
        for end in ends[k:]:
            self._report(end, Boundary.SENTENCE, out)
        self._clause_pos = pos
        found = _CLAUSE_CHAR.search(buf, pos)
        self._clause_next = -1 if found is None else found.start()

    def _report(self, end: int, kind: Boundary, out: list[tuple[int, Boundary]]) -> None:
        at = self._base + end
        if at > self._last or (at == self._last and kind > self._last_kind):
            # Again, stronger: a sentence ends where a clause mark was found (a colon at a
            # line's end, the line after it a list). The strongest kind at an offset counts.
            self._last = at
            self._last_kind = kind
            out.append((at, kind))


class Breakpoints:
    """The sentence and clause ends a pacer pauses at, ahead of what it has sent.

    ``finder``: the ``BreakFinder`` that reads the pacer's input, or ``None`` when only
    boundaries marked by a stage before count. Offsets count characters of the pacer's
    input. A boundary found after visible text beyond it went out is dropped: a pause
    there would fall inside the next sentence.
    """

    def __init__(self, finder: BreakFinder | None, mode: str = "detect", lang: str = "auto") -> None:
        self.finder = finder
        self.mode = mode  # the pacer's options, kept here
        self.lang = lang
        self.offsets: list[int] = []
        self.kinds: list[Boundary] = []
        self.head = 0  # the next boundary not reached
        self.last = 0  # the offset of the last pause: a pause's length depends on the text since

    def add(self, text: str, queue: UnitQueue) -> None:
        """The pacer takes ``text``; ``queue`` says how far it has sent its input."""
        if self.finder is not None:
            found = self.finder.add(text)
            if found:
                self._keep(found, queue.sent_to())

    def finish(self, queue: UnitQueue) -> None:
        if self.finder is not None:
            self._keep(self.finder.finish(), queue.sent_to())

    def skip(self) -> None:
        """Everything goes out at once: no pauses."""
        self.head = len(self.offsets)

    def _keep(self, found: list[tuple[int, Boundary]], sent_to: int) -> None:
        if not found:
            return
        finder = self.finder
        assert finder is not None
        offsets, kinds = self.offsets, self.kinds
        k = self.head
        if k == len(offsets) or (k > 64 and 2 * k > len(offsets)):
            del offsets[:k]
            del kinds[:k]
            self.head = 0
        for at, kind in found:
            if at < sent_to and not finder.text(at, sent_to).isspace():
                continue
            offsets.append(at)
            kinds.append(kind)

    def stop(self, text: str, start: int, first: int) -> int:
        """Where sending must stop in ``text`` (an entry at offset ``start``), from index
        ``first`` on, for the next boundary's pause: at the first visible character after
        the boundary (the space after it goes before the pause, with the text it ends);
        ``len(text)`` when no boundary falls in it."""
        size = len(text)
        k = self.head
        if k == len(self.offsets):
            return size
        i = self.offsets[k] - start
        if i >= size:
            return size
        if i < first:
            i = first
        while i < size and text[i].isspace():
            i += 1
        return i

    def reached(self, start: int, first: str) -> Boundary:
        """The strongest boundary passed before the unit at offset ``start``, whose first
        character is ``first``, if the pause goes before it: the first visible unit after
        the boundary (``NONE``: not this one)."""
        offsets = self.offsets
        k = self.head
        if offsets[k] > start or first.isspace():
            return Boundary.NONE
        kind = Boundary.NONE
        while k < len(offsets) and offsets[k] <= start:
            if self.kinds[k] > kind:
                kind = self.kinds[k]
            k += 1
        self.head = k
        return kind

    def fresh(self, text: str, start: int) -> bool:
        """Whether ``text`` (at offset ``start``), which a stage before marked as ending a
        sentence or clause, has visible text after the last pause: if not, that pause was
        this boundary's, found in the text, and there is none to add."""
        last = self.last - start
        return last <= 0 or (last < len(text) and not text[last:].isspace())

    def since(self, end: int) -> int:
        """Characters from the last pause to a pause at ``end``, which becomes the last."""
        chars = end - self.last
        self.last = end
        return chars


def _has_clause_char(text: str) -> bool:
    """Whether ``text`` has a character that may mark a clause end."""
    if _COMPILED and text.isascii():  # a native loop beats a regex call on a token's few characters
        for ch in text:
            code = ord(ch)
            if code == 44 or code == 58 or code == 59:  # , : ;
                return True
        return False
    return _CLAUSE_CHAR.search(text) is not None
