"""Writing a stream to one client, in one place: heartbeat, send timeout, disconnect,
compression, metrics and how the stream ended.

``ClientWriter`` is the state of one client's stream, with no I/O: it is told what
happens (a frame starts going out, it went out, the client left, the source failed,
the time is now) and answers what to put on the wire and what is due (a heartbeat, a
send that waited too long). Its ``outcome`` (an ``Outcome``) is recorded where each
event happens: an ``ErrorFrame`` starting out is ``ERROR``, a write the transport
refused ``DISCONNECT``, a send that waited ``send_timeout`` ``SEND_TIMEOUT``, the last
byte out ``DONE``; the strongest recorded wins (in that order, timeout first), and a
stream that stopped with none of them is a ``DISCONNECT``.

``write_frames`` is the thin async driver an ASGI response body uses (``pacer.server``'s
``EventStreamResponse`` and ``PacingMiddleware``); ``client_left`` is the one place a
client's leaving is noticed on an ASGI ``receive`` (HTTP or WebSocket).

Cost: O(1) per frame beside its compression, each frame read and written by the stream's
own task (no queue, no task hop per frame); one timer per stream (it wakes when a
heartbeat is due, and four times per ``send_timeout`` while a send waits).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ._aio import aclose_source, loop_clock
from ._drain import Drain, ServerShutdown
from ._errors import ErrorFrame, ending_of, error_frame
from ._outcome import Outcome
from .sse import encode_comment

if TYPE_CHECKING:
    from ._compress import EventCompressor
    from ._metrics import StreamMetrics
    from .prometheus import StreamObserver

__all__ = ["PING", "SERVER_SEND", "ClientWriter", "Due", "Outcome", "client_left", "write_frames"]

log = logging.getLogger("pacer.server")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Where the scope of an HTTP request holds the server's own ``send``, put there by the
#: outermost layer of an app whose middleware passes a response's body through untouched
#: (the proxy's, ``pacer._connections.with_rules``): an event stream writes its body
#: with it, past that middleware, once the response's start went through it.
SERVER_SEND = "pacer.server_send"
#: The heartbeat: an SSE comment, ignored by every client.
PING = encode_comment("ping")
_DISCONNECTS = frozenset({"http.disconnect", "websocket.disconnect"})


#: Which outcome a client's stream records wins over which: the higher.
_RANK = {
    o: rank
    for rank, o in enumerate(
        (
            Outcome.RUNNING,
            Outcome.DONE,
            Outcome.BLOCKED,
            Outcome.ERROR,
            Outcome.DISCONNECT,
            Outcome.SEND_TIMEOUT,
        )
    )
}


class Due(enum.Enum):
    """What a stream's timer must do now."""

    NOTHING = enum.auto()
    PING = enum.auto()
    TIMEOUT = enum.auto()


