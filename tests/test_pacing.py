"""Pacer on the virtual clock: lag bound, pauses, causality, losslessness, units, end and cancel."""

from __future__ import annotations

import bisect
import itertools
import re
import statistics
from pathlib import Path

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
from pacer._run import SyncRun
from pacer._simulate import Timeline
from pacer.testing.strategies import hard_text

PROSE = (
    "Streaming output needs a calm rhythm. A model sends many words at once, then stops; "
    "a reader cannot follow that. Pacing spreads the words out, pauses briefly where a "
    "sentence ends, and catches up when it falls behind. "
    "流式输出需要稳定的节奏。模型一次吐出很多字，然后停顿。"
)
ROOT = Path(__file__).resolve().parent.parent
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
def test_the_lag_bound_counts_from_the_pipelines_input_behind_a_holding_splitter(trace_name: str) -> None:
    # The splitter holds each sentence until it is proven (or max_hold of silence); the
    # pacer counts max_lag from when the text reached the pipeline, not from when the
    # splitter let it go: each character goes out by max_lag after it arrived, or at once
    # when the splitter held it longer than that (was: up to 1.6 s after its release).
    trace = TRACES[trace_name]
    arrived = [t for t, text in trace for _ in text]
    released = _emitted_at(simulate(trace, SentenceSplitter(max_hold=0.3)))
    shown = _emitted_at(simulate(trace, PACERS["sentence-aware"]()))
    assert len(shown) == len(arrived)
    late = [i for i, t in enumerate(shown) if t > max(arrived[i] + 0.5, released[i]) + 1e-9]
    assert not late


def _emitted_at(timeline: Timeline) -> list[float]:
    """When each character of the output went out."""
    return [c.emitted for c in timeline.emissions for _ in c.text if c.emitted is not None]


@pytest.mark.parametrize("marked", [False, True], ids=["found-in-the-text", "marked-by-a-splitter"])
@pytest.mark.parametrize(("unit", "plain"), [("word", 6 / 20), ("grapheme", 2 / 20)])
def test_pauses_at_sentence_ends(unit: str, plain: float, marked: bool) -> None:
    # Sentences of 25 characters at 20 a second: the pause (0.2 s) is within the share of
    # a sentence's time a pause may take (a fifth: 0.25 s), so it is taken whole.
    text = "One two three four five. Six seven eight nine ten. Eleven twelve thirteen."
    trace = traces.dump(re.findall(r"\S+\s*", text))

    def gaps(pause: float) -> dict[str, float]:
        pacer = Pacer(cps=20, unit=unit, sentence_pause=pause, clause_pause=0, max_lag=5.0, adaptive=False)  # type: ignore[arg-type]
        timeline = simulate(trace, SentenceSplitter() | pacer if marked else pacer)
        return {"sentence": _gap_before(timeline, text, "Six"), "word": _gap_before(timeline, text, "seven")}

    with_pause, without = gaps(0.2), gaps(0.0)
    assert with_pause["sentence"] == pytest.approx(without["sentence"] + 0.2)  # one pause, not two
    assert with_pause["word"] == pytest.approx(without["word"])
    # Without a pause "Six" follows the text before it at the rate, no later: the word unit
    # "five. " has its six characters' time, a grapheme "." and " " one each.
    assert without["sentence"] == pytest.approx(plain)


def _gap_before(timeline: Timeline, text: str, word: str) -> float:
    """Seconds from the last visible character before ``word`` to its first: the gap a
    reader sees there, wherever in the space between the pause falls."""
    at = _emitted_at(timeline)
    i = text.index(word)
    j = i - 1
    while text[j].isspace():
        j -= 1
    return at[i] - at[j]


def test_a_pause_takes_at_most_a_share_of_its_sentences_time() -> None:
    # "Yes. " takes 0.25 s at 20 a second: the pause after it is a fifth of that, not 0.5 s.
    # (The pause goes after the space, before "Then": 5 characters since the start.)
    text = "Yes. Then a longer sentence follows here. And one more."
    trace = traces.dump(re.findall(r"\S+\s*", text))
    pacer = Pacer(cps=20, sentence_pause=0.5, max_lag=5.0, adaptive=False)
    timeline = simulate(trace, pacer)
    assert _gap_before(timeline, text, "Then") == pytest.approx(2 / 20 + 0.2 * 5 / 20)
    # "Then a longer sentence follows here. " is 37 characters: 0.37 s of pause allowed, 0.5 asked.
    assert _gap_before(timeline, text, "And") == pytest.approx(2 / 20 + 0.2 * 37 / 20)


