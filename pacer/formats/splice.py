"""Continuing a broken answer: what each lane produced, the requests that continue it,
and the continuation's events made part of the first stream (issue #41).

When an upstream fails mid-answer (cut, idle, an error event, truncated), a
``Continuation`` (one per stream, made by the format's ``continuation``) knows what
every lane of the client's stream has produced so far, because it ``note``s every
event the client's stream is made of. ``failed`` answers the requests that go on from
there (``Resume``: a body to send, which of its choices feed which client lane, and
the text the new answer must begin with), or raises ``NotContinued`` with the reason
(a policy of ``"error"``, a lane cut inside a tool call's arguments or its reasoning,
an API that cannot take a prefill). ``rewrite`` turns each event of a continuation
stream into events of the client's stream: the first stream's ids and lane indices,
no second opening (role chunk, ``message_start``), the text it must begin with checked
and dropped, its usage held back; ``closing`` ends the client's stream once every
continuation has: the usage summed (and saying so), the API's end event exactly once.

Policies (``POLICIES``): ``"continue"`` asks with the partial answer as the final
assistant message (or appended to the prompt); ``"regenerate"`` re-sends the request
as it came and splices only when the new answer begins with exactly the text produced
(``NotContinued`` at the first character that differs); ``"error"`` never continues.

Usage: each continuation's reported usage is summed; an upstream request that was cut
reported none, so its completion tokens are counted as the text events it sent (one
token each, as vLLM, SGLang and llama.cpp stream) and named in the usage's ``pacer``
field: ``{"continuations": k, "counted_completion_tokens": n}``. Its prompt tokens are
not known, and not counted.

Cost: O(size of the event) per event; memory: the text each lane produced (the
continuation request carries it anyway).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..config import CONTINUATION as POLICIES
from ..sse import ServerSentEvent
from .base import UpstreamError, json_object

__all__ = ["POLICIES", "Continuation", "LaneRecord", "NotContinued", "Resume", "summed"]


class NotContinued(Exception):
    """A broken answer that is not continued; the message says why (for the client)."""


class Resume:
    """One continuation request: its ``body``, which of its choices feed which client
    lane (``lanes``: upstream index -> client lane), and whether its end came (``done``)."""

    __slots__ = ("body", "done", "lanes")

    def __init__(self, body: dict[str, Any], lanes: dict[int, int]) -> None:
        self.body = body
        self.lanes = lanes
        self.done = False

    def __repr__(self) -> str:
        return f"Resume(lanes={self.lanes}, body={self.body!r})"


class LaneRecord:
    """What one client lane has produced: its answer text, the text events of the
    current upstream request (its tokens), whether it ended, and what would make a
    continuation guesswork (``structured``: a reason)."""

    __slots__ = ("finished", "opened", "skip", "structured", "text", "tokens", "total")

    def __init__(self) -> None:
        self.text = ""  # the answer text the client's stream carries
        self.tokens = 0  # text events from the current upstream request
        self.total = 0  # text events from every upstream request
        self.finished = False  # its finish reason (stop reason) went out
        self.opened = False  # its opening (a role, a message_start) went out
        self.structured: str | None = None  # why it cannot be continued
        self.skip = ""  # text the next answer must begin with, dropped from it

    def add(self, text: str) -> None:
        if text:
            self.text += text
            self.tokens += 1
            self.total += 1

    def skipped(self, text: str, lane: int) -> str:
        """``text`` (of a continuation) without what it must begin with; ``NotContinued``
        when it contradicts it."""
        skip = self.skip
        if not skip:
            return text
        common = min(len(skip), len(text))
        if text[:common] != skip[:common]:
            at = len(self.text) - len(skip) + next(i for i in range(common) if text[i] != skip[i])
            raise NotContinued(
                f"the new answer of choice {lane} differs from the text produced at character {at}"
            )
        self.skip = skip[common:]
        return text[common:]


def summed(into: dict[str, Any], usage: Mapping[str, Any]) -> None:
    """Add ``usage``'s numbers into ``into``, field by field (nested objects too)."""
    for key, value in usage.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            into[key] = into.get(key, 0) + value
        elif isinstance(value, Mapping):
            inner = into.setdefault(key, {})
            if isinstance(inner, dict):
                summed(inner, value)


