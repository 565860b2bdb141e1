"""The reader's controls on a running stream (pause, resume, show all, rate): the values,
the Pacer on the virtual clock (any controls at any times keep the text whole and the
lag bound from each resume), and the drivers applying them at their next decision."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pacer import Chunk, Pacer, simulate
from pacer._control import Action, Control, ControlError, Mailbox
from pacer._run import AsyncRun, SyncRun
from pacer.testing.strategies import hard_text

MAX_LAG = 0.4
TEXT = "Streaming output needs a calm rhythm. A model sends many words at once, then stops. " * 3


def _trace(text: str, size: int = 4, gap: float = 0.01) -> list[tuple[float, str]]:
    return [(i / size * gap, text[i : i + size]) for i in range(0, len(text), size)]


# -- the values ---------------------------------------------------------------------------


def test_a_control_is_read_from_json_and_every_bad_field_says_what_was_wrong() -> None:
    assert Control.parse({"action": "pause"}) == Control(Action.PAUSE)
    assert Control.parse({"action": "rate", "cps": 80}).cps == 80.0
    assert Control.parse({"action": "rate", "wpm": 300}).cps == 25.0  # five characters a word
    assert Control.parse({"action": "rate", "cps": 80}).as_json() == {"action": "rate", "cps": 80.0}
    bad = [
        ({"action": "rewind"}, "action must be one of pause, resume, show_all, rate"),
        ({"action": 3}, "action must be one of"),
        ({"cps": "fast"}, 'control: the "action" field is missing; it must be one of pause, resume'),
        ([], "control must be a JSON object, got list"),
        ({"action": "rate"}, 'action "rate" needs "cps"'),
        ({"action": "rate", "cps": -1}, "cps: rate must be a positive finite number"),
        ({"action": "rate", "cps": "fast"}, "control: cps must be a number, got str"),
        ({"action": "rate", "cps": 1, "wpm": 1}, 'give "cps" or "wpm", not both'),
        ({"action": "pause", "cps": 10}, 'only action "rate" takes a rate'),
        (
            {"action": "rate", "cps": 10**400},
            "cps must be a number a float can hold, got an integer of 1329 bits",
        ),
        ({"action": "rate", "wpm": -(10**400)}, "wpm must be a number a float can hold"),
    ]
    for body, message in bad:
        with pytest.raises(ControlError, match=message):
            Control.parse(body)
    with pytest.raises(TypeError, match=r"Mailbox\.send takes a Control"):
        Mailbox().send("pause")  # type: ignore[arg-type]


# -- the Pacer on virtual time --------------------------------------------------------------


def test_pause_holds_the_text_and_resume_counts_the_lag_bound_from_then() -> None:
    timeline = simulate(
        _trace(TEXT), Pacer(cps=30, max_lag=MAX_LAG), controls=[(0.2, "pause"), (5.0, "resume")]
    )
    assert timeline.text == TEXT
    during = [c for c in timeline.emissions if 0.2 < c.emitted < 5.0]  # type: ignore[operator]
    assert not during
    after = [c for c in timeline.emissions if c.emitted >= 5.0]  # type: ignore[operator]
    assert after and after[0].emitted == 5.0  # the first unit at once
    assert all(c.emitted <= 5.0 + MAX_LAG + 1e-9 for c in after)  # all waiting text within the bound


def test_show_all_sends_everything_produced_at_once_then_the_rest_as_it_comes() -> None:
    trace = _trace(TEXT, gap=0.05)
    timeline = simulate(trace, Pacer(cps=10, max_lag=10.0), controls=[(1.0, "show_all")])
    assert timeline.text == TEXT
    arrived = sum(len(text) for t, text in trace if t <= 1.0)
    assert sum(len(c.text) for c in timeline.emissions if c.emitted <= 1.0) == arrived  # type: ignore[operator]
    for t, _ in trace:
        if t > 1.0:  # unpaced: each piece the moment it arrives
            assert sum(len(c.text) for c in timeline.emissions if c.emitted <= t) == sum(  # type: ignore[operator]
                len(x) for at, x in trace if at <= t
            )


def test_a_rate_paces_again_after_show_all_and_a_paused_stream_ends_where_its_controls_end() -> None:
    timeline = simulate(
        _trace(TEXT),
        Pacer(cps=10, adaptive=False, max_lag=10.0),
        controls=[(0.1, "show_all"), (0.5, {"action": "rate", "cps": 5})],
    )
    assert timeline.text == TEXT
    assert timeline.emissions[-1].emitted > 1.0  # type: ignore[operator]  # paced again, at 5 cps
    paused = simulate(_trace(TEXT), Pacer(cps=30), controls=[(0.1, "pause")])
    assert TEXT.startswith(paused.text) and len(paused.text) < len(TEXT)
    with pytest.raises(ValueError, match="simulate: control 1 goes back in time"):
        simulate(_trace(TEXT), Pacer(), controls=[(1.0, "pause"), (0.5, "resume")])
    with pytest.raises(ValueError, match="simulate: control 0: control: action must be one of"):
        simulate(_trace(TEXT), Pacer(), controls=[(1.0, "rewind")])


def test_cancel_of_a_paused_pacer_hands_over_everything_held() -> None:
    pacer = Pacer(cps=10)
    shown = "".join(c.text for c in pacer.push(Chunk(TEXT, 0.0), 0.0))
    assert pacer.control(Control(Action.PAUSE), 0.1) == [] and pacer.deadline == float("inf")
    pacer.finish(0.2)
    assert pacer.deadline == float("inf")  # waits for a control, not for time
    assert shown + "".join(c.text for c in pacer.cancel(0.3)) == TEXT


_ACTIONS = st.sampled_from(["pause", "resume", "show_all", "rate"])


@settings(max_examples=200, deadline=None)
@given(
    hard_text,
    st.lists(st.floats(0, 0.3), max_size=30),
    st.lists(st.tuples(st.floats(0, 4.0), _ACTIONS, st.floats(1, 500)), max_size=8),
    st.sampled_from(["grapheme", "word", "chunk", "sentence"]),
    st.integers(1, 5),
)
# A sentence unit's hold timer counts from the resume too (it once fired in the pause's past).
@example("👩\u200d👩\u200d👧" * 2, [], [(0.0, "pause", 1.0), (0.375, "resume", 1.0)], "sentence", 1)
def test_any_controls_at_any_times_keep_the_text_whole_and_the_lag_bound_from_each_resume(
    text: str, gaps: list[float], controls: list[tuple[float, str, float]], unit: str, size: int
) -> None:
    t, trace = 0.0, []
    for i in range(0, len(text), size):
        t += gaps[i // size] if i // size < len(gaps) else 0.05
        trace.append((t, text[i : i + size]))
    ordered = sorted(controls, key=lambda c: c[0])
    timed = [(at, Control(action, cps if action == "rate" else None)) for at, action, cps in ordered]
    end = max([t, *(at for at, _ in timed)]) + 1.0
    timed.append((end, Control(Action.RESUME)))  # the reader comes back: everything goes out
    timeline = simulate(trace, Pacer(cps=15, unit=unit, max_lag=MAX_LAG), controls=timed)  # type: ignore[arg-type]
    assert timeline.text == text  # never lost, reordered or repeated

    # When the stream was paused or unpaced, and since when text's lag bound counts.
    paused, unpaced, since = False, False, 0.0
    changes: list[tuple[float, bool, bool, float]] = [(0.0, False, False, 0.0)]
    for at, control in timed:
        if control.action is Action.PAUSE:
            paused = True
        elif control.action in (Action.RESUME, Action.SHOW_ALL):
            if paused:
                since = at
            paused = False
            unpaced = unpaced or control.action is Action.SHOW_ALL
        else:
            unpaced = False
        changes.append((at, paused, unpaced, since))

    def state(at: float) -> tuple[bool, bool, float]:
        current = changes[0]
        for change in changes:
            if change[0] <= at:
                current = change
        return current[1], current[2], current[3]

    bound = MAX_LAG  # a sentence splitter's hold is inside the bound
    for chunk in timeline.emissions:
        assert chunk.emitted is not None
        was_paused, _, resumed = state(chunk.emitted)
        if was_paused:  # only at the very instant of the pause
            assert any(at == chunk.emitted for at, _ in timed)
        assert chunk.emitted <= max(chunk.arrival, resumed) + bound + 1e-9
    # Show all: what arrived by then is out at that very time, and, while unpaced, each
    # arrival the moment it comes.
    arrivals = [(at, len(piece)) for at, piece in trace]
    for at, control in timed:
        if control.action is Action.SHOW_ALL:
            came = sum(n for a, n in arrivals if a <= at)
            out = sum(len(c.text) for c in timeline.emissions if c.emitted <= at)  # type: ignore[operator]
            assert out == came


def test_show_all_releases_what_a_sentence_unit_still_holds() -> None:
    pacer = Pacer(cps=10, unit="sentence")
    out = pacer.push(Chunk("An unfinished sentence", 0.0), 0.0)
    out += pacer.control(Control(Action.SHOW_ALL), 0.01)
    assert "".join(c.text for c in out) == "An unfinished sentence"


# -- the drivers ------------------------------------------------------------------------------


def test_an_async_run_applies_a_control_while_it_waits_on_a_silent_source() -> None:
    async def main() -> None:
        more = anyio.Event()

        async def source() -> AsyncIterator[str]:
            yield TEXT
            await more.wait()  # silent until the test says
            yield "end."

        run: AsyncRun[str] = AsyncRun(Pacer(cps=5, max_lag=30.0), source(), controls=Mailbox())
        got = [await run.__anext__()]
        run.control("show_all")  # the source is silent: only the control wakes the run
        while len("".join(got)) < len(TEXT):
            got.append(await run.__anext__())
        assert "".join(got) == TEXT
        run.control("pause")
        more.set()  # the source ends while the rest waits

        async def read_rest() -> None:
            async for piece in run:
                got.append(piece)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_rest)
            with anyio.fail_after(10):
                while not (run.pipeline.input_ended and run.pipeline.deadline == float("inf")):
                    await anyio.sleep(0.01)  # the source is over; the run waits for a control
            assert "".join(got) == TEXT  # nothing while paused
            run.control("resume")
        assert "".join(got) == TEXT + "end."

    anyio.run(main)


def test_a_sync_run_takes_controls_from_another_thread() -> None:
    gate = threading.Event()

    def source() -> Iterator[str]:
        yield TEXT
        gate.wait(10)

    run: SyncRun[str] = SyncRun(Pacer(cps=5, max_lag=30.0), source())
    got = next(run)
    threading.Thread(target=run.control, args=("show_all",)).start()
    while len(got) < len(TEXT):
        got += next(run)
    gate.set()
    assert got + "".join(run) == TEXT


def test_a_sync_run_takes_a_control_from_another_thread_while_it_drains_a_finished_source() -> None:
    """Once the source is over a sync run sleeps until the next unit is due; a control
    sent meanwhile cuts that sleep short, as it does a wait for the source (it used to
    wait the unit out first: one more paced character, a whole second at 1 cps)."""
    run: SyncRun[Chunk] = SyncRun(Pacer(cps=1, max_lag=30.0), [TEXT], chunks=True)
    first = next(run)
    sent = threading.Event()

    def show_all() -> None:
        sent.wait(10)
        time.sleep(0.05)  # the run is asleep by now
        run.control("show_all")

    threading.Thread(target=show_all).start()
    sent.set()
    rest = list(run)
    assert first.text + "".join(c.text for c in rest) == TEXT
    assert [c.text for c in rest] == [TEXT[len(first.text) :]]  # all at once, no paced character first