def test_clause_ends_pause_less_than_sentence_ends() -> None:
    text = "First of all, the pacer reads the text itself; it finds the ends. Then it pauses there."
    trace = traces.dump(re.findall(r"\S+\s*", text))
    timeline = simulate(trace, Pacer(cps=20, max_lag=10.0, adaptive=False))
    word = _gap_before(timeline, text, "all")
    clause = _gap_before(timeline, text, "the")
    sentence = _gap_before(timeline, text, "Then")
    assert word == pytest.approx(2 / 20)
    assert word < clause < sentence
    assert _gap_before(timeline, text, "it finds") > word  # after the semicolon


@pytest.mark.parametrize(
    ("text", "after"),
    [
        ("Dr. Smith paid $3.50 for the e.g. book at example.com today.", ["Smith", "50", "book", "com"]),
        ("Run `a. B, c` first.\n\n```\nx = 1. Y = 2, z\n```\nDone.", ["B", "c", "Y", "z"]),
        ("价格是3.5元，很便宜。他说：“好。”然后走了。", []),
    ],
)
def test_no_pause_inside_abbreviations_numbers_urls_or_code(text: str, after: list[str]) -> None:
    trace = traces.dump([text[i : i + 3] for i in range(0, len(text), 3)])
    timeline = simulate(trace, Pacer(cps=20, max_lag=10.0, adaptive=False, clause_pause=0.1))
    assert timeline.text == text
    for word in after:
        i = text.index(word)
        spaces = i - len(text[:i].rstrip())
        assert _gap_before(timeline, text, text[i:]) == pytest.approx((spaces + 1) / 20), word


def test_cjk_sentence_and_clause_ends_pause() -> None:
    text = "流式输出需要稳定的节奏，读者才跟得上。模型一次吐出很多字，然后停顿。"
    trace = traces.dump([text[i : i + 2] for i in range(0, len(text), 2)])
    timeline = simulate(trace, Pacer(cps=10, max_lag=10.0, adaptive=False))
    plain = _gap_before(timeline, text, "出")
    assert _gap_before(timeline, text, "读") > plain  # after the full-width comma
    assert _gap_before(timeline, text, "模") > _gap_before(timeline, text, "读")  # after the full stop


def test_the_chunk_before_a_pause_ends_on_its_boundary() -> None:
    text = "One two three four five, six seven. Eight nine ten eleven twelve."
    timeline = simulate(traces.dump(re.findall(r"\S+\s*", text)), Pacer(cps=20, max_lag=10.0, adaptive=False))
    shown, ends = "", {}
    for chunk in timeline.emissions:
        shown += chunk.text
        if chunk.boundary >= Boundary.CLAUSE:
            ends[shown.rstrip()[-1]] = chunk.boundary
    assert ends == {",": Boundary.CLAUSE, ".": Boundary.SENTENCE}


def test_marked_boundaries_only_when_asked() -> None:
    text = "One two three four five. Six seven eight nine ten."
    trace = traces.dump(re.findall(r"\S+\s*", text))
    detect = simulate(trace, Pacer(cps=20, max_lag=10.0, adaptive=False))
    marked = simulate(trace, Pacer(cps=20, max_lag=10.0, adaptive=False, boundaries="marked"))
    assert _gap_before(detect, text, "Six") > 2 / 20 + 0.1
    assert _gap_before(marked, text, "Six") == pytest.approx(2 / 20)


def test_a_boundary_decided_after_the_next_word_went_out_brings_no_pause_inside_it() -> None:
    # A slow source: "Mr." could be an abbreviation, decided only once "Smith" (a name)
    # or a sentence opener arrives; by then "Smith" is on screen. No pause lands in it.
    trace = [(0.0, "I met Mr."), (1.0, " S"), (2.0, "mith and"), (3.0, " left.")]
    timeline = simulate(trace, Pacer(cps=50))
    text = "".join(t for _, t in trace)
    assert timeline.text == text
    for chunk in timeline.emissions:
        assert chunk.emitted is not None and chunk.emitted - chunk.arrival <= 0.5


