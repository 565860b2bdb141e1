"""Serve a paced pipeline as Server-Sent Events (Starlette/FastAPI), and re-pace other apps.

``PacedEventSource`` is a Starlette ``Response``: it runs a pipeline over a source
and streams each output chunk as an SSE event, with

- a heartbeat comment after ``heartbeat`` seconds of silence (silence, not a fixed
  timer: a busy stream sends none);
- a ``send_timeout`` on every write: a client that stops reading is dropped;
- client disconnect detection that cancels the run at once; the source is always
  closed (``aclose``) on the way out;
- ``data: [DONE]`` at the end, or, when the source or the pipeline fails, an
  ``event: error`` whose data is ``{"error": {"message", "type"}}``, after everything
  produced before the failure;
- headers ``Content-Type: text/event-stream``, ``Cache-Control: no-cache``,
  ``X-Accel-Buffering: no``;
- compression where the client asks for it (``Accept-Encoding``), each event
  flushed so it is decoded on arrival (``pacer._compress``).

All of that writing is one ``ClientWriter``'s (``pacer._writer``), which
``PacingMiddleware`` and ``pacer.websocket`` share; how a stream ended is an ``Outcome``
recorded where it happened (an ``ErrorFrame`` going out, a refused write, a timeout).

``PacingMiddleware`` re-paces the ``text/event-stream`` responses of an existing ASGI
app that streams OpenAI chat-completion chunks, without the app changing
(``paced_openai_sse``; ``pacer._events`` paces the other APIs' streams).

``json_error`` is the JSON error response of every route pacer serves, and
``owned_route`` a route of pacer's own whose other methods get a JSON 405.

We use Starlette (its ``Response`` and app types) but not sse-starlette: its ping
is a fixed timer, and the stream here must be driven by the pipeline's own clock and
deadlines; the SSE framing is ``pacer.sse``'s.

Needs the ``server`` extra (starlette, uvicorn, httpx).
"""

from __future__ import annotations

from . import _server_extra  # noqa: F401  (first: a plain install's missing package, named with its extra)

# isort: split

import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import TYPE_CHECKING, Any, cast

import anyio
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._aio import aclose_source
from ._args import one_of
from ._clients import SLOT_KEY, Slot
from ._compress import EventCompressor, negotiate
from ._control import Action, Control, ControlError, Mailbox
from ._core import Chunk, Stage
from ._drain import Drain
from ._errors import INVALID_REQUEST, METHOD_NOT_ALLOWED, error_body, error_frame, error_object
from ._events import EventPacer, paced_event_frames
from ._metrics import StreamMetrics
from ._outcome import Outcome
from ._run import AsyncRun
from ._text import SurrogatePairs
from ._writer import SERVER_SEND, ClientWriter, write_frames
from .clock import Clock
from .config import HEARTBEAT, MAX_LINE, SEND_TIMEOUT
from .formats import (
    FORMAT_NAMES,
    ChatCompletions,
    ChunkEncoder,
    Ending,
    OpenAIChunks,
    TextEvents,
    dumps,
    frame,
)
from .resumable import (
    RATE_HEADER,
    RESUMABLE_HEADER,
    STREAM_ID_HEADER,
    STREAM_TOKEN_HEADER,
    Owner,
    ResumableStreams,
    credential_of,
)
from .streamlog import StreamLogError

if TYPE_CHECKING:
    from .prometheus import StreamObserver

__all__ = [
    "SSE_HEADERS",
    "EventPacer",
    "EventStreamResponse",
    "OpenAIChunks",
    "Outcome",
    "PacedEventSource",
    "PacingMiddleware",
    "error_body",
    "error_frame",
    "json_error",
    "openai_chunk_frames",
    "paced_event_frames",
    "paced_openai_sse",
]

log = logging.getLogger("pacer.server")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}

Encoder = Callable[[Chunk], bytes]


def json_error(status: int, message: str, kind: str) -> JSONResponse:
    """A JSON error response: ``{"error": {"message", "type"}}`` with ``status``."""
    return JSONResponse(error_object(message, kind), status_code=status)


