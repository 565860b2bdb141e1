"""Stream logs in Redis Streams (or Valkey): every process sharing the Redis serves every stream.

``RedisLog(url)`` is a ``pacer.streamlog.StreamLog``. Each stream is a Redis stream
``{prefix}{id}`` whose entry ids are ``0-N`` for the frame of SSE id ``N`` (field
``f``), then the end mark (field ``e``, the outcome), beside a hash ``{prefix}{id}:m``
(its format, and the process producing it). Both expire ``retention`` seconds after the
last write, and ``XADD ... MAXLEN ~ max_events`` bounds the entries.

- **Writes never hold the stream up.** A producer's frames go to a copy in this
  process's memory at once (its readers here read that), and to Redis in the
  background: one pipeline for every stream's pending frames, sent as soon as the
  last one is answered.
- **Reads block in Redis** (``XREAD BLOCK``), never poll: a reader of another process's
  stream wakes when the frames arrive.
- **A dead producer is noticed.** Each process refreshes a key of its own
  (``{prefix}owner:{id}``, ``liveness`` seconds to live) a few times per ``liveness``;
  a reader of a stream that has not ended, whose producer's key has lapsed, gets
  ``ProducerLost`` (an ``event: error``), not a hang.
- **A lost log is an error, never a wrong stream.** A stream's Redis stream is made
  (empty, by ``XGROUP CREATE ... MKSTREAM``) when the stream is created, and every
  frame is added with ``NOMKSTREAM``: a Redis that restarted empty makes the
  producer's next write fail, for good (its readers here get an ``event: error``),
  and readers elsewhere find no stream (``StreamLost``). Nothing is ever written into
  a Redis that lost the stream, so no reader sees a stream that starts mid-way.
- **Cancel reaches the producer wherever it runs**, over the channel ``{prefix}cancel``.
- **So does a reader's control**, over the channel ``{prefix}control:{id}`` of its
  stream (each process listens to them all with one pattern subscription); the
  producer's process answers the stream's state on ``{prefix}reply:{process}``, the
  channel of the process that asked (``pacer._controlchannel``).
- **Readers elsewhere keep a stream alive**: each refreshes ``{prefix}{id}:r`` while it
  reads, which is what ``read_elsewhere`` (the orphan check) looks at.

Needs the ``redis`` extra (``pip install 'pacer-llm[redis]'``).

Cost: O(1) Redis commands per frame written (pipelined across streams), one ``XREAD``
per batch a reader of another process receives.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from ._args import seconds, whole
from ._controlchannel import ControlChannel
from .config import RETENTION, without_credentials
from .streamlog import (
    CONTROL_TIMEOUT,
    Entry,
    MemoryLog,
    StreamExists,
    StreamLog,
    StreamLogError,
    StreamLost,
    check_limits,
    check_read,
    error_entries,
)

__all__ = ["RedisLog", "StoreUnavailable"]

log = logging.getLogger("pacer.redislog")


class StoreUnavailable(StreamLogError):
    """Redis did not answer (down, restarting, or unreachable)."""

    kind = "stream_store_unavailable"


def _number(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[1])


class _Outbox:
    """The entries written here and not yet sent to Redis, and the event that says there are some."""

    __slots__ = ("pending", "wrote")

    def __init__(self) -> None:
        self.pending: list[tuple[str, Sequence[Entry]]] = []
        self.wrote = anyio.Event()

    def put(self, stream_id: str, entries: Sequence[Entry]) -> None:
        self.pending.append((stream_id, entries))
        self.wrote.set()

    def take(self) -> list[tuple[str, Sequence[Entry]]]:
        pending, self.pending = self.pending, []
        return pending

    async def wait(self) -> None:
        await self.wrote.wait()
        self.wrote = anyio.Event()


class RedisLog(StreamLog):
    """Stream logs in Redis Streams (see the module docstring).

    ``url`` is a ``redis://HOST:PORT/DB`` (or ``rediss://``, ``unix://``) URL;
    ``retention`` (seconds, default 600) and ``max_events`` (default 100,000) as
    ``MemoryLog``'s; ``prefix`` starts every key; ``liveness`` is how long (seconds,
    default 3) a process that stopped refreshing its key still counts as alive;
    ``max_connections`` caps this process's connections to Redis (default 2,000: one
    per reader of another process's stream waiting at once, plus a few).
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        retention: float = RETENTION,
        max_events: int = 100_000,
        prefix: str = "pacer:",
        liveness: float = 3.0,
        max_connections: int = 2000,
    ) -> None:
        check_limits("RedisLog", retention, max_events)
        if not isinstance(url, str) or "://" not in url:
            raise ValueError(f"RedisLog: url must be a redis://HOST:PORT/DB URL, got {url!r}")
        self.url = url
        self.retention = retention
        self.max_events = max_events
        self.prefix = prefix
        self.liveness = seconds(liveness, "RedisLog: liveness")
        self.max_connections = whole(max_connections, "RedisLog: max_connections")
        # The streams this process produces, for its own readers (dropped a minute after their end).
        self.local = MemoryLog(retention=min(retention, 60.0), max_events=max_events)
        self._redis: Any = None
        self._outbox = _Outbox()
        # Local streams whose Redis stream exists ("open"), or whose Redis copy failed ("failed").
        self._state: dict[str, str] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        # Controls to and from other processes; it names this process (``owner``).
        self._controls = ControlChannel(
            prefix, secrets.token_hex(8), self.local.__contains__, self.control_here
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, on_cancel: Callable[[str], None] | None = None) -> None:
        await super().start(on_cancel)
        try:
            from redis.asyncio import BlockingConnectionPool, Redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "RedisLog needs the redis package: pip install 'pacer-llm[redis]'"
            ) from None
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
        # Readers of other processes' streams each hold a connection while they wait
        # (XREAD BLOCK); past ``max_connections`` a command waits for a free one.
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=10,
            retry=retry,
            socket_connect_timeout=2.0,
            health_check_interval=10,
        )
        self._redis = Redis(connection_pool=pool)
        try:
            await self._redis.ping()
        except Exception as exc:
            await self._redis.aclose()
            raise StoreUnavailable(f"RedisLog: cannot reach {self.shown_url}: {exc}") from None
        stack = contextlib.AsyncExitStack()
        tasks = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tasks.cancel_scope.cancel)
        tasks.start_soon(self._flush_forever)
        tasks.start_soon(self._beat_forever)
        tasks.start_soon(self._listen_for_cancels)
        self._stack = stack
        await self._controls.start(self._redis, tasks)
        await self._beat()

    async def aclose(self) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        await stack.aclose()  # the background tasks (cancelled, so this never waits)
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await self._flush()
                await self._redis.delete(self._owner_key(self.owner))
            await self._redis.aclose()

    @property
    def owner(self) -> str:
        """This process's name among those sharing the Redis (its liveness key, its reply channel)."""
        return self._controls.owner

    @property
    def shown_url(self) -> str:
        """``url`` for errors and logs: never its password."""
        return without_credentials(self.url)

    def _key(self, stream_id: str, suffix: str = "") -> str:
        return f"{self.prefix}{stream_id}{suffix}"

    def _owner_key(self, owner: str) -> str:
        return f"{self.prefix}owner:{owner}"

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A Redis command; a connection failure is ``StoreUnavailable``."""
        from redis.exceptions import ConnectionError, TimeoutError

        try:
            return await getattr(self._redis, method)(*args, **kwargs)
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"Redis at {self.shown_url} did not answer: {exc}") from None

    async def ping(self) -> None:
        await self._call("ping")

    # -- producing --------------------------------------------------------------------------

    async def create(self, stream_id: str, meta: Mapping[str, str]) -> None:
        meta_key = self._key(stream_id, ":m")
        ttl = math.ceil(self.retention * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hsetnx(meta_key, "owner", self.owner)
            pipe.pexpire(meta_key, ttl)  # never a key without a lifetime, whatever happens next
            claimed, _ = await self._run(pipe)
        if isinstance(claimed, Exception):
            message = f"Redis at {self.shown_url} refused to start stream {stream_id!r}: {claimed}"
            raise StoreUnavailable(message)
        if not claimed:
            raise StreamExists(f"stream {stream_id!r} already has a log")
        key = self._key(stream_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(meta_key, mapping=dict(meta))
            # The stream, empty: every frame is then added with NOMKSTREAM (module docstring).
            pipe.xgroup_create(key, "pacer", id="$", mkstream=True)
            pipe.pexpire(key, ttl)
            results = await self._run(pipe)
        if any(isinstance(result, Exception) for result in results):
            raise StoreUnavailable(f"Redis at {self.shown_url} refused to start stream {stream_id!r}")
        await self.local.create(stream_id, meta)
        self._state[stream_id] = "open"

    async def append(self, stream_id: str, entries: Sequence[Entry]) -> None:
        if self._state.get(stream_id) == "failed":  # for good: never written again
            raise StreamLost(f"stream {stream_id!r}: its log in Redis was lost")
        if stream_id not in self.local:
            raise StreamLost(f"stream {stream_id!r}: its log in Redis was lost, or it is not produced here")
        self.local.append_now(stream_id, entries)
        self._outbox.put(stream_id, entries)

    async def _run(self, pipe: Any) -> list[Any]:
        from redis.exceptions import ConnectionError, TimeoutError

        try:
            return await pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"Redis at {self.shown_url} did not answer: {exc}") from None

    async def _flush_forever(self) -> None:
        while True:
            await self._outbox.wait()
            try:
                await self._flush()
            except StoreUnavailable as exc:
                log.warning("pacer: %s; the streams produced here end with an error", exc)
                open_ = [s for s, state in self._state.items() if state == "open"]
                for stream_id in open_ + [s for s, _ in self._outbox.take()]:
                    self._fail(stream_id, str(exc), exc.kind)

    async def _flush(self) -> None:
        """Send every pending entry in one pipeline; a stream whose Redis stream has gone fails."""
        pending = self._outbox.take()
        if not pending:
            return
        ttl = math.ceil(self.retention * 1000)
        touched: dict[str, None] = {}
        order: list[str] = []
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id, entries in pending:
                key = self._key(stream_id)
                for entry in entries:
                    fields = {b"e": entry.end.encode()} if entry.end is not None else {b"f": entry.frame}
                    pipe.xadd(
                        key,
                        fields,
                        id=f"0-{entry.id}",
                        maxlen=self.max_events + 1,
                        approximate=True,
                        nomkstream=True,  # made at create: gone means lost, never made again
                    )
                    order.append(stream_id)
                touched[stream_id] = None
            for stream_id in touched:
                pipe.pexpire(self._key(stream_id), ttl)
                pipe.pexpire(self._key(stream_id, ":m"), ttl)
            results = await self._run(pipe)
        for stream_id, result in zip(order, results, strict=False):
            if result is None or isinstance(result, Exception):
                why = "restarted empty, or expired" if result is None else str(result)
                self._fail(stream_id, f"stream {stream_id!r} was lost from Redis ({why})", "stream_lost")
        for stream_id, entries in pending:
            if entries and entries[-1].end is not None and self._state.get(stream_id) == "open":
                del self._state[stream_id]  # ended: nothing more to write

    def _fail(self, stream_id: str, message: str, kind: str) -> None:
        """End the local copy of a stream with an error, and stop taking its frames."""
        last = self.local.last(stream_id)
        if last is not None and last.end is None:
            self.local.append_now(stream_id, error_entries(last.id, message, kind))
        self._state[stream_id] = "failed"

    async def _beat(self) -> None:
        await self._call("set", self._owner_key(self.owner), b"1", px=math.ceil(self.liveness * 1000))

    async def _beat_forever(self) -> None:
        while True:
            await anyio.sleep(self.liveness / 3)
            for stream_id in [s for s in self._state if s not in self.local]:
                del self._state[stream_id]  # its local copy has expired: nothing will ask
            try:
                await self._beat()
            except StoreUnavailable as exc:
                log.warning("pacer: %s (liveness not refreshed)", exc)

    async def _listen_for_cancels(self) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub()
                async with pubsub:
                    await pubsub.subscribe(self._key("cancel"))
                    async for message in pubsub.listen():
                        if message.get("type") == "message" and self.on_cancel is not None:
                            stream_id = message["data"].decode("utf-8", "replace")
                            if stream_id in self.local:
                                self.on_cancel(stream_id)
            except Exception as exc:  # Redis went away: listen again once it is back
                log.warning("pacer: cancel channel lost (%r); resubscribing", exc)
                await anyio.sleep(0.5)

    # -- reading ----------------------------------------------------------------------------

    async def read(self, stream_id: str, after: int, wait: float) -> list[Entry] | None:
        if stream_id in self.local:
            return await self.local.read(stream_id, after, wait)
        key = self._key(stream_id)
        block = math.ceil(wait * 1000) if wait > 0 else None
        reply = await self._call("xread", {key: f"0-{after}"}, count=1000, block=block)
        entries = [
            Entry(_number(entry_id), fields.get(b"f", b""), fields[b"e"].decode() if b"e" in fields else None)
            for _, items in reply or ()
            for entry_id, fields in items
        ]
        if entries:
            if entries[0].id != after + 1:
                check_read(stream_id, after, entries[0].id, None, self.max_events)
            return entries
        # Nothing after ``after``: an unknown stream, one that has not started, or an id past its end.
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(self._key(stream_id, ":m"))
            pipe.xrevrange(key, count=1)
            pipe.xrange(key, count=1)
            known, newest, oldest = await self._run(pipe)
        if not known:
            return None
        end = _number(newest[0][0]) if newest and b"e" in newest[0][1] else None
        first = _number(oldest[0][0]) if oldest else after + 1
        check_read(stream_id, after, first, end, self.max_events)
        return []

    async def meta(self, stream_id: str) -> dict[str, str] | None:
        if stream_id in self.local:
            return await self.local.meta(stream_id)
        meta = await self._call("hgetall", self._key(stream_id, ":m"))
        return {k.decode(): v.decode() for k, v in meta.items()} if meta else None

    async def producer_alive(self, stream_id: str) -> bool:
        if stream_id in self.local:
            return True
        owner = await self._call("hget", self._key(stream_id, ":m"), "owner")
        if owner is None:
            return False
        return bool(await self._call("exists", self._owner_key(owner.decode())))

    async def request_cancel(self, stream_id: str) -> None:
        if stream_id in self.local:
            if self.on_cancel is not None:
                self.on_cancel(stream_id)
            return
        await self._call("publish", self._key("cancel"), stream_id)

    async def request_control(
        self, stream_id: str, control: Mapping[str, object], timeout: float = CONTROL_TIMEOUT
    ) -> dict[str, object] | None:
        if stream_id in self.local:
            return self.control_here(stream_id, control)
        return await self._controls.ask(stream_id, control, timeout)

    async def put_value(self, key: str, value: str, ttl: float) -> None:
        await self._call("set", self._key("value:" + key), value.encode(), px=max(1, math.ceil(ttl * 1000)))

    async def get_value(self, key: str) -> str | None:
        value = await self._call("get", self._key("value:" + key))
        return None if value is None else bytes(value).decode("utf-8", "replace")

    async def reading(self, stream_id: str) -> None:
        if stream_id not in self.local:
            await self._call("set", self._key(stream_id, ":r"), b"1", px=math.ceil(self.liveness * 1000))

    async def read_elsewhere(self, stream_id: str) -> bool:
        return bool(await self._call("exists", self._key(stream_id, ":r")))

    async def memory_usage(self, stream_id: str) -> int:
        """Bytes Redis holds for the stream (its entries and its hash), by ``MEMORY USAGE``."""
        total = 0
        for key in (self._key(stream_id), self._key(stream_id, ":m")):
            total += await self._call("memory_usage", key, samples=0) or 0
        return total
