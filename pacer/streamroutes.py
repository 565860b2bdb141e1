"""HTTP routes for resumable streams, for any Starlette or FastAPI app to mount.

``stream_routes(streams)`` is the two endpoints the proxy serves, over a
``pacer.resumable.ResumableStreams`` (the domain, which knows nothing of HTTP):

- ``GET /v1/streams/{stream_id}``: the stream's events after the ``Last-Event-ID``
  header (all of them without one), then the live rest (``resume_response``);
- ``POST /v1/streams/{stream_id}/cancel``: stop the generation wherever it runs; the
  JSON answer is the text its readers received (``cancel_response``).

Mount them beside your own routes::

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                            *stream_routes(streams)], lifespan=lifespan)

Errors are JSON (``{"error": {"message", "type"}}``): 404 for an unknown or expired
stream, 400 for a malformed ``Last-Event-ID``, 410 for events the log no longer keeps,
503 when the log's store is down.

Cost: what ``ResumableStreams`` costs per request; nothing kept here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import HEARTBEAT, SEND_TIMEOUT
from .prometheus import StreamObserver
from .resumable import STREAM_ID_HEADER, ResumableStreams, valid_stream_id
from .server import EventStreamResponse, json_error, log_frames
from .streamlog import EventsTrimmed, StreamLogError, StreamLost

__all__ = ["cancel_response", "resume_response", "stream_routes"]

#: Lets a browser page of another origin read the stream id header.
_EXPOSE = {"Access-Control-Expose-Headers": STREAM_ID_HEADER}


async def resume_response(
    streams: ResumableStreams,
    stream_id: str,
    headers: Mapping[str, str] | None = None,
    *,
    heartbeat: float | None = HEARTBEAT,
    send_timeout: float | None = SEND_TIMEOUT,
    compress: bool = True,
    observer: StreamObserver | None = None,
) -> Response:
    """The response to ``GET /v1/streams/{id}``: the stream's events after the
    ``Last-Event-ID`` in ``headers`` (all of them without one), then the live rest; a 404
    JSON error for an unknown or expired stream, a 400 for a malformed ``Last-Event-ID``.
    The options are ``EventStreamResponse``'s."""
    last = (headers or {}).get("last-event-id", "").strip()
    if (last and not (last.isascii() and last.isdigit())) or len(last) > 18:
        return json_error(
            400,
            f"Last-Event-ID must be an event id of this stream (digits), got {last!r}",
            "invalid_request_error",
        )
    after = int(last) if last else 0
    if not valid_stream_id(stream_id):
        return json_error(404, f"no stream {stream_id!r}", "not_found")
    try:
        await streams.check(stream_id, after)
    except StreamLost:
        return json_error(404, f"no stream {stream_id!r} (unknown, or expired)", "not_found")
    except StreamLogError as exc:
        return json_error(410 if isinstance(exc, EventsTrimmed) else 400, str(exc), exc.kind)
    return EventStreamResponse(
        log_frames(streams, stream_id, after),
        headers={STREAM_ID_HEADER: stream_id, **_EXPOSE},
        heartbeat=heartbeat,
        send_timeout=send_timeout,
        compress=compress,
        observer=observer,
    )


async def cancel_response(streams: ResumableStreams, stream_id: str) -> Response:
    """The response to ``POST /v1/streams/{id}/cancel``: ``ResumableStreams.cancel``'s
    answer as JSON; a 404 for an unknown or expired stream, a 503 when the log is down."""
    try:
        answer = await streams.cancel(stream_id)
    except StreamLogError as exc:
        if isinstance(exc, StreamLost):
            return json_error(404, f"no stream {stream_id!r} (unknown, or expired)", "not_found")
        return json_error(503, str(exc), exc.kind)
    return JSONResponse(answer, headers={STREAM_ID_HEADER: stream_id})


def stream_routes(
    streams: ResumableStreams,
    *,
    heartbeat: float | None = HEARTBEAT,
    send_timeout: float | None = SEND_TIMEOUT,
    compress: bool = True,
    observers: Callable[[], StreamObserver] | None = None,
    prefix: str = "/v1/streams",
) -> list[Route]:
    """The resume and cancel routes of ``streams``, under ``prefix`` (module docstring).

    ``heartbeat``, ``send_timeout`` and ``compress`` are a resumed stream's
    ``EventStreamResponse`` options; ``observers`` makes each one's metrics observer
    (``pacer.prometheus.PacerMetrics().observer``)."""

    async def resume(request: Request) -> Response:
        return await resume_response(
            streams,
            request.path_params["stream_id"],
            request.headers,
            heartbeat=heartbeat,
            send_timeout=send_timeout,
            compress=compress,
            observer=observers() if observers is not None else None,
        )

    async def cancel(request: Request) -> Response:
        return await cancel_response(streams, request.path_params["stream_id"])

    return [
        Route(prefix + "/{stream_id}", resume, methods=["GET"]),
        Route(prefix + "/{stream_id}/cancel", cancel, methods=["POST"]),
    ]