def owned_route(
    path: str, endpoint: Callable[[Request], Awaitable[Response]], methods: Iterable[str]
) -> Route:
    """A route of pacer's own at ``path``: ``methods`` go to ``endpoint`` (``HEAD`` too
    with ``GET``), any other method gets a JSON 405 with ``Allow`` (``method_not_allowed``).

    Starlette's own 405 is plain text, and only when no later route matches: behind the
    proxy's catch-all route a wrong method would go to the upstream."""
    allowed = {m.upper() for m in methods}
    if "GET" in allowed:
        allowed.add("HEAD")

    async def owned(request: Request) -> Response:
        if request.method not in allowed:
            return method_not_allowed(request.method, request.url.path, allowed)
        return await endpoint(request)

    # An ASGI app (not a function) is what a Route takes for every method.
    return Route(path, _EveryMethod(request_response(owned)), name=getattr(endpoint, "__name__", None))


class _EveryMethod:
    """An ASGI app as a Route's endpoint, so that the route matches any method."""

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def method_not_allowed(method: str, path: str, allowed: Iterable[str]) -> JSONResponse:
    """The JSON 405 for ``method`` at ``path``, whose ``Allow`` header lists ``allowed``."""
    allow = ", ".join(sorted(allowed))
    response = json_error(405, f"{method} is not allowed on {path}; it takes {allow}", METHOD_NOT_ALLOWED)
    response.headers["Allow"] = allow
    return response


#: A resumable stream's frames go out in writes of about this many bytes at most (a whole
#: replay in one would be held in memory twice, and a slow reader's send would wait on
#: all of it rather than on its share).
BATCH_BYTES = 1 << 16


async def log_frames(
    streams: ResumableStreams, stream_id: str, after: int = 0
) -> AsyncIterator[list[bytes] | Outcome]:
    """A resumable stream's frames after ``after``, in the log's batches (``write_frames``
    writes each at once; a batch of more than ``BATCH_BYTES`` in several), then the
    ``Outcome`` its end mark means to this client: ``ERROR`` for a stream that ended
    with an error event, ``BLOCKED`` for one a check blocked, nothing more for the rest."""
    async for batch in streams.batches(stream_id, after):
        end = batch[-1].end
        frames = [entry.frame for entry in batch] if end is None else [entry.frame for entry in batch[:-1]]
        start = size = 0
        for i, data in enumerate(frames):  # a replay goes out in bounded writes
            size += len(data)
            if size >= BATCH_BYTES:
                yield frames[start : i + 1]
                start, size = i + 1, 0
        if start < len(frames):
            yield frames[start:]
        if end in (Outcome.ERROR, Outcome.ORPHANED, Outcome.SHUTDOWN):  # each ends with an error event
            yield Outcome.ERROR
        elif end == Outcome.BLOCKED:
            yield Outcome.BLOCKED


#: When a stream keeps generating after its client leaves: ``"always"``, or only when its
#: request asked (``"request"``: ``X-Pacer-Resumable: 1``).
RESUME_WHEN = ("always", "request")
#: The headers a browser page of another origin may read from a stream's response.
EXPOSED = f"{STREAM_ID_HEADER}, {STREAM_TOKEN_HEADER}"


class _Resumable:
    """Where a response produces its frames: a resumable stream of ``fmt``, once started ``stream_id``."""

    __slots__ = ("controls", "fmt", "on_end", "stream_id", "streams", "when")

    def __init__(
        self,
        streams: ResumableStreams,
        fmt: str,
        when: str,
        controls: Mailbox | None,
        on_end: Callable[[Outcome, int], None] | None,
    ) -> None:
        self.streams = streams
        self.fmt = fmt
        self.when = when
        self.controls = controls  # where the reader's controls reach the run making the frames
        self.on_end = on_end  # told when the generation ends (ResumableStreams.start's on_end)
        self.stream_id: str | None = None

    def ended(self, slot: Slot | None, outlives: bool) -> Callable[[Outcome, int], None]:
        """What the generation's end calls: the let-go of its hold on its client's
        ``slot`` (``pacer._clients``), which it keeps until then, and ``on_end`` where
        the generation ``outlives`` a client that leaves (a resumable one)."""
        let_go = slot.keep() if slot is not None else None
        on_end = self.on_end if outlives else None

        def ended(outcome: Outcome, readers: int) -> None:
            if let_go is not None:
                let_go()
            if on_end is not None:
                on_end(outcome, readers)

        return ended

    def orphan_timeout(self, headers: Headers) -> float | None:
        """The stream's orphan timeout: the streams' own, or 0 for a request that did not
        ask to be resumable where only those that ask are."""
        asked = headers.get(RESUMABLE_HEADER, "").strip() == "1"
        return None if self.when == "always" or asked else 0.0


