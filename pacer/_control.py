"""The reader's controls on a running stream: pause, resume, show all, rate.

A ``Control`` is a value: an ``Action`` and, for ``RATE``, the new natural rate in
characters per second. ``Control.parse`` reads one from JSON (the HTTP route, the
WebSocket, a stream log's control channel), where a rate may come as ``cps`` or as
``wpm`` (a word being five characters), and every bad field is a ``ControlError``
that says which field was wrong and why.

A stage that paces (``Pacer``, ``EventPacer``) takes a control with
``control(control, now)`` at its next decision and returns what it releases (show
all: everything held); ``Pipeline.control`` passes one to each stage in order.
``Flow`` is what the reader asked for so far, as a stage keeps it: paused or not,
paced or not (after show all), so a lane or stage made later starts the same way.

``Mailbox`` is where controls wait for a driver's next decision: ``send`` may be
called from the driver's own event loop (or, for a sync run, any thread); the
driver's loop gives a ``waker`` that interrupts its wait for the source, so a control
is applied at once, not at the next item.

Cost: O(1) per control; a mailbox holds the controls not yet applied.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Final

from ._args import number

__all__ = ["Action", "Control", "ControlError", "Flow", "Mailbox"]


class ControlError(ValueError):
    """A control that cannot be applied: an unknown action, a missing or bad rate."""


class Action(enum.Enum):
    """What a reader asks of a running stream."""

    PAUSE = "pause"
    RESUME = "resume"
    SHOW_ALL = "show_all"
    RATE = "rate"


ACTIONS: Final = tuple(a.value for a in Action)
_WPM_CHARS: Final = 5.0  # characters in a word, for a rate in words per minute


class Control:
    """One control: ``action``, and ``cps`` (characters per second) for ``RATE``."""

    __slots__ = ("action", "cps")

    def __init__(self, action: Action | str, cps: float | None = None) -> None:
        if isinstance(action, str) and action in ACTIONS:
            action = Action(action)
        if not isinstance(action, Action):
            raise ControlError(f"control: action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if action is Action.RATE:
            if cps is None:
                raise ControlError('control: action "rate" needs "cps" (characters per second) or "wpm"')
            cps = _positive(cps, "cps")
        elif cps is not None:
            raise ControlError(
                f'control: only action "rate" takes a rate, got cps={cps!r} with {action.value!r}'
            )
        self.action: Action = action
        self.cps: float | None = cps

    @classmethod
    def parse(cls, body: object) -> Control:
        """A control from a JSON object ``{"action": ..., "cps": N}`` (or ``"wpm": N``)."""
        if not isinstance(body, Mapping):
            raise ControlError(f"control must be a JSON object, got {type(body).__name__}")
        if body.get("action") is None:
            actions = ", ".join(ACTIONS)
            raise ControlError(f'control: the "action" field is missing; it must be one of {actions}')
        action = body["action"]
        cps, wpm = body.get("cps"), body.get("wpm")
        if cps is not None and wpm is not None:
            raise ControlError('control: give "cps" or "wpm", not both')
        if wpm is not None:
            cps = _positive(wpm, "wpm") * _WPM_CHARS / 60.0
        return cls(action if isinstance(action, (str, Action)) else repr(action), cps)

    def as_json(self) -> dict[str, object]:
        """The control as ``parse`` reads it."""
        out: dict[str, object] = {"action": self.action.value}
        if self.cps is not None:
            out["cps"] = self.cps
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Control) and (self.action, self.cps) == (other.action, other.cps)

    def __hash__(self) -> int:
        return hash((self.action, self.cps))

    def __repr__(self) -> str:
        return f"Control({self.action.value!r}" + ("" if self.cps is None else f", cps={self.cps:g}") + ")"


def _positive(value: object, field: str) -> float:
    try:
        rate = number(value, f"control: {field}")
    except (TypeError, ValueError) as exc:
        raise ControlError(str(exc)) from None
    if not 0 < rate < math.inf:
        raise ControlError(f"control: {field}: rate must be a positive finite number, got {value!r}")
    return rate


class Flow:
    """What the reader asked for so far: ``paused``; ``unpaced`` after show all (until a
    rate is set); ``cps``, the last rate set (``None``: the stage's own)."""

    __slots__ = ("cps", "paused", "unpaced")

    def __init__(self) -> None:
        self.paused = False
        self.unpaced = False
        self.cps: float | None = None

    def apply(self, control: Control) -> None:
        """Note ``control``: a pause holds everything, a resume goes back to how it was
        before (paced, or everything at once after show all), show all ends a pause
        too, and a rate paces again."""
        action = control.action
        if action is Action.PAUSE:
            self.paused = True
        elif action is Action.RESUME:
            self.paused = False
        elif action is Action.SHOW_ALL:
            self.paused = False
            self.unpaced = True
        else:
            self.unpaced = False
            self.cps = control.cps

    def replay(self) -> list[Control]:
        """The controls that bring a fresh stage to this state."""
        out = [] if self.cps is None else [Control(Action.RATE, self.cps)]
        if self.unpaced:
            out.append(Control(Action.SHOW_ALL))
        if self.paused:
            out.append(Control(Action.PAUSE))
        return out

    def as_json(self) -> dict[str, object]:
        return {"paused": self.paused, "show_all": self.unpaced}


class Mailbox:
    """Controls waiting for a driver's next decision (module docstring)."""

    __slots__ = ("flow", "pending", "report", "waker")

    def __init__(self) -> None:
        self.pending: deque[Control] = deque()  # appends and pops are thread-safe
        #: Set by the driver's loop: interrupts its wait, so the control applies at once.
        self.waker: Callable[[], None] | None = None
        self.flow = Flow()  # what the controls sent so far ask for
        #: Set by the run: the stream's ``cps`` (its pacers' rate) and ``shown_chars`` (sent so far).
        self.report: Callable[[], dict[str, object]] | None = None

    def state(self) -> dict[str, object]:
        """The stream's state as JSON: ``paused``, ``show_all``, ``cps``, ``shown_chars``."""
        out: dict[str, object] = {**self.flow.as_json(), "cps": self.flow.cps, "shown_chars": None}
        if self.report is not None:
            out.update(self.report())
        if self.flow.cps is not None:
            out["cps"] = self.flow.cps  # asked for, even before the next decision applies it
        return out

    def send(self, control: Control) -> None:
        """Queue ``control`` for the driver's next decision, and wake the driver."""
        if not isinstance(control, Control):
            raise TypeError(f"Mailbox.send takes a Control, got {type(control).__name__}")
        self.flow.apply(control)
        self.pending.append(control)
        waker = self.waker
        if waker is not None:
            waker()

    def take(self) -> list[Control]:
        """The controls sent since the last ``take``, in order."""
        out: list[Control] = []
        pending = self.pending
        while pending:
            out.append(pending.popleft())
        return out
