"""HTTP routes for resumable streams, for any Starlette or FastAPI app to mount.

``stream_routes(streams)`` is the two endpoints the proxy serves, over a
``pacer.resumable.ResumableStreams`` (the domain, which knows nothing of HTTP):

- ``GET /v1/streams/{stream_id}``: the stream's events after the ``Last-Event-ID``
  header (all of them without one), then the live rest (``resume_response``);
- ``POST /v1/streams/{stream_id}/cancel``: stop the generation wherever it runs; the
  JSON answer is the text its readers received (``cancel_response``). Its body is a JSON
  object (``{}``) sent as ``Content-Type: application/json``, which a cross-site form
  cannot send without a CORS preflight: anything else is a 415 or a 400 (a 413 over
  64 KiB).
- ``POST /v1/streams/{stream_id}/control``: a reader's control, ``{"action": "pause" |
  "resume" | "show_all" | "rate", "cps": N}`` (or ``"wpm": N``; ``"stop"`` is the
  cancel above), handed to the stream's producer on whichever instance runs it and
  applied at its pacer's next decision (``ResumableStreams.control``); the answer is
  the stream's state: ``{"id", "live", "paused", "show_all", "cps", "shown_chars"}``.
  The same JSON-only body rule; a bad control is a 400 that says what was wrong.

A stream belongs to whoever started it (``pacer.resumable.Owner``): the routes answer
only a request with the creator's ``Authorization`` (or ``x-api-key``) value, or the
stream's token in ``X-Pacer-Stream-Token``; to anyone else the stream does not exist
(the same 404 as an unknown id). Resume and cancel replay the stream's log, so they
are limited per stream and per client, its credential or else its address
(``pacer._replays.ReplayLimits``): over the limit is a 429 with ``Retry-After``. A
control replays nothing (one message to the producer): a rate slider may send many.

Mount them beside your own routes::

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                            *stream_routes(streams)], lifespan=lifespan)

Errors are JSON (``{"error": {"message", "type"}}``): 404 for an unknown or expired
stream (or another's), 400 for a ``Last-Event-ID`` that names no event of the stream
(malformed, or past its end: both ``invalid_last_event_id``), 410 for events the log no
longer keeps, 503 when the log's store is down, 405 (with ``Allow``) for another method
on these paths, which never falls through to a route mounted after them.

Cost: what ``ResumableStreams`` costs per request; nothing kept here.
"""

from __future__ import annotations

from . import _server_extra  # noqa: F401  (first: a plain install's missing package, named with its extra)

# isort: split

import json
import math
from collections.abc import Callable, Mapping

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._clients import client_key
from ._control import Control, ControlError
from ._drain import Drain
from ._errors import INVALID_LAST_EVENT_ID, INVALID_REQUEST, NOT_FOUND, RATE_LIMITED, REQUEST_TOO_LARGE
from ._replays import ReplayLimits
from .config import HEARTBEAT, SEND_TIMEOUT
from .prometheus import StreamObserver
from .resumable import STREAM_ID_HEADER, STREAM_TOKEN_HEADER, ResumableStreams, credential_of, valid_stream_id
from .server import EXPOSED, EventStreamResponse, json_error, log_frames, owned_route
from .streamlog import EventsTrimmed, InvalidEventId, StreamLogError, StreamLost

__all__ = [
    "REPLAYS_PER_CLIENT",
    "REPLAYS_PER_STREAM",
    "cancel_response",
    "control_body",
    "control_response",
    "resume_response",
    "stream_routes",
]

#: Replays (resumes and cancels) of one stream a minute, by default.
REPLAYS_PER_STREAM = 10
#: Replays (resumes and cancels) by one client a minute, by default.
REPLAYS_PER_CLIENT = 60

#: Lets a browser page of another origin read the stream's headers.
_EXPOSE = {"Access-Control-Expose-Headers": EXPOSED}


def _not_found(stream_id: str) -> Response:
    """The one answer for a stream that is unknown, expired or someone else's."""
    return json_error(404, f"no stream {stream_id!r} (unknown, or expired)", NOT_FOUND)


