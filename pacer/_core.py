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

Cost: the pipeline adds O(1) work per chunk per stage on top of the stages' own
work, and holds nothing itself.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

if TYPE_CHECKING:
    from .metrics import StreamMetrics

__all__ = ["Boundary", "Chunk", "Pipeline", "Stage", "StageClosedError", "pipeline"]


class Boundary(enum.IntEnum):
    """What kind of boundary a chunk ends on, weakest first.

    Ordered so that a comparison reads as it sounds: ``boundary >= Boundary.SENTENCE``
    is a sentence end (or the end of the stream), ``>= Boundary.CLAUSE`` at least a
    clause end; a ``FORCED`` cut is neither.
    """

    NONE = 0
    """The chunk ends mid-word or wherever its producer happened to stop."""
    WORD = 1
    """The chunk ends at a word boundary."""
    FORCED = 2
    """The chunk was cut without a natural boundary (a length budget or a hold timeout)."""
    CLAUSE = 3
    """The chunk ends a clause (a comma, semicolon, colon or dash split)."""
    SENTENCE = 4
    """The chunk ends a sentence, a Markdown block or the stream."""


class Chunk:
    """A piece of text on its way through a pipeline, with what sinks need to know.

    ``arrival`` is when the first character of ``text`` reached the pipeline, in the
    clock's seconds; ``emitted`` is when the pipeline handed the chunk to its sink and
    ``offset`` the UTF-8 byte offset of ``text`` in the pipeline's output; both stay
    ``None`` until the chunk leaves the pipeline.
    """

    __slots__ = ("arrival", "boundary", "emitted", "offset", "text")

    def __init__(self, text: str, arrival: float, boundary: Boundary = Boundary.NONE) -> None:
        self.text = text
        self.arrival = arrival
        self.boundary = boundary
        self.emitted: float | None = None
        self.offset: int | None = None

    @property
    def lag(self) -> float | None:
        """Seconds between arrival and emission, or ``None`` before emission."""
        return None if self.emitted is None else self.emitted - self.arrival

    def __repr__(self) -> str:
        return (
            f"Chunk({self.text!r}, arrival={self.arrival!r}, boundary={self.boundary.name}, "
            f"emitted={self.emitted!r}, offset={self.offset!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Chunk):
            return NotImplemented
        return (self.text, self.arrival, self.boundary) == (other.text, other.arrival, other.boundary)

    __hash__ = None  # type: ignore[assignment]


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
        self._now = 0.0
        self._ended = False  # finish or cancel was called: no more input
        self._closed = False  # cancel (or flush) was called: nothing more out
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
        self._end_input(cancelled=True)
        return self.finish(now) + drain(self, now)

    def _end_input(self, cancelled: bool = False) -> None:
        """Input has ended (``finish``), or the stream was stopped (``cancel``): from now
        on any input is a ``StageClosedError``, and after a cancel ``flush`` returns nothing."""
        self._ended = True
        if cancelled:
            self._closed = True

    def __call__(self, source: Any, **options: Any) -> Any:
        """Run over ``source``: a ``SyncRun`` for iterables, an ``AsyncRun`` for async ones.

        A lone stage runs as a one-stage pipeline. ``options`` are those of ``pacer.run``.
        (Defined here rather than on ``Pipeline`` also because mypyc lays out a compiled
        subclass that adds ``__call__`` differently from its base: setup.py.)
        """
        from collections.abc import AsyncIterable

        from .run import arun, run  # drivers sit above stages; imported only when used

        if isinstance(source, AsyncIterable):
            return arun(self, source, **options)
        return run(self, source, **options)

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
        if self._ended:
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
        if self._closed:
            return []
        return [c.text for c in self.cancel(now)]

    def _tick(self, now: float | None) -> float:
        if now is None:
            return self._now
        if now < self._now:
            raise ValueError(f"{type(self).__name__}: time went backwards ({now} < {self._now})")
        self._now = now
        return now

    def __or__(self, other: Stage) -> Pipeline:
        if not isinstance(other, Stage):
            return NotImplemented
        return Pipeline(self, other)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def closed_error(stage: object) -> StageClosedError:
    """The error for input given to ``stage`` after its end: one message for every stage."""
    return StageClosedError(f"{type(stage).__name__}: input after its end (finish, flush or cancel)")


def drain(stage: Stage, now: float) -> list[Chunk]:
    """Poll a finished stage until it is done, without waiting for its deadlines."""
    out: list[Chunk] = []
    while (deadline := stage.deadline) is not None:
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
            if not hasattr(stage, "_closed"):
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
        self._workers = tuple(i for i, s in enumerate(flat) if hasattr(s, "take_requests"))
        self._timed_or_finishing = self.timed
        self._finishing = False
        self._finished_upto = 0  # stages[:k] have had finish() called
        from .metrics import StreamMetrics

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
        if self._ended:
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
        self._end_input()
        self._finishing = self._timed_or_finishing = True
        return self._step([], 0, now)

    def cancel(self, now: float) -> list[Chunk]:
        self._end_input(cancelled=True)
        items: list[Chunk] = []
        for i, stage in enumerate(self.stages):
            out: list[Chunk] = []
            for chunk in items:
                out.extend(stage.push(chunk, now))
            out.extend(drain(stage, now) if i < self._finished_upto else stage.cancel(now))
            items = out
        self._finished_upto = len(self.stages)
        return self._emit(items, now)

    # -- work for the driver (a Guard's checks) ---------------------------------------

    @property
    def has_checks(self) -> bool:
        """Whether a stage hands out work for its driver (a ``Guard``'s checks)."""
        return bool(self._workers)

    def drive_checks(self) -> bool:
        """Tell the stages that hand out work (``Guard``) that this driver will do it;
        ``False`` when there are none."""
        for i in self._workers:
            self.stages[i].driven = True  # type: ignore[attr-defined]
        return self.has_checks

    def take_requests(self, now: float) -> list[tuple[int, Any]]:
        """``(stage index, request)`` for each piece of work not yet handed out."""
        out: list[tuple[int, Any]] = []
        for i in self._workers:
            out += [(i, r) for r in self.stages[i].take_requests(now)]  # type: ignore[attr-defined]
        return out

    def answer(self, index: int, request: object, result: object, now: float) -> list[Chunk]:
        """A result for stage ``index``'s request; what it releases goes through the rest."""
        items: list[Chunk] = self.stages[index].answer(request, result, now)  # type: ignore[attr-defined]
        if items or self._finishing:
            return self._step(items, index + 1, now)
        return items

    @property
    def blocked(self) -> Any:
        """Why a ``Guard`` in the pipeline stopped the stream (its ``Blocked``), or ``None``;
        once seen, its reason is in ``metrics.blocked`` too."""
        for i in self._workers:
            blocked = getattr(self.stages[i], "blocked", None)
            if blocked is not None:
                self.metrics.blocked = str(getattr(blocked, "reason", blocked))
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
            (self._finishing or self._closed)
            and self._finished_upto == len(self.stages)
            and (self.deadline is None)
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
            if finishing and i == self._finished_upto and all(s.deadline is None for s in self.stages[:i]):
                items.extend(stage.finish(now))
                self._finished_upto += 1
        return self._emit(items, now) if items else items

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