class ClientWriter:
    """One client's stream, sans I/O (module docstring).

    ``heartbeat``: seconds of silence before a ``PING`` (``None``: never).
    ``send_timeout``: seconds one send may wait on the client (``None``: no limit).
    ``compressor`` compresses each write on its own (``pacer._compress``); ``observer``
    is told of every write, a failure and the end, with the metrics of ``pipelines``;
    ``on_close`` is called once with the ``Outcome``; ``on_complete`` once the last byte
    went out, before the stream's task has wound down.
    """

    __slots__ = (
        "compressor",
        "heartbeat",
        "observer",
        "on_close",
        "on_complete",
        "outcome",
        "pipelines",
        "quiet_since",
        "send_timeout",
        "sending_since",
    )

    def __init__(
        self,
        *,
        heartbeat: float | None,
        send_timeout: float | None,
        compressor: EventCompressor | None = None,
        observer: StreamObserver | None = None,
        on_close: Callable[[Outcome], None] | None = None,
        on_complete: Callable[[], None] | None = None,
        pipelines: Iterable[StreamMetrics] = (),
        now: float = 0.0,
    ) -> None:
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.compressor = compressor
        self.observer = observer
        self.on_close = on_close
        self.on_complete = on_complete
        self.pipelines = pipelines  # read when the stream ends (a list filled meanwhile)
        self.outcome = Outcome.RUNNING
        self.quiet_since = now  # the last frame went out then
        self.sending_since: float | None = None  # a send in progress began then

    def record(self, outcome: Outcome) -> None:
        """``outcome`` happened; it is the stream's unless a stronger one was recorded."""
        if _RANK[outcome] > _RANK[self.outcome]:
            self.outcome = outcome

    def opened(self, now: float) -> None:
        """The response starts at ``now``."""
        self.quiet_since = now
        if self.observer is not None:
            self.observer.opened()

    def begin(self, frame: bytes, now: float) -> bytes:
        """``frame`` starts going out at ``now``: the bytes to write."""
        self._ending(frame)
        self.sending_since = now
        return frame if self.compressor is None else self.compressor.event(frame)

    def begin_all(self, frames: list[bytes], now: float) -> bytes:
        """``frames``, due together, start going out at ``now`` as one write: its bytes
        (compressed as one event: each of them decodes once the write has arrived)."""
        for frame in frames:
            self._ending(frame)
        self.sending_since = now
        data = b"".join(frames)
        return data if self.compressor is None else self.compressor.event(data)

    def _ending(self, frame: bytes) -> None:
        """Record what a frame that says how the stream ends (by its type) says."""
        ending = ending_of(frame)
        if ending is not None:
            self.record(ending)

    def wrote_all(self, frames: list[bytes], wire: int, now: float) -> None:
        """``frames`` went out at ``now``, as ``wire`` bytes in all."""
        observer = self.observer
        if observer is not None:
            last = len(frames) - 1
            for i, frame in enumerate(frames):
                observer.sent(frame, wire if i == last else 0, now, False)
        self.sending_since = None
        self.quiet_since = now

    def begin_end(self, now: float) -> bytes:
        """The body's last write starts at ``now``: its bytes (the compressor's tail)."""
        self.sending_since = now
        return b"" if self.compressor is None else self.compressor.end()

    def wrote(self, frame: bytes, wire: int, now: float) -> None:
        """``frame`` went out at ``now``, as ``wire`` bytes."""
        if self.observer is not None:
            self.observer.sent(frame, wire, now, frame is PING)
        self.sending_since = None
        self.quiet_since = now

    def completed(self) -> None:
        """The last byte went out (``on_complete`` is told at once)."""
        self.record(Outcome.DONE)
        if self.on_complete is not None:
            self.on_complete()

    def write_failed(self) -> None:
        """The transport refused a write: the client has gone."""
        self.record(Outcome.DISCONNECT)

    def timed_out(self) -> None:
        """A send waited ``send_timeout`` on the client: the stream is dropped."""
        self.record(Outcome.SEND_TIMEOUT)
        log.warning("pacer: client did not read for %ss; stream dropped", self.send_timeout)

    def left(self) -> None:
        """The client said it left (the stream is cancelled; ``close`` says ``DISCONNECT``
        unless an error went out first); said in the log only while the stream was running
        (a client closes its connection after every complete stream too)."""
        if self.outcome is Outcome.RUNNING:
            log.info("pacer: client disconnected; cancelling the stream")

    def failed(self, exc: Exception) -> ErrorFrame:
        """The frames' source raised ``exc``: the frame that tells the client."""
        log.warning("pacer: stream failed: %r", exc)
        if self.observer is not None:
            self.observer.failed(str(getattr(exc, "kind", type(exc).__name__)))  # pacer's own kind
        return error_frame(exc)

    def tick(self, now: float) -> tuple[Due, float]:
        """What is due at ``now`` (a heartbeat, or the end of a send that waited
        ``send_timeout``), and when to look again."""
        started, limit = self.sending_since, self.send_timeout
        if started is not None and limit is not None and now - started >= limit:
            self.timed_out()
            return Due.TIMEOUT, math.inf
        heartbeat = self.heartbeat if self.heartbeat is not None else math.inf
        due = self.quiet_since + heartbeat
        action = Due.NOTHING
        if now >= due and started is None:
            action = Due.PING
            self.quiet_since = due = now  # not again until this silence is over
            due += heartbeat
        wake = min(due, now + (limit / 4 if limit is not None else math.inf))
        if started is not None and limit is not None:
            wake = min(wake, started + limit)
        return action, wake

    def close(self) -> Outcome:
        """The stream is over: its outcome, told to the observer and ``on_close``."""
        if self.outcome is Outcome.RUNNING:  # cut short, with no error sent
            self.outcome = Outcome.DISCONNECT
        outcome = self.outcome
        if self.observer is not None:
            self.observer.closed(outcome, self.pipelines)
        if self.on_close is not None:
            self.on_close(outcome)
        return outcome


async def client_left(receive: Receive) -> None:
    """Return once the client has gone (an ``http.disconnect`` or ``websocket.disconnect``)."""
    while (await receive())["type"] not in _DISCONNECTS:
        pass


