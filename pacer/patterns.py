"""A check that blocks and redacts by regular expressions, correct on streamed text.

``Patterns(block=[...], redact=[...])`` is a ``Guard`` check: called with a unit (and
the text before it, for look-behinds and ``\\b``), it answers ``False`` when a
``block`` pattern matches, else the unit with each ``redact`` match replaced, else
``True``. Patterns are those of the ``regex`` package (a superset of ``re``); each
list is searched as one alternation, leftmost match first, as ``re.sub`` would.

Streaming: text cut at an arbitrary point (a hold timer, a length cap) must not be
checked in two pieces that each miss a match spanning the cut. ``could_continue(text, context)``
says how many trailing characters of ``text`` could still be, or extend, a match once
more text arrives (``regex``'s ``partial=True`` search): a caller releases the text
before them and holds those. Checking each released piece with the text before it as
context then decides exactly as checking the whole text at once (the property
``tests/test_patterns.py`` proves, for any split).

Cost: a check is one scan per pattern list, O(n) for the usual patterns; ``could_continue``
searches from each candidate start, O(n * k) for ``k`` candidate starts, on the
held unit only.
"""

from __future__ import annotations

from collections.abc import Iterable

import regex

__all__ = ["Patterns", "patterns"]


def _compile(sources: Iterable[str | regex.Pattern[str]], name: str, flags: int) -> regex.Pattern[str] | None:
    parts = []
    for source in sources:
        pattern = source.pattern if isinstance(source, regex.Pattern) else source
        if not isinstance(pattern, str):
            raise TypeError(f"patterns: {name} must hold str patterns, got {type(pattern).__name__}")
        parts.append(f"(?:{pattern})")
    if not parts:
        return None
    try:
        compiled = regex.compile("|".join(parts), flags)
    except regex.error as exc:
        raise ValueError(f"patterns: {name} holds a pattern that does not compile: {exc}") from None
    if compiled.match("") is not None:
        raise ValueError(f"patterns: {name} holds a pattern that matches the empty string")
    return compiled


class Patterns:
    """A ``Guard`` check by regular expressions (see the module docstring).

    ``block``: patterns whose match stops the answer. ``redact``: patterns whose
    matches are replaced by ``replacement`` (taken literally). ``flags``: ``regex``
    flags for both (``regex.IGNORECASE``, ...).
    """

    __slots__ = ("_block", "_redact", "replacement")

    def __init__(
        self,
        block: Iterable[str | regex.Pattern[str]] = (),
        redact: Iterable[str | regex.Pattern[str]] = (),
        *,
        replacement: str = "[redacted]",
        flags: int = 0,
    ) -> None:
        if not isinstance(replacement, str):
            raise TypeError(f"patterns: replacement must be a str, got {type(replacement).__name__}")
        self._block = _compile(block, "block", flags)
        self._redact = _compile(redact, "redact", flags)
        self.replacement = replacement

    def __call__(self, text: str, context: str = "") -> bool | str:
        """The verdict on ``text`` (``context``: the text before it): ``False`` to block,
        the redacted text, or ``True`` when nothing matched."""
        whole, start = context + text, len(context)
        if self._block is not None and self._block.search(whole, start) is not None:
            return False
        if self._redact is None:
            return True
        out, at = [], start
        for match in self._redact.finditer(whole, start):
            out += [whole[at : match.start()], self.replacement]
            at = match.end()
        if at == start:
            return True
        out.append(whole[at:])
        return "".join(out)

    def could_continue(self, text: str, context: str = "") -> int:
        """How many trailing characters of ``text`` must stay held (``context``: the text
        before it, already released, for look-behinds): the longest tail that is, or
        could grow into, a match, or that a match ending there could read past. 0 when
        all of ``text`` may go."""
        whole, start = context + text, len(context)
        # Until the text left to release has no match touching its end: a match there
        # may read past it (``\\b``, a longer match) once the held text follows.
        held, more = 0, 1
        while more and held < len(text):
            rest = whole[: len(whole) - held]
            patterns = (p for p in (self._block, self._redact) if p is not None)
            more = max((_tail(p, rest, start) for p in patterns), default=0)
            held += more
        return min(held, len(text))

    def __repr__(self) -> str:
        block = self._block.pattern if self._block is not None else None
        redact = self._redact.pattern if self._redact is not None else None
        return f"Patterns(block={block!r}, redact={redact!r})"


def _tail(pattern: regex.Pattern[str], text: str, pos: int) -> int:
    """The length of the longest tail of ``text`` (from ``pos`` on) where a match of
    ``pattern`` starts and reaches the end (complete, and so perhaps longer with more
    text, or partial)."""
    end = len(text)
    while pos <= end:
        match = pattern.search(text, pos, partial=True)
        if match is None:
            return 0
        if match.end() == end:
            return end - int(match.start())
        pos = match.start() + 1
    return 0


def patterns(
    block: Iterable[str | regex.Pattern[str]] = (),
    redact: Iterable[str | regex.Pattern[str]] = (),
    *,
    replacement: str = "[redacted]",
    flags: int = 0,
) -> Patterns:
    """A ``Guard`` check that blocks on ``block`` patterns and masks ``redact`` matches:
    ``Guard(pacer.patterns.patterns(block=[CANARY], redact=[r"sk-[A-Za-z0-9]{20,}"]))``."""
    return Patterns(block, redact, replacement=replacement, flags=flags)
