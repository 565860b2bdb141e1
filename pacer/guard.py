"""Hold each unit of text until a check approves it: ``Guard(check) | Pacer()``.

``check(text)`` (or ``check(text, context)``, ``context`` being the text before the
unit) says whether a unit may be shown: ``True`` passes it, ``False`` blocks it, a
``str`` passes that text instead (a redaction). It may be a plain or an async
function. Units are sentences (clauses past ``max_chars``), cut by a
``SentenceSplitter``, so a check always sees whole units, and a phrase split across
tokens or chunks is whole in the unit (or, across a unit boundary, in ``context``).

A released unit arrives, for the stages after the guard, when it was approved: a
``Pacer`` after it bounds its lag from there (the time to prove a sentence and check
it is the guard's, and is not rushed out in a burst afterwards).

A blocked unit and everything after it are never released: the guard drops them,
records why in ``blocked`` (and the stream's metrics), and a driver stops the source.
A check that raises, answers anything else, or runs longer than ``timeout`` seconds
blocks too (``on_error="block"``, the default: fail closed) or passes
(``on_error="pass"``). The timeout counts from when the check starts to run, not from
when its unit was complete: a check that waits for a free worker is not late.

The stage stays sans-I/O. Driven (``run``, ``arun``, the servers, and ``simulate``
with a modelled ``check_latency``), it hands each complete unit out as a
``CheckRequest`` (``take_requests``) and takes verdicts back (``answer``), in any
order; units are released in order as soon as every unit before them is approved, so
checks run while earlier units are being paced out, several at once when the source
is fast. The live drivers run them on a ``pacer.CheckPool`` (``pool``): a bounded
number at once, a few per stream, streams taking turns, so a flood of checks from
some streams delays another's only by its share. Not driven (``feed``/``flush``, a
pipeline fed by hand), it calls a plain ``check`` inline.

Cost: the splitter's work, plus O(unit) per unit; memory: the units awaiting verdicts.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

from ._args import one_of, seconds, whole
from ._core import CheckingStage, Chunk, closed_error
from ._sentences import SentenceSplitter
from .patterns import Patterns, patterns

__all__ = ["Blocked", "CheckRequest", "Guard", "HoldsTails", "Patterns", "patterns"]

log = logging.getLogger("pacer.guard")

Check = Callable[..., Any]


def call_check(
    request: Any, sync_only: str = "this driver runs plain checks only; use arun for an async check"
) -> object:
    """Run one check here and now: its result, or the exception it raised (an async
    check, which cannot be awaited here, is a ``TypeError`` saying ``sync_only``)."""
    try:
        result = request.guard.call(request)
    except Exception as exc:
        return exc
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()
        return TypeError(sync_only)
    return result


class CheckRequest:
    """One unit to check: its ``text`` and the ``context`` before it; ``guard.call(request)``
    runs the check, and the driver answers with the request itself. Whoever runs the
    check sets ``started`` (clock seconds) when it begins: its timeout counts from then."""

    __slots__ = ("context", "guard", "id", "started", "text")

    def __init__(self, id: int, text: str, context: str, guard: Guard | None = None) -> None:
        self.id = id
        self.text = text
        self.context = context
        self.guard = guard
        self.started: float | None = None  # when the check began to run; None while it waits

    def __repr__(self) -> str:
        return f"CheckRequest(id={self.id}, text={self.text!r})"


class Blocked:
    """Why a stream was stopped: the unit's ``text``, a ``reason``, and when (``at``)."""

    __slots__ = ("at", "reason", "text")

    def __init__(self, text: str, reason: str, at: float) -> None:
        self.text = text
        self.reason = reason
        self.at = at

    def __repr__(self) -> str:
        return f"Blocked({self.reason!r}, text={self.text[:40]!r})"


class _Unit:
    __slots__ = ("chunk", "request", "verdict")

    def __init__(self, chunk: Chunk, request: CheckRequest) -> None:
        self.chunk = chunk
        self.request = request
        self.verdict: str | Blocked | None = None  # the text to release, or why not


