"""What a stage is, what flows between stages, and how stages compose.

A stage is a synchronous, sans-I/O object. It is *pushed* chunks and returns the
chunks it is ready to emit; it never reads a socket, never sleeps and never looks
at a clock: the current time is always an argument. A stage that wants to act
later (a pacer releasing the next word, a splitter whose hold timer runs out)
says so through ``deadline``, the absolute time at which the driver must call
``poll(now)``. That is the one wake-up shape every time-driven stage uses.

End of input is ``finish(now)``; after it, the driver keeps calling ``poll`` at
each ``deadline`` until ``deadline`` is ``None``: then the stage is done. A stage
that can emit everything at once simply does so in ``finish``. ``cancel(now)``
ends the stream early and returns everything still held, unpaced.

The vocabulary, in one place. Three ways in, each a layer on the one below:
``push(chunk, now)`` (a ``Chunk`` from the stage before), ``ingest(item, now)`` (a
raw item from a source: text stages take ``str``, the detokenizer ids) and
``feed(item)`` (stand-alone use: plain values in, a list of ``str`` out). Three ways
to end: ``finish(now)`` (no more input; the rest follows through ``poll``),
``cancel(now)`` (stop: everything held, at once) and ``flush()`` (stand-alone: the
same as ``cancel``, as ``str``). After ``finish`` or ``cancel`` any input, by any of
the three, is a ``StageClosedError``; ``flush`` after ``cancel`` returns nothing.

A stage that hands work to its driver (a ``Guard``'s checks) is a ``CheckingStage``:
the typed check protocol (``drive_checks``, ``take_requests``, ``answer(request,
result, now)``, ``blocked``), which ``Pipeline`` offers too for all its stages at once.
A reader's controls (``pacer._control``: pause, resume, show all, rate) reach a stage
through ``control(control, now)``; a paused stage that holds text has the deadline
``inf`` (it waits for a control, not for time).
``Chunk`` and ``Boundary`` live one layer down (``_chunk``), the per-stream metrics a
pipeline records into too (``_metrics``); drivers sit above (``_driver``, ``run``):
``stage(source)`` reaches them through the runner ``pacer.run`` registers here.

Cost: the pipeline adds O(1) work per chunk per stage on top of the stages' own
work, and holds nothing itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from mypy_extensions import mypyc_attr

from ._chunk import Boundary, Chunk
from ._control import Control
from ._metrics import StreamMetrics

__all__ = [
    "Boundary",
    "CheckingStage",
    "Chunk",
    "Pipeline",
    "Stage",
    "StageClosedError",
    "pipeline",
    "set_runner",
]

#: What runs a stage over a source (``stage(source, **options)``): ``(stage, source,
#: options) -> run``. Drivers sit above stages and import them, so a stage reaches its
#: driver through this one slot, filled by ``pacer.run`` when it is imported (which
#: ``import pacer`` does before anything else can be called).
Runner = Callable[["Stage", Any, dict[str, Any]], Any]
_runners: list[Runner] = []


def set_runner(runner: Runner) -> None:
    """Make ``runner`` what ``stage(source)`` calls (``pacer.run`` registers itself)."""
    _runners[:] = [runner]


@mypyc_attr(native_class=False)  # compiled classes cannot derive from built-in exceptions
class StageClosedError(RuntimeError):
    """Input was given to a stage after ``finish`` or ``cancel``."""


@mypyc_attr(allow_interpreted_subclasses=True)  # users write stages
class Stage:
    """Base class of every stage: subclasses implement ``push`` and, if needed, the rest.

    Subclasses must call ``super().__init__()``. Stand-alone users call ``feed`` and
    ``flush``, which take plain values and return plain strings; pipelines call
    ``push``/``poll``/``finish`` with ``Chunk`` objects.
    """

    #: True for stages whose ``deadline`` can be set: drivers only wait on those.
    timed: bool = False

    def __init__(self) -> None:
        #: The time the stand-alone API (``feed``, ``flush``) last had, in seconds: what
        #: they use when given none.
        self.feed_time = 0.0
        #: ``finish`` or ``cancel`` was called: any more input is a ``StageClosedError``.
        self.input_ended = False
        #: ``cancel`` (or ``flush``) was called: nothing more comes out.
        self.cancelled = False
        # A compiled Stage (setup.py) keeps ``timed`` in a slot, which a ``timed = True``
        # in the body of an interpreted subclass does not reach: copy it there.
        timed = getattr(type(self), "timed", False)
        if type(timed) is bool:
            self.timed = timed

    # -- the protocol a stage implements -------------------------------------------

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        """Take one chunk; return the chunks now ready, in order, in a list the caller may keep."""
        raise NotImplementedError

    def poll(self, now: float) -> list[Chunk]:
        """Called at or after ``deadline``; return what is due by ``now``."""
        return []

    def finish(self, now: float) -> list[Chunk]:
        """End of input: return what can go out now; the rest follows through ``poll``."""
        return []

    def cancel(self, now: float) -> list[Chunk]:
        """Stop early: return everything still held, at once."""
        self.end_input(cancelled=True)
        return self.finish(now) + drain(self, now)

    def control(self, control: Control, now: float) -> list[Chunk]:
        """A reader's control (``pacer._control``: pause, resume, show all, rate), applied
        now; returns what it releases. A stage that does not pace ignores it."""
        return []

    def end_input(self, cancelled: bool = False) -> None:
        """Input has ended (``finish`` calls this), or the stream was stopped (``cancel``,
        with ``cancelled``): from now on any input is a ``StageClosedError``, and after a
        cancel ``flush`` returns nothing."""
        self.input_ended = True
        if cancelled:
            self.cancelled = True

    def __call__(self, source: Any, **options: Any) -> Any:
        """Run over ``source``: a ``SyncRun`` for iterables, an ``AsyncRun`` for async ones.

        A lone stage runs as a one-stage pipeline. ``options`` are those of ``pacer.run``.
        (Defined here rather than on ``Pipeline`` also because mypyc lays out a compiled
        subclass that adds ``__call__`` differently from its base: setup.py.) The driver
        is the one ``pacer.run`` registered (``set_runner``): drivers sit above stages.
        """
        if not _runners:
            raise RuntimeError("no driver registered: import pacer (pacer.run registers it)")
        return _runners[0](self, source, options)

    @property
    def deadline(self) -> float | None:
        """Absolute time at which ``poll`` must be called next, or ``None``."""
        return None

    def ingest(self, item: object, now: float) -> list[Chunk]:
        """Take a raw item from a source; text stages accept ``str`` or ``Chunk``."""
        if isinstance(item, Chunk):
            return self.push(item, now)
        if isinstance(item, str):
            return self.push(Chunk(item, now), now)
        raise TypeError(
            f"{type(self).__name__} takes str or Chunk, got {type(item).__name__}: {_preview(item)}"
        )

    # -- the stand-alone API --------------------------------------------------------

    def feed(self, item: Any, now: float | None = None) -> list[str]:
        """Give the stage one item; return the texts ready now."""
        now = self._tick(now)
        if self.input_ended:
            raise closed_error(self)
        out = self.ingest(item, now)
        if self.timed:
            deadline = self.deadline
            if deadline is not None and deadline <= now:
                out.extend(self.poll(now))
        return [c.text for c in out]

    def flush(self, now: float | None = None) -> list[str]:
        """End of input: return every text still held, at once."""
        now = self._tick(now)
        if self.cancelled:
            return []
        return [c.text for c in self.cancel(now)]

    def _tick(self, now: float | None) -> float:
        if now is None:
            return self.feed_time
        if now < self.feed_time:
            raise ValueError(f"{type(self).__name__}: time went backwards ({now} < {self.feed_time})")
        self.feed_time = now
        return now

    def __or__(self, other: Stage) -> Pipeline:
        if not isinstance(other, Stage):
            return NotImplemented
        return Pipeline(self, other)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@mypyc_attr(allow_interpreted_subclasses=True)  # Guard, EventPacer and users' stages
class CheckingStage(Stage):
    """A stage that hands work to its driver: checks (a ``Guard``'s) to run elsewhere.

    The check protocol, the same on ``Pipeline``: ``drive_checks()`` is called once,
    before any input, by the driver that will run the checks (without one the stage
    runs them itself, inline); after every step ``take_requests(now)`` gives the new
    requests, and ``answer(request, result, now)`` takes one's result (what the check
    returned, or the exception it raised) and returns the chunks it releases.
    ``blocked`` is why the stage stopped the stream, or ``None``; ``awaiting``, whether
    an answer is still due: plain reads.
    """

    def __init__(self) -> None:
        super().__init__()
        self.driven = False  # a driver takes the requests; else the stage checks inline

    def drive_checks(self) -> None:
        """A driver will take this stage's requests and answer them (call before any input)."""
        self.driven = True

    def take_requests(self, now: float) -> list[Any]:
        """The requests no driver has taken yet."""
        return []

    def answer(self, request: Any, result: object, now: float) -> list[Chunk]:
        """``request``'s result; returns the chunks it releases."""
        return []

    @property
    def blocked(self) -> Any:
        """Why the stage stopped the stream, or ``None``."""
        return None

    @property
    def awaiting(self) -> bool:
        """Whether a request it handed out still waits for its answer (one that has not
        started has no deadline yet: the driver must not take the stage for done)."""
        return False


