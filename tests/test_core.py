from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pacer
from pacer import Boundary, Chunk, Packetizer, Pipeline, Stage, StageClosedError
from pacer._metrics import StreamMetrics
from pacer._run import SyncRun
from pacer.testing.strategies import hard_text, splits


class Upper(Stage):
    """A test stage that changes text: proves the pipeline passes each stage's output on."""

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        return [Chunk(chunk.text.upper(), chunk.arrival, chunk.boundary)]


class Passthrough(Stage):
    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        return [chunk]


@given(st.data(), hard_text)
def test_pipeline_of_passthrough_and_splitting_stages_is_lossless(data: st.DataObject, text: str) -> None:
    pieces = data.draw(splits(text))
    p = Passthrough() | Packetizer(16, 4) | Passthrough() | Packetizer(5, 1)
    out: list[str] = []
    for piece in pieces:
        out += p.feed(piece)
    out += p.flush()
    assert "".join(out) == text
    assert all(s for s in out)


@given(st.data(), hard_text)
def test_pipeline_output_is_independent_of_driver(data: st.DataObject, text: str) -> None:
    pieces = data.draw(splits(text))
    direct = Passthrough() | Packetizer(8, 8, max_delay=None)
    out = [*(t for piece in pieces for t in direct.feed(piece)), *direct.flush()]
    driven = list(pacer.run(Passthrough() | Packetizer(8, 8, max_delay=None), pieces))
    assert driven == out


def test_stages_run_left_to_right() -> None:
    p = Packetizer(4, 4, max_delay=None) | Upper()
    assert p.feed("abcdefgh") == ["ABCD"]
    assert p.flush() == ["EFGH"]


def test_pipes_flatten_and_nest() -> None:
    a, b, c = Passthrough(), Upper(), Passthrough()
    p = (a | b) | c
    assert p.stages == (a, b, c)
    q = a | (b | c)
    assert q.stages == (a, b, c)
    assert pacer.pipeline(a, b, c).stages == (a, b, c)


def test_wrong_item_type_raises_type_error_naming_stage() -> None:
    p = Passthrough() | Upper()
    with pytest.raises(TypeError, match=r"Passthrough takes str or Chunk, got int"):
        p.feed(42)
    with pytest.raises(TypeError, match=r"Packetizer takes str or Chunk, got bytes"):
        Packetizer().feed(b"abc")


def test_a_lone_stage_runs_over_a_source_as_a_one_stage_pipeline() -> None:
    run = Upper()(["ab", "cd"])
    assert isinstance(run, SyncRun)
    assert list(run) == ["AB", "CD"]


def test_pipeline_rejects_non_stages() -> None:
    with pytest.raises(TypeError, match="Pipeline takes stages, got str"):
        Pipeline(Passthrough(), "nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one stage"):
        Pipeline()


def test_feed_after_flush_raises() -> None:
    p = Passthrough() | Upper()
    assert p.feed("a") == ["A"]
    p.flush()
    with pytest.raises(StageClosedError, match=r"Pipeline: input after its end \(finish, flush or cancel\)"):
        p.feed("b")


def _stages() -> dict[str, Any]:
    from pacer.tokenizers import load_tekken

    enc = load_tekken()
    return {
        "Detokenizer": (lambda: pacer.Detokenizer(enc), enc.encode("Hi there")[0]),
        "ByteDecoder": (lambda: pacer.ByteDecoder(), b"hi"),
        "SentenceSplitter": (lambda: pacer.SentenceSplitter(), "Hi. "),
        "Pacer": (lambda: pacer.Pacer(), "Hi. "),
        "Packetizer": (lambda: Packetizer(), "Hi. "),
        "Pipeline": (lambda: pacer.SentenceSplitter() | pacer.Pacer(), "Hi. "),
    }


@pytest.mark.parametrize("end", ["finish", "cancel", "flush"])
@pytest.mark.parametrize(
    "name", ["Detokenizer", "ByteDecoder", "SentenceSplitter", "Pacer", "Packetizer", "Pipeline"]
)
def test_every_input_after_the_end_is_rejected_the_same_way(name: str, end: str) -> None:
    pytest.importorskip("tiktoken")
    make, item = _stages()[name]
    stage = make()
    stage.feed(item)
    if end == "flush":
        stage.flush()
    else:
        getattr(stage, end)(1.0)
    message = rf"{name}: input after its end \(finish, flush or cancel\)"
    with pytest.raises(StageClosedError, match=message):
        stage.feed(item)
    with pytest.raises(StageClosedError, match=message):
        stage.ingest(item, 2.0)
    if name != "Detokenizer":  # which takes ids, never chunks
        with pytest.raises(StageClosedError, match=message):
            stage.push(Chunk("more", 2.0), 2.0)


