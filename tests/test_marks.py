"""BreakFinder: the sentence and clause ends a pacer pauses at, found in a live text."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacer import Boundary, split_sentences
from pacer._marks import BreakFinder
from pacer._punkt import english_punkt
from pacer.testing.cases import CASES, HELDOUT
from pacer.testing.strategies import hard_text

TEXT = "".join("".join(units) + "\n" for _, _, units in CASES + HELDOUT)


def _found(pieces: list[str]) -> dict[int, Boundary]:
    """Each boundary offset with its strongest kind (a clause mark may become a sentence end)."""
    finder = BreakFinder(english_punkt(), True)
    found: dict[int, Boundary] = {}
    offsets = []
    for piece in pieces:
        for at, kind in finder.add(piece):
            offsets.append(at)
            found[at] = max(found.get(at, Boundary.NONE), kind)
    for at, kind in finder.finish():
        offsets.append(at)
        found[at] = max(found.get(at, Boundary.NONE), kind)
    assert offsets == sorted(offsets)  # reported in order
    return found


def _split(text: str, rng: random.Random) -> list[str]:
    pieces, i = [], 0
    while i < len(text):
        k = rng.randint(1, 7)
        pieces.append(text[i : i + k])
        i += k
    return pieces


@pytest.mark.parametrize("seed", range(4))
def test_the_boundaries_do_not_depend_on_how_the_text_is_cut(seed: int) -> None:
    assert _found(_split(TEXT, random.Random(seed))) == _found([TEXT])


@settings(max_examples=150)
@given(hard_text, st.randoms(use_true_random=False))
def test_any_text_any_cut_the_same_boundaries(text: str, rng: random.Random) -> None:
    assert _found(_split(text, rng)) == _found([text])


def test_sentence_ends_are_the_splitters() -> None:
    # The pacer pauses where SentenceSplitter cuts: before the first visible character of
    # each unit but the first (two ends with only space between them, a heading and the
    # blank line after it, are one pause). The end of the whole text is reported too,
    # but there is no unit after it to pause before.
    def next_visible(at: int) -> int:
        while at < len(TEXT) and TEXT[at].isspace():
            at += 1
        return at

    found = _found([TEXT])
    starts, at = set(), 0
    for unit in split_sentences(TEXT)[:-1]:
        at += len(unit)
        starts.add(at)
    ends = {next_visible(at) for at, kind in found.items() if kind == Boundary.SENTENCE}
    assert len(TEXT) in ends
    assert ends - {len(TEXT)} == starts


@pytest.mark.parametrize(
    ("text", "clauses"),
    [
        ("First, second; third: fourth", ["First,", "second;", "third:"]),
        ("1,000 at 10:30 via http://x.y, done", ["http://x.y,"]),
        ("Use `a, b` and\n```\nx, y\n```\nthen, go", ["then,"]),
        ("你好，世界；再见：走了、来了", ["你好，", "世界；", "再见：", "走了、"]),
    ],
)
def test_clause_marks_outside_code_and_numbers(text: str, clauses: list[str]) -> None:
    found = _found([text])
    ends = [at for at, kind in found.items() if kind == Boundary.CLAUSE]
    assert [text[at - len(c) : at] for at, c in zip(ends, clauses, strict=True)] == clauses


def test_the_buffer_is_trimmed_as_the_scan_moves_on() -> None:
    finder = BreakFinder(english_punkt(), True)
    for _ in range(3000):
        finder.add("A few words, then a stop. ")
    assert len(finder._scanner.buf) < 10_000
    assert finder.end == 3000 * len("A few words, then a stop. ")


def test_a_rule_change_reaches_the_pacer() -> None:
    # The pacer pauses where the splitter cuts, for the rules of issue 39 too.
    for text in (
        "I work at the U.S.A. Mr. Smith is here.",
        "The court agreed (Lee v. Park, 9th Cir. 2001) and affirmed. Good.",
        "“太好了！”他高兴地说。然后走了。",
        "步骤：1. 下载；2. 安装。然后运行。",
    ):
        units = split_sentences(text)
        finder = BreakFinder(english_punkt(), True)
        found = [at for at, kind in [*finder.add(text), *finder.finish()] if kind is Boundary.SENTENCE]
        ends = [
            sum(len(u) for u in units[: k + 1]) - (len(units[k]) - len(units[k].rstrip()))
            for k in range(len(units))
        ]
        assert found == ends, (text, units, found)
