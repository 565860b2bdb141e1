"""Pacer on the virtual clock: lag bound, pauses, causality, losslessness, units, end and cancel."""

from __future__ import annotations

import bisect
import itertools
import re
import statistics

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

import pacer as pacer_module
from pacer import (
    Boundary,
    Chunk,
    Pacer,
    SentenceSplitter,
    VirtualClock,
    _units,
    run,
    simulate,
    traces,
)
from pacer.run import SyncRun
from pacer.simulate import Timeline
from pacer.testing.strategies import hard_text

PROSE = (
    "Streaming output needs a calm rhythm. A model sends many words at once, then stops; "
    "a reader cannot follow that. Pacing spreads the words out, pauses briefly where a "
    "sentence ends, and catches up when it falls behind. "
    "流式输出需要稳定的节奏。模型一次吐出很多字，然后停顿。"
)
WORDS = re.findall(r"\S+\s*", PROSE * 40)  # about 1,600 tokens of mixed text
TOKENS_10K = [w for w in re.findall(r"\S+\s*|\s+", PROSE * 260)][:10_000]

TRACES = {
    "steady": traces.steady(WORDS, 30),
    "bursty": traces.bursty(WORDS, per_second=40, seed=3),
    "fast-dump": traces.dump(WORDS),
    "stall": traces.stalled(WORDS, 25, after=300, pause=4.0),
    "10k": traces.bursty(TOKENS_10K, per_second=60, seed=5),
}

PACERS = {
    "word": lambda: Pacer(),
    "grapheme": lambda: Pacer(cps=30, unit="grapheme"),
    "fixed-rate": lambda: Pacer(wpm=200, adaptive=False),
    "sentence-aware": lambda: SentenceSplitter(max_hold=0.3) | Pacer(),
    "sentence-unit": lambda: Pacer(unit="sentence"),
}


def _check(trace: list[tuple[float, str]], timeline: Timeline, max_lag: float) -> None:
    assert timeline.text == "".join(t for _, t in trace)  # lossless
    totals, times, total = [], [], 0
    for t, text in trace:
        total += len(text.encode())
        totals.append(total)
        times.append(t)
    for chunk in timeline.emissions:
        assert chunk.emitted is not None and chunk.offset is not None
        end = chunk.offset + len(chunk.text.encode())
        # Never before the input arrived: the item that completed this text came first.
        assert times[bisect.bisect_left(totals, end)] <= chunk.emitted + 1e-9
        if chunk.arrival >= 1.0:  # after the first second
            assert chunk.emitted - chunk.arrival <= max_lag + 1e-9, chunk


@pytest.mark.parametrize("trace_name", list(TRACES))
@pytest.mark.parametrize("pacer_name", ["word", "grapheme", "fixed-rate", "sentence-unit"])
def test_lag_bound_and_causality_on_every_trace(trace_name: str, pacer_name: str) -> None:
    trace = TRACES[trace_name]
    timeline = simulate(trace, PACERS[pacer_name]())
    # Sentence units too (was exempt: a sentence waited for its end however long that took).
    _check(trace, timeline, 0.5)


def test_sentence_units_keep_the_lag_bound_for_text_without_a_sentence_end() -> None:
    trace = [(0.0, "no sentence end here, "), (0.05, "and none "), (10.0, "for a while. Then one.")]
    timeline = simulate(trace, Pacer(unit="sentence", max_lag=0.5))
    assert timeline.text == "".join(t for _, t in trace)
    first = timeline.emissions[0]
    assert first.text.startswith("no sentence end here")
    assert first.boundary == Boundary.FORCED
    assert first.emitted is not None and first.emitted <= 0.5  # was: nothing until t=10
    _check(trace, timeline, 0.5)


@pytest.mark.parametrize("trace_name", list(TRACES))
def test_sentence_aware_pipeline_lag_is_bounded_by_hold_plus_max_lag(trace_name: str) -> None:
    trace = TRACES[trace_name]
    timeline = simulate(trace, PACERS["sentence-aware"]())
    # The splitter holds at most until the sentence ends or max_hold of silence; within a
    # sentence that keeps arriving, the wait is the sentence's own duration.
    assert timeline.text == "".join(t for _, t in trace)
    lags = timeline.lags()
    assert max(lags) < 10