def test_no_pauses_while_the_lag_bound_sets_the_pace() -> None:
    # 2,000 characters at once must all go within max_lag: a pause would only make the
    # rest go faster still, so the drain is even.
    text = "A short one. " * 150
    timeline = simulate(traces.dump(re.findall(r"\S+\s*", text)), Pacer())
    bins = timeline.chars_per_window(0.1)[:-1]
    assert max(bins) - min(bins) <= 0.05 * max(bins)


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


def test_graphemes_of_a_slow_source_go_out_at_the_natural_rate_a_trailing_space_waits() -> None:
    trace = traces.steady(["a ", "slow ", "source ", "here "], 0.5)  # one word every 2 s
    at = _emitted_at(simulate(trace, Pacer(cps=40)))
    start = 0
    for t, word in trace:
        # The first character as it arrives, the rest at 40 a second; the last one, a
        # space, waits for the next text, up to max_lag: it is invisible, and held, it goes
        # with the text it follows once the next text says whether a sentence ended there.
        expected = [t + k / 40 for k in range(len(word))]
        if word != "here ":  # the source's end lets the last space go at its turn
            expected[-1] = t + 0.5
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
    # Pauses at sentence ends add lag of their own (borrowed back under the bound): off here.
    trace = traces.steady(WORDS[:300], 30)
    timeline = simulate(trace, Pacer(cps=40, unit=unit, sentence_pause=0, clause_pause=0))  # type: ignore[arg-type]
    assert max(timeline.lags()) < most
    with_pauses = simulate(trace, Pacer(cps=40, unit=unit))  # type: ignore[arg-type]
    assert max(with_pauses.lags()) <= 0.5 + 1e-9


@pytest.mark.parametrize("unit", ["word", "grapheme"])
def test_adaptive_pace_follows_a_steady_source_again_after_a_pause(unit: str) -> None:
    # 30 words a second, a 4 s silence (a tool call), then the same pace: the estimate,
    # decayed to almost nothing during the silence, starts again from the next arrival,
    # so the text after the pause is not left behind (it was 0.38 s behind here when the
    # decayed estimate had to climb back over a second).
    trace = traces.stalled(WORDS[:400], 30, after=200, pause=4.0)
    resumed = trace[200][0]
    # Pauses at sentence ends add lag of their own (borrowed back under the bound): off here.
    timeline = simulate(trace, Pacer(cps=40, unit=unit, sentence_pause=0, clause_pause=0))  # type: ignore[arg-type]
    assert max(c.emitted - c.arrival for c in timeline.emissions if c.arrival >= resumed) < 0.2


def test_on_end_flush_sends_everything_at_once() -> None:
    trace = traces.dump(["word "] * 50)
    drained = simulate(trace, Pacer(cps=10, max_lag=0.5))
    flushed = simulate(trace, Pacer(cps=10, max_lag=0.5, on_end="flush"))
    # The drain ends at the bound; a timer's wake-up takes what falls due within a tick.
    assert 0.5 - drained.emissions[-1].emitted <= 0.005 + 1e-9
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
@given(
    hard_text,
    st.lists(st.floats(0, 0.3), max_size=30),
    st.sampled_from(["word", "grapheme", "chunk", "line"]),
)
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


def test_every_reader_pipeline_keeps_the_rhythm_aims_on_held_out_traces() -> None:
    # Pacer() alone and the pipelines of `pacer demo`, the proxy's default, `pacer serve`'s
    # paced pane and the FastAPI recipe: pauses at sentence ends (ratio >= 1.5 on the
    # steady and long traces), lag <= max_lag + 50 ms from the pipeline's input, first
    # output within 50 ms, smoother than chat-ui's smoother, lossless; on every trace.
    pytest.importorskip("tiktoken")
    from pacer.testing.rhythm import check_readers

    recipe = (ROOT / "docs" / "how-to" / "fastapi.md").read_text(encoding="utf-8")
    assert "PacedEventSource(tokens(), pacer.Pacer(cps=40), heartbeat=15)" in recipe  # what is measured
    results = check_readers()
    assert {r.pipeline for r in results} >= {"Pacer()", "pacer demo", "FastAPI recipe"}
    assert len({r.trace for r in results}) == 7
    missed = [(r.trace, r.pipeline, r.failed) for r in results if r.failed]
    assert not missed


