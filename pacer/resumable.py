"""Streams that outlive a connection: produced into a log, read (and resumed) from it.

This is the domain, with no HTTP in it (no Starlette import): ``pacer.streamroutes``
serves it (``GET /v1/streams/{id}``, ``POST /v1/streams/{id}/cancel``) to any
Starlette or FastAPI app, and ``pacer.server.EventStreamResponse(streams=...)``
starts streams in it.

``ResumableStreams`` runs each stream's *producer* (its frames: an upstream through a
pipeline, as ``PacedEventSource`` or the proxy makes them) in a task of its own, which
writes every frame to a ``StreamLog`` with an SSE ``id`` (1, 2, 3, ...). Clients are
*readers* of the log: the one that started the stream, and any that reconnect with
``Last-Event-ID`` (to this process or, with ``pacer.redislog.RedisLog``, to any process
sharing the store) and get exactly the frames after that id, then the live rest. Frames
that can be pushed (``pacer._events.PacedFrames``, as the proxy makes them) into a log
of this process are paced on one ``Hub`` for all such streams and written to the log as
each comes due: no task of the producer's wakes per frame, and one timer serves all.

- **Generation outlives the client.** A producer keeps running while no reader is
  attached, until its stream ends, is cancelled, or has had no reader anywhere for
  ``orphan_timeout`` seconds; then its source is closed (the upstream request with it)
  and the log ends with an ``event: error`` of type ``orphaned``. ``start(on_end=)`` is
  told when a generation has ended, however it ended: what it holds (its client's
  place under a per-client limit, a log line) lasts as long as the generation, not
  its first reader's connection.
- **Cancel with exactly what was shown.** ``cancel(id)`` stops the producer wherever
  it runs, appends the events that end the stream the API's own way
  (``pacer.formats``), and answers the text of every frame written up to the cut:
  what every reader of the stream receives, no more and no less.
- **The reader in control.** ``control(id, control)`` hands a reader's control (pause,
  resume, show all, rate: ``pacer.Control``) to the stream's producer wherever it runs
  (the log's control channel), which applies it at its pacer's next decision, and
  answers the stream's state. A paused stream keeps generating (its text waits in the
  pacer) for at most ``max_pause`` seconds; then it stops as an orphaned one does.
- **No hang, no gap.** When the process shuts down (``shut_down``, or leaving the
  object) each stream it produces ends in the log with an ``event: error``
  (``server_shutdown``), which every reader gets at once; a reader whose producer died
  (its process killed) gets an ``event: error`` (``producer_lost``) within a few
  seconds; one whose log is gone or was trimmed gets an error too, never a silent gap.

Use it from a Starlette app's lifespan::

    streams = ResumableStreams()  # or ResumableStreams(RedisLog("redis://localhost:6379/0"))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with streams:
            yield

    async def chat(request):
        return PacedEventSource(tokens(), Pacer(), streams=streams)  # X-Pacer-Stream-Id: ...

    app = Starlette(routes=[..., *stream_routes(streams)], lifespan=lifespan)  # pacer.streamroutes

Cost: O(1) per frame written and per frame read, beside the log's own; one task per
producer and one for all orphan checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import re
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from ._aio import aclose_source
from ._args import seconds
from ._control import Action, Control, Mailbox
from ._drain import ServerShutdown
from ._errors import ending_of, error_event, error_frame
from ._hub import Hub
from ._outcome import Outcome
from ._paces import Paces
from .config import MAX_PAUSE, ORPHAN_TIMEOUT
from .formats import FORMAT_NAMES, Transcript
from .streamlog import (
    Entry,
    EventsTrimmed,
    MemoryLog,
    ProducerLost,
    StreamLog,
    StreamLogError,
    StreamLost,
    numbered,
)

__all__ = [
    "RATE_HEADER",
    "RESUMABLE_HEADER",
    "STREAM_ID_HEADER",
    "STREAM_TOKEN_HEADER",
    "Owner",
    "Paces",
    "ResumableStreams",
    "credential_of",
    "javascript",
    "valid_stream_id",
]

log = logging.getLogger("pacer.resumable")

#: The response header that names a resumable stream.
STREAM_ID_HEADER = "X-Pacer-Stream-Id"
#: The response header that gives a stream's creator its capability token, and the request
#: header that presents it back (to resume or cancel the stream).
STREAM_TOKEN_HEADER = "X-Pacer-Stream-Token"
#: The request header that sets a stream's starting rate (characters per second), over a
#: remembered one.
RATE_HEADER = "X-Pacer-Rate"
#: The request header that asks for a resumable stream (value ``1``).
RESUMABLE_HEADER = "X-Pacer-Resumable"
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_START_GRACE = 2.0  # seconds a new stream waits for its first reader before the orphan clock runs
_SHUTDOWN_WRITES = 5.0  # seconds the streams produced here have to write their endings on the way out


def javascript() -> str:
    """The browser client, ``pacer-stream.js`` (``PacerStream``: fetch, render, stop at
    ``[DONE]``, resume with ``Last-Event-ID`` after a drop, cancel); serve it as a file."""
    from importlib.resources import files

    return files("pacer").joinpath("static/pacer-stream.js").read_text(encoding="utf-8")


def valid_stream_id(stream_id: object) -> bool:
    """Whether ``stream_id`` could name a stream (1-128 letters, digits, ``_`` or ``-``)."""
    return isinstance(stream_id, str) and _ID.fullmatch(stream_id) is not None


def credential_of(headers: Mapping[str, str]) -> str | None:
    """The credential a request carries: its ``Authorization`` value, or else its
    ``x-api-key`` (``headers`` with lower-case names, as Starlette's); ``None`` for neither."""
    return headers.get("authorization") or headers.get("x-api-key") or None


def _mac(salt: str, value: str) -> str:
    return hmac.new(salt.encode(), value.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Owner:
    """Who may resume and cancel a stream: whoever presents its creator's ``credential``
    (``credential_of`` the request that started it; ``None``: it had none) or its ``token``
    (a new random one by default: give it to the creator, ``STREAM_TOKEN_HEADER``).

    Only keyed hashes are kept with the stream (``meta``: HMAC-SHA256 under a random
    per-stream salt), never the values, so every instance sharing the log can check them
    with no shared secret configured."""

    credential: str | None = None
    token: str = ""

    def __post_init__(self) -> None:
        if not self.token:
            object.__setattr__(self, "token", secrets.token_urlsafe(24))

    def meta(self) -> dict[str, str]:
        """The fields kept in the stream log's meta."""
        salt = secrets.token_hex(16)
        meta = {"owner_salt": salt, "owner_token": _mac(salt, self.token)}
        if self.credential:
            meta["owner_credential"] = _mac(salt, self.credential)
        return meta

    @staticmethod
    def admits(meta: Mapping[str, str], credential: str | None, token: str | None) -> bool:
        """Whether a request with ``credential`` and ``token`` may use the stream whose log
        meta is ``meta``; a stream started with no owner admits everyone. Constant time
        in the values compared."""
        salt = meta.get("owner_salt")
        if salt is None:
            return True
        admitted = False
        for given, kept in ((credential, meta.get("owner_credential")), (token, meta.get("owner_token"))):
            if given and kept and hmac.compare_digest(_mac(salt, given), kept):
                admitted = True
        return admitted


class _Producer:
    """A stream produced in this process: its cancel scope, and who reads it here."""

    __slots__ = (
        "controls",
        "orphan_timeout",
        "paused_since",
        "readers",
        "scope",
        "stop_reason",
        "unread_since",
    )

    def __init__(self, now: float, orphan_timeout: float, controls: Mailbox | None = None) -> None:
        self.scope = anyio.CancelScope()
        self.stop_reason: Outcome | None = None  # CANCELLED or ORPHANED, once asked to stop
        self.readers = 0
        # The grace only covers the time before the first reader: once one has read and
        # left, ``read`` restarts the clock from then (a timeout of 0 stops it at once).
        self.unread_since = now + _START_GRACE
        self.orphan_timeout = orphan_timeout
        self.controls = controls  # where the reader's controls reach its run (None: not controllable)
        self.paused_since: float | None = None  # when a reader paused it, while paused

    def stop(self, reason: Outcome) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.scope.cancel()


class ResumableStreams:
    """Resumable streams on ``log`` (a ``MemoryLog()`` by default); see the module docstring.

    ``orphan_timeout``: seconds a stream keeps generating with no reader anywhere (default
    10; 0 stops it as soon as its last reader leaves). ``poll``: seconds a reader of another
    process's stream waits on the log before it checks the producer is alive (default 1).
    ``on_failure`` is called with each exception a producer's frames raised (the stream
    then ends with an ``event: error``): the proxy counts them in its metrics.
    ``max_pause``: seconds a stream may stay paused by its reader before it stops as an
    orphaned one does (default 300). ``paces``: where each user's last rate is remembered
    and applied to their next streams (``Paces``; ``None``: no memory). ``grid``: seconds
    the hub that paces pushed frames wakes on multiples of (0: at each deadline; the
    proxy passes its pacer's tick, within which units go out together anyway). Enter it
    (``async with``) before starting streams: the producers run in its tasks, and leaving
    it stops them.
    """

    def __init__(
        self,
        log: StreamLog | None = None,
        *,
        orphan_timeout: float = ORPHAN_TIMEOUT,
        poll: float = 1.0,
        on_failure: Callable[[Exception], object] | None = None,
        max_pause: float = MAX_PAUSE,
        paces: Paces | None = None,
        grid: float = 0.0,
    ) -> None:
        self.log: StreamLog = log if log is not None else MemoryLog()
        self._grid = seconds(grid, "ResumableStreams: grid", zero=True)
        self.max_pause = seconds(max_pause, "ResumableStreams: max_pause")
        self.paces = paces
        self.on_failure = on_failure  # told of each producer's failure (metrics count them)
        self.orphan_timeout = seconds(orphan_timeout, "ResumableStreams: orphan_timeout", zero=True)
        self.poll = seconds(poll, "ResumableStreams: poll")
        self.producers: dict[str, _Producer] = {}
        self._tasks: anyio.abc.TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._orphans = anyio.Event()  # set when a producer may have lost its last reader
        # Paces the frames that can be pushed (``pacer._events.PacedFrames``) into a log of
        # this process: one timer for all of them, and no task woken per frame to write it.
        # One per entry (``async with``), for the event loop it is entered on.
        self._hub: Hub | None = None

    async def __aenter__(self) -> ResumableStreams:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            self.log.on_control = self._control_here
            self._hub = Hub(grid=self._grid)
            await self.log.start(on_cancel=self._cancel_here)
            stack.push_async_callback(self.log.aclose)
            self._tasks = await stack.enter_async_context(anyio.create_task_group())
            self._tasks.start_soon(self._sweep_orphans)
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        assert self._tasks is not None
        # Each stream still produced here ends in its log with an error event and its end
        # mark, so that its readers on other instances get a clear ending, not a hang.
        self.shut_down()
        with anyio.move_on_after(_SHUTDOWN_WRITES):
            while self.producers:
                await anyio.sleep(0.01)
        self._tasks.cancel_scope.cancel()
        self._tasks = None
        await stack.__aexit__(None, None, None)

    # -- producing ------------------------------------------------------------------------

    async def start(
        self,
        frames: AsyncIterator[bytes],
        *,
        fmt: str,
        stream_id: str | None = None,
        owner: Owner | None = None,
        orphan_timeout: float | None = None,
        controls: Mailbox | None = None,
        reader: str | None = None,
        cps: float | None = None,
        on_end: Callable[[Outcome, int], None] | None = None,
    ) -> str:
        """Produce ``frames`` (SSE frames in the format ``fmt`` names, see
        ``pacer.formats``) into a new stream's log, from a task of this object;
        returns the stream's id (``stream_id``, or a new random one). With ``owner``
        only it may read and cancel the stream (``admits``); without, whoever holds the
        id may. ``orphan_timeout`` (seconds) is this stream's, instead of the object's
        (0: its generation stops as soon as its last reader leaves). ``controls``: the
        ``Mailbox`` of the run that makes ``frames`` (``AsyncRun(controls=)``), where the
        reader's controls go (``control``); without, the stream takes none. ``cps``: the
        stream's starting rate; without, the rate its ``reader`` (``reader_of``) set last,
        where ``paces`` remembers one. ``on_end`` is called once when the generation has
        ended (after its source is closed), with its ``Outcome`` and how many readers it
        had here then; also (``ERROR``, 0) when its log cannot take it."""
        if self._tasks is None:
            raise RuntimeError("ResumableStreams: enter it (async with) before starting streams")
        if fmt not in FORMAT_NAMES:
            raise ValueError(
                f"ResumableStreams.start: fmt must be one of {', '.join(FORMAT_NAMES)}, got {fmt!r}"
            )
        if stream_id is None:
            stream_id = secrets.token_hex(12)
        elif not valid_stream_id(stream_id):
            raise ValueError(
                f"ResumableStreams.start: stream_id must be 1-128 of A-Z a-z 0-9 _ -, got {stream_id!r}"
            )
        if orphan_timeout is None:
            orphan_timeout = self.orphan_timeout
        else:
            orphan_timeout = seconds(orphan_timeout, "ResumableStreams.start: orphan_timeout", zero=True)
        meta = {"format": fmt} | (owner.meta() if owner is not None else {})
        try:
            await self.log.create(stream_id, meta)
            if controls is not None:
                if cps is None and self.paces is not None:
                    cps = await self.paces.recall(reader)
                if cps is not None:
                    controls.send(Control(Action.RATE, cps))  # before the first decision
        except BaseException:
            if on_end is not None:
                on_end(Outcome.ERROR, 0)
            raise
        producer = self.producers[stream_id] = _Producer(anyio.current_time(), orphan_timeout, controls)
        self._tasks.start_soon(self._produce, stream_id, frames, fmt, producer, on_end)
        return stream_id

    async def _produce(
        self,
        stream_id: str,
        frames: AsyncIterator[bytes],
        fmt: str,
        producer: _Producer,
        on_end: Callable[[Outcome, int], None] | None,
    ) -> None:
        number = 0
        outcome = Outcome.DONE
        append = self.log.append

        # Frames that can be pushed, into a log of this process: written as they come due.
        append_now: Any = getattr(self.log, "append_now", None) if self.log.in_process else None
        push: Any = getattr(frames, "push", None) if getattr(frames, "pushable", False) else None

        def entry(data: bytes) -> Entry:
            """The next frame's entry (a typed ending makes the outcome the end mark says)."""
            nonlocal number, outcome
            number += 1
            if type(data) is not bytes:
                outcome = _stronger(outcome, data)
            return numbered(number, data)

        def emit(data: bytes) -> None:
            """A frame pushed when due, written to the log at once."""
            if data:
                append_now(stream_id, [entry(data)])

        try:
            with producer.scope:
                try:
                    if push is not None and append_now is not None and self._hub is not None:
                        await push(self._hub, emit)
                    else:
                        async for data in frames:
                            if data:
                                await append(stream_id, [entry(data)])
                except StreamLogError:
                    raise
                except Exception as exc:
                    log.warning("pacer: resumable stream %s failed: %r", stream_id, exc)
                    if self.on_failure is not None:
                        self.on_failure(exc)
                    number += 1
                    await append(stream_id, [numbered(number, error_frame(exc))])
                    outcome = Outcome.ERROR
                finally:
                    with anyio.CancelScope(shield=True):
                        await aclose_source(frames)
            with anyio.CancelScope(shield=True):
                if producer.stop_reason is not None:
                    outcome = producer.stop_reason
                    ending = await self._ending(stream_id, fmt, number, outcome, producer)
                    entries = [numbered(number + i + 1, f) for i, f in enumerate(ending)]
                    number += len(entries)
                    await append(stream_id, entries)
                await append(stream_id, [Entry(number + 1, b"", outcome)])
        except StreamLogError as exc:
            log.warning("pacer: resumable stream %s lost its log: %r", stream_id, exc)
            outcome = Outcome.ERROR
        finally:
            self.producers.pop(stream_id, None)
            if on_end is not None:
                on_end(outcome, producer.readers)

    async def _ending(
        self, stream_id: str, fmt: str, last: int, reason: Outcome, producer: _Producer
    ) -> list[bytes]:
        """The frames that end a stream stopped after frame ``last``."""
        if reason is Outcome.ORPHANED:
            if producer.paused_since is not None:
                message = f"this stream was paused for more than {self.max_pause} s; generation stopped"
            else:
                message = f"no client read this stream for {producer.orphan_timeout} s; generation stopped"
            return [error_event(message, "orphaned")]
        if reason is Outcome.SHUTDOWN:
            message = "the server producing this stream shut down before the stream ended"
            return [error_event(message, ServerShutdown.kind)]
        transcript = Transcript(fmt)
        async for entry in self._entries(stream_id, 0, until=last, oldest=True):
            transcript.feed(entry.frame)
        return transcript.stop_frames()

    def creator_left(self, stream_id: str) -> None:
        """The response that started the stream is done with it: the start grace ends, so
        the orphan clock runs from now (a stream whose timeout is 0 stops at once, even
        when its client left before reading anything)."""
        producer = self.producers.get(stream_id)
        if producer is not None and not producer.readers:
            producer.unread_since = min(producer.unread_since, anyio.current_time())
            self._orphans.set()

    def shut_down(self) -> None:
        """Stop every stream produced here: each log ends with an ``event: error`` of type
        ``server_shutdown`` and the end mark ``Outcome.SHUTDOWN`` (its readers, here and on
        any instance sharing the log, get that ending). Leaving the object does it too."""
        for producer in self.producers.values():
            producer.stop(Outcome.SHUTDOWN)

    def _cancel_here(self, stream_id: str) -> None:
        producer = self.producers.get(stream_id)
        if producer is not None:
            log.info("pacer: resumable stream %s cancelled", stream_id)
            producer.stop(Outcome.CANCELLED)

    async def _sweep_orphans(self) -> None:
        """Stops the producers that have had no reader for ``orphan_timeout`` seconds."""
        while True:
            now = anyio.current_time()
            wake = now + max(self.poll, 0.05)
            for stream_id, producer in list(self.producers.items()):
                if producer.paused_since is not None and producer.stop_reason is None:
                    due = producer.paused_since + self.max_pause
                    if now >= due:
                        log.info(
                            "pacer: resumable stream %s paused for %s s; stopped", stream_id, self.max_pause
                        )
                        producer.stop(Outcome.ORPHANED)
                        continue
                    wake = min(wake, due)
                if producer.readers or producer.stop_reason is not None:
                    continue
                due = producer.unread_since + producer.orphan_timeout
                if now < due:
                    wake = min(wake, due)
                elif await self._read_elsewhere(stream_id):
                    producer.unread_since = now
                else:
                    log.info(
                        "pacer: resumable stream %s had no reader for %s s; stopped",
                        stream_id,
                        producer.orphan_timeout,
                    )
                    producer.stop(Outcome.ORPHANED)
            self._orphans = anyio.Event()
            with anyio.move_on_after(max(wake - anyio.current_time(), 0.0)):
                await self._orphans.wait()

    async def _read_elsewhere(self, stream_id: str) -> bool:
        try:
            return await self.log.read_elsewhere(stream_id)
        except StreamLogError:
            return False

    # -- reading --------------------------------------------------------------------------

    async def _entries(
        self, stream_id: str, after: int, until: float = math.inf, oldest: bool = False
    ) -> AsyncGenerator[Entry, None]:
        """``_batches``' entries one by one."""
        async for batch in self._batches(stream_id, after, until, oldest):
            for entry in batch:
                yield entry

    async def _batches(
        self, stream_id: str, after: int, until: float = math.inf, oldest: bool = False
    ) -> AsyncGenerator[list[Entry], None]:
        """The log's entries after ``after``, then live ones, through the end mark (or id
        ``until``), in the batches the log has them (never an empty one); with ``oldest``,
        from the oldest kept where those were trimmed. Raises ``StreamLogError`` for a log
        that is gone or a producer that died."""
        log_ = self.log
        read_since = -math.inf
        while after < until:
            # A stream produced here, in a log of this process, needs no poll: its producer
            # always writes an end mark, and a dropped log wakes its readers.
            wait = math.inf if log_.in_process and stream_id in self.producers else self.poll
            try:
                entries = await log_.read(stream_id, after, wait)
            except EventsTrimmed as exc:
                if not oldest:
                    raise
                after = exc.first - 1
                continue
            if entries is None:
                raise StreamLost(f"stream {stream_id!r} is gone (expired, or its store lost it)")
            here = stream_id in self.producers
            if not here and (now := anyio.current_time()) - read_since >= self.poll:
                await log_.reading(stream_id)
                read_since = now
            if not entries:
                if not here and not await log_.producer_alive(stream_id):
                    raise ProducerLost(
                        f"the process producing stream {stream_id!r} is gone; the stream is cut short"
                    )
                continue
            batch = _through(entries, until)
            if batch:
                yield batch
            if len(batch) < len(entries) or batch[-1].end is not None:
                return
            after = batch[-1].id

    async def follow(self, stream_id: str, after: int = 0) -> AsyncGenerator[bytes, None]:
        """The stream's frames after SSE id ``after``, then the live rest, to the end."""
        async for entry in self.read(stream_id, after):
            if entry.end is None:
                yield entry.frame

    async def read(self, stream_id: str, after: int = 0) -> AsyncGenerator[Entry, None]:
        """As ``follow``, the log's entries: the frames, then the end mark (how the stream
        ended, ``Entry.end``) when it has one."""
        async for batch in self.batches(stream_id, after):
            for entry in batch:
                yield entry

    async def batches(self, stream_id: str, after: int = 0) -> AsyncGenerator[list[Entry], None]:
        """``read``'s entries in the batches the log has them: what came since the last
        batch, which a reader can write at once."""
        producer = self.producers.get(stream_id)
        if producer is not None:
            producer.readers += 1
        try:
            async for batch in self._batches(stream_id, after):
                yield batch
        finally:
            if producer is not None:
                producer.readers -= 1
                if not producer.readers:
                    producer.unread_since = anyio.current_time()
                    self._orphans.set()

    async def admits(self, stream_id: str, credential: str | None, token: str | None) -> bool:
        """Whether the stream exists and a request with ``credential`` (``credential_of``)
        and ``token`` may read and cancel it (``Owner``). Raises ``StreamLogError`` when
        the log's store is down."""
        meta = await self.log.meta(stream_id)
        return meta is not None and Owner.admits(meta, credential, token)

    async def check(self, stream_id: str, after: int = 0) -> None:
        """Raise ``StreamLost`` for an unknown stream, or the error a reader from ``after``
        would get at once (``EventsTrimmed``, ``InvalidEventId``)."""
        if await self.log.read(stream_id, after, 0) is None:
            raise StreamLost(f"no stream {stream_id!r} (unknown, or expired)")

    def _control_here(self, stream_id: str, body: Mapping[str, object]) -> dict[str, object] | None:
        """A control (JSON) for a stream of this process: handed to its run, and the state
        it asks for; ``None`` when the stream is not produced here (any more)."""
        producer = self.producers.get(stream_id)
        if producer is None:
            return None
        mailbox = producer.controls
        if mailbox is None:
            return {"live": True, "controllable": False, "paused": False, "show_all": False}
        mailbox.send(Control.parse(body))
        if mailbox.flow.paused and producer.paused_since is None:
            producer.paused_since = anyio.current_time()
            self._orphans.set()  # the sweep reckons the pause limit from now
        elif not mailbox.flow.paused:
            producer.paused_since = None
        return {"live": True, "controllable": True, **mailbox.state()}

    def reader_of(self, headers: Mapping[str, str]) -> str | None:
        """Who a request (its lower-case ``headers``) reads as, for a remembered pace; ``None``
        without ``paces`` or without a user header or credential."""
        return None if self.paces is None else self.paces.user(headers, credential_of(headers))

    async def control(self, stream_id: str, control: Control, reader: str | None = None) -> dict[str, object]:
        """Hand ``control`` to the stream's producer, wherever it runs; the stream's state
        as JSON: ``{"id", "live", "paused", "show_all", "cps", "shown_chars", ...}``
        (``live`` false: the stream has ended, or its process is gone). Raises
        ``StreamLost`` for an unknown stream. A rate is remembered as ``reader``'s pace
        (``reader_of``) where ``paces`` is set."""
        if await self.log.meta(stream_id) is None:
            raise StreamLost(f"no stream {stream_id!r} (unknown, or expired)")
        if control.action is Action.RATE and self.paces is not None and control.cps is not None:
            await self.paces.remember(reader, control.cps)
        if stream_id in self.producers:
            state = self._control_here(stream_id, control.as_json())
        else:
            state = await self.log.request_control(stream_id, control.as_json())
        if state is None:
            state = {"live": False, "paused": False, "show_all": False}
        return {"id": stream_id, **state}

    async def cancel(self, stream_id: str) -> dict[str, Any]:
        """Stop the stream wherever it is produced; what its readers received, as JSON:
        ``{"id", "text", "reasoning", "choices", "last_event_id", "outcome"}``.
        ``outcome`` is how the stream ended: ``"cancelled"``, or ``"done"`` (and the
        others of ``END_OUTCOMES``) when it had ended before, ``"producer_lost"`` when its
        process is gone. Raises ``StreamLost`` for an unknown stream."""
        meta = await self.log.meta(stream_id)
        if meta is None:
            raise StreamLost(f"no stream {stream_id!r} (unknown, or expired)")
        if stream_id in self.producers:
            self._cancel_here(stream_id)
        else:
            await self.log.request_cancel(stream_id)
        transcript = Transcript(meta.get("format", "text"))
        first, last, outcome = 0, 0, Outcome.CANCELLED
        try:
            async for entry in self._entries(stream_id, 0, oldest=True):
                first = first or entry.id
                if entry.end is not None:
                    outcome = Outcome(entry.end)
                    break
                transcript.feed(entry.frame)
                last = entry.id
        except ProducerLost:
            outcome = Outcome.PRODUCER_LOST
        answer: dict[str, Any] = {
            "id": stream_id,
            "text": transcript.text,
            "reasoning": transcript.reasoning,
            "choices": transcript.choices,
            "last_event_id": str(last) if last else None,
            "outcome": outcome,
        }
        if first > 1:
            answer["first_event_id"] = str(first)  # the older events were trimmed (max_events)
        return answer


def _stronger(outcome: Outcome, frame: bytes) -> Outcome:
    """The stream's outcome after ``frame`` went out: an ``ErrorFrame`` fails it, a
    ``BlockedFrame`` (a check withheld the rest) makes a done stream a blocked one."""
    ending = ending_of(frame)
    if ending is Outcome.ERROR or (ending is Outcome.BLOCKED and outcome is Outcome.DONE):
        return ending
    return outcome


def _through(entries: list[Entry], until: float) -> list[Entry]:
    """``entries`` up to the end mark and to id ``until``, both included."""
    for i, entry in enumerate(entries):
        if entry.id > until:
            return entries[:i]
        if entry.end is not None:
            return entries[: i + 1]
    return entries