class Guard(CheckingStage):
    """Releases each unit only once ``check`` has approved it (see the module docstring).

    ``max_chars`` bounds a unit (cut at a clause, else a space) so a long sentence does
    not wait whole; ``max_hold`` sends a pending unit to be checked after that long
    without input. ``context_chars``: how much of the text before a unit its check is
    given. ``timeout``: the seconds a check may run, from when it starts. ``pool``: the
    ``pacer.CheckPool`` the live drivers run its checks on (default: the one the
    process shares).
    """

    timed = True

    def __init__(
        self,
        check: Check,
        *,
        timeout: float = 5.0,
        on_error: Literal["block", "pass"] = "block",
        max_chars: int | None = 300,
        max_hold: float | None = 2.0,
        context_chars: int = 400,
        lang: Literal["auto", "en", "zh", "ja"] = "auto",
        pool: CheckPoolLike | None = None,
    ) -> None:
        super().__init__()
        if not callable(check):
            raise TypeError(f"Guard: check must be callable, got {type(check).__name__}")
        self._checker = _Checker(check)
        self.timeout = seconds(timeout, "Guard: timeout")
        one_of(on_error, "Guard: on_error", ("block", "pass"))
        self.on_error = on_error
        self.context_chars = whole(context_chars, "Guard: context_chars")
        if pool is not None and not isinstance(pool, CheckPoolLike):
            raise TypeError(f"Guard: pool must be a pacer.CheckPool or None, got {type(pool).__name__}")
        self.pool = pool
        # A check that says which tail could still grow into a match (``pacer.patterns``):
        # that tail waits for the text after it, wherever the unit was cut.
        self._tails = _Tails(check) if isinstance(check, HoldsTails) else None
        self._units = SentenceSplitter(lang, max_chars=max_chars, max_hold=max_hold)
        self._pending: deque[_Unit] = deque()  # in order; few: those awaiting verdicts and after
        self._new: list[CheckRequest] = []
        self._ids = 0
        self._context = ""  # the text of the units before the next one (its tail)
        self._blocked: Blocked | None = None

    def __repr__(self) -> str:
        return f"Guard({getattr(self.check, '__name__', self.check)!r}, timeout={self.timeout:g})"

    # -- stage protocol ------------------------------------------------------------

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        if self.input_ended:
            raise closed_error(self)
        if self._blocked is not None:
            return []  # nothing after a blocked unit is ever released
        return self._units_out(self._units.push(chunk, now), now)

    def poll(self, now: float) -> list[Chunk]:
        out: list[Chunk] = []
        if self._units.deadline is not None and self._units.deadline <= now and self._blocked is None:
            out = self._units_out(self._units.poll(now), now)
        for unit in self._pending:
            started = unit.request.started
            if unit.verdict is None and started is not None and started + self.timeout <= now:
                unit.verdict = self._error(unit, f"check took longer than {self.timeout:g} s", now)
        return out + self._release(now)

    def finish(self, now: float) -> list[Chunk]:
        self.end_input()
        if self._blocked is not None:
            return []
        units = self._units.finish(now)
        tails = self._tails
        if tails is not None and tails.carry is not None and not units:
            units = [Chunk("", tails.carry.arrival)]  # the held tail, checked on its own
        return self._units_out(units, now, final=True)

    def cancel(self, now: float) -> list[Chunk]:
        """Stop: what is approved goes out; nothing unchecked ever does."""
        self.end_input(cancelled=True)
        out = self._release(now)
        self._pending.clear()
        self._new.clear()
        return out

    @property
    def deadline(self) -> float | None:
        best = self._units.deadline if self._blocked is None else None
        for unit in self._pending:
            started = unit.request.started
            if unit.verdict is None and started is not None:
                due = started + self.timeout
                best = due if best is None or due < best else best
        return best

    # -- the check protocol (CheckingStage's): what a driver calls ----------------------

    @property
    def blocked(self) -> Blocked | None:
        """Why the guard stopped the stream (the unit it blocked), or ``None``."""
        return self._blocked

    @property
    def awaiting(self) -> bool:
        """Whether a unit waits for its verdict (the first one held always does)."""
        return bool(self._pending)

    def take_requests(self, now: float) -> list[CheckRequest]:
        """The units to check that no driver has taken yet (each one's timeout runs from
        when whoever runs it sets its ``started``)."""
        out, self._new = self._new, []
        return out

    def answer(self, request: CheckRequest, result: Any, now: float) -> list[Chunk]:
        """The verdict for a request (what ``check`` returned, or the exception it raised);
        returns the chunks now released. A late or unknown answer changes nothing."""
        unit = next((u for u in self._pending if u.request is request), None)
        if unit is None or unit.verdict is not None or self._blocked is not None:
            return []
        unit.verdict = self._verdict(unit, result, now)
        return self._release(now)

    # -- internals -------------------------------------------------------------------

    def _units_out(self, units: list[Chunk], now: float, final: bool = False) -> list[Chunk]:
        out: list[Chunk] = []
        for k, unit_chunk in enumerate(units):
            context = self._context[-self.context_chars :] if self.context_chars else ""
            chunk = self._held_back(unit_chunk, context, final and k == len(units) - 1)
            if chunk is None:
                continue
            self._ids += 1
            request = CheckRequest(self._ids, chunk.text, context, self)
            self._context = (self._context + chunk.text)[-max(self.context_chars, 1) :]
            unit = _Unit(chunk, request)
            self._pending.append(unit)
            if self.driven:
                self._new.append(request)
            else:
                unit.verdict = self._verdict(unit, self._run_inline(request), now)
                out += self._release(now)
                if self._blocked is not None:
                    break
        return out

    def _held_back(self, chunk: Chunk, context: str, last: bool) -> Chunk | None:
        """``chunk`` as it is to be checked now (``_Tails.held_back``), or ``None`` when all
        of it waits; with a check that holds no tails, ``chunk`` itself."""
        if self._tails is None:
            return chunk if chunk.text else None
        return self._tails.held_back(chunk, context, last)

    def _run_inline(self, request: CheckRequest) -> Any:
        return call_check(
            request,
            "Guard: an async check needs a driver that runs checks (run, arun, Hub, the servers, "
            "or simulate with check_latency); feed and flush call a plain check inline",
        )

    @property
    def check(self) -> Check:
        """The check this guard calls."""
        return self._checker.check

    def call(self, request: CheckRequest) -> Any:
        """Call ``check`` for ``request`` (with its context if it takes two arguments)."""
        checker = self._checker
        if checker.with_context:
            return checker.check(request.text, request.context)
        return checker.check(request.text)

    def _verdict(self, unit: _Unit, result: Any, now: float) -> str | Blocked:
        if result is True:
            return unit.chunk.text
        if result is False:
            return Blocked(unit.chunk.text, "blocked by the check", now)
        if isinstance(result, str):
            return result
        if isinstance(result, BaseException):
            return self._error(unit, f"check raised {type(result).__name__}: {result}", now)
        return self._error(unit, f"check must return True, False or a str, got {type(result).__name__}", now)

    def _error(self, unit: _Unit, reason: str, now: float) -> str | Blocked:
        log.warning("pacer guard: %s", reason)
        if self.on_error == "pass":
            return unit.chunk.text
        return Blocked(unit.chunk.text, reason, now)

    def _release(self, now: float) -> list[Chunk]:
        out: list[Chunk] = []
        pending = self._pending
        while pending and pending[0].verdict is not None and self._blocked is None:
            unit = pending.popleft()
            verdict = unit.verdict
            if isinstance(verdict, Blocked):
                self._block(verdict)
                break
            if verdict:
                # It arrives, for the stages after, when it may be shown: a pacer's lag
                # bound then runs from here, and does not rush the check's wait out in a burst.
                out.append(Chunk(verdict, max(now, unit.chunk.arrival), unit.chunk.boundary))
        return out

    def _block(self, blocked: Blocked) -> None:
        self._blocked = blocked
        log.warning("pacer guard: stream stopped: %s", blocked.reason)
        self._pending.clear()
        self._new.clear()