async def _admitted(streams: ResumableStreams, stream_id: str, headers: Mapping[str, str]) -> bool:
    """Whether the stream exists and the request may use it (``Owner.admits``)."""
    if not valid_stream_id(stream_id):
        return False
    token = headers.get(STREAM_TOKEN_HEADER.lower())
    return await streams.admits(stream_id, credential_of(headers), token)


async def resume_response(
    streams: ResumableStreams,
    stream_id: str,
    headers: Mapping[str, str] | None = None,
    *,
    heartbeat: float | None = HEARTBEAT,
    send_timeout: float | None = SEND_TIMEOUT,
    compress: bool = True,
    observer: StreamObserver | None = None,
    drain: Drain | None = None,
) -> Response:
    """The response to ``GET /v1/streams/{id}``: the stream's events after the
    ``Last-Event-ID`` in ``headers`` (all of them without one), then the live rest; a 404
    JSON error for an unknown or expired stream or one ``headers`` do not own (module
    docstring), a 400 for a malformed ``Last-Event-ID``.
    The options are ``EventStreamResponse``'s."""
    last = (headers or {}).get("last-event-id", "").strip()
    if (last and not (last.isascii() and last.isdigit())) or len(last) > 18:
        return json_error(
            400,
            f"Last-Event-ID must be an event id of this stream (digits), got {last!r}",
            INVALID_LAST_EVENT_ID,
        )
    after = int(last) if last else 0
    try:
        if not await _admitted(streams, stream_id, headers or {}):
            return _not_found(stream_id)
        await streams.check(stream_id, after)
    except StreamLost:
        return _not_found(stream_id)
    except StreamLogError as exc:
        status = 410 if isinstance(exc, EventsTrimmed) else 400 if isinstance(exc, InvalidEventId) else 503
        return json_error(status, str(exc), exc.kind)
    return EventStreamResponse(
        log_frames(streams, stream_id, after),
        headers={STREAM_ID_HEADER: stream_id, **_EXPOSE},
        heartbeat=heartbeat,
        send_timeout=send_timeout,
        compress=compress,
        observer=observer,
        drain=drain,
    )