def _rate_of(headers: Headers) -> float | None:
    """The starting rate a request sets (``X-Pacer-Rate``, characters per second), if any."""
    raw = headers.get(RATE_HEADER)
    if raw is None:
        return None
    try:
        given = float(raw)
    except ValueError:
        raise ControlError(f"must be a rate in characters per second, got {raw[:40]!r}") from None
    return Control(Action.RATE, given).cps


class EventStreamResponse(Response):
    """Stream SSE ``frames`` (bytes, one or more events each) to the client, robustly.

    A frame that fails the stream is an ``ErrorFrame`` (``pacer._errors``: the
    ``event: error`` frames this module makes are); an ``Outcome`` among the frames is
    recorded, not sent (how a stream log's reader learns how the stream ended); a list
    of frames (due together) goes out in one write.

    Adds heartbeats after ``heartbeat`` seconds of silence, a ``send_timeout`` on
    every write, disconnect detection that cancels the frames at once, closing of
    the frames (shielded from cancellation, so the source behind them is always
    closed), and an ``event: error`` frame when the frames raise. ``heartbeat`` and
    ``send_timeout`` are seconds (``None`` turns either off). With ``compress`` (the
    default) the stream is compressed when the client's ``Accept-Encoding`` asks
    (``pacer._compress``: gzip, deflate, br, zstd), each frame flushed so the client
    decodes it the moment it arrives; ``compress=False`` never compresses.
    ``observer`` (``pacer.prometheus.PacerMetrics().observer()``) is told of every
    write, the outcome and the metrics of the pipelines in ``pipelines`` (a list that
    may be filled while the stream runs). ``on_close`` is called with how the stream
    ended, an ``Outcome`` (a ``str``): ``"done"``, ``"error"``, ``"disconnect"`` or
    ``"send_timeout"``; ``outcome`` keeps it. The writing itself is
    ``pacer._writer.ClientWriter``'s.

    With ``streams`` (a ``pacer.resumable.ResumableStreams``, entered) the frames are
    produced into a resumable stream instead, whose generation outlives this connection;
    this response reads it, every event with an SSE ``id``, and names it in the
    ``X-Pacer-Stream-Id`` header (``stream_id`` keeps it). ``stream_format`` says what
    the frames are (``pacer.formats.FORMATS``: ``"text"``, ``"chat.completions"``, ...), for
    the text a cancel reports. The stream belongs to the request's credential
    (``pacer.resumable.Owner``), and its token is sent in ``X-Pacer-Stream-Token``.
    ``resume`` says when the generation outlives a client that leaves: ``"always"`` (for
    up to the streams' ``orphan_timeout``), or ``"request"``: only when the request sent
    ``X-Pacer-Resumable: 1``; any other stops as soon as its client leaves. With
    ``drain`` (``pacer._drain.Drain``), a stream still running when the server's
    shutdown grace is over ends with an ``event: error`` of type ``server_shutdown``.
    ``X-Pacer-Resumable: 1``; any other stops as soon as its client leaves. ``controls``:
    the ``Mailbox`` of the run that makes the frames (``AsyncRun(controls=)``,
    ``paced_event_frames(controls=)``), through which ``POST /v1/streams/{id}/control``
    reaches it (``pacer.streamroutes``). ``on_generation_end`` is called, for a
    generation that outlives a client that leaves, with its ``Outcome`` and its readers
    then when it ends, which may be long after ``on_close``
    (``ResumableStreams.start``'s ``on_end``). Every generation keeps its client's place
    under ``pacer._clients.StreamsPerClient`` until it ends.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        frames: AsyncIterator[bytes | list[bytes] | Outcome],
        *,
        heartbeat: float | None = HEARTBEAT,
        send_timeout: float | None = SEND_TIMEOUT,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[Outcome], None] | None = None,
        compress: bool = True,
        observer: StreamObserver | None = None,
        pipelines: list[StreamMetrics] | None = None,
        streams: ResumableStreams | None = None,
        stream_format: str = "text",
        resume: str = "always",
        drain: Drain | None = None,
        controls: Mailbox | None = None,
        on_generation_end: Callable[[Outcome, int], None] | None = None,
    ) -> None:
        name = type(self).__name__
        if heartbeat is not None and not heartbeat > 0:
            raise ValueError(f"{name}: heartbeat must be > 0 seconds or None, got {heartbeat!r}")
        if send_timeout is not None and not send_timeout > 0:
            raise ValueError(f"{name}: send_timeout must be > 0 seconds or None, got {send_timeout!r}")
        if streams is not None:
            one_of(stream_format, f"{name}: stream_format", FORMAT_NAMES)
            one_of(resume, f"{name}: resume", RESUME_WHEN)
        super().__init__(status_code=status_code, headers={**SSE_HEADERS, **(headers or {})})
        # A stream has no length: drop the "content-length: 0" Response adds for an empty body.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.frames = frames
        self._source = frames  # what is written: the frames, or the log they are produced into
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.on_close = on_close
        self.compress = compress
        self.observer = observer
        self.pipelines: list[StreamMetrics] = pipelines if pipelines is not None else []
        self.outcome = Outcome.RUNNING
        self.drain = drain
        # Where to produce the frames (a resumable stream, and its format), and its id once started.
        self._resumable = None
        if streams is not None:
            self._resumable = _Resumable(streams, stream_format, resume, controls, on_generation_end)

    @property
    def stream_id(self) -> str | None:
        """The resumable stream's id, once the response has started it (``streams=``)."""
        return None if self._resumable is None else self._resumable.stream_id

    def _negotiate(self, scope: Scope) -> tuple[list[tuple[bytes, bytes]], EventCompressor | None]:
        """The response headers, with the encoding chosen for this client (if any)."""
        headers = self.raw_headers
        if not self.compress or any(k == b"content-encoding" for k, _ in headers):
            return headers, None
        accepted = b",".join(v for k, v in scope.get("headers", ()) if k.lower() == b"accept-encoding")
        encoding = negotiate(accepted.decode("latin-1"))
        if encoding is None:
            return headers, None
        compressor = EventCompressor(encoding)
        return [*headers, (b"content-encoding", encoding.encode()), (b"vary", b"accept-encoding")], compressor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        resumable = self._resumable
        if (
            resumable is not None
            and resumable.stream_id is None
            and not await self._begin(resumable, scope, receive, send)
        ):
            return
        headers, compressor = self._negotiate(scope)
        writer = ClientWriter(
            heartbeat=self.heartbeat,
            send_timeout=self.send_timeout,
            compressor=compressor,
            observer=self.observer,
            on_close=self.on_close,
            on_complete=slot.answer_sent if (slot := scope.get(SLOT_KEY)) is not None else None,
            pipelines=self.pipelines,
        )
        writer.opened(anyio.current_time())
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
            body = scope.get(SERVER_SEND, send)  # past the middleware, where that is safe
            self.outcome = await write_frames(writer, self._source, body, receive, self.drain)
        finally:
            if resumable is not None and resumable.stream_id is not None:
                resumable.streams.creator_left(resumable.stream_id)

    async def _begin(self, resumable: _Resumable, scope: Scope, receive: Receive, send: Send) -> bool:
        """Start producing the frames into a resumable stream, and read that instead;
        ``False`` when the log cannot take it (Redis down), a 503 having been sent, or the
        request's ``X-Pacer-Rate`` is not a rate (a 400). The stream starts at that rate, or
        else at the one its reader set last (``ResumableStreams.paces``)."""
        frames = self.frames
        request = Headers(scope=scope)
        try:
            cps = _rate_of(request)
        except ControlError as exc:
            with anyio.CancelScope(shield=True):
                await aclose_source(frames)
            await json_error(400, f"{RATE_HEADER}: {exc}", INVALID_REQUEST)(scope, receive, send)
            return False
        streams = resumable.streams
        try:
            # Frames to produce are bytes only: an Outcome among them is a log reader's.
            owner = Owner(credential_of(request))
            orphan_timeout = resumable.orphan_timeout(request)
            stream_id = await streams.start(
                cast(AsyncIterator[bytes], frames),
                fmt=resumable.fmt,
                owner=owner,
                orphan_timeout=orphan_timeout,
                controls=resumable.controls,
                reader=streams.reader_of(request),
                cps=cps,
                on_end=resumable.ended(scope.get(SLOT_KEY), outlives=orphan_timeout != 0),
            )
        except StreamLogError as exc:
            log.warning("pacer: no resumable stream: %s", exc)
            with anyio.CancelScope(shield=True):
                await aclose_source(frames)
            refusal = JSONResponse(error_body(exc), 503)
            await refusal(scope, receive, send)
            return False
        resumable.stream_id = stream_id
        self._source = log_frames(resumable.streams, stream_id)
        self.raw_headers += [
            (STREAM_ID_HEADER.lower().encode(), stream_id.encode()),
            (STREAM_TOKEN_HEADER.lower().encode(), owner.token.encode()),
            (b"access-control-expose-headers", EXPOSED.encode()),
        ]
        return True