def _emitted_at(timeline: Timeline) -> list[float]:
    """When each character of the output went out."""
    return [c.emitted for c in timeline.emissions for _ in c.text if c.emitted is not None]


@pytest.mark.parametrize(("unit", "before_four"), [("word", "three. "), ("grapheme", " ")])
def test_pauses_at_sentence_ends(unit: str, before_four: str) -> None:
    text = "One two three. Four five six. Seven eight nine."
    trace = traces.dump(re.findall(r"\S+\s*", text))

    def gaps(pause: float) -> dict[str, float]:
        pacer = Pacer(cps=20, unit=unit, sentence_pause=pause, max_lag=5.0, adaptive=False)  # type: ignore[arg-type]
        at = _emitted_at(simulate(trace, SentenceSplitter() | pacer))
        four, five = text.index("Four"), text.index("five")
        return {"sentence": at[four] - at[four - 1], "word": at[five] - at[five - 1]}

    with_pause, without = gaps(0.2), gaps(0.0)
    assert with_pause["sentence"] == pytest.approx(without["sentence"] + 0.2)
    assert with_pause["word"] == pytest.approx(without["word"])
    # Without a pause the unit before "Four" has its time at the rate, no more.
    assert without["sentence"] == pytest.approx(len(before_four) / 20)


def test_pauses_are_borrowed_back_under_the_lag_bound() -> None:
    trace = traces.dump(re.findall(r"\S+\s*", "Short. " * 200))
    timeline = simulate(trace, SentenceSplitter() | Pacer(cps=10, sentence_pause=1.0, max_lag=0.5))
    assert max(timeline.lags()) <= 0.5 + 1e-9  # a pause never pushes text past the bound
    assert timeline.text == "Short. " * 200


def test_first_output_at_once_and_no_stall_on_a_slow_source() -> None:
    trace = traces.steady(["a ", "slow ", "source ", "here "], 0.5)  # one word every 2 s
    timeline = simulate(trace, Pacer(cps=40, unit="word"))
    for (t, _), chunk in zip(trace, timeline.emissions, strict=True):
        assert chunk.emitted == pytest.approx(t)  # each word as soon as it arrives


def test_graphemes_of_a_slow_source_go_out_at_the_natural_rate_the_last_after_a_short_wait() -> None:
    trace = traces.steady(["a ", "slow ", "source ", "here "], 0.5)  # one word every 2 s
    at = _emitted_at(simulate(trace, Pacer(cps=40)))
    start = 0
    for t, word in trace:
        # The first character as it arrives, the rest at 40 a second; the last one waits
        # 0.1 s for text that could extend it (not max_lag: a space takes no combining
        # mark but an unlikely one).
        expected = [t + k / 40 for k in range(len(word))]
        expected[-1] = max(expected[-1], t + 0.1)
        assert at[start : start + len(word)] == pytest.approx(expected)
        start += len(word)


def test_a_held_emoji_waits_for_the_rest_of_its_sequence() -> None:
    family = "👩\u200d👩\u200d👧"
    # The sequence is cut after its first emoji, and the rest comes 0.3 s later: within
    # max_lag, so the emoji is not shown alone (a letter would have gone after 0.1 s).
    timeline = simulate([(0.0, "Hi " + family[:2]), (0.3, family[2:] + " ok")], Pacer(cps=40))
    shown = next(c for c in timeline.emissions if c.text.startswith(family[0]))
    assert shown.text.startswith(family)
    assert shown.emitted == pytest.approx(0.3)


