"""The benchmark's re-implementations of the reference smoothers behave as those projects document."""

from __future__ import annotations

import pytest

from pacer import simulate, traces
from pacer.testing.references import AdaptiveChars, FixedDelayWords


def test_fixed_delay_waits_after_every_word_and_chunks_queue_behind_it() -> None:
    # smoothStream: a 10 ms wait follows every word sent, the last of a chunk too, and the
    # next chunk is taken only after it; a word never goes out before it arrived.
    trace = [(0.0, "one two three "), (0.0, "four "), (0.5, "five ")]
    timeline = simulate(trace, FixedDelayWords(0.010))
    assert [(c.text, c.emitted) for c in timeline.emissions] == [
        ("one ", pytest.approx(0.0)),
        ("two ", pytest.approx(0.01)),
        ("three ", pytest.approx(0.02)),
        ("four ", pytest.approx(0.03)),
        ("five ", pytest.approx(0.5)),
    ]


def test_fixed_delay_falls_behind_without_bound_on_a_fast_source() -> None:
    words = ["word "] * 400
    timeline = simulate(traces.steady(words, 200), FixedDelayWords(0.010))  # 200 words/s in, 100 out
    lags = [c.emitted - c.arrival for c in timeline.emissions]
    assert lags[-1] == pytest.approx(399 * 0.010 - 399 / 200)
    assert timeline.text == "".join(words)


def test_fixed_delay_holds_a_partial_word_until_the_end() -> None:
    timeline = simulate([(0.0, "half"), (0.2, "way")], FixedDelayWords(0.010))
    assert [(c.text, c.emitted) for c in timeline.emissions] == [("halfway", pytest.approx(0.2))]


def test_adaptive_chars_sends_characters_at_the_floor_rate_and_within_max_hold() -> None:
    timeline = simulate([(0.0, "abcdef")], AdaptiveChars(floor=300.0, max_hold=0.4))
    assert [c.text for c in timeline.emissions] == list("abcdef")
    times = [c.emitted for c in timeline.emissions]
    # No arrivals to follow yet: 1.1 x 6 characters/s is below the 300/s floor.
    assert times == pytest.approx([k / 300 for k in range(6)])
    # Catch-up keeps every character within max_hold of its arrival.
    dumped = simulate([(0.0, "x" * 1000)], AdaptiveChars(floor=300.0, max_hold=0.4))
    assert max(c.emitted for c in dumped.emissions) <= 0.4 + 1e-9
