"""The driver that keeps a paced stream's events coming when its upstream fails mid-answer.

``Continuing.events`` wraps the first upstream's SSE events: every event passes as it
came (``Continuation.note`` records what it produced) until the upstream fails (a cut
connection, an idle timeout, an error event, an end before the end event). Then the
format's ``Continuation`` says which requests go on from exactly the text produced
(``failed``), ``reopen`` sends each (to the same upstream or, with a pool, another),
and their events, rewritten into the first stream's (``rewrite``), follow in the same
iterator: the ``EventPacer`` behind it is fed on as if nothing happened, so the pace,
the stream id and the SSE ids go on through the seam. A continuation that fails
again is continued again, within ``attempts`` requests for the stream (with a short
backoff between failed ones). A refusal (``NotContinued``) or a spent budget ends the
stream with the first failure's error, its message saying why it was not continued.

Several continuations at once (one per lane of an ``n > 1`` request) are read in turn,
one event of each: they come from one upstream at the same pace.

Cost: the format's per event, plus one ``await`` per event; memory: the text produced.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from ._aio import aclose_source
from .adapters import asse_events
from .formats import UpstreamError
from .formats.splice import Continuation, NotContinued, Resume
from .sse import ServerSentEvent

__all__ = ["Continuing", "Reopen", "Seam"]

log = logging.getLogger("pacer.continue")

#: Sends a continuation request's body (the ``attempt``-th of the stream) upstream: its
#: event-stream bytes, or an ``UpstreamError`` (``type="continuation_refused"``: never
#: worth another try, as a 4xx).
Reopen = Callable[[dict[str, Any], int], Awaitable[AsyncIterable[bytes]]]

_Stream = tuple[Resume | None, AsyncIterator[ServerSentEvent]]


class Seam:
    """One failure that was continued: when it was seen and when the continuation's
    first event went on (``anyio.current_time()`` seconds), and why it failed."""

    __slots__ = ("failed", "reason", "resumed")

    def __init__(self, failed: float, reason: str) -> None:
        self.failed = failed
        self.reason = reason
        self.resumed: float | None = None


class Continuing:
    """What a paced stream needs to go on after its upstream fails (module docstring).

    ``continuation``: the format's record and rewriter; ``reopen``: sends a request;
    ``failures``: the exception types of a failed upstream read (``UpstreamError`` and
    the HTTP client's transport errors); ``attempts``: continuation requests the stream
    may send; ``backoff``: seconds before the first retry of a failed one (doubling, at
    most 2 s)."""

    def __init__(
        self,
        continuation: Continuation,
        reopen: Reopen,
        *,
        failures: tuple[type[BaseException], ...] = (UpstreamError,),
        attempts: int = 3,
        backoff: float = 0.1,
    ) -> None:
        self.continuation = continuation
        self.reopen = reopen
        self.failures = failures
        self.attempts = attempts
        self.backoff = backoff
        self.sent = 0  # continuation requests sent
        self.seams: list[Seam] = []
        self.refused: str | None = None  # why the stream was not continued, if it was not
        self.limits: dict[str, int] = {}
        self.reported: dict[int, ServerSentEvent] = {}  # id(failure) -> the error event that reported it

    async def events(
        self, first: AsyncIterator[ServerSentEvent], **limits: int
    ) -> AsyncIterator[ServerSentEvent]:
        """``first``'s events, continued past its failures (``limits``: the SSE decoder's)."""
        self.limits = limits
        record = self.continuation
        streams: list[_Stream] = [(None, first)]
        try:
            while streams:
                for entry in list(streams):
                    outcome = await self._next(entry)
                    if isinstance(outcome, list):
                        for event in outcome:
                            record.note(event)
                            yield event
                        continue
                    streams.remove(entry)
                    await aclose_source(entry[1])
                    if outcome is None:
                        continue
                    try:
                        streams += await self._resumed(outcome, entry[0], streams)
                    except UpstreamError:
                        if id(outcome) not in self.reported:
                            raise
                        yield self.reported.pop(id(outcome))  # the upstream's own error ends it
                        return
            if not record.complete:
                for event in record.closing():
                    record.note(event)
                    yield event
        finally:
            with anyio.CancelScope(shield=True):
                for _, source in streams:
                    await aclose_source(source)

    async def _next(self, entry: _Stream) -> list[ServerSentEvent] | BaseException | None:
        """The next events of one upstream stream; its failure; ``None`` at its clean end."""
        resume, source = entry
        try:
            event = await source.__anext__()
        except StopAsyncIteration:
            done = self.continuation.complete if resume is None else resume.done
            return (
                None
                if done
                else UpstreamError("upstream stream ended before its end event", type="upstream_truncated")
            )
        except self.failures as exc:
            return exc
        failure = self.continuation.failure(event)
        if failure is not None:
            self.reported[id(failure)] = event
            return failure
        try:
            out = [event] if resume is None else self.continuation.rewrite(resume, event)
        except NotContinued as exc:
            raise self._gave_up(
                UpstreamError("the continuation does not match", type="upstream_error"), str(exc)
            ) from None
        if out and self.seams and self.seams[-1].resumed is None and resume is not None:
            self.seams[-1].resumed = anyio.current_time()
        return out

    async def _resumed(
        self, failure: BaseException, resume: Resume | None, open_: list[_Stream]
    ) -> list[_Stream]:
        """The continuation streams after ``failure`` of the stream ``resume`` fed."""
        lanes = None if resume is None else set(resume.lanes.values())
        busy = {lane for r, _ in open_ if r is not None for lane in r.lanes.values()}
        try:
            resumes = self.continuation.failed(lanes, busy)
        except NotContinued as exc:
            raise self._gave_up(failure, str(exc)) from None
        if not resumes and not self.seams:
            raise failure  # nothing to continue: the stream ends as the upstream's did
        if resumes:
            self.seams.append(Seam(anyio.current_time(), _kind(failure)))
            log.info("pacer: upstream failed mid-answer (%s); continuing %d lane(s)", failure, len(resumes))
        return [(r, await self._open(r, failure)) for r in resumes]

    async def _open(self, resume: Resume, failure: BaseException) -> AsyncIterator[ServerSentEvent]:
        """The events of ``resume``'s request, retried within the budget."""
        while True:
            if self.sent >= self.attempts:
                raise self._gave_up(failure, f"the stream's {self.attempts} continuation requests are spent")
            self.sent += 1
            try:
                data = await self.reopen(resume.body, self.sent)
            except self.failures as exc:
                if isinstance(exc, UpstreamError) and exc.type == "continuation_refused":
                    raise self._gave_up(failure, str(exc)) from None
                log.info("pacer: continuation request %d failed: %s", self.sent, exc)
                await anyio.sleep(min(self.backoff * 2 ** (self.sent - 1), 2.0))
                continue
            return asse_events(data, **self.limits)

    def _gave_up(self, failure: BaseException, reason: str) -> UpstreamError:
        self.refused = reason
        kind = failure.type if isinstance(failure, UpstreamError) else "upstream_error"
        message = str(failure) or type(failure).__name__
        return UpstreamError(f"{message}; not continued: {reason}", type=kind)


def _kind(failure: BaseException) -> str:
    return failure.type if isinstance(failure, UpstreamError) else type(failure).__name__