def test_flush_after_finish_still_returns_what_was_held() -> None:
    # finish ends input; the rest would follow at its deadlines, and flush takes it now.
    p = pacer.Pacer(cps=1)
    text = "one two three four "
    shown = p.feed(text) + [c.text for c in p.finish(0.0)]
    assert "".join(shown) != text  # at 1 character a second, most is still held
    rest = p.flush()
    assert rest and "".join(shown + rest) == text
    assert p.flush() == []  # flushed: nothing more


def test_time_going_backwards_is_an_error() -> None:
    s = Packetizer()
    s.feed("a", now=5.0)
    with pytest.raises(ValueError, match="time went backwards"):
        s.feed("b", now=4.0)


def test_pipeline_stamps_emission_offset_and_metrics() -> None:
    p = Packetizer(4, 4, max_delay=None) | Passthrough()
    first = p.ingest("ab", 1.0)
    assert first == []
    out = p.ingest("cdé", 2.0)
    assert [(c.text, c.arrival, c.emitted, c.offset) for c in out] == [("abcd", 1.0, 2.0, 0)]
    out = p.finish(3.0)
    assert [(c.text, c.emitted, c.offset) for c in out] == [("é", 3.0, 4)]
    m = p.metrics
    assert (m.items_in, m.chunks_out, m.chars_out, m.bytes_out) == (2, 2, 5, 6)
    assert m.time_to_first_output == 1.0
    assert m.max_lag == 1.0
    assert m.lag(50) == 1.0


class Stuck(Stage):
    timed = True

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        return []

    @property
    def deadline(self) -> float | None:
        return 0.0


def test_stage_that_never_moves_its_deadline_is_reported_not_spun_on() -> None:
    p = Pipeline(Stuck())
    with pytest.raises(RuntimeError, match="left its deadline"):
        p.poll(1.0)


def test_simulate_fires_timers_between_arrivals() -> None:
    tl = pacer.simulate([(0.0, "hello "), (0.5, "world")], Packetizer(64, 32, max_delay=0.1))
    assert [(c.text, c.arrival, c.emitted) for c in tl.emissions] == [
        ("hello ", 0.0, 0.1),
        ("world", 0.5, 0.5),
    ]
    assert tl.text == "hello world"
    assert tl.lags() == [pytest.approx(0.1), 0.0]


def test_simulate_rejects_time_travel_and_bad_entries() -> None:
    with pytest.raises(ValueError, match="entry 1 goes back in time"):
        pacer.simulate([(1.0, "a"), (0.5, "b")], Packetizer())
    with pytest.raises(TypeError, match="entry 0 must be"):
        pacer.simulate(["a"], Packetizer())  # type: ignore[list-item]


def test_chunk_boundary_order_reads_as_it_sounds() -> None:
    assert Boundary.NONE < Boundary.WORD < Boundary.FORCED < Boundary.CLAUSE < Boundary.SENTENCE
    # A cut forced by a budget or a hold timer is not "at least a sentence" (nor a clause).
    assert not Boundary.FORCED >= Boundary.SENTENCE and not Boundary.FORCED >= Boundary.CLAUSE


def test_virtual_clock() -> None:
    clock = pacer.VirtualClock(10.0)
    clock.sleep_until(12.5)
    assert clock.now() == 12.5
    clock.sleep_until(11.0)
    assert clock.now() == 12.5
    clock.advance(0.5)
    assert clock.now() == 13.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_lag_samples_stay_bounded_and_representative() -> None:
    m = StreamMetrics(max_samples=100)
    for k in range(10_000):
        m.record(Chunk("x", arrival=0.0), now=k / 10_000)
    assert len(m._lags.values) < 100 and m.max_samples == 100
    assert m.lag(50) == pytest.approx(0.5, abs=0.02)
    assert m.max_lag == pytest.approx(0.9999)
    assert m.chunks_out == 10_000