@pytest.mark.parametrize(("unit", "size"), [("word", 5), ("grapheme", 1)])
def test_steady_rate_when_the_source_dumps(unit: str, size: int) -> None:
    trace = traces.dump(["abcd "] * 10)
    timeline = simulate(trace, Pacer(cps=50, unit=unit, adaptive=False, max_lag=10.0))  # type: ignore[arg-type]
    assert [c.text for c in timeline.emissions] == re.findall("." * size, "abcd " * 10)
    gaps = [b.emitted - a.emitted for a, b in zip(timeline.emissions, timeline.emissions[1:], strict=False)]
    assert gaps == pytest.approx([size / 50] * (50 // size - 1))


def test_adaptive_rate_follows_a_fast_source_smoothly() -> None:
    trace = traces.steady(["word "] * 600, 100)  # 500 characters/s, far above cps=20
    timeline = simulate(trace, Pacer(cps=20, max_lag=0.5))
    late = [c.emitted - c.arrival for c in timeline.emissions if c.arrival > 1.0]
    assert max(late) <= 0.5 + 1e-9
    bins = timeline.chars_per_window(0.1, start=1.0)[:-1]  # steady state, last partial window dropped
    assert statistics.pstdev(bins) / statistics.mean(bins) < 0.15


def test_grapheme_units_never_split_clusters() -> None:
    text = "👩\u200d👩\u200d👧 e\u0301 🇫🇷 中文"
    trace = [(i * 0.01, ch) for i, ch in enumerate(text)]  # one code point at a time
    timeline = simulate(trace, Pacer(cps=5, unit="grapheme", max_lag=2.0))
    assert timeline.text == text
    assert [c.text for c in timeline.emissions] == [
        "👩\u200d👩\u200d👧",
        " ",
        "e\u0301",
        " ",
        "🇫🇷",
        " ",
        "中",
        "文",
    ]


@settings(max_examples=150)
@given(hard_text, st.lists(st.floats(0, 0.3), max_size=30), st.integers(1, 4))
def test_grapheme_chunks_split_a_cluster_only_when_its_rest_came_after_its_start_was_shown(
    text: str, gaps: list[float], size: int
) -> None:
    # Graphemes due together go out as one chunk; a chunk ends inside a cluster only
    # if part of the cluster had not arrived when its start went out (a held last
    # grapheme waits for more text up to max_lag, or 0.1 s where only a rare combining
    # mark could extend it), never because the pacer cut a cluster it had whole.
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    t, trace, arrived = 0.0, [], []
    for i, piece in enumerate(pieces):
        t += gaps[i] if i < len(gaps) else 0.02
        trace.append((t, piece))
        arrived += [t] * len(piece)
    timeline = simulate(trace, Pacer(cps=30, max_lag=0.4))
    assert timeline.text == text
    shown = _emitted_at(timeline)
    clusters = [m.span() for m in regex.finditer(r"\X", text)]
    ends = set(itertools.accumulate(len(c.text) for c in timeline.emissions))
    for start, stop in clusters:
        if any(start < end < stop for end in ends):
            assert max(arrived[start:stop]) > shown[start], (text[start:stop], trace)


def test_graphemes_due_together_go_out_as_one_chunk_ending_at_a_boundary() -> None:
    text = "Hello world. " * 50
    pacer = Pacer(cps=10, adaptive=False, max_lag=10.0, on_end="flush")
    timeline = simulate([(0.0, text)], pacer)
    # The first grapheme at once; at the end of input all the rest, in one chunk.
    assert [c.text for c in timeline.emissions] == ["H", text[1:]]
    assert timeline.emissions[-1].boundary == Boundary.SENTENCE  # the end of the stream
    pacer = Pacer(cps=1000)
    out = pacer.push(Chunk("One two. ", 0.0, Boundary.SENTENCE), 0.0)
    while pacer.deadline is not None:
        out += pacer.poll(pacer.deadline)
    assert "".join(c.text for c in out) == "One two. "
    assert [c.boundary for c in out] == [Boundary.NONE] * (len(out) - 1) + [Boundary.SENTENCE]
    assert 1 < len(out) < len("One two. ")  # several graphemes to a chunk, not all at once


def test_word_units_one_cjk_character_each() -> None:
    timeline = simulate([(0.0, "你好，世界。Hello world")], Pacer(cps=100, unit="word", max_lag=5))
    assert [c.text for c in timeline.emissions] == ["你", "好，", "世", "界。", "Hello ", "world"]


def test_incomplete_word_waits_for_its_end_but_not_past_max_lag() -> None:
    trace = [(0.0, "Hel"), (0.1, "lo wor"), (3.0, "ld")]
    timeline = simulate(trace, Pacer(cps=100, unit="word", max_lag=0.5))
    assert [(c.text, c.emitted) for c in timeline.emissions] == [
        ("Hello ", pytest.approx(0.1)),
        ("wor", pytest.approx(0.6)),
        ("ld", pytest.approx(3.0)),
    ]


@pytest.mark.parametrize(("unit", "most"), [("word", 0.2), ("grapheme", 0.25)])
def test_adaptive_pace_follows_a_steady_source_from_its_first_second(unit: str, most: float) -> None:
    # 30 words a second, far above cps=40: the arrival rate is read over the time since
    # the first arrival, so the pace keeps up at once instead of ramping up over the
    # estimate's one-second window (which left 0.36 s of lag behind here, with words).
    # A word's last character goes out with the word; as a grapheme it has its own turn,
    # a word's length at the rate later (most: the long Chinese token before "Streaming").
    timeline = simulate(traces.steady(WORDS[:300], 30), Pacer(cps=40, unit=unit))  # type: ignore[arg-type]
    assert max(timeline.lags()) < most


@pytest.mark.parametrize("unit", ["word", "grapheme"])
def test_adaptive_pace_follows_a_steady_source_again_after_a_pause(unit: str) -> None:
    # 30 words a second, a 4 s silence (a tool call), then the same pace: the estimate,
    # decayed to almost nothing during the silence, starts again from the next arrival,
    # so the text after the pause is not left behind (it was 0.38 s behind here when the
    # decayed estimate had to climb back over a second).
    trace = traces.stalled(WORDS[:400], 30, after=200, pause=4.0)
    resumed = trace[200][0]
    timeline = simulate(trace, Pacer(cps=40, unit=unit))  # type: ignore[arg-type]
    assert max(c.emitted - c.arrival for c in timeline.emissions if c.arrival >= resumed) < 0.2


def test_on_end_flush_sends_everything_at_once() -> None:
    trace = traces.dump(["word "] * 50)
    drained = simulate(trace, Pacer(cps=10, max_lag=0.5))
    flushed = simulate(trace, Pacer(cps=10, max_lag=0.5, on_end="flush"))
    assert drained.emissions[-1].emitted == pytest.approx(0.5)
    assert flushed.emissions[-1].emitted == pytest.approx(0.0)
    assert flushed.text == drained.text


@pytest.mark.parametrize(("unit", "first"), [("word", "one "), ("grapheme", "o")])
def test_cancel_returns_text_not_yet_shown(unit: str, first: str) -> None:
    clock = VirtualClock()
    pacer = Pacer(cps=5, unit=unit, max_lag=30.0)  # type: ignore[arg-type]
    stream = SyncRun(pacer, iter(["one two three four "]), clock=clock)
    assert next(stream) == first
    assert stream.cancel() == "one two three four "[len(first) :]


def test_stand_alone_feed_and_flush() -> None:
    pacer = Pacer(cps=10, unit="word")
    assert pacer.feed("Hello world, ", now=0.0) == ["Hello "]
    # 5 characters 50 ms after the start: followed at about 60 characters/s, so
    # "world, " is due at about 0.1 s, not yet.
    assert pacer.feed("again", now=0.05) == []
    assert pacer.feed(" ", now=0.6) == ["world, ", "again "]
    assert pacer.flush() == []


def test_in_a_real_time_run_on_a_virtual_clock() -> None:
    clock = VirtualClock()
    out = list(run(Pacer(cps=1000), ["a b c "], clock=clock))
    assert "".join(out) == "a b c "


@settings(max_examples=150)
@given(hard_text, st.lists(st.floats(0, 0.3), max_size=30), st.sampled_from(["word", "grapheme", "chunk"]))
def test_lossless_and_bounded_for_any_text_and_timing(text: str, gaps: list[float], unit: str) -> None:
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    t, trace = 0.0, []
    for i, piece in enumerate(pieces):
        t += gaps[i] if i < len(gaps) else 0.05
        trace.append((t, piece))
    timeline = simulate(trace, Pacer(cps=15, unit=unit, max_lag=0.4))  # type: ignore[arg-type]
    assert timeline.text == text
    for chunk in timeline.emissions:
        assert chunk.emitted is not None
        assert chunk.emitted >= chunk.arrival - 1e-9
        assert chunk.emitted - chunk.arrival <= 0.4 + 1e-9


@given(
    st.lists(st.tuples(st.sampled_from(["push", "poll", "wait"]), hard_text, st.floats(0, 0.4)), max_size=25),
    st.sampled_from(["word", "grapheme", "sentence", "chunk"]),
)
def test_cached_deadline_always_equals_a_fresh_computation(
    steps: list[tuple[str, str, float]], unit: str
) -> None:
    """The deadline is cached between state changes; it must never go stale."""
    pacer = Pacer(cps=20, unit=unit, max_lag=0.3)  # type: ignore[arg-type]
    now = 0.0
    for action, text, dt in steps:
        now += dt
        if action == "push" and text:
            pacer.push(Chunk(text, now), now)
        elif action == "poll" or (action == "wait" and pacer.deadline is not None):
            now = max(now, pacer.deadline or now)
            pacer.poll(now)
        assert pacer.deadline == pacer._compute_deadline()
    pacer.finish(now)
    while pacer.deadline is not None:
        assert pacer.deadline == pacer._compute_deadline()
        now = pacer.deadline
        pacer.poll(now)
    assert pacer._compute_deadline() is None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"cps": 0}, "cps"),
        ({"cps": -3}, "cps"),
        ({"wpm": 0}, "wpm"),
        ({"cps": float("inf")}, "cps"),
        ({"cps": 10, "wpm": 100}, "cps or wpm"),
        ({"max_lag": 0}, "max_lag"),
        ({"sentence_pause": -1}, "sentence_pause"),
        ({"clause_pause": -0.1}, "clause_pause"),
        ({"unit": "letter"}, "unit"),
        ({"on_end": "never"}, "on_end"),
    ],
)
def test_bad_options_name_the_parameter(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Pacer(**kwargs)  # type: ignore[arg-type]


def test_non_text_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Pacer takes str or Chunk, got int"):
        Pacer().feed(3)


def test_boundaries_survive_word_splitting() -> None:
    pacer = Pacer(cps=1000, unit="word")
    out = pacer.push(Chunk("One two. ", 0.0, Boundary.SENTENCE), 0.0)
    out += pacer.finish(0.0)
    while pacer.deadline is not None:
        out += pacer.poll(pacer.deadline)
    assert [(c.text, c.boundary) for c in out] == [("One ", Boundary.NONE), ("two. ", Boundary.SENTENCE)]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"cps": "fast"}, "cps"),
        ({"wpm": True}, "wpm"),
        ({"max_lag": "1"}, "max_lag"),
        ({"sentence_pause": None}, "sentence_pause"),
        ({"clause_pause": [0.1]}, "clause_pause"),
    ],
)
def test_options_of_the_wrong_type_are_type_errors_naming_the_parameter(
    kwargs: dict[str, object], name: str
) -> None:
    with pytest.raises(TypeError, match=f"Pacer: {name} must be a number, got "):
        Pacer(**kwargs)  # type: ignore[arg-type]


