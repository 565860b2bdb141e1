"""Where a resumable stream's events live: a log per stream, appended by one producer,
read from any event id by any number of readers, and kept for a while after the end.

``StreamLog`` is the interface ``pacer.resumable`` builds on. ``MemoryLog`` (here) keeps
the logs in this process: nothing to install, readers in this process only.
``pacer.redislog.RedisLog`` keeps them in Redis Streams, so that every process sharing
the Redis serves every stream.

A log holds ``Entry`` values: the stream's SSE frames, numbered 1, 2, 3, ... (the
number is the frame's SSE ``id``), then one end mark saying how the stream ended
(``"done"``, ``"error"``, ``"cancelled"``, ``"orphaned"``). A log is kept ``retention``
seconds after its last write, and holds at most ``max_events`` frames (the oldest go
first; a reader that asks for what is gone gets ``EventsTrimmed``, never a gap).

Cost: O(1) amortised per appended entry, O(k) per read of k entries. ``MemoryLog``'s
memory is bounded by what its options say: at most ``max_events`` entries and
``max_stream_bytes`` of frames per stream, ``max_bytes`` of frames in all (ended
streams are dropped first, then the oldest frames of the stream being written; a new
stream is refused with ``StoreFull`` while the log is full), and one expiry entry per
stream, not per write.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Final, NamedTuple

import anyio

from ._aio import wake, woken
from ._args import seconds, whole
from ._errors import KindedError, error_event
from ._outcome import Outcome
from .config import RETENTION

__all__ = [
    "CONTROL_TIMEOUT",
    "END_OUTCOMES",
    "ControlHandler",
    "Entry",
    "EventsTrimmed",
    "InvalidEventId",
    "MemoryLog",
    "ProducerLost",
    "StoreFull",
    "StreamExists",
    "StreamLog",
    "StreamLogError",
    "StreamLost",
]

#: What a log calls with a reader's control for a stream its process produces: the state.
ControlHandler = Callable[[str, Mapping[str, object]], "dict[str, object] | None"]
#: Seconds an asker waits for the producer's answer to a control.
CONTROL_TIMEOUT: Final = 2.0

#: How a stream can end, as its end mark says.
END_OUTCOMES = frozenset({Outcome.DONE, Outcome.ERROR, Outcome.CANCELLED, Outcome.ORPHANED, Outcome.SHUTDOWN})


class Entry(NamedTuple):
    """One entry of a stream's log: frame number ``id`` (its SSE ``id``) and its bytes, or
    the end mark (``frame`` empty, ``end`` the outcome)."""

    id: int
    frame: bytes
    end: str | None = None


def with_id(number: int, data: bytes) -> bytes:
    """``data`` (whole SSE events) with its last event given SSE id ``number``."""
    if not data.endswith(b"\n\n"):
        raise ValueError(
            "a resumable stream's frames must be whole SSE events (ending in a blank line), "
            f"got {data[-40:]!r}"
        )
    return b"%sid: %d\n\n" % (data[:-1], number)


def numbered(number: int, data: bytes) -> Entry:
    """The entry of frame ``number``: ``data`` with that SSE id."""
    return Entry(number, with_id(number, data))


def error_entries(last: int, message: str, kind: str) -> list[Entry]:
    """The entries that end a log after frame ``last`` with an ``event: error``."""
    return [numbered(last + 1, error_event(message, kind)), Entry(last + 2, b"", Outcome.ERROR)]


class StreamLogError(KindedError):
    """A stream's log cannot be used (the base of the errors below). ``kind`` names the
    case in the JSON error a reader receives."""

    kind = "stream_log_error"


class StoreFull(StreamLogError):
    """The log holds as many bytes as it may (``MemoryLog(max_bytes=)``): no new stream
    until some expire."""

    kind = "stream_store_full"


class StreamExists(StreamLogError):
    """``create`` was given an id that already has a log."""

    kind = "stream_exists"


class StreamLost(StreamLogError):
    """The log went away while it was in use (expired, or the store lost it)."""

    kind = "stream_lost"


class ProducerLost(StreamLogError):
    """The stream has not ended, and the process producing it is gone."""

    kind = "producer_lost"


class EventsTrimmed(StreamLogError):
    """A reader asked for frames the log no longer keeps (over ``max_events``); ``first``
    is the id of the oldest frame kept."""

    kind = "events_trimmed"

    def __init__(self, message: str, first: int) -> None:
        super().__init__(message)
        self.first = first


class InvalidEventId(StreamLogError):
    """A reader asked for the frames after an id the ended stream never reached (an id
    of another stream, say)."""

    kind = "invalid_last_event_id"


def check_read(stream_id: str, after: int, first: int, end: int | None, max_events: int) -> None:
    """Raise what a read after ``after`` of a log that keeps ids from ``first`` on (and
    ended with end mark ``end``) must raise."""
    if after + 1 < first:
        raise EventsTrimmed(
            f"stream {stream_id!r} keeps events from id {first} on (max_events={max_events}); "
            f"events {after + 1}..{first - 1} are gone",
            first,
        )
    if end is not None and after >= end:
        raise InvalidEventId(
            f"stream {stream_id!r} ended after event {end - 1}; there is no event {after} "
            "(a Last-Event-ID of another stream?)"
        )


class StreamLog:
    """The interface of a stream log store (see the module docstring).

    One producer per stream calls ``create``, ``append`` (frames numbered from 1 with no
    gap, then one end mark); readers call ``read`` from any id, waiting for more.
    ``request_cancel`` reaches the producer wherever it runs: the store calls the
    ``on_cancel`` callback (given to ``start``) of the log instance whose process
    produces the stream. ``request_control`` does the same with a reader's control (a
    JSON object, ``pacer.Control``) and ``on_control``, whose answer (the stream's
    state, or ``None`` for a stream no longer produced) comes back to the asker.
    """

    retention: float
    max_events: int
    #: The log lives in this process (``MemoryLog``): a reader of a stream produced here
    #: waits for its next entry with no poll, since nothing can end it unseen.
    in_process: bool = False
    #: Called with a stream id when some process asked to cancel a stream this instance produces.
    on_cancel: Callable[[str], None] | None = None
    #: Called with a stream id and a control (JSON) for a stream this instance produces;
    #: returns the stream's state, or ``None`` when it is not produced here (any more).
    on_control: ControlHandler | None = None

    async def ping(self) -> None:
        """Raise ``StreamLogError`` unless the log's store answers (memory always does)."""

    async def start(self, on_cancel: Callable[[str], None] | None = None) -> None:
        """Begin the background work the store needs (none for some); ``on_cancel`` is
        called with a stream id when a cancel of a stream this instance produces arrives."""
        self.on_cancel = on_cancel

    async def aclose(self) -> None:
        """Stop the background work and let go of connections."""

    async def create(self, stream_id: str, meta: Mapping[str, str]) -> None:
        """Start the log of a new stream, produced by this instance; ``meta`` is kept beside it."""
        raise NotImplementedError

    async def append(self, stream_id: str, entries: Sequence[Entry]) -> None:
        """Add the next entries of a stream this instance produces."""
        raise NotImplementedError

    async def read(self, stream_id: str, after: int, wait: float) -> list[Entry] | None:
        """The entries after id ``after``; when there are none yet, waits up to ``wait``
        seconds for some (then ``[]``). ``None``: no such stream (never was, or expired)."""
        raise NotImplementedError

    async def meta(self, stream_id: str) -> dict[str, str] | None:
        """What ``create`` kept, or ``None`` for an unknown or expired stream."""
        raise NotImplementedError

    async def producer_alive(self, stream_id: str) -> bool:
        """Whether the process producing the stream still runs."""
        raise NotImplementedError

    async def request_cancel(self, stream_id: str) -> None:
        """Ask the stream's producer, wherever it runs, to stop (``on_cancel``)."""
        raise NotImplementedError

    async def request_control(
        self, stream_id: str, control: Mapping[str, object], timeout: float = CONTROL_TIMEOUT
    ) -> dict[str, object] | None:
        """Hand a reader's control to the stream's producer, wherever it runs
        (``on_control``); its answer, or ``None`` when no producer answered within
        ``timeout`` seconds (the stream has ended, or its process is gone)."""
        return self.control_here(stream_id, control)

    def control_here(self, stream_id: str, control: Mapping[str, object]) -> dict[str, object] | None:
        """``on_control``'s answer for a stream of this instance (``None``: none here)."""
        handler = self.on_control
        return None if handler is None else handler(stream_id, control)

    async def put_value(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds (a reader's remembered pace)."""
        raise NotImplementedError

    async def get_value(self, key: str) -> str | None:
        """What ``put_value`` kept under ``key``, if it has not expired."""
        raise NotImplementedError

    async def reading(self, stream_id: str) -> None:
        """A reader of this instance follows the stream (called at least once a second)."""

    async def read_elsewhere(self, stream_id: str) -> bool:
        """Whether a reader of another instance has followed the stream lately."""
        return False


def _at_least_one(value: int, where: str) -> int:
    if whole(value, where) < 1:
        raise ValueError(f"{where} must be >= 1, got {value!r}")
    return value


def check_limits(owner: str, retention: float, max_events: int) -> None:
    seconds(retention, f"{owner}: retention")
    if whole(max_events, f"{owner}: max_events") < 1:
        raise ValueError(f"{owner}: max_events must be >= 1, got {max_events!r}")


class _Log:
    """One stream's entries in memory, their size, and the event its readers wait on."""

    __slots__ = ("changed", "entries", "first", "meta", "size", "touched", "waiters")

    def __init__(self, meta: Mapping[str, str], now: float) -> None:
        self.meta = dict(meta)
        self.entries: deque[Entry] = deque()
        self.first = 1  # the id of entries[0]
        self.size = 0  # bytes of the frames in ``entries``
        # The readers waiting for a change: on asyncio each a bare future of the loop (a
        # third of an event's cost per wake-up), elsewhere one event made by the first
        # reader that waits; the next write resolves and drops them (a write no reader
        # waits for makes none).
        self.waiters: list[asyncio.Future[None]] = []
        self.changed: anyio.Event | None = None
        self.touched = now

    def wake(self) -> None:
        """Wake the readers waiting for a change."""
        if self.waiters:
            waiters, self.waiters = self.waiters, []
            for future in waiters:
                wake(future)
        changed, self.changed = self.changed, None
        if changed is not None:
            changed.set()

    async def changes(self, wait: float) -> None:
        """Return at the next change, or after ``wait`` seconds (``inf``: no timer)."""
        delay = wait if math.isfinite(wait) else None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio)
            changed = self.changed
            if changed is None:
                changed = self.changed = anyio.Event()
            with anyio.move_on_after(math.inf if delay is None else delay):
                await changed.wait()
            return
        future = loop.create_future()
        self.waiters.append(future)
        try:
            await woken(loop, future, delay)
        finally:
            if future in self.waiters:  # a timeout or a cancellation, not a write
                self.waiters.remove(future)


class _Values:
    """Small values by key, each dropped ``ttl`` seconds after it was put; at most
    ``limit`` (the oldest put go first)."""

    __slots__ = ("clock", "items", "limit")

    def __init__(self, clock: Callable[[], float], limit: int = 100_000) -> None:
        self.clock = clock
        self.limit = limit
        self.items: OrderedDict[str, tuple[str, float]] = OrderedDict()  # key -> (value, expires)

    def put(self, key: str, value: str, ttl: float) -> None:
        self.items.pop(key, None)
        self.items[key] = (value, self.clock() + ttl)
        while len(self.items) > self.limit:
            self.items.popitem(last=False)

    def get(self, key: str) -> str | None:
        kept = self.items.get(key)
        if kept is None:
            return None
        if kept[1] <= self.clock():
            del self.items[key]
            return None
        return kept[0]


class MemoryLog(StreamLog):
    """Stream logs in this process's memory: the embedded default.

    ``retention`` (seconds, default 600) after a stream's last write its log is
    dropped; at most ``max_events`` frames (default 100,000) and ``max_stream_bytes``
    bytes of frames (default 64 MiB) are kept per stream, the oldest going first, and
    ``max_bytes`` (default 512 MiB) in all: past it, ended streams are dropped (the
    least recently written first), then the oldest frames of the stream being written,
    and a new stream is refused (``StoreFull``). ``clock`` gives the seconds retention
    counts (``time.monotonic``).
    """

    in_process = True

    def __init__(
        self,
        *,
        retention: float = RETENTION,
        max_events: int = 100_000,
        max_stream_bytes: int = 64 << 20,
        max_bytes: int = 512 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_limits("MemoryLog", retention, max_events)
        self.retention = retention
        self.max_events = max_events
        self.max_stream_bytes = _at_least_one(max_stream_bytes, "MemoryLog: max_stream_bytes")
        self.max_bytes = _at_least_one(max_bytes, "MemoryLog: max_bytes")
        self.clock = clock
        self.size = 0  # bytes of frames held, in all
        self._logs: dict[str, _Log] = {}
        # Each stream once, least recently written first: what expires first.
        self._expiring: OrderedDict[str, None] = OrderedDict()
        # The streams that have their end mark, in the order they ended: what a full log
        # drops first (found without a scan of every stream on each write).
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._values = _Values(clock)  # small values kept for a while (remembered paces)

    def __contains__(self, stream_id: object) -> bool:
        return isinstance(stream_id, str) and self._get(stream_id) is not None

    def last(self, stream_id: str) -> Entry | None:
        """The stream's last entry, if it has a log and any entry."""
        log = self._get(stream_id)
        return log.entries[-1] if log is not None and log.entries else None

    def __len__(self) -> int:
        self._expire()
        return len(self._logs)

    def _expire(self) -> None:
        """Drop the logs not written for ``retention`` seconds."""
        deadline = self.clock() - self.retention
        expiring, logs = self._expiring, self._logs
        while expiring:
            stream_id = next(iter(expiring))
            if logs[stream_id].touched > deadline:
                break
            self._drop(stream_id)

    def _drop(self, stream_id: str) -> None:
        log = self._logs.pop(stream_id)
        del self._expiring[stream_id]
        self._ended.pop(stream_id, None)
        self.size -= log.size
        log.wake()  # its waiting readers find it gone

    def _evict_ended(self, room: int = 0) -> None:
        """Drop ended streams, the least recently written first, until at most
        ``max_bytes - room`` bytes are held (or no ended stream is left)."""
        ended = self._ended
        while ended and self.size > self.max_bytes - room:
            self._drop(next(iter(ended)))

    def _touch(self, stream_id: str, log: _Log) -> None:
        log.touched = self.clock()
        self._expiring.move_to_end(stream_id)

    def _get(self, stream_id: str) -> _Log | None:
        self._expire()
        return self._logs.get(stream_id)

    async def create(self, stream_id: str, meta: Mapping[str, str]) -> None:
        if not isinstance(stream_id, str) or not stream_id:
            raise ValueError(f"MemoryLog.create: stream_id must be a non-empty str, got {stream_id!r}")
        if self._get(stream_id) is not None:
            raise StreamExists(f"stream {stream_id!r} already has a log")
        if self.size >= self.max_bytes:
            self._evict_ended(room=1)
            if self.size >= self.max_bytes:
                raise StoreFull(f"the stream log holds {self.size} bytes (max_bytes {self.max_bytes})")
        self._logs[stream_id] = _Log(meta, self.clock())
        self._expiring[stream_id] = None

    def append_now(self, stream_id: str, entries: Sequence[Entry]) -> None:
        """``append`` without awaiting (it never waits)."""
        log = self._get(stream_id)
        if log is None:
            raise StreamLost(f"stream {stream_id!r} has no log (expired after {self.retention} s?)")
        added = sum(len(entry.frame) for entry in entries)
        log.entries.extend(entries)
        log.size += added
        self.size += added
        if self.size > self.max_bytes:
            self._evict_ended()
        held = log.entries
        # The frames, and room for the end mark; the newest entry always stays.
        while len(held) > 1 and (
            len(held) > self.max_events + 1 or log.size > self.max_stream_bytes or self.size > self.max_bytes
        ):
            dropped = len(held.popleft().frame)
            log.size -= dropped
            self.size -= dropped
            log.first += 1
        self._touch(stream_id, log)
        if entries and entries[-1].end is not None:  # after the eviction: never this stream
            self._ended[stream_id] = None
        log.wake()

    async def append(self, stream_id: str, entries: Sequence[Entry]) -> None:
        self.append_now(stream_id, entries)

    def read_now(self, stream_id: str, after: int) -> list[Entry] | None:
        """The entries after ``after`` there are now (``read`` without waiting)."""
        log = self._get(stream_id)
        if log is None:
            return None
        entries = log.entries
        end = entries[-1].id if entries and entries[-1].end is not None else None
        check_read(stream_id, after, log.first, end, self.max_events)
        start = after + 1 - log.first
        if start >= len(entries):
            return []
        if start <= 0:
            return list(entries)
        return [entries[i] for i in range(start, len(entries))]

    async def read(self, stream_id: str, after: int, wait: float) -> list[Entry] | None:
        entries = self.read_now(stream_id, after)
        if entries is None or entries or wait <= 0:
            return entries
        await self._logs[stream_id].changes(wait)
        return self.read_now(stream_id, after)

    async def meta(self, stream_id: str) -> dict[str, str] | None:
        log = self._get(stream_id)
        return None if log is None else dict(log.meta)

    async def producer_alive(self, stream_id: str) -> bool:
        return True  # the producer runs in this process, as the reader does

    async def request_cancel(self, stream_id: str) -> None:
        if self.on_cancel is not None:
            self.on_cancel(stream_id)

    async def put_value(self, key: str, value: str, ttl: float) -> None:
        self._values.put(key, value, ttl)

    async def get_value(self, key: str) -> str | None:
        return self._values.get(key)

    def drop(self, stream_id: str) -> None:
        """Forget a stream's log now (its readers find it gone)."""
        if stream_id in self._logs:
            self._drop(stream_id)
