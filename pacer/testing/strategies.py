"""Hypothesis strategies shared by the tests: hard text and arbitrary splits of it."""

from __future__ import annotations

import bisect
import itertools
from typing import TypeVar

from hypothesis import strategies as st

from pacer import Chunk, Stage

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


def check_arrivals(stage: Stage, pieces: list[str]) -> None:
    """Push piece i into ``stage`` at time i, then finish: everything comes out, and each
    chunk carries the arrival of the piece holding its first character."""
    out: list[Chunk] = []
    for index, piece in enumerate(pieces):
        out += stage.push(Chunk(piece, float(index)), float(index))
    out += stage.finish(float(len(pieces)))
    assert "".join(c.text for c in out) == "".join(pieces)
    starts = list(itertools.accumulate(map(len, pieces), initial=0))
    offset = 0
    for chunk in out:
        assert chunk.arrival == float(bisect.bisect_right(starts, offset) - 1), (chunk, offset)
        offset += len(chunk.text)
