"""CORS for the proxy, explicit: only the configured origins may call it from a browser.

``Cors`` is ASGI middleware. A preflight (``OPTIONS`` with an ``Origin``: a browser
sends ``Access-Control-Request-Method`` too) to any path is answered here, never passed
on (the proxy would forward it upstream): a 204 with the ``Access-Control-Allow-*`` headers
for an allowed origin, without them for any other. Every other response to an allowed
origin carries ``Access-Control-Allow-Origin`` for it; the upstream's own
``Access-Control-Allow-Origin`` and ``-Credentials`` are dropped, so the configuration
here is the only one a browser sees.

Cost: one header scan per request; nothing kept.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .resumable import RESUMABLE_HEADER, STREAM_TOKEN_HEADER

__all__ = ["ALLOWED_HEADERS", "Cors"]

#: The request headers pacer's clients send, allowed to every allowed origin (beside
#: those a preflight asks for).
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Last-Event-ID",
    STREAM_TOKEN_HEADER,
    RESUMABLE_HEADER,
    "x-api-key",
)
_METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"
_DROPPED = (b"access-control-allow-origin", b"access-control-allow-credentials")


class Cors:
    """``app`` behind CORS for ``origins`` (``"https://app.example"``; ``"*"``: any)."""

    def __init__(self, app: ASGIApp, origins: Iterable[str] = ()) -> None:
        self.app = app
        self.origins = frozenset(origins)

    def allowed(self, origin: str) -> bool:
        return bool(origin) and ("*" in self.origins or origin.rstrip("/") in self.origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))  # the last of a repeated field
        origin = headers.get(b"origin", b"").decode("latin-1")
        if scope["method"] == "OPTIONS" and origin:
            await self._preflight(origin, headers.get(b"access-control-request-headers", b""), send)
            return
        allow = self.allowed(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in _DROPPED]
                if allow:
                    kept += [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
                message = {**message, "headers": kept}
            await send(message)

        await self.app(scope, receive, send_with_cors if origin else send)

    async def _preflight(self, origin: str, asked: bytes, send: Send) -> None:
        headers = [(b"vary", b"Origin"), (b"content-length", b"0")]
        if self.allowed(origin):
            names = list(ALLOWED_HEADERS)
            lower = {n.lower() for n in names}
            for name in asked.decode("latin-1").split(","):
                name = name.strip()
                if name and name.lower() not in lower:
                    names.append(name)
                    lower.add(name.lower())
            headers += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", _METHODS),
                (b"access-control-allow-headers", ", ".join(names).encode("latin-1")),
                (b"access-control-max-age", b"600"),
            ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
