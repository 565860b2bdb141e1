"""Patterns: a regular-expression check that decides streamed text as it decides the whole."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacer import Guard, simulate
from pacer.patterns import Patterns, patterns

KEY = r"sk-[a-z0-9]{6,}"
CANARY = r"\bZEBRA-77\b"
POLICIES = [
    Patterns(redact=[KEY]),
    Patterns(block=[CANARY], redact=[KEY], replacement="#"),
    Patterns(redact=[r"\bkey\b", r"(?<=a)bb+"], replacement="[a longer marker]"),
    Patterns(block=[r"xy+z"], redact=[r"ab|abc"]),
]
WORDS = ["sk-", "abc", "12", "ZEBRA-77", "ZEB", "RA", "-7", "x", "yy", "z", "key", "s", " ", "a", "bb", "."]
texts = st.lists(st.sampled_from(WORDS), max_size=14).map("".join)


def _streamed(policy: Patterns, pieces: list[str]) -> bool | str:
    """The policy's verdicts on ``pieces`` fed one by one, holding what could continue."""
    released, out, buf = "", "", ""
    for piece in [*pieces, None]:
        buf += piece or ""
        cut = len(buf) - (policy.could_continue(buf, released) if piece is not None else 0)
        if cut <= 0:
            continue
        verdict = policy(buf[:cut], released)
        if verdict is False:
            return False
        out += buf[:cut] if verdict is True else verdict
        released, buf = released + buf[:cut], buf[cut:]
    return out


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(range(len(POLICIES))), texts, st.data())
def test_any_split_with_holding_decides_as_the_whole_text(which: int, text: str, data: st.DataObject) -> None:
    policy = POLICIES[which]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    whole = policy(text)
    expected = whole if whole is False else (text if whole is True else whole)
    assert _streamed(policy, pieces) == expected


def test_a_key_split_across_a_cut_is_held_until_it_is_whole() -> None:
    policy = patterns(redact=[KEY])
    assert policy.could_continue("Your key is sk-ab") == len("sk-ab")
    assert policy.could_continue("Your key is sk-abcdefg") == len("sk-abcdefg")  # it may grow
    assert policy.could_continue("Your key is sk-abcdefg.") == 0
    assert policy.could_continue("Nothing here.") == 0
    assert policy("Your key is sk-abcdefgh.") == "Your key is [redacted]."
    assert policy("Nothing here.") is True


def test_the_context_before_a_unit_decides_look_behinds_and_word_edges() -> None:
    policy = patterns(block=[CANARY])
    assert policy("ZEBRA-77 now", "x") is True  # "xZEBRA-77" is no whole word
    assert policy("ZEBRA-77 now", "say ") is False


def test_a_guard_with_patterns_blocks_and_redacts() -> None:
    policy = patterns(block=[CANARY], redact=[KEY])
    trace = [(0.0, "Sure. Your key is sk-"), (0.1, "abcdefgh. The code is ZEB"), (0.2, "RA-77. Bye.")]
    assert simulate(trace, Guard(policy)).text == "Sure. Your key is [redacted]. "


def test_bad_patterns_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="patterns: redact holds a pattern that matches the empty string"):
        patterns(redact=["a*"])
    with pytest.raises(ValueError, match="patterns: block holds a pattern that does not compile"):
        patterns(block=["("])
    with pytest.raises(TypeError, match="patterns: replacement must be a str, got int"):
        patterns(redact=["a"], replacement=1)  # type: ignore[arg-type]