def test_numeric_options_take_any_real_number_type() -> None:
    np = pytest.importorskip("numpy")
    from fractions import Fraction

    p = Pacer(np.float32(20), max_lag=Fraction(1, 4), sentence_pause=np.int64(0), clause_pause=0)
    assert (p.rate, p.max_lag, p.sentence_pause, p.clause_pause) == (20.0, 0.25, 0.0, 0.0)
    assert all(type(v) is float for v in (p.rate, p.max_lag, p.sentence_pause, p.clause_pause))
    assert Pacer(wpm=np.float64(600)).rate == 50.0
    with pytest.raises(ValueError, match="cps must be a number, got NaN"):
        Pacer(cps=float("nan"))


@pytest.mark.parametrize(("kwargs", "name"), [({"unit": 3}, "unit"), ({"on_end": None}, "on_end")])
def test_a_choice_that_is_not_a_str_is_a_type_error(kwargs: dict[str, object], name: str) -> None:
    # A compiled build checks these ``Literal`` options itself, in its own words.
    with pytest.raises(TypeError, match=None if pacer_module.compiled else f"Pacer: {name} must be "):
        Pacer(**kwargs)  # type: ignore[arg-type]


@given(st.text(st.characters(max_codepoint=127), max_size=40))
def test_ascii_word_loop_finds_what_the_regex_finds(text: str) -> None:
    # The compiled build splits ASCII text into words with a loop, the pure one with _ASCII_WORD.
    assert _units._ascii_words(text) == _units._ASCII_WORD.findall(text)