class Continuation:
    """One stream's continuation state for one API (the module docstring); the format's
    subclass says how its events show text, how a request continues, how events splice."""

    #: The policies this API can follow.
    policies: ClassVar[tuple[str, ...]] = POLICIES
    #: The API's name (its format's ``transcript``), for metrics.
    api: ClassVar[str] = "events"
    #: The event types (the data's ``type``) that report the upstream failed.
    ERRORS: ClassVar[tuple[str, ...]] = ("error",)

    def __init__(self, body: Mapping[str, Any], policy: str) -> None:
        if policy not in self.policies:
            raise ValueError(
                f"{type(self).__name__}: policy must be one of {', '.join(self.policies)}, got {policy!r}"
            )
        self.body = dict(body)
        self.policy = policy
        self.lanes: dict[int, LaneRecord] = {}
        self.usage: dict[str, Any] = {}  # summed from the continuations
        self.counted = 0  # completion tokens counted from cut requests
        self.seams = 0  # continuations asked
        self.complete = False  # the client's stream carried its end event

    def lane(self, index: int) -> LaneRecord:
        record = self.lanes.get(index)
        if record is None:
            record = self.lanes[index] = LaneRecord()
        return record

    # -- what the format says -----------------------------------------------------------

    def lane_count(self) -> int:
        """How many lanes the request asked for."""
        return 1

    def note(self, event: ServerSentEvent) -> None:
        """Record what ``event``, as the client's stream carries it, produced."""
        raise NotImplementedError

    def failure(self, event: ServerSentEvent) -> UpstreamError | None:
        """The failure an upstream's event reports (an ``error`` event, or data of a type
        in ``ERRORS``), else ``None``."""
        body = json_object(event.data)
        if event.event != "error" and (body is None or body.get("type") not in self.ERRORS):
            return None
        error = body.get("error") if body is not None else None
        message = error.get("message") if isinstance(error, dict) else event.data[:200]
        return UpstreamError(f"upstream error: {message}", body={"error": error} if error else None)

    def continued(self, lane: int, record: LaneRecord) -> Resume:
        """The request that continues ``lane`` from ``record.text`` (policy ``continue``)."""
        raise NotContinued("this API cannot continue an answer")

    def rewrite(self, resume: Resume, event: ServerSentEvent) -> list[ServerSentEvent]:
        """A continuation's event as events of the client's stream (maybe none)."""
        raise NotImplementedError

    def closing(self) -> list[ServerSentEvent]:
        """The client stream's end once every continuation has ended."""
        raise NotImplementedError

    # -- the same for every API ---------------------------------------------------------

    def failed(self, lanes: set[int] | None, busy: set[int]) -> list[Resume]:
        """The requests that go on after the upstream request feeding ``lanes`` (``None``:
        the first, every lane) failed; ``busy``: lanes other continuations feed."""
        if self.policy == "error":
            raise NotContinued("this route's continuation policy is 'error'")
        cut = set(range(self.lane_count())) | set(self.lanes) if lanes is None else lanes
        for index in cut:
            record = self.lane(index)
            self.counted += record.tokens
            record.tokens = 0
        waiting = sorted(i for i in cut - busy if not self.lane(i).finished)
        for index in waiting:
            if (reason := self.lane(index).structured) is not None:
                raise NotContinued(f"choice {index} was cut inside {reason}, which is never continued")
        if not waiting:
            return []
        self.seams += 1
        if self.policy == "regenerate":
            return [self._regenerated(busy)]
        empty = [i for i in waiting if not self.lane(i).text]
        resumes = [self.continued(i, self.lane(i)) for i in waiting if self.lane(i).text]
        if empty:  # nothing to continue: ask again as the client asked, for those lanes
            resumes.append(Resume(self._fresh(), {i: i for i in empty}))
        return resumes

    def _regenerated(self, busy: set[int]) -> Resume:
        """The request asked again, each lane's new answer checked against what it produced."""
        lanes = {i: i for i in set(range(self.lane_count())) | set(self.lanes) if i not in busy}
        for index in lanes:
            record = self.lane(index)
            record.skip = record.text
        return Resume(self._fresh(), lanes)

    def _fresh(self) -> dict[str, Any]:
        return dict(self.body)

    def note_usage(self) -> dict[str, Any] | None:
        """The usage to report: the continuations' summed, the cut requests' completion
        tokens counted, and a ``pacer`` field saying so; ``None`` when no usage came."""
        if not self.usage:
            return None
        usage = {key: (dict(v) if isinstance(v, dict) else v) for key, v in self.usage.items()}
        return usage | {"pacer": {"continuations": self.seams, "counted_completion_tokens": self.counted}}


def remaining(
    body: Mapping[str, Any], keys: tuple[str, ...], used: int, default: int | None = None
) -> dict[str, Any]:
    """The token limits of ``body`` (``keys``) less the ``used`` tokens; ``NotContinued``
    when one is spent."""
    out: dict[str, Any] = {}
    for key in keys:
        value = body.get(key, default if key == keys[0] else None)
        if isinstance(value, int) and not isinstance(value, bool):
            if value - used < 1:
                raise NotContinued(f"{key} ({value}) was spent before the cut")
            out[key] = value - used
    return out