class PacedEventSource(EventStreamResponse):
    """Stream ``pipeline`` over ``source`` as SSE: ``return PacedEventSource(source, pipeline)``.

    ``encoder`` turns each output chunk into a frame (default: its text as ``data``);
    ``done`` sends ``data: [DONE]`` after the last chunk. The other options are
    ``EventStreamResponse``'s: ``streams=`` makes the stream resumable (its
    ``stream_format``, by default, is ``"chat.completions"`` with ``OpenAIChunks``,
    else ``"text"``). ``ending`` says how the frames ended (its ``kind``: done, or
    blocked by a check) once the last one is out.
    """

    ending: Ending | None = None

    def __init__(
        self,
        source: AsyncIterable[Any] | Iterable[Any],
        pipeline: Stage,
        *,
        encoder: Encoder | None = None,
        done: bool = True,
        clock: Clock | None = None,
        heartbeat: float | None = HEARTBEAT,
        send_timeout: float | None = SEND_TIMEOUT,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[Outcome], None] | None = None,
        compress: bool = True,
        observer: StreamObserver | None = None,
        streams: ResumableStreams | None = None,
        stream_format: str | None = None,
        resume: str = "always",
    ) -> None:
        self.source = source
        self.pipeline = pipeline
        # Plain text by default; a format's encoder names what its frames are, for the
        # text a cancel reports.
        self.encoder: Encoder = encoder if encoder is not None else TextEvents()
        self.done = done
        self.clock = clock
        self.controls = Mailbox()  # the reader's controls, through a resumable stream's routes
        if stream_format is None:
            stream_format = encoder.transcript if isinstance(encoder, ChunkEncoder) else "text"
        super().__init__(
            self._frames(),
            heartbeat=heartbeat,
            send_timeout=send_timeout,
            status_code=status_code,
            headers=headers,
            on_close=on_close,
            compress=compress,
            observer=observer,
            streams=streams,
            stream_format=stream_format,
            resume=resume,
            controls=self.controls if streams is not None else None,
        )

    async def _frames(self) -> AsyncIterator[bytes]:
        source = self.source
        if isinstance(source, (AsyncIterable, Iterable)):  # (else AsyncRun says what is wrong)
            source = _joined_pairs(source)
        controls = self.controls if self._resumable is not None else None
        run: AsyncRun[Chunk] = AsyncRun(
            self.pipeline, source, clock=self.clock, chunks=True, controls=controls
        )
        self.pipelines.append(run.metrics)
        try:
            async for chunk in run:
                yield self.encoder(chunk)
        finally:
            with anyio.CancelScope(shield=True):
                await run.aclose()
        blocked = run.pipeline.blocked is not None  # a Guard withheld the rest: no false success
        # The encoder's format ends the stream (OpenAIChunks: its finish chunk); else plain text's.
        encoder = self.encoder if isinstance(self.encoder, ChunkEncoder) else TextEvents()
        self.ending = encoder.ending(blocked, self.done)
        for last in self.ending.encoded():
            yield last


