"""An OpenAI-compatible pacing proxy: ``pacer proxy --upstream http://localhost:8000``.

``POST /v1/chat/completions`` with ``"stream": true`` is forwarded upstream and its
SSE response re-paced: content deltas go through a fresh pipeline per request and
come back as chat-completion chunks with the upstream's ``id``, ``model`` and other
fields; the chunks without content (role, finish reason, the final usage chunk) are
kept, in order around the content; ``data: [DONE]`` ends the stream. Every other
request (non-streaming completions, ``/v1/models``, anything else) is passed through
untouched. An upstream error status is returned as is; an error in the middle of
a stream (an ``{"error": ...}`` chunk, malformed JSON, a dropped connection, a line
over ``max_line``) ends the stream with an ``event: error`` frame after everything
before it. A client that disconnects cancels the upstream request at once.

Needs the ``server`` extra.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._core import Stage
from .clock import Clock
from .server import EventStreamResponse, paced_openai_sse

__all__ = ["create_proxy"]

log = logging.getLogger("pacer.proxy")

_HOP_HEADERS = {
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "accept-encoding",
}


def _forward_headers(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}


def _response_headers(upstream: httpx.Response) -> dict[str, str]:
    skip = _HOP_HEADERS | {"content-encoding"}
    return {k: v for k, v in upstream.headers.items() if k.lower() not in skip}


def _unreachable(exc: httpx.HTTPError) -> JSONResponse:
    log.warning("pacer proxy: upstream unreachable: %r", exc)
    return JSONResponse(
        {"error": {"message": f"upstream unreachable: {exc}", "type": "upstream_error"}}, status_code=502
    )


async def _closing(response: httpx.Response, pieces: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """``pieces``, then the upstream response closed, however the iteration ends."""
    try:
        async for piece in pieces:
            yield piece
    finally:
        with anyio.CancelScope(shield=True):
            await response.aclose()


def create_proxy(
    upstream: str,
    pipeline_factory: Callable[[], Stage],
    *,
    heartbeat: float | None = 15.0,
    send_timeout: float | None = 30.0,
    timeout: float = 600.0,
    max_line: int = 1 << 20,
    clock: Clock | None = None,
    client: httpx.AsyncClient | None = None,
    max_connections: int | None = None,
) -> Starlette:
    """The proxy as a Starlette app; ``pipeline_factory()`` makes each stream's pipeline.

    ``max_connections`` caps concurrent upstream requests (default: no cap, so every
    client stream has its upstream stream at once; a capped proxy queues the rest).
    """
    base = upstream.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"create_proxy: upstream must be an http(s) URL, got {upstream!r}")
    state: dict[str, httpx.AsyncClient] = {}

    def http() -> httpx.AsyncClient:
        if client is not None:
            return client
        if "client" not in state:
            # One upstream connection per open stream: httpx's default pool of 100
            # would queue the 101st stream behind the others for their whole length.
            limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=100)
            state["client"] = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0), limits=limits)
        return state["client"]

    async def chat(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            return JSONResponse(
                {
                    "error": {
                        "message": f"request body is not JSON: {exc.msg}",
                        "type": "invalid_request_error",
                    }
                },
                status_code=400,
            )
        if not isinstance(body, dict) or not body.get("stream"):
            return await passthrough(request, raw)
        upstream_request = http().build_request(
            "POST", f"{base}/v1/chat/completions", content=raw, headers=_forward_headers(request)
        )
        try:
            response = await http().send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            return _unreachable(exc)
        if response.status_code != 200 or not response.headers.get("content-type", "").startswith(
            "text/event-stream"
        ):
            content = await response.aread()
            await response.aclose()
            return Response(content, status_code=response.status_code, headers=_response_headers(response))
        frames = paced_openai_sse(response.aiter_raw(), pipeline_factory(), clock=clock, max_line=max_line)
        return EventStreamResponse(
            _closing(response, frames), heartbeat=heartbeat, send_timeout=send_timeout, on_close=closed
        )

    def closed(outcome: str) -> None:
        log.info("pacer proxy: stream ended: %s", outcome)

    async def passthrough(request: Request, raw: bytes | None = None) -> Response:
        content = raw if raw is not None else await request.body()
        url = f"{base}{request.url.path}"
        if request.url.query:
            url += f"?{request.url.query}"
        upstream_request = http().build_request(
            request.method, url, content=content, headers=_forward_headers(request)
        )
        try:
            response = await http().send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            return _unreachable(exc)
        return StreamingResponse(
            _closing(response, response.aiter_raw()),
            status_code=response.status_code,
            headers=_response_headers(response),
        )

    async def other(request: Request) -> Response:
        return await passthrough(request)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if "client" in state:
            await state.pop("client").aclose()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/{path:path}", other, methods=methods),
        ],
        lifespan=lifespan,
    )


def default_pipeline(cps: float = 60.0, max_bytes: int | None = None) -> Callable[[], Stage]:
    """Word pacing at ``cps``, then (optionally) packets of at most ``max_bytes``.

    Words, not the ``Pacer`` default of graphemes: every chunk becomes an SSE event
    with a JSON envelope of a hundred-odd bytes, and a word per event sends a fraction
    of the events (and bytes) that a few characters per event would.
    """
    from .pacing import Pacer
    from .packets import Packetizer

    def make() -> Stage:
        stage: Stage = Pacer(cps=cps, unit="word")
        if max_bytes is not None:
            stage = stage | Packetizer(max_bytes=max_bytes, min_bytes=1)
        return stage

    return make


def serve(
    upstream: str, *, host: str = "127.0.0.1", port: int = 8100, cps: float = 60.0, **options: Any
) -> None:
    """Run the proxy with uvicorn until interrupted."""
    import uvicorn

    app = create_proxy(upstream, default_pipeline(cps), **options)
    uvicorn.run(app, host=host, port=port, log_level="info")
