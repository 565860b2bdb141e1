"""Who a client is, for per-client limits, and how many streams each may hold open.

``client_key`` names the client of a request: a hash of its credential (its
``Authorization`` or ``x-api-key`` value: many clients may share a load balancer's
address), or else its address. ``StreamsPerClient`` is the ASGI middleware that lets
each client hold at most ``limit`` streams open at once (the requests to the routes it
is given and the stream resumes under ``/v1/streams/``, from their arrival to their
response's end, or to their generation's end where that is later); one more is
answered at once with a 429 JSON error (``{"error": {"message", "type":
"rate_limited"}}``) and ``Retry-After``, before the upstream is asked anything.

A resumable stream's generation outlives its connection (``pacer.resumable``): a
client that starts one and leaves must not get a fresh slot while the upstream still
answers it. So the middleware puts a ``Slot`` in the request's scope (``SLOT_KEY``);
the response that starts a generation takes a hold on it (``Slot.keep``) and lets go
when the generation ends (done, cancelled, orphaned, shut down), and the client's
count drops only when the connection and every hold have ended.

Cost: one hash of the credential and one dictionary update per counted request;
memory one entry per client with a stream open.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from starlette.datastructures import Headers

from ._errors import RATE_LIMITED, error_object
from .resumable import credential_of

__all__ = ["SLOT_KEY", "Slot", "StreamsPerClient", "client_key"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Message = MutableMapping[str, Any]

#: The scope key of a counted request's ``Slot``.
SLOT_KEY = "pacer.client_slot"


def client_key(headers: Mapping[str, str], address: str | None) -> str:
    """Who is asking, for per-client limits: a hash of its credential (``headers`` with
    lower-case names), or else its ``address``; never the credential itself."""
    credential = credential_of(headers)
    if credential is not None:
        return "key:" + hashlib.sha256(credential.encode("utf-8", "surrogateescape")).hexdigest()
    return "address:" + (address or "")


class Slot:
    """One counted request's place in its client's count: held by its connection and by
    each ``keep`` until let go; ``release`` is called once, when the last lets go."""

    __slots__ = ("_holds", "_release", "answered")

    def __init__(self, release: Callable[[], None]) -> None:
        self._holds = 1  # the connection's
        self._release = release
        self.answered = False  # the connection's hold let go

    def answer_sent(self) -> None:
        """The response's last byte went out: the connection lets go of its hold (once; a
        client that sends its next request at once on the same connection must find its
        place free, before the response's task has wound down)."""
        if not self.answered:
            self.answered = True
            self.drop()

    def keep(self) -> Callable[[], None]:
        """One more hold (a generation that outlives the connection); returns its
        let-go, which does nothing after its first call."""
        self._holds += 1
        done = False

        def let_go() -> None:
            nonlocal done
            if not done:
                done = True
                self.drop()

        return let_go

    def drop(self) -> None:
        """Let go of one hold."""
        self._holds -= 1
        if not self._holds:
            self._release()


class StreamsPerClient:
    """At most ``limit`` open streams per client (module docstring); ``0``: no limit.
    ``routes`` are the paths counted for a ``POST`` (the completion routes); a ``GET``
    under ``/v1/streams/`` (a resume) is counted too."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, limit: int, routes: Iterable[str]
    ) -> None:
        self.app = app
        self.limit = limit
        self.routes = frozenset(routes)
        self.open: dict[str, int] = {}

    def _counted(self, scope: Scope) -> bool:
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "POST":
            return path in self.routes
        return method == "GET" and path.startswith("/v1/streams/") and path.count("/") == 3

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limit or not self._counted(scope):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = client_key(Headers(scope=scope), client[0] if client else None)
        held = self.open.get(key, 0)
        if held >= self.limit:
            await self._refuse(send)
            return
        self.open[key] = held + 1
        slot = scope[SLOT_KEY] = Slot(lambda: self._release(key))

        async def counted(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                slot.answer_sent()

        try:
            await self.app(scope, receive, counted)
        finally:
            slot.answer_sent()

    def _release(self, key: str) -> None:
        left = self.open[key] - 1
        if left:
            self.open[key] = left
        else:
            del self.open[key]

    async def _refuse(self, send: Send) -> None:
        message = (
            f"this client has {self.limit} streams open, the proxy's limit per client; "
            "try again when one has ended"
        )
        body = json.dumps(error_object(message, RATE_LIMITED)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
