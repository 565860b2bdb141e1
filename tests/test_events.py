"""EventPacer: each lane's text paced, every kept event in its place, on the virtual clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacer import Pacer, StageClosedError, simulate
from pacer._events import EventPacer
from pacer.formats import EventFormat, Keep, Text
from pacer.sse import ServerSentEvent


class Tagged(EventFormat):
    """Frames that say what they carry: ``T<lane>:<kind>:<text>`` and the kept frame."""

    def parse(self, event: ServerSentEvent) -> list[Text | Keep]:
        raise NotImplementedError

    def text_frame(self, first: Text, text: str, extras: list[Any]) -> str:
        return f"T{first.lane}:{first.kind}:{text}|{','.join(map(str, extras))}"


def _pacer() -> EventPacer:
    return EventPacer(Tagged(), lambda: Pacer(cps=50, max_lag=5.0))


def _texts(frames: list[str], lane: int) -> str:
    return "".join(f.split(":", 2)[2].split("|")[0] for f in frames if f.startswith(f"T{lane}:"))


def test_a_kept_event_waits_for_the_text_before_it_and_goes_before_the_text_after() -> None:
    trace = [
        (0.0, Keep(0, "role")),
        (0.0, Text(0, "content", "Hello there. ", None)),
        (0.0, Keep(0, "tool call")),
        (0.0, Text(0, "content", "More.", None)),
        (0.0, Keep(None, "usage")),
    ]
    timeline = simulate(trace, _pacer())
    frames = [c.text for c in timeline.emissions]
    assert frames[0] == "role" and timeline.emissions[0].emitted == 0.0  # at once, never held
    tool = frames.index("tool call")
    assert _texts(frames[:tool], 0) == "Hello there. "
    assert _texts(frames[tool:], 0) == "More."
    assert frames[-1] == "usage"
    assert timeline.emissions[tool].emitted > 0.2  # the text before it was paced out first


def test_each_lane_is_paced_on_its_own_and_an_event_of_no_lane_waits_for_all() -> None:
    trace = [
        (0.0, Text(0, "content", "a" * 10, None)),
        (0.0, Text(1, "content", "b" * 30, None)),
        (0.0, Keep(0, "finish 0")),
        (0.0, Keep(None, "usage")),
        (0.0, Text(1, "content", "c", None)),
    ]
    timeline = simulate(trace, _pacer())
    frames = [c.text for c in timeline.emissions]
    at = {f: c.emitted for f, c in zip(frames, timeline.emissions, strict=True)}
    # Lane 0's finish goes after its own text, long before lane 1's text is done.
    assert at["finish 0"] < 0.5 < at["usage"]
    assert frames.index("usage") == len(frames) - 2 and _texts(frames[-1:], 1) == "c"


def test_per_token_data_goes_with_the_event_that_completes_its_text() -> None:
    trace = [(0.0, Text(0, "content", "ab", None, "lp1")), (0.0, Text(0, "content", "cd", None, "lp2"))]
    frames = [c.text for c in simulate(trace, _pacer()).emissions]
    assert [f.split("|")[1] for f in frames] == ["", "lp1", "", "lp2"]  # one grapheme a frame
    assert _texts(frames, 0) == "abcd"


def test_text_of_different_kinds_never_shares_a_frame() -> None:
    trace = [(0.0, Text(0, "reasoning", "think", None)), (0.0, Text(0, "content", "say", None))]
    timeline = simulate(trace, EventPacer(Tagged(), lambda: Pacer(cps=5000, unit="word")))
    frames = [c.text for c in timeline.emissions]
    assert all(f.startswith(("T0:reasoning:", "T0:content:")) for f in frames)
    assert "".join(f.split(":", 2)[2].split("|")[0] for f in frames) == "thinksay"
    assert frames[-1].startswith("T0:content:") and "reasoning" in frames[0]


def test_a_surrogate_pair_split_over_two_pieces_is_one_character() -> None:
    trace = [(0.0, Text(0, "content", "x\ud83d", None)), (0.1, Text(0, "content", "\ude00y", None))]
    frames = [c.text for c in simulate(trace, _pacer()).emissions]
    assert _texts(frames, 0) == "x\U0001f600y"


def test_cancel_sends_everything_held_at_once_in_order() -> None:
    pacer = _pacer()
    out = pacer.ingest(Text(0, "content", "Hello there, world.", None), 0.0)
    out += pacer.ingest(Keep(None, "done"), 0.0)
    out += pacer.cancel(0.01)
    frames = [c.text for c in out]
    assert _texts(frames, 0) == "Hello there, world." and frames[-1] == "done"
    assert pacer.deadline is None
    with pytest.raises(StageClosedError):
        pacer.ingest(Text(0, "content", "late", None), 0.02)


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="EventPacer takes Text or Keep pieces, got str"):
        _pacer().ingest("text", 0.0)
    with pytest.raises(TypeError, match="EventPacer takes Text or Keep pieces"):
        _pacer().feed("text", 0.0)


pieces = st.lists(
    st.tuples(
        st.floats(0, 0.5),
        st.one_of(
            st.tuples(
                st.just("text"),
                st.integers(0, 2),
                st.sampled_from(["c", "r"]),
                st.text("ab .,好", min_size=1),
            ),
            st.tuples(st.just("keep"), st.one_of(st.none(), st.integers(0, 2))),
        ),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(pieces)
def test_any_stream_keeps_every_lanes_text_and_every_event_in_its_place(items: list[Any]) -> None:
    trace: list[tuple[float, Text | Keep]] = []
    fed = [0, 0, 0]
    expected: dict[str, tuple[int | None, list[int]]] = {}
    t = 0.0
    for i, (dt, (what, *rest)) in enumerate(items):
        t += dt
        if what == "text":
            lane, kind, text = rest
            trace.append((t, Text(lane, kind, text, None)))
            fed[lane] += len(text)
        else:
            (lane,) = rest
            trace.append((t, Keep(lane, f"K{i}")))
            expected[f"K{i}"] = (lane, list(fed))
    frames = [c.text for c in simulate(trace, _pacer()).emissions]
    shown = [0, 0, 0]
    kept = []
    for f in frames:
        if f.startswith("K"):
            lane, counts = expected[f]
            for other in range(3) if lane is None else [lane]:
                assert shown[other] == counts[other], (f, other)  # all before it, nothing after
            kept.append(f)
        else:
            shown[int(f[1])] += len(f.split(":", 2)[2].split("|")[0])
    assert sorted(kept) == sorted(expected)
    for lane in range(3):  # a lane's own events and those of no lane: in the upstream's order
        mine = [k for k in kept if expected[k][0] in (lane, None)]
        assert mine == sorted(mine, key=lambda k: int(k[1:]))
    for lane in range(3):
        sent = "".join(p.text for _, p in trace if isinstance(p, Text) and p.lane == lane)
        assert _texts(frames, lane) == sent


@pytest.mark.parametrize("replacement", ["", "x", "a much longer replacement"])
def test_a_replacement_of_any_length_keeps_every_kept_event_in_its_place(replacement: str) -> None:
    from pacer import Guard

    trace = [
        (0.0, Keep(0, "role")),
        (0.0, Text(0, "reasoning", "Think it over. ", None)),
        (0.1, Keep(0, "reasoning done")),
        (0.1, Text(0, "content", "The secret is out. Bye.", None)),
        (0.2, Keep(0, "finish")),
        (0.2, Keep(None, "usage")),
    ]
    stage = EventPacer(Tagged(), lambda: Guard(lambda t: t.replace("secret", replacement)) | Pacer(cps=200))
    frames = [c.text for c in simulate(trace, stage, check_latency=0.05).emissions]
    kept = [f for f in frames if not f.startswith("T")]
    assert kept == ["role", "reasoning done", "finish", "usage"]
    done = frames.index("reasoning done")
    assert _texts(frames[:done], 0) == "Think it over. " and "content" not in "".join(frames[:done])
    assert _texts(frames[done:], 0) == f"The {replacement} is out. Bye."