def test_stream_metrics_show_the_pauses_by_boundary_kind_and_the_lag_from_the_input() -> None:
    words = re.findall(r"\S+\s*", "One two three four five, six seven eight nine ten. " * 20)
    timeline = simulate(traces.steady(words, 6), Pacer(cps=40))
    pauses = timeline.metrics.pauses()
    sentence, clause, other = (pauses[k] for k in ("sentence", "clause", "other"))
    assert sentence[0] == 19 and clause[0] == 20  # a gap after each boundary (the last sentence ends it all)
    assert sentence[1] is not None and clause[1] is not None and other[1] is not None
    assert sentence[1] > clause[1] > other[1]
    assert timeline.metrics.as_dict()["pause_sentence_mean"] == sentence[1]
    # Lag is counted from the pipeline's input: each chunk's arrival is its text's.
    assert timeline.metrics.max_lag == max(timeline.lags())
    assert timeline.metrics.max_lag <= 0.5 + 1e-9


def test_a_source_stall_is_not_counted_as_a_pause() -> None:
    trace = [(0.0, "One sentence. "), (5.0, "Another one.")]
    metrics = simulate(trace, Pacer(cps=40)).metrics
    assert metrics.stalls == 1
    assert metrics.pauses()["sentence"][2] < 1.0  # the 5 s silence is a stall


@pytest.mark.parametrize(
    ("unit", "units"),
    [
        ("line", ["a b\n", "cd, e. f;g\n", "h; i"]),
        (re.compile(r"[,.]\s+"), ["a b\ncd, ", "e. ", "f;g\nh; i"]),
        (
            lambda text: text[: text.index(";") + 1] if ";" in text else None,
            ["a b\ncd, e. f;", "g\nh;", " i"],
        ),
    ],
    ids=["line", "pattern", "function"],
)
def test_line_pattern_and_function_units(unit: object, units: list[str]) -> None:
    # Vercel's smoothStream chunks by line, by a RegExp or by a ChunkDetector: so does Pacer.
    trace = traces.steady(["a b\nc", "d, e. f;", "g\nh; i"], 5)
    timeline = simulate(trace, Pacer(cps=40, unit=unit))  # type: ignore[arg-type]
    assert [c.text for c in timeline.emissions] == units
    # What has not completed a unit waits for more, never past max_lag (0.5 s after it came).
    assert max(timeline.lags()) <= 0.5 + 1e-9


def test_an_incomplete_line_goes_out_at_the_lag_bound() -> None:
    timeline = simulate([(0.0, "no line feed yet"), (3.0, " then one\n")], Pacer(unit="line"))
    assert [(c.text, c.emitted) for c in timeline.emissions] == [
        ("no line feed yet", 0.5),
        (" then one\n", 3.0),
    ]


@pytest.mark.parametrize(
    ("unit", "error", "message"),
    [
        (lambda text: 3, TypeError, "must return str or None, got int"),
        (lambda text: "x", ValueError, "must return a non-empty prefix of the text it is given"),
        (lambda text: "", ValueError, "non-empty prefix"),
    ],
)
def test_a_unit_function_that_does_not_return_a_prefix_is_an_error(
    unit: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        simulate([(0.0, "abc")], Pacer(unit=unit))  # type: ignore[arg-type]


def test_bad_unit_choices_say_what_is_accepted() -> None:
    with pytest.raises(TypeError, match="str pattern"):
        Pacer(unit=re.compile(rb"\n"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="line"):
        Pacer(unit="paragraph")  # type: ignore[arg-type]


@given(st.data(), hard_text, st.sampled_from([0.0, 0.02, 0.3]))
def test_word_units_never_send_space_alone_while_a_word_follows_within_the_bound(
    data: st.DataObject, text: str, gap: float
) -> None:
    """Vercel smoothStream's convention: space before a word goes with that word. Space
    alone waits for its word up to ``max_lag`` (a stall past the bound sends it)."""
    from pacer.testing.strategies import splits

    pieces = data.draw(splits(text))
    trace = traces.steady(pieces, per_second=1 / gap) if gap else traces.dump(pieces)
    pacer = Pacer(unit="word")
    timeline = simulate(trace, pacer)
    assert timeline.text == text
    # Space as Unicode's White_Space has it (the word units' rule): str.isspace also
    # counts the separators U+001C-U+001F, which are no space between words.
    alone = [c for c in timeline.emissions[:-1] if regex.fullmatch(r"\s+", c.text)]
    assert all(c.lag is not None and c.lag >= pacer.max_lag - 1e-9 for c in alone), alone
