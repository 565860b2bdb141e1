"""Text helpers every stage shares: UTF-8 sizes and grapheme cluster boundaries."""

from __future__ import annotations

import regex

__all__ = ["GRAPHEME", "graphemes", "utf8_len"]

#: One extended grapheme cluster (UAX #29), as ``regex`` defines ``\X``.
GRAPHEME = regex.compile(r"\X")


def utf8_len(text: str) -> int:
    """Length of ``text`` in UTF-8 bytes."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def graphemes(text: str) -> list[str]:
    """The grapheme clusters of ``text``, in order."""
    found: list[str] = GRAPHEME.findall(text)
    return found