async def write_frames(
    writer: ClientWriter,
    frames: AsyncIterator[bytes | list[bytes] | Outcome],
    send: Send,
    receive: Receive | None,
    drain: Drain | None = None,
) -> Outcome:
    """Write ``frames`` as an ASGI response body (the start already sent), then end it.

    A frame that is an ``Outcome`` is recorded, not sent (a stream log's end mark); a
    list of frames (a log's batch, due together) goes out in one write. The frames are
    closed on the way out, shielded from cancellation. With ``receive``, a
    client that leaves cancels them at once. With ``drain`` (``pacer._drain``), a
    stream still running when the server's shutdown grace is over is cut after what it
    sent with an ``event: error`` (``server_shutdown``), and ended; one cut while a
    write waited on its client (who reads nothing) just ends.

    The frames are read and written by the calling task itself: no task and no queue
    between the source and the client, so a frame costs no extra event-loop step. The
    watchdog (heartbeats, the send timeout) writes a heartbeat only while no frame is
    being written, and a frame waits for a heartbeat being written (``_Sending``)."""
    sending = _Sending(writer, send)
    async with anyio.create_task_group() as tg:
        if receive is not None:
            tg.start_soon(_cancel_when_left, writer, receive, tg.cancel_scope)
        if writer.heartbeat is not None or writer.send_timeout is not None:
            tg.start_soon(_watchdog, writer, sending, tg)
        try:
            with (
                anyio.CancelScope() as cut,
                drain.hold(cut) if drain is not None else contextlib.nullcontext(),
            ):
                await _write_all(writer, frames, sending)
            if cut.cancelled_caught:  # the server's shutdown grace is over
                if writer.sending_since is not None:
                    return writer.close()  # a write was waiting on a client that reads nothing
                await sending.frames([writer.failed(ServerShutdown(_CUT))])
            await sending.end()
            writer.completed()
        except OSError:  # the transport went away under a write
            writer.write_failed()
        finally:
            tg.cancel_scope.cancel()  # the helpers (the whole stream, if it did not end)
    return writer.close()


_CUT = "the server is shutting down; this stream was cut at the end of its grace period"


class _Sending:
    """The one write in progress on a client's stream: a frame (the stream's task) or a
    heartbeat (the watchdog), never both at once."""

    __slots__ = ("now", "ping", "send", "writer")

    def __init__(self, writer: ClientWriter, send: Send) -> None:
        self.writer = writer
        self.send = send
        self.ping: anyio.Event | None = None  # set when the heartbeat being written is out
        self.now = loop_clock()

    async def frames(self, frames: list[bytes]) -> None:
        """Write ``frames`` (one, or several due together) in one send."""
        if self.ping is not None:
            await self.ping.wait()
        writer = self.writer
        body = writer.begin_all(frames, self.now())
        await self.send({"type": "http.response.body", "body": body, "more_body": True})
        writer.wrote_all(frames, len(body), self.now())

    async def heartbeat(self, scope: anyio.CancelScope) -> None:
        """Write a heartbeat, unless a frame is being written (then none is needed); a
        transport that went away ends the stream (``scope``)."""
        writer = self.writer
        if writer.sending_since is not None or self.ping is not None:
            return
        done = self.ping = anyio.Event()
        try:
            body = writer.begin(PING, self.now())
            await self.send({"type": "http.response.body", "body": body, "more_body": True})
            writer.wrote(PING, len(body), self.now())
        except OSError:
            writer.write_failed()
            scope.cancel()
        finally:
            self.ping = None
            done.set()

    async def end(self) -> None:
        if self.ping is not None:
            await self.ping.wait()
        writer = self.writer
        body = writer.begin_end(self.now())
        await self.send({"type": "http.response.body", "body": body, "more_body": False})
        writer.wrote(b"", len(body), self.now())


async def _write_all(
    writer: ClientWriter, frames: AsyncIterator[bytes | list[bytes] | Outcome], sending: _Sending
) -> None:
    """Every frame written; a source that raises ends with the error frame that says so."""
    try:
        while True:
            try:
                frame = await frames.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:  # the stream ends with a clear error event
                await sending.frames([writer.failed(exc)])
                return
            if isinstance(frame, Outcome):
                writer.record(frame)
            elif isinstance(frame, list):
                batch = [each for each in frame if each]
                if batch:
                    await sending.frames(batch)
            elif frame:
                await sending.frames([frame])
    finally:
        with anyio.CancelScope(shield=True):
            await aclose_source(frames)


async def _cancel_when_left(writer: ClientWriter, receive: Receive, scope: anyio.CancelScope) -> None:
    await client_left(receive)
    writer.left()
    scope.cancel()


async def _watchdog(writer: ClientWriter, sending: _Sending, tg: anyio.abc.TaskGroup) -> None:
    """Starts the heartbeats the writer asks for (each in a task of its own, so that one
    the client does not read still times out); cancels the stream when a send timed out."""
    while True:
        now = anyio.current_time()
        due, wake = writer.tick(now)
        if due is Due.TIMEOUT:
            tg.cancel_scope.cancel()
            return
        if due is Due.PING:
            tg.start_soon(sending.heartbeat, tg.cancel_scope)
        await anyio.sleep(max(wake - now, 0.0))
