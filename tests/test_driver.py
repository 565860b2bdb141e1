"""The one driver core (``pacer._driver.Driver``) and the loops around it.

Every loop (``run`` on a virtual clock, ``arun`` on asyncio and trio, ``simulate``, a
``Mux`` driven by hand, a ``Hub``) asks the same driver what to do next, so the same
trace gives the same emissions through each; and the driver itself is sans-I/O: fed
by hand here, with no clock, no thread and no event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from pacer import (
    Chunk,
    Guard,
    Pacer,
    Packetizer,
    Pipeline,
    SentenceSplitter,
    Stage,
    VirtualClock,
    arun,
    run,
    simulate,
)
from pacer._driver import Driver, Need
from pacer._hub import Hub
from pacer.mux import Mux

TEXT = "One sentence here. Another, with a clause; and more words to pace! The last one? "
WORDS = [w + " " for w in TEXT.split()]
BURST = [(0.0, w) for w in WORDS]  # a source that gives everything at once: live loops see it too

MAKERS: dict[str, Callable[[], Stage]] = {
    "pacer": lambda: Pacer(cps=40, max_lag=0.5),
    "sentences | pacer | packets": lambda: (
        SentenceSplitter(max_hold=0.2) | Pacer(cps=60, unit="grapheme") | Packetizer(12, 4, max_delay=0.05)
    ),
}


def stamped(chunks: list[Chunk]) -> list[tuple[str, float, int, float | None, int | None]]:
    return [(c.text, c.arrival, c.boundary, c.emitted, c.offset) for c in chunks]


def through_run(make: Callable[[], Stage]) -> list[Chunk]:
    return list(run(make(), WORDS, clock=VirtualClock(), chunks=True))


def through_arun(make: Callable[[], Stage], backend: str) -> list[Chunk]:
    async def source() -> AsyncIterator[str]:
        for word in WORDS:
            yield word

    async def main() -> list[Chunk]:
        return [c async for c in arun(make(), source(), clock=VirtualClock(), chunks=True)]

    return anyio.run(main, backend=backend)


def through_mux(make: Callable[[], Stage]) -> list[Chunk]:
    mux, out = Mux(), []
    stream = mux.open(make(), out.extend)
    for t, word in BURST:
        stream.feed(word, t)
    stream.finish(0.0)
    while (d := mux.deadline) is not None:
        mux.poll(d)
    return out


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_the_same_trace_gives_the_same_emissions_through_every_loop(name: str) -> None:
    make = MAKERS[name]
    expected = stamped(simulate(BURST, make()).emissions)
    assert "".join(c[0] for c in expected) == TEXT
    assert stamped(through_run(make)) == expected
    assert stamped(through_arun(make, "asyncio")) == expected
    assert stamped(through_arun(make, "trio")) == expected
    assert stamped(through_mux(make)) == expected


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_hub_gives_the_same_text_on_a_real_clock(backend: str) -> None:
    async def main() -> list[Chunk]:
        out: list[Chunk] = []
        stage = SentenceSplitter(max_hold=0.2) | Pacer(cps=5000) | Packetizer(12, 4, max_delay=0.05)
        await Hub().pump(stage, WORDS, out.extend)
        return out

    assert "".join(c.text for c in anyio.run(main, backend=backend)) == TEXT


def test_the_driver_says_what_it_needs_next_read_sleep_done() -> None:
    driver = Driver(Pipeline(Pacer(cps=10, max_lag=10.0)))
    assert driver.next(0.0) is Need.READ and driver.until is None  # nothing held: wait as long as it takes
    out = driver.item("Hello there. ", 0.0)
    assert driver.next(0.0) is Need.READ and driver.until is not None  # the next word is due then
    while driver.next(driver.until or 0.0) is Need.READ and driver.until is not None and driver.until <= 0.5:
        out += driver.wake(driver.until)
    out += driver.end(0.5)
    while driver.next(0.5) is Need.SLEEP:
        assert driver.until is not None
        out += driver.wake(driver.until)
    assert driver.next(9.0) is Need.DONE and driver.done
    assert "".join(c.text for c in out) == "Hello there. "
    assert driver.stop(9.0) == []  # done: nothing held, nothing unshown


def test_the_driver_owns_the_checks_and_stops_reading_when_one_blocks() -> None:
    started: list[Any] = []
    guard = Guard(lambda text: "secret" not in text)
    driver = Driver(Pipeline(guard), lambda request, now, reply: started.append((request, now)))
    assert guard.driven  # told once, by the driver that runs the checks
    assert driver.item("A fine sentence. A secret one. ", 1.0) == []
    assert [r.text for r, _ in started] == ["A fine sentence. "] and driver.in_flight == 1
    first = started[0][0]
    assert [c.text for c in driver.answer(first, True, 1.5)] == ["A fine sentence. "]
    driver.item("More. ", 2.0)
    for request, _ in started[1:]:
        driver.answer(request, guard.call(request), 2.5)
    assert driver.next(3.0) is Need.END and not driver.reading
    assert driver.pipeline.blocked is not None
    assert driver.pipeline.metrics.blocked == "blocked by the check"  # recorded where it happened
    driver.end(3.0)
    assert driver.next(3.0) is Need.DONE


def test_answers_from_other_threads_are_applied_at_the_next_step() -> None:
    started: list[Any] = []
    driver = Driver(Pipeline(Guard(lambda text: True)), lambda *started_with: started.append(started_with))
    driver.item("Checked elsewhere. And on. ", 0.0)
    [(request, _, reply)] = started
    reply(request, True)  # as a worker thread calls it: nothing happens yet
    assert driver.in_flight == 1
    assert [c.text for c in driver.item("More. ", 0.1)] == ["Checked elsewhere. "]
    assert driver.in_flight == 1  # that one answered, "And on. " handed out


def test_a_live_driver_wakes_often_while_checks_are_in_flight() -> None:
    driver = Driver(Pipeline(Guard(lambda text: True)), lambda request, now, reply: None, 0.005)
    driver.item("Waiting for its check. And on. ", 1.0)
    assert driver.next(1.0) is Need.READ and driver.until == pytest.approx(1.005)


def test_checks_on_virtual_time_give_the_same_emissions_through_simulate_and_a_mux() -> None:
    latency = 0.3
    text = "A first sentence. A second one. The forbidden third. A fourth. "
    trace = [(0.0, w + " ") for w in text.split(" ") if w]

    def make() -> Stage:
        return Guard(lambda text: "forbidden" not in text) | Pacer(cps=40)

    expected = stamped(simulate(trace, make(), check_latency=latency).emissions)
    assert "".join(c[0] for c in expected) == "A first sentence. A second one. "

    mux, out, pending = Mux(), [], []  # pending: (due, request), in the order handed out
    stream = mux.open(
        make(), out.extend, checks=lambda request, now, reply: pending.append((now + latency, request))
    )
    for t, word in trace:
        stream.feed(word, t)
    stream.finish(0.0)
    while pending or mux.deadline is not None:
        deadline = mux.deadline
        if pending and (deadline is None or pending[0][0] <= deadline):  # an answer first, on a tie
            due, request = pending.pop(0)
            stream.answer(request, request.guard.call(request), due)
        else:
            assert deadline is not None
            mux.poll(deadline)
    assert stamped(out) == expected
    assert stream.pipeline.metrics.blocked == "blocked by the check"
