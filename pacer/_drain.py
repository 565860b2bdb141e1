"""A server's shutdown as its streams see it: ``Drain``.

When the server stops accepting (SIGTERM; ``pacer._connections.ProxyHTTP`` calls
``begin``), running streams get ``grace`` seconds to end by themselves. Then the drain
is *over*: each callback given to ``at_expiry`` is called (``ResumableStreams.shut_down``:
every stream produced here ends in its log with an error event, for its readers on
other instances), and every client stream still being written
(``pacer._writer.write_frames``, which ``hold``s the drain) is cut after what it had
sent with an ``event: error`` of type ``server_shutdown`` (``ServerShutdown``), then
ends: never a bare cut.

Run it for the server's life (``async with drain:``, in the app's lifespan): its one
task waits for ``begin`` and then for the grace to pass.

Cost: one set insertion and removal per stream; nothing per frame.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import anyio
import anyio.abc

from ._errors import KindedError

__all__ = ["STATE_KEY", "Drain", "ServerShutdown"]

#: Where an app's lifespan state holds its ``Drain``, for the server's protocol to begin it.
STATE_KEY = "pacer.drain"


class ServerShutdown(KindedError):
    """The server shut down before the stream ended (its grace period passed)."""

    kind = "server_shutdown"


class Drain:
    """One server's shutdown (module docstring). ``begin(grace)`` starts it; ``over`` turns
    true ``grace`` seconds later, when the streams still running are cut."""

    def __init__(self) -> None:
        self.over = False
        self.deadline = math.inf  # when the grace ends, once begun (the event loop's clock)
        self._cuts: set[anyio.CancelScope] = set()
        self._callbacks: list[Callable[[], object]] = []
        self._begun: anyio.Event | None = None
        self._tasks: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Drain:
        self._begun = anyio.Event()
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._expire_after_grace)
        return self

    async def __aexit__(self, *exc: object) -> None:
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            tasks.cancel_scope.cancel()
            await tasks.__aexit__(None, None, None)

    def begin(self, grace: float) -> None:
        """The server stopped accepting; the streams running have ``grace`` seconds (from
        the event loop's thread; a second call changes nothing)."""
        if self.deadline < math.inf:
            return
        self.deadline = anyio.current_time() + grace
        if self._begun is not None:
            self._begun.set()

    def at_expiry(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` when the grace is over, before the client streams are cut."""
        self._callbacks.append(callback)

    @contextlib.contextmanager
    def hold(self, cut: anyio.CancelScope) -> Iterator[None]:
        """While inside, a client stream: ``cut`` is cancelled when the grace is over (at
        once if it is over already)."""
        if self.over:
            cut.cancel()
        self._cuts.add(cut)
        try:
            yield
        finally:
            self._cuts.discard(cut)

    def expire(self) -> None:
        """The grace is over: the callbacks, then every held stream cut."""
        if self.over:
            return
        self.over = True
        for callback in self._callbacks:
            callback()
        for cut in list(self._cuts):
            cut.cancel()

    async def _expire_after_grace(self) -> None:
        assert self._begun is not None
        await self._begun.wait()
        await anyio.sleep(max(self.deadline - anyio.current_time(), 0.0))
        self.expire()
