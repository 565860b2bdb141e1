"""The proxy's client connections, bounded: ``ProxyHTTP``, the HTTP protocol ``serve``
gives uvicorn (``http=``).

uvicorn waits for a request head as long as a client keeps sending it (a byte every few
seconds keeps a connection open for ever: *slowloris*), and accepts every connection
it can. ``ProxyHTTP`` is uvicorn's own protocol (``AutoHTTPProtocol``: httptools when
installed, else h11) with three rules added, each read from ``ConnectionRules``:

- **Header timeout.** A connection has ``header_timeout`` seconds to send its whole
  request head, from its opening and again from the end of each response (the next
  head of a kept-alive connection); then it is closed, after a ``408`` JSON error if it
  had begun one (a silent close otherwise, as uvicorn's keep-alive timeout does).
- **Connection limit.** A connection opened while ``connection_limit`` others are open
  gets, for its request, a ``503`` JSON error with ``Connection: close`` at once; ``GET
  /healthz`` is still answered, so liveness checks stay true while the limit holds.
- **Shutdown.** The first connection uvicorn asks to shut down (SIGTERM: uvicorn has
  stopped accepting) begins the app's ``Drain`` with ``shutdown_grace`` seconds.

The rules and the drain reach each connection through the ASGI lifespan state (the app's
own, which uvicorn gives every connection): ``RULES`` holds the ``ConnectionRules``
(``with_rules`` puts them there), ``DRAIN`` the app's ``pacer._drain.Drain``, which
``create_proxy``'s lifespan yields. Without them a connection is uvicorn's, unchanged.

Cost: one timer per connection while it waits for a head; nothing per byte beyond a
comparison.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._drain import STATE_KEY, Drain
from ._errors import error_object
from ._writer import SERVER_SEND

if TYPE_CHECKING:  # both protocols have what is used here; mypy checks against h11's
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Protocol
else:
    from uvicorn.protocols.http.auto import AutoHTTPProtocol as _Protocol

__all__ = ["DRAIN", "RULES", "ConnectionRules", "ProxyHTTP", "with_rules"]

log = logging.getLogger("pacer.proxy")

#: The lifespan state's key for the ``ConnectionRules``.
RULES = "pacer.connection_rules"
#: The lifespan state's key for the app's ``Drain``.
DRAIN = STATE_KEY

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class ConnectionRules:
    """``header_timeout`` (seconds), ``connection_limit`` (open connections) and
    ``shutdown_grace`` (seconds), as ``pacer.config.ServerConfig`` has them."""

    header_timeout: float
    connection_limit: int
    shutdown_grace: float


def _answer(status: int, reason: str, message: str, kind: str) -> bytes:
    """A whole HTTP/1.1 response with a JSON error, that closes the connection."""
    body = json.dumps(error_object(message, kind)).encode()
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode("latin-1") + body


class ProxyHTTP(_Protocol):
    """uvicorn's HTTP protocol with a header timeout, a connection limit and the start
    of a graceful shutdown (module docstring)."""

    _rules: ConnectionRules | None = None
    _head_timer: asyncio.TimerHandle | None = None
    _head_begun = False  # a byte of the awaited head has come
    _awaited_after: Any = None  # the request cycle before the awaited head

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        rules = self._rules = self.app_state.get(RULES)
        if rules is None:
            return
        if len(self.connections) > rules.connection_limit:
            self.app = _Overloaded(self.app, rules.connection_limit)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None:
            super().data_received(data)
            return
        self._head_begun = True
        super().data_received(data)
        # A new request cycle: its head is complete. A new protocol: a WebSocket upgrade.
        if self.cycle is not self._awaited_after or self.transport.get_protocol() is not self:
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        idle = self.cycle is None or self.cycle.response_complete  # no pipelined request begun
        if self._rules is not None and idle and not self.transport.is_closing():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        drain = self.app_state.get(DRAIN)
        if isinstance(drain, Drain) and self._rules is not None:
            drain.begin(self._rules.shutdown_grace)
        super().shutdown()

    def _await_head(self) -> None:
        assert self._rules is not None
        self._stop_waiting()
        self._awaited_after = self.cycle
        self._head_begun = False
        self._head_timer = self.loop.call_later(self._rules.header_timeout, self._head_late)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        """The head did not come within the header timeout: the connection is closed."""
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_begun:
            assert self._rules is not None
            message = f"the request head did not arrive within {self._rules.header_timeout} s"
            self.transport.write(_answer(408, "Request Timeout", message, "request_timeout"))
        log.debug("pacer proxy: a connection sent no complete request head in time; closed")
        self.transport.close()


class _Overloaded:
    """The app for a connection past the limit: ``GET /healthz`` as the app answers it,
    anything else a 503; either closes the connection after."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and scope["path"] == "/healthz":
            await self.app(scope, receive, closing)
            return
        _warn_refused(self.limit)
        message = f"the proxy has its limit of {self.limit} connections open; try again later"
        body = json.dumps(error_object(message, "overloaded")).encode()
        headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
        await closing({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_warned = [-math.inf]  # when a refusal was last logged: once a second at most, under a flood


def _warn_refused(limit: int) -> None:
    now = time.monotonic()
    if now - _warned[0] >= 1.0:
        _warned[0] = now
        log.warning(
            "pacer proxy: %d connections open, the limit (--connection-limit); requests refused", limit
        )


def with_rules(app: ASGIApp, rules: ConnectionRules) -> ASGIApp:
    """``app`` served under ``rules`` by ``ProxyHTTP``: its lifespan state also holds them
    (under ``RULES``), which uvicorn gives every connection. Being the outermost layer,
    it also hands an event stream the server's own ``send`` (``SERVER_SEND``): the
    middleware between passes an event's body through untouched, at a coroutine call
    each per event."""

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            scope[SERVER_SEND] = send
        elif kind == "lifespan" and isinstance(scope.get("state"), dict):
            scope["state"][RULES] = rules
        await app(scope, receive, send)

    return served