async def cancel_response(
    streams: ResumableStreams, stream_id: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The response to ``POST /v1/streams/{id}/cancel``: ``ResumableStreams.cancel``'s
    answer as JSON; a 404 for an unknown or expired stream or one ``headers`` do not own,
    a 503 when the log is down."""
    try:
        if not await _admitted(streams, stream_id, headers or {}):
            return _not_found(stream_id)
        answer = await streams.cancel(stream_id)
    except StreamLogError as exc:
        if isinstance(exc, StreamLost):
            return _not_found(stream_id)
        return json_error(503, str(exc), exc.kind)
    return JSONResponse(answer, headers={STREAM_ID_HEADER: stream_id, **_EXPOSE})


async def control_response(
    streams: ResumableStreams,
    stream_id: str,
    body: Mapping[str, object],
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The response to ``POST /v1/streams/{id}/control`` with the JSON object ``body``:
    the stream's state as JSON (``ResumableStreams.control``), or the cancel's answer for
    ``{"action": "stop"}``; a 400 for a bad control, a 404 for an unknown or expired
    stream or one ``headers`` do not own, a 503 when the log is down."""
    if body.get("action") == "stop":
        return await cancel_response(streams, stream_id, headers)
    try:
        control = Control.parse(body)
    except ControlError as exc:
        message = f'{exc} (or "stop")' if "must be one of" in str(exc) else str(exc)
        return json_error(400, message, INVALID_REQUEST)
    try:
        if not await _admitted(streams, stream_id, headers or {}):
            return _not_found(stream_id)
        state = await streams.control(stream_id, control, streams.reader_of(headers or {}))
    except StreamLogError as exc:
        if isinstance(exc, StreamLost):
            return _not_found(stream_id)
        return json_error(503, str(exc), exc.kind)
    return JSONResponse(state, headers={STREAM_ID_HEADER: stream_id, **_EXPOSE})


async def control_body(
    request: Request, limit: int = 64 << 10, what: str = "control"
) -> dict[str, object] | Response:
    """A control request's JSON object body, or the 415, 413 or 400 that refuses it: only
    ``Content-Type: application/json`` (which no cross-site form sends without a CORS
    preflight) with a JSON object of at most ``limit`` bytes. ``what``: the request, as
    its errors name it (``"control"``, ``"cancel"``)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        message = f"a stream {what} request needs Content-Type: application/json and a JSON object body"
        message += ' ("{}")'
        return json_error(415, message, INVALID_REQUEST)
    raw = b""
    async for piece in request.stream():
        raw += piece
        if len(raw) > limit:
            message = f"{what} request body is over the limit of {limit} bytes"
            return json_error(413, message, REQUEST_TOO_LARGE)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        return json_error(400, f'{what} request body must be a JSON object ("{{}}")', INVALID_REQUEST)
    return body


def _too_many(wait: float) -> Response:
    response = json_error(
        429, "too many replays of this stream, or by this client; try again later", RATE_LIMITED
    )
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def stream_routes(
    streams: ResumableStreams,
    *,
    heartbeat: float | None = HEARTBEAT,
    send_timeout: float | None = SEND_TIMEOUT,
    compress: bool = True,
    observers: Callable[[], StreamObserver] | None = None,
    prefix: str = "/v1/streams",
    replays_per_stream: int = REPLAYS_PER_STREAM,
    replays_per_client: int = REPLAYS_PER_CLIENT,
    drain: Drain | None = None,
) -> list[Route]:
    """The resume, cancel and control routes of ``streams``, under ``prefix`` (module docstring).

    ``heartbeat``, ``send_timeout`` and ``compress`` are a resumed stream's
    ``EventStreamResponse`` options; ``observers`` makes each one's metrics observer
    (``pacer.prometheus.PacerMetrics().observer``). ``replays_per_stream`` and
    ``replays_per_client`` are how many resumes and cancels one stream, and one client
    (its credential, or else its address), may have a minute (0: no limit). ``drain``:
    the server's shutdown (``pacer._drain.Drain``), which ends a resumed stream still
    running when its grace is over with an ``event: error``."""
    limits = ReplayLimits(replays_per_stream, replays_per_client)

    async def limited(request: Request) -> Response | None:
        """A 429 when the client, or the stream (once it is the client's), is over its limit."""
        now = anyio.current_time()
        address = request.client.host if request.client is not None else None
        wait = limits.take_client(client_key(request.headers, address), now)
        stream_id = request.path_params["stream_id"]
        try:
            if not wait and await _admitted(streams, stream_id, request.headers):
                wait = limits.take_stream(stream_id, now)
        except StreamLogError:
            pass  # the store is down: the route itself answers that

        return _too_many(wait) if wait else None

    async def resume(request: Request) -> Response:
        refusal = await limited(request)
        if refusal is not None:
            return refusal
        return await resume_response(
            streams,
            request.path_params["stream_id"],
            request.headers,
            heartbeat=heartbeat,
            send_timeout=send_timeout,
            compress=compress,
            observer=observers() if observers is not None else None,
            drain=drain,
        )

    async def cancel(request: Request) -> Response:
        body = await control_body(request, what="cancel")
        if isinstance(body, Response):
            return body
        refusal = await limited(request)
        if refusal is not None:
            return refusal
        return await cancel_response(streams, request.path_params["stream_id"], request.headers)

    async def control(request: Request) -> Response:
        body = await control_body(request)
        if isinstance(body, Response):
            return body
        if body.get("action") == "stop":  # a cancel: limited as one
            refusal = await limited(request)
            if refusal is not None:
                return refusal
        return await control_response(streams, request.path_params["stream_id"], body, request.headers)

    return [
        owned_route(prefix + "/{stream_id}", resume, ["GET"]),
        owned_route(prefix + "/{stream_id}/cancel", cancel, ["POST"]),
        owned_route(prefix + "/{stream_id}/control", control, ["POST"]),
    ]
