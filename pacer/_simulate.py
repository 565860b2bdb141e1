"""Replay an arrival trace through a pipeline on virtual time, instantly.

A trace is a sequence of ``(time, item)`` pairs in non-decreasing time. Timers fire
exactly at their deadlines, between arrivals, as they would on a real clock with
no scheduling noise. The result is the timeline that tests, notebooks and
benchmarks look at. A reader's controls (``pacer._control``: pause, resume, show all,
rate) may be given as ``(time, control)`` pairs too: each is applied at its time,
after the deadlines due then and before an item that arrives then.

Cost: the pipeline's own cost, plus O(1) per emitted chunk.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._control import Control, ControlError
from ._core import Chunk
from ._driver import END, SLEEP, WAIT, Driver, as_pipeline
from ._metrics import StreamMetrics, percentile
from .guard import call_check

__all__ = ["Timeline", "simulate"]


@dataclass
class Timeline:
    """What went in when, and what came out when."""

    arrivals: list[tuple[float, Any]]
    emissions: list[Chunk]
    metrics: StreamMetrics = field(repr=False)

    @property
    def text(self) -> str:
        """Everything emitted, joined."""
        return "".join(c.text for c in self.emissions)

    def lags(self) -> list[float]:
        """Seconds from arrival to emission, one per emitted chunk."""
        return [c.emitted - c.arrival for c in self.emissions if c.emitted is not None]

    def lag(self, q: float) -> float | None:
        return percentile(self.lags(), q)

    def chars_per_window(self, window: float = 0.1, start: float | None = None) -> list[int]:
        """Characters emitted in each ``window`` seconds, from ``start`` to the last emission."""
        times = [(c.emitted, len(c.text)) for c in self.emissions if c.emitted is not None]
        if not times:
            return []
        t0 = times[0][0] if start is None else start
        bins = [0] * (math.floor((times[-1][0] - t0) / window) + 1)
        for t, n in times:
            if t >= t0:
                # A hair over: a time on a window's edge (0.3 s in 0.1 s windows) counts in
                # the window it starts, not, by the rounding of its quotient, in the one before.
                k = int((t - t0) / window + 1e-9)
                if k < len(bins):
                    bins[k] += n
                else:
                    bins[-1] += n
        return bins

    def smoothness(self, window: float = 0.1) -> float:
        """Coefficient of variation of characters per window (lower is smoother)."""
        bins = self.chars_per_window(window)
        if len(bins) < 2:
            return 0.0
        mean = sum(bins) / len(bins)
        var = sum((b - mean) ** 2 for b in bins) / len(bins)
        return math.sqrt(var) / mean if mean else 0.0


def simulate(
    trace: Iterable[tuple[float, Any]],
    stage: object,
    *,
    check_latency: object = None,
    controls: Iterable[tuple[float, Any]] = (),
) -> Timeline:
    """Feed ``trace`` through ``stage`` on virtual time; return the ``Timeline``.

    The ``Stage`` (or ``Pipeline``) must be fresh: a run leaves it finished. With
    ``check_latency`` (seconds, or a function of a ``CheckRequest`` giving them), the
    checks of a ``Guard`` in it answer that long after each unit is complete, several
    in flight at once, as a live driver runs them; without it a ``Guard`` checks inline.
    ``controls``: ``(time, control)`` pairs in non-decreasing time, each control a
    ``Control``, an action name or a JSON object (``{"action": "rate", "cps": 80}``); a
    stream still paused after the last of them ends there, the rest unshown.
    """
    p = as_pipeline(stage, "simulate")
    checks: _VirtualChecks | None = None
    if check_latency is not None:
        if not (callable(check_latency) or isinstance(check_latency, (int, float))):
            raise TypeError(
                f"simulate: check_latency must be seconds or a function of the request, got {check_latency!r}"
            )
        checks = _VirtualChecks(check_latency)
    driver = Driver(p, checks)
    arrivals, emissions = _replay(trace, driver, checks, _controls(controls))
    return Timeline(arrivals, emissions, p.metrics)


def _timed(entry: Any, position: int, last: float, what: str, value: str) -> tuple[float, Any]:
    """A ``(time, value)`` pair of a timeline, checked: its time a number no earlier than ``last``."""
    try:
        t, given = entry
        t = float(t)
    except (TypeError, ValueError):
        raise TypeError(f"simulate: {what} {position} must be (time, {value}), got {entry!r}") from None
    if t < last:
        raise ValueError(f"simulate: {what} {position} goes back in time ({t} < {last})")
    return t, given


def _controls(controls: Iterable[tuple[float, Any]]) -> deque[tuple[float, Control]]:
    """The timed controls, checked: each a ``Control`` at a time no earlier than the one before."""
    out: deque[tuple[float, Control]] = deque()
    last = -math.inf
    for position, entry in enumerate(controls):
        t, given = _timed(entry, position, last, "control", "control")
        try:
            control = (
                given
                if isinstance(given, Control)
                else Control.parse({"action": given} if isinstance(given, str) else given)
            )
        except ControlError as exc:
            raise ValueError(f"simulate: control {position}: {exc}") from None
        out.append((t, control))
        last = t
    return out


def _until(
    driver: Driver, checks: _VirtualChecks | None, controls: deque[tuple[float, Control]], t: float
) -> list[Chunk]:
    """Everything due up to time ``t`` (deadlines, answers and controls, in time order; a
    deadline or answer first on a tie)."""
    out: list[Chunk] = []
    p = driver.pipeline
    last = -math.inf  # time never goes back: a deadline a control left behind fires at once
    while True:
        due = p.deadline if checks is None else checks.due(p.deadline)
        at = controls[0][0] if controls else math.inf
        if due is not None and due <= t and due <= at:
            due = due if due > last else last
            out.extend(driver.wake(due) if checks is None else checks.fire(driver, due))
        elif at <= t:
            last = at
            out.extend(driver.control(controls.popleft()[1], at))
        else:
            return out


def _replay(
    trace: Iterable[tuple[float, Any]],
    driver: Driver,
    checks: _VirtualChecks | None,
    controls: deque[tuple[float, Control]],
) -> tuple[list[tuple[float, Any]], list[Chunk]]:
    """The virtual-time loop around ``driver``: deadlines (and answers, first on a tie)
    fire exactly when due, before an item that arrives at the same time."""
    arrivals: list[tuple[float, Any]] = []
    emissions: list[Chunk] = []
    last = -math.inf
    p = driver.pipeline
    entries: Iterable[Any] = trace  # checked here, not by a compiled build's unboxing
    for position, entry in enumerate(entries):
        t, item = _timed(entry, position, last, "trace entry", "item")
        if controls:
            emissions.extend(_until(driver, checks, controls, t))
            if checks is not None and driver.next(t) is END:
                break
        elif checks is None:
            while (d := p.deadline) is not None and d <= t:
                emissions.extend(driver.wake(d))
        else:
            while (due := checks.due(p.deadline)) is not None and due <= t:
                emissions.extend(checks.fire(driver, due))
            if driver.next(t) is END:
                break  # a check blocked the stream: the source is stopped
        emissions.extend(driver.item(item, t))
        # The trace's own pair where it is one already: no new object per token to allocate
        # and for the garbage collector to count.
        arrivals.append(entry if type(entry) is tuple and type(entry[0]) is float else (t, item))
        last = t
    now = 0.0 if last == -math.inf else last
    emissions.extend(driver.end(now))
    if controls:
        emissions.extend(_finish_controlled(driver, checks, controls, now))
    while driver.next(now) is SLEEP:
        if checks is None:
            emissions.extend(driver.wake(driver.until))  # type: ignore[arg-type]
        else:
            emissions.extend(checks.fire(driver, checks.due(driver.until)))  # type: ignore[arg-type]
    return arrivals, emissions


def _finish_controlled(
    driver: Driver, checks: _VirtualChecks | None, controls: deque[tuple[float, Control]], now: float
) -> list[Chunk]:
    """After the source: sleeps, waits for controls, and the controls, until the last control."""
    out: list[Chunk] = []
    while controls:
        need = driver.next(now)
        if need is SLEEP:
            until = driver.until
            assert until is not None  # SLEEP says until when
            now = min(until, controls[0][0])
        elif need is WAIT:
            now = max(now, controls[0][0])
        else:
            break
        out.extend(_until(driver, checks, controls, now))
    return out


class _VirtualChecks:
    """Checks on virtual time: each answers ``latency`` seconds (a number, or a function
    of the request) after it was handed out; the heap holds those in flight."""

    def __init__(self, latency: Any) -> None:
        self.latency = latency
        self.heap: list[tuple[float, int, Any, object]] = []  # (due, order, request, result)
        self._order = itertools.count()

    def __call__(self, request: Any, now: float, reply: Any) -> None:
        latency = self.latency
        delay = float(latency(request)) if callable(latency) else float(latency)
        due = now + max(0.0, delay)
        request.started = now  # every check runs as soon as it is handed out
        heapq.heappush(self.heap, (due, next(self._order), request, call_check(request)))

    def due(self, deadline: float | None) -> float | None:
        """The earlier of ``deadline`` and the next answer, or ``None``."""
        if not self.heap:
            return deadline
        answer = self.heap[0][0]
        return answer if deadline is None or answer <= deadline else deadline

    def fire(self, driver: Driver, due: float) -> list[Chunk]:
        """What is due at ``due``: the next answer if it is due then, else the deadline."""
        if self.heap and self.heap[0][0] <= due:
            _, _, request, result = heapq.heappop(self.heap)
            return driver.answer(request, result, due)
        return driver.wake(due)
