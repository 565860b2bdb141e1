"""The one driver core: what a loop running a pipeline must do next, sans I/O.

In the manner of h11's ``next_event``, a ``Driver`` wraps a pipeline and, asked
``next(now)``, says what it needs:

- ``Need.READ``: the next source item, waiting no later than ``until`` (``None``: as
  long as it takes). Report back with ``item(x, now)``; ``wake(now)`` if the wait ran
  out first; ``end(now)`` at the end of the source; ``fail(now)`` if it raised. An item
  read after ``until`` goes to ``late(x, now)`` instead (``read(x, now, until)`` picks).
- ``Need.END``: stop reading (a check blocked the stream); call ``end(now)``.
- ``Need.SLEEP``: the source is over; sleep until ``until`` (``None``: until a check's
  answer comes), then ``wake(now)``.
- ``Need.WAIT``: the source is over and the rest is paused (a reader's control):
  wait for the next control, then ``control(c, now)``.
- ``Need.DONE``: everything has gone out.

Every report returns the chunks to emit now. ``stop(now)`` (the consumer left early)
returns what the pipeline held, never to be shown. ``control(c, now)`` applies a
reader's control (``pacer._control``) at this decision and returns what it releases;
while paused, a ``READ`` waits for the source with no deadline. The loop around a driver does only
what is I/O (read, sleep, emit, run a check), so the loops (``run`` sync and timed,
``arun`` on asyncio and trio, ``simulate`` on virtual time, ``Mux``/``Hub``, the
playground) are a few lines each and cannot disagree on the order of things.

The driver owns a pipeline's checks (a ``Guard``'s): given ``start`` at construction,
it tells the pipeline that it runs them (``drive_checks``) and, after every step,
calls ``start(request, now, reply)`` for each new request (whoever runs it sets its
``started`` when it begins: the live loops queue it on a ``pacer.CheckPool``, so that
may be later). The loop hands each result
back with ``answer(request, result, now)`` (applied now, its output returned) or
``finished(request, result)`` (from any thread; applied at the next step). While
checks are in flight a live driver (``poll`` seconds) asks to be woken that often to
collect them. Without ``start`` a ``Guard`` checks inline.

Cost: O(1) per step on top of the pipeline's work; with checks, O(stages) more per
step to look for new requests and for a block.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from ._control import Control
from ._core import Chunk, Pipeline, Stage

__all__ = ["DONE", "END", "POLL", "READ", "SLEEP", "WAIT", "Driver", "Need", "as_pipeline"]

#: How often a live driver collects finished checks while some are in flight (seconds).
POLL = 0.005

#: How a loop runs a check: ``start(request, now, reply)``, with the time it was handed
#: out; ``reply(request, result)`` (the driver's ``finished``) may hand the result back.
Start = Callable[[Any, float, Callable[[Any, object], None]], object]


class Need(enum.Enum):
    """What a ``Driver`` needs next (see the module docstring)."""

    READ = "read"
    END = "end"
    SLEEP = "sleep"
    WAIT = "wait"
    DONE = "done"


# The members as plain names: a loop compares one per step, and ``Need.READ`` is a
# class attribute lookup each time (tens of nanoseconds) where a global is one.
READ: Final = Need.READ
END: Final = Need.END
SLEEP: Final = Need.SLEEP
WAIT: Final = Need.WAIT
DONE: Final = Need.DONE


class Phase(enum.Enum):
    """Where a run stands: the source is read, then the rest drains, then it is over."""

    READING = "reading"
    FINISHING = "finishing"
    OVER = "over"


_READING: Final = Phase.READING
_FINISHING: Final = Phase.FINISHING
_OVER: Final = Phase.OVER


def as_pipeline(stage: object, who: str) -> Pipeline:
    """``stage`` as a pipeline (a lone stage is a one-stage pipeline); for anything else
    a ``TypeError`` that names ``who`` (the driver) and what it got."""
    if isinstance(stage, Pipeline):
        return stage
    if isinstance(stage, Stage):
        return Pipeline(stage)
    raise TypeError(f"{who}: stage must be a Stage or Pipeline, got {type(stage).__name__}")


def _finite(deadline: float | None) -> float | None:
    """A deadline to wait for: ``inf`` (paused) is none."""
    return None if deadline == math.inf else deadline


class Driver:
    """A pipeline and where its run stands: reading, finishing, done (module docstring).

    ``start``: how the loop runs a check (``None``: checks run inline, in the stage);
    ``poll``: while checks are in flight, ``until`` is at most this many seconds away
    (``None``: answers come only through ``answer``, as on virtual time).
    """

    def __init__(self, pipeline: Pipeline, start: Start | None = None, poll: float | None = None) -> None:
        self.pipeline = pipeline
        #: With READ and SLEEP: when to wake at the latest (clock seconds), or ``None``.
        self.until: float | None = None
        self.checks = start is not None and pipeline.drive_checks()
        self.in_flight = 0  # checks started and not yet answered
        self._start = start if self.checks else None  # dropped at the end: no cycle stays
        self._poll = poll
        # Answers finished on other threads (a deque: appends are thread-safe); only where
        # there are checks, as a stream of a Mux with none should cost no more than it did.
        self._answers: deque[tuple[Any, object]] | None = deque() if self.checks else None
        self.phase = _READING
        self.controlled = False  # a control came: a deadline may be ``inf`` (paused)

    def __repr__(self) -> str:
        return f"Driver({self.pipeline!r}, {self.phase.value})"

    # -- what the loop asks ----------------------------------------------------------

    @property
    def reading(self) -> bool:
        """Whether the source is still wanted (not ended, not stopped by a check)."""
        return self.phase is _READING and not (self.checks and self.pipeline.blocked is not None)

    @property
    def waiting(self) -> bool:
        """Whether a check handed out is still to be answered, the run not over."""
        return self.checks and self.phase is not _OVER and self.pipeline.awaiting

    @property
    def done(self) -> bool:
        """Whether the run is over: ``DONE`` was said, or the source failed, or ``stop``."""
        return self.phase is _OVER

    def next(self, now: float) -> Need:
        """What the loop must do next; sets ``until`` for ``READ`` and ``SLEEP``."""
        p = self.pipeline
        phase = self.phase
        if phase is _READING:
            if not self.checks:  # the common case, once per item: no more than it takes
                self.until = p.deadline
                if self.controlled and self.until == math.inf:
                    self.until = None  # paused: only the source (or a control) wakes it
                return READ
            if p.blocked is not None:
                self.until = None
                return END
            self.until = self._wake_at(_finite(p.deadline), now)
            return READ
        if phase is _FINISHING:
            deadline = p.deadline
            awaiting = self.checks and p.awaiting  # a queued check has no deadline yet
            if deadline == math.inf and not awaiting:
                self.until = self._wake_at(None, now)
                return WAIT if self.until is None else SLEEP
            if deadline is not None or awaiting:
                self.until = self._wake_at(_finite(deadline), now)
                return SLEEP
            self._finish()
        self.until = None
        return DONE

    def feeder(self) -> Callable[[Any, float], list[Chunk]]:
        """What to call per item: ``item``, or the pipeline's own ``ingest`` where there
        are no checks to look after (one call less per item, for the fast loops)."""
        return self.item if self.checks else self.pipeline.ingest

    # -- what the loop reports ---------------------------------------------------------

    def item(self, item: object, now: float) -> list[Chunk]:
        """A source item, read at ``now``."""
        out = self.pipeline.ingest(item, now)
        return self._after(out, now) if self.checks else out

    def read(self, item: object, now: float, until: float | None) -> list[Chunk]:
        """A source item read at ``now`` by a loop that waited for it until ``until``
        (``None``: no deadline): ``item``, or ``late`` when the read came after that."""
        return self.item(item, now) if until is None or now <= until else self.late(item, now)

    def late(self, item: object, now: float) -> list[Chunk]:
        """A source item read at ``now``, after the ``until`` the loop waited for (a timer
        that fired late, a busy loop): first the deadlines that passed meanwhile, each at
        its own time, as ``simulate`` orders them; then the item, unless a check they let
        finish blocked the stream. Fed first, the item would pace with its own rate what
        was due before it came, all at once."""
        p = self.pipeline
        out: list[Chunk] = []
        last = -math.inf
        while (due := p.deadline) is not None and last < due <= now:
            out.extend(self.wake(due))
            last = due  # a deadline that does not move on is not woken twice
        return out + self.item(item, now) if self.reading else out

    def wake(self, now: float) -> list[Chunk]:
        """A wait ran out (a deadline, or a look for answers): what is due."""
        out = self.pipeline.poll(now)
        return self._after(out, now) if self.checks else out

    def end(self, now: float) -> list[Chunk]:
        """The source ended (or ``END`` was asked): what can go out now; the rest
        follows at ``SLEEP``s."""
        self.phase = _FINISHING
        out = self.pipeline.finish(now)
        return self._after(out, now) if self.checks else out

    def fail(self, now: float) -> list[Chunk]:
        """The source raised: everything the pipeline holds, at once (then re-raise)."""
        self._finish()
        return self.pipeline.cancel(now)

    def stop(self, now: float) -> list[Chunk]:
        """The consumer left early: what the pipeline held (not shown); nothing once done."""
        p = self.pipeline
        finished = self.phase is _OVER or p.done or p.cancelled
        self._finish()
        return [] if finished else p.cancel(now)

    def control(self, control: Control, now: float) -> list[Chunk]:
        """A reader's control, applied now (at this decision): what it releases."""
        p = self.pipeline
        if self.phase is _OVER or p.cancelled:
            return []
        self.controlled = True
        out = p.control(control, now)
        return self._after(out, now) if self.checks else out

    def answer(self, request: Any, result: object, now: float) -> list[Chunk]:
        """A check's result, applied now: what it releases."""
        p = self.pipeline
        if self.phase is _OVER or p.cancelled:
            return []
        self.in_flight -= 1
        return self._after(p.answer(request, result, now), now)

    def release(self) -> None:
        """The loop is done with the run: let go of ``start`` (so no reference cycle stays)."""
        self._start = None

    def finished(self, request: Any, result: object) -> None:
        """A check's result, from any thread: applied at the next step."""
        if self._answers is not None:
            self._answers.append((request, result))

    # -- internals -----------------------------------------------------------------------

    def _wake_at(self, deadline: float | None, now: float) -> float | None:
        if not self.in_flight or self._poll is None:
            return deadline
        soon = now + self._poll
        return soon if deadline is None or soon < deadline else deadline

    def _after(self, out: list[Chunk], now: float) -> list[Chunk]:
        """After a step: the answers that came meanwhile, then the new checks started."""
        p = self.pipeline
        answers = self._answers
        while answers:
            request, result = answers.popleft()
            self.in_flight -= 1
            out = out + p.answer(request, result, now)
        start = self._start
        if start is not None:
            for request in p.take_requests(now):
                self.in_flight += 1
                start(request, now, self.finished)
        return out

    def _finish(self) -> None:
        self.phase = _OVER
        self._start = None