class _Checker:
    """The check, and whether it takes the context as a second argument."""

    __slots__ = ("check", "with_context")

    def __init__(self, check: Check) -> None:
        self.check = check
        self.with_context = _takes_two(check)


class _Tails:
    """A ``HoldsTails`` check's held tail: the end of a unit that could still grow into a
    match, checked in front of the next unit."""

    __slots__ = ("carry", "could_continue")

    def __init__(self, check: HoldsTails) -> None:
        self.could_continue = check.could_continue
        self.carry: Chunk | None = None

    def held_back(self, chunk: Chunk, context: str, last: bool) -> Chunk | None:
        """``chunk`` with the tail held from before in front of it, less the tail that could
        still grow into a match (held for the next unit; nothing is held after the last):
        what to check now, or ``None`` when all of it waits."""
        carry = self.carry
        if carry is not None:
            chunk = Chunk(carry.text + chunk.text, carry.arrival, chunk.boundary)
            self.carry = None
        if last or not chunk.text:
            return chunk if chunk.text else None
        hold = self.could_continue(chunk.text, context)
        if hold <= 0:
            return chunk
        cut = len(chunk.text) - hold
        self.carry = Chunk(chunk.text[cut:], chunk.arrival)
        return Chunk(chunk.text[:cut], chunk.arrival) if cut > 0 else None


@runtime_checkable
class CheckPoolLike(Protocol):
    """What a ``Guard`` takes as its ``pool``: a ``pacer.CheckPool`` (defined with the
    drivers, which run checks; a stage only carries it)."""

    def stream(self, now: Callable[[], float] = ..., token: Any = None) -> Any: ...


@runtime_checkable
class HoldsTails(Protocol):
    """A check that can say how many trailing characters of a text could still become (or
    extend) a match once more text comes: ``pacer.patterns.Patterns``. A ``Guard`` holds
    those back, so a match cut by a hold timer or a length cap is still checked whole."""

    def could_continue(self, text: str, context: str = "") -> int: ...


def _takes_two(check: Check) -> bool:
    """Whether ``check`` takes the context as a second positional argument."""
    try:
        params = list(inspect.signature(check).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)
