"""Hypothesis strategies shared by the tests: hard text and arbitrary splits of it."""

from __future__ import annotations

from typing import TypeVar

from hypothesis import strategies as st

S = TypeVar("S", str, list[int])

HARD_PIECES = [
    "👩\u200d👩\u200d👧",
    "👍🏽",
    "🇫🇷",
    "🇯🇵",
    "e\u0301",
    "a\u0308\u0323",
    "中文",
    "。",
    "日本語",
    "カタカナ",
    "ﾊﾝｶｸ",
    "\r\n",
    "\n",
    "    ",
    "\t",
    "def f(x):\n    return x",
    "\ufffd",
    "Mr.",
    "3.14",
    "https://a.io/x",
]

hard_text = st.lists(st.one_of(st.sampled_from(HARD_PIECES), st.text(max_size=8)), max_size=30).map("".join)


@st.composite
def splits(draw: st.DrawFn, text: str, min_size: int = 0) -> list[str]:
    """``text`` cut at arbitrary positions (empty pieces allowed when min_size is 0)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    pieces, prev = [], 0
    for cut in [*cuts, len(text)]:
        if cut - prev >= min_size:
            pieces.append(text[prev:cut])
            prev = cut
    if prev < len(text):
        pieces.append(text[prev:])
    return pieces


def runs(draw: st.DrawFn, seq: S, most: int) -> list[S]:
    """``seq`` cut into consecutive runs of 1 to ``most`` items, hypothesis choosing each."""
    out, k = [], 0
    while k < len(seq):
        n = draw(st.integers(1, most))
        out.append(seq[k : k + n])
        k += n
    return out


def arrival_of(pieces: list[str], offset: int) -> float:
    """The arrival of the piece holding character ``offset`` of ``"".join(pieces)``, piece i arriving at i."""
    end = 0
    for index, piece in enumerate(pieces):
        end += len(piece)
        if offset < end:
            return float(index)
    raise AssertionError(f"offset {offset} is past the text")