def closed_error(stage: object) -> StageClosedError:
    """The error for input given to ``stage`` after its end: one message for every stage."""
    return StageClosedError(f"{type(stage).__name__}: input after its end (finish, flush or cancel)")


def drain(stage: Stage, now: float) -> list[Chunk]:
    """Poll a finished stage until it is done, without waiting for its deadlines; a stage
    that waits for a control (a paused ``Pacer``: deadline ``inf``) hands over the rest at once."""
    out: list[Chunk] = []
    while (deadline := stage.deadline) is not None:
        if deadline == math.inf:
            return out + stage.cancel(now)
        out.extend(stage.poll(max(now, deadline)))
    return out


def _preview(item: object, limit: int = 40) -> str:
    text = repr(item)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Pipeline(Stage):
    """Stages run left to right as one stage: ``Detokenizer(tok) | SentenceSplitter()``.

    The last stage's chunks are stamped with ``emitted`` and ``offset`` and counted in
    ``metrics`` as they leave. A pipeline is itself a stage, so pipelines nest.
    """

    def __init__(self, *stages: object) -> None:
        # ``object``, checked below: a compiled build (setup.py) would otherwise reject a
        # non-stage before this runs, with a message that does not say where it was.
        super().__init__()
        flat: list[Stage] = []
        for stage in stages:
            if isinstance(stage, Pipeline):
                flat.extend(stage.stages)
            elif isinstance(stage, Stage):
                flat.append(stage)
            else:
                raise TypeError(f"Pipeline takes stages, got {type(stage).__name__}: {_preview(stage)}")
        if not flat:
            raise ValueError("Pipeline needs at least one stage")
        for stage in flat:
            if not hasattr(stage, "input_ended"):
                raise TypeError(f"{type(stage).__name__}.__init__ did not call Stage.__init__()")
        self.stages: tuple[Stage, ...] = tuple(flat)
        self.timed = any(s.timed for s in flat)
        self._timed_stages = tuple(s for s in flat if s.timed)  # the only ones with deadlines
        # Called with ``now`` boxed once per item (``Any``): a compiled build would box it per call.
        self._first_ingest: Any = flat[0].ingest
        self._pushes: tuple[Any, ...] = tuple(s.push for s in flat[1:])
        # (stage, timed) from stage 0 and from stage 1: what _step walks.
        plan = tuple((s, s.timed) for s in flat)
        self._plans = tuple(plan[i:] for i in range(len(plan) + 1))
        # Stages with work for a driver (a Guard's checks), by index.
        self._workers = tuple(i for i, s in enumerate(flat) if isinstance(s, CheckingStage))
        self._asked: dict[int, tuple[int, Any]] = {}  # id(request) -> (its stage, the request)
        # Stages with checks go through _step, which notes a block in the metrics.
        self._timed_or_finishing = self.timed or bool(self._workers)
        self._finishing = False
        self._finished_upto = 0  # stages[:k] have had finish() called
        self.metrics: StreamMetrics = StreamMetrics()

    def __or__(self, other: Stage) -> Pipeline:
        if not isinstance(other, Stage):
            return NotImplemented
        return Pipeline(*self.stages, other)

    def __ror__(self, other: Stage) -> Pipeline:
        if not isinstance(other, Stage):
            return NotImplemented
        return Pipeline(other, *self.stages)

    def __repr__(self) -> str:
        return " | ".join(repr(s) for s in self.stages)

    # -- stage protocol --------------------------------------------------------------

    def ingest(self, item: object, now: float) -> list[Chunk]:
        if self.input_ended:
            raise closed_error(self)
        metrics = self.metrics
        metrics.items_in += 1
        if metrics.first_input is None:
            metrics.first_input = now
        when: Any = now
        items: list[Chunk] = self._first_ingest(item, when)
        if self._timed_or_finishing:
            return self._step(items, 1, now)
        # No timers and no end of input to handle: only pushes, left to right.
        for push in self._pushes:
            if not items:
                return items
            if len(items) == 1:
                items = push(items[0], when)
            else:
                items = [out for chunk in items for out in push(chunk, when)]
        return self._emit(items, now) if items else items

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        return self.ingest(chunk, now)

    def poll(self, now: float) -> list[Chunk]:
        out = self._step([], 0, now)
        for stage in self._timed_stages:  # the others never have a deadline
            d = stage.deadline
            if d is not None and d <= now:
                raise RuntimeError(f"{stage!r} left its deadline {d} at or before now ({now}) after poll")
        return out

    def finish(self, now: float) -> list[Chunk]:
        self.end_input()
        self._finishing = self._timed_or_finishing = True
        return self._step([], 0, now)

    def cancel(self, now: float) -> list[Chunk]:
        self.end_input(cancelled=True)
        items: list[Chunk] = []
        for i, stage in enumerate(self.stages):
            out: list[Chunk] = []
            for chunk in items:
                out.extend(stage.push(chunk, now))
            out.extend(drain(stage, now) if i < self._finished_upto else stage.cancel(now))
            items = out
        self._finished_upto = len(self.stages)
        return self._emit(items, now)

    def control(self, control: Control, now: float) -> list[Chunk]:
        """Each stage takes the control in turn; what one releases goes through the stages
        after it (which then take the control themselves)."""
        out: list[Chunk] = []
        for i, stage in enumerate(self.stages):
            released = stage.control(control, now)
            if released:
                out.extend(self._step(released, i + 1, now))
        return out

    # -- the check protocol (CheckingStage's), for the stages that have checks ----------

    @property
    def has_checks(self) -> bool:
        """Whether a stage hands out work for its driver (a ``Guard``'s checks)."""
        return bool(self._workers)

    def drive_checks(self) -> bool:
        """The driver will run the checks of the stages that have them (``Guard``): each
        is told so, through its own ``drive_checks``; ``False`` when there are none."""
        for i in self._workers:
            stage: Any = self.stages[i]
            stage.drive_checks()
        return self.has_checks

    def take_requests(self, now: float) -> list[Any]:
        """Every request of the pipeline's stages not yet handed out."""
        out: list[Any] = []
        for i in self._workers:
            stage: Any = self.stages[i]
            for request in stage.take_requests(now):
                self._asked[id(request)] = (i, request)
                out.append(request)
        return out

    def answer(self, request: Any, result: object, now: float) -> list[Chunk]:
        """A request's result; what its stage releases goes through the stages after it.
        An answer to a request this pipeline never handed out changes nothing."""
        asked = self._asked.pop(id(request), None)
        if asked is None or asked[1] is not request:
            return []
        index = asked[0]
        stage: Any = self.stages[index]
        items: list[Chunk] = stage.answer(request, result, now)
        if items or self._finishing:
            return self._step(items, index + 1, now)
        self._note_blocked()
        return items

    @property
    def awaiting(self) -> bool:
        """Whether a stage's request still waits for its answer (``CheckingStage.awaiting``)."""
        for i in self._workers:
            stage: Any = self.stages[i]
            if stage.awaiting:
                return True
        return False

    @property
    def blocked(self) -> Any:
        """Why a ``Guard`` in the pipeline stopped the stream (its ``Blocked``), or ``None``."""
        for i in self._workers:
            stage: Any = self.stages[i]
            blocked = stage.blocked
            if blocked is not None:
                return blocked
        return None

    @property
    def deadline(self) -> float | None:
        best: float | None = None
        for stage in self._timed_stages:
            d = stage.deadline
            if d is not None and (best is None or d < best):
                best = d
        return best

    @property
    def done(self) -> bool:
        """True once input has ended and every stage has emitted everything."""
        return (
            (self._finishing or self.cancelled)
            and self._finished_upto == len(self.stages)
            and (self.deadline is None)
            and not (self._workers and self.awaiting)
        )

    # -- internals -----------------------------------------------------------------

    def _step(self, items: list[Chunk], start: int, now: float) -> list[Chunk]:
        finishing = self._finishing
        i = start - 1
        for stage, timed in self._plans[start]:
            i += 1
            if items:
                if len(items) == 1:
                    items = stage.push(items[0], now)
                else:
                    out: list[Chunk] = []
                    for chunk in items:
                        out.extend(stage.push(chunk, now))
                    items = out
            if timed:
                d = stage.deadline
                if d is not None and d <= now:
                    if items:  # a list this pipeline owns (push returns one the caller may keep)
                        items.extend(stage.poll(now))
                    else:
                        items = stage.poll(now)
            if finishing and i == self._finished_upto and self._settled(i):
                items.extend(stage.finish(now))
                self._finished_upto += 1
        if self._workers:
            self._note_blocked()
        return self._emit(items, now) if items else items

    def _settled(self, upto: int) -> bool:
        """Whether ``stages[:upto]`` have nothing more to give: no deadline, and no answer
        due (a check still queued has no deadline yet)."""
        for stage in self.stages[:upto]:
            if stage.deadline is not None or getattr(stage, "awaiting", False):
                return False
        return True

    def _note_blocked(self) -> None:
        """Record in the metrics why a check stopped the stream, the step it happens."""
        metrics = self.metrics
        if metrics.blocked is None:
            blocked = self.blocked
            if blocked is not None:
                metrics.blocked = str(getattr(blocked, "reason", blocked))

    def _emit(self, items: list[Chunk], now: float) -> list[Chunk]:
        metrics = self.metrics
        when: float | None = now  # boxed once for all the chunks
        for chunk in items:
            chunk.emitted = when
            chunk.offset = metrics.bytes_out
            metrics.record(chunk, now)
        return items


def pipeline(*stages: object) -> Pipeline:
    """Compose stages left to right; the same as joining them with ``|``.

    Anything but a ``Stage`` is a ``TypeError`` naming it (checked by ``Pipeline``).
    """
    return Pipeline(*stages)