async def _joined_pairs(source: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
    """``source``, with a surrogate pair split across two text items joined into its character."""
    pairs = SurrogatePairs()
    try:
        async for item in _items(source):
            if isinstance(item, str):
                item = pairs.feed(item)
                if not item:
                    continue
            yield item
        if held := pairs.flush():
            yield held
    finally:
        with anyio.CancelScope(shield=True):
            await aclose_source(source)


async def _items(source: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[Any]:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            await anyio.lowlevel.checkpoint()  # as the drivers do between a sync source's items
            yield item


# -- OpenAI chat-completion streams -------------------------------------------------------


class _Unpaced(Stage):
    """Chunks out as they come in: the choices after the first, when one stage is given."""

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        return [chunk]


def _factory(pipeline: Stage | Callable[[], Stage]) -> Callable[[], Stage]:
    if not isinstance(pipeline, Stage):
        return pipeline
    given = [pipeline]
    return lambda: given.pop() if given else _Unpaced()


def openai_chunk_frames(body: Mapping[str, Any]) -> bytes:
    """One OpenAI chunk as an SSE frame (a lone surrogate goes as JSON's ``\\u`` escape)."""
    return frame(dumps(body)).encode("utf-8")


def paced_openai_sse(
    data: AsyncIterable[bytes],
    pipeline: Stage | Callable[[], Stage],
    *,
    clock: Clock | None = None,
    max_line: int = MAX_LINE,
) -> AsyncGenerator[bytes, None]:
    """Re-pace an OpenAI-compatible chat-completion SSE byte stream (``pacer.formats.ChatCompletions``).

    ``pipeline``: a factory that makes each choice's pipeline, or one stage, which then
    paces the first choice (the others go as they come). Yields SSE frames: content
    and reasoning paced, every other chunk in its place, then ``data: [DONE]``. Raises
    what the upstream raised (``UpstreamError``, ``SSEError``, transport errors) after
    the frames of everything before it.
    """
    return paced_event_frames(data, ChatCompletions(), _factory(pipeline), clock=clock, max_line=max_line)


class PacingMiddleware:
    """Re-pace the ``text/event-stream`` responses of an ASGI app (OpenAI chunk format).

    ``PacingMiddleware(app, pipeline_factory)``: each streaming response's content
    deltas go through a fresh ``pipeline_factory()``; other responses pass through
    untouched. A failure in the stream (the app raising, or its stream ending without
    ``data: [DONE]``) ends it with an ``event: error`` frame, never ``[DONE]``.
    """

    def __init__(
        self, app: Any, pipeline_factory: Callable[[], Stage], *, clock: Clock | None = None
    ) -> None:
        self.app = app
        self.pipeline_factory = pipeline_factory
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_send, body_recv = anyio.create_memory_object_stream[bytes](16)
        state: dict[str, Any] = {"sse": None}
        started = anyio.Event()

        async def intercept(message: Message) -> None:
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                state["sse"] = content_type.startswith(b"text/event-stream")
                ours = {k.lower().encode() for k in SSE_HEADERS} | {b"content-length"}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in ours]
                headers += [(k.lower().encode(), v.encode()) for k, v in SSE_HEADERS.items()]
                await send({**message, "headers": headers} if state["sse"] else message)
                started.set()
            elif message["type"] == "http.response.body" and state["sse"]:
                if message.get("body"):
                    await body_send.send(message["body"])
                if not message.get("more_body", False):
                    await body_send.aclose()
            else:
                await send(message)

        failure: list[Exception] = []

        async def app_body() -> AsyncIterator[bytes]:
            async with body_recv:
                async for piece in body_recv:
                    yield piece
            if failure:  # the app failed mid-stream: the client must hear of it
                raise failure[0]

        async def run_app() -> None:
            try:
                await self.app(scope, receive, intercept)
            except Exception as exc:
                if not state["sse"]:
                    raise  # before a stream started: the app's own error handling
                failure.append(exc)
            finally:
                started.set()
                await body_send.aclose()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_app)
            await started.wait()
            if state["sse"]:
                frames = paced_openai_sse(app_body(), self.pipeline_factory, clock=self.clock)
                # The app reads the client's messages: no disconnect watch of our own here.
                writer = ClientWriter(heartbeat=None, send_timeout=None)
                await write_frames(writer, frames, send, None)
