"""A pacing proxy for OpenAI- and Anthropic-style APIs: ``pacer proxy --upstream URL``.

``URL`` is the upstream's address with or without its ``/v1`` (``http://host:8000`` or
``http://host:8000/v1``, with any path prefix before it). A streaming request
(``"stream": true``) to ``/v1/chat/completions``, ``/v1/completions``,
``/v1/responses`` or ``/v1/messages`` is forwarded upstream and its event stream
re-paced in that API's own format (``pacer.formats``): the text deltas (content,
reasoning, thinking) go through a fresh pipeline per choice; every other event (role,
tool calls, logprobs with their text, finish reasons, usage, pings) keeps its place
and its fields, so a client cannot tell the proxy from the upstream except by the
rhythm. Every other request (non-streaming requests, ``/v1/models``, anything else,
and a streaming request the upstream answers with an error or a body that is not an
event stream) is relayed exactly: the same bytes, with the headers that describe them
(``Content-Encoding`` included).

What an operator can rely on:

- **Nothing crosses between clients.** Requests are built from the client's own
  end-to-end headers only; the upstream client keeps no cookies; hop-by-hop headers
  (RFC 9110 section 7.6.1, and every header the ``Connection`` field names) stop here.
- **A client that leaves cancels its upstream request**, from the moment its request
  has arrived until the upstream answers. A paced stream is produced into a stream log
  (``pacer.resumable``) and belongs to its creator (its credential, or the token in
  ``X-Pacer-Stream-Token``): ``POST /v1/streams/{id}/cancel`` stops it at once, with
  the text shown. A request that sent ``X-Pacer-Resumable: 1`` (with ``resume="always"``,
  every one) is **resumable**: it goes on with no client for up to ``orphan_timeout``
  seconds, so one can come back with ``Last-Event-ID`` to ``GET /v1/streams/{id}``;
  any other stream's upstream request is cancelled as soon as its client leaves. With
  ``resume="never"`` there is no log.
- **CORS is explicit**: only the ``cors_origin`` origins get ``Access-Control-Allow-*``
  headers; preflights are answered here, never forwarded (``pacer._cors``).
- **Bounded**: request bodies over ``max_body`` get a 413; upstream bodies are
  streamed, never read whole; an SSE line over ``max_line`` ends the stream; a client
  past ``streams_per_client`` open streams gets a 429 (``pacer._clients``; a resumable
  stream whose client left counts until its generation ends). Served by
  ``serve``, a connection has ``header_timeout`` seconds to send its request head and
  one past ``connection_limit`` gets a 503 (``/healthz`` still answers:
  ``pacer._connections``).
- **Graceful shutdown** (``serve``): on SIGTERM no connection is accepted, running
  streams get ``shutdown_grace`` seconds, then each ends with an ``event: error`` of
  type ``server_shutdown`` and its stream log says so to readers elsewhere
  (``pacer._drain``).
- **Timeouts** (``ProxyTimeouts``): connect, first byte (the response headers), idle
  (the longest the upstream may send nothing) and total, each settable.
- **Several upstreams** (``--upstream`` repeated): each request goes to a healthy one
  (``pacer.upstreams``: a circuit breaker each, round robin or least streams) and, when
  it fails before the first byte (no connection, no headers in time, 5xx, 429), to the
  next, within ``retries`` (``pacer.failover``); a 4xx is the answer.
- **No false success**: a paced stream ends as the upstream's did (``data: [DONE]``,
  ``response.completed``, ``message_stop``) only when the upstream's did. Malformed
  JSON, a dropped or cut connection, an upstream stream that ends without its end
  event or a timeout end it with an ``event: error`` frame, after everything before
  it; an error the upstream reports goes to the client in the API's own form; a relayed body cut short is cut
  short for the client too (the connection is aborted, never ended cleanly).
- **Requests stay under the upstream's base path**: a path with ``.`` or ``..``
  segments, in any percent-encoding, is refused with a 400.
- **Bad input is a 4xx with a JSON error**, never a 500.

Needs the ``server`` extra.
"""

from __future__ import annotations

from . import _server_extra  # noqa: F401  (first: a plain install's missing package, named with its extra)

# isort: split

import contextlib
import functools
import gc
import http.cookiejar
import json
import logging
import math
import os
import urllib.parse
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sequence,
)
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._checks import CheckPool
from ._clients import StreamsPerClient
from ._continue import Continuing
from ._control import Mailbox
from ._core import Stage
from ._cors import Cors
from ._drain import STATE_KEY as DRAIN_STATE
from ._drain import Drain
from ._errors import (
    INVALID_REQUEST,
    NOT_FOUND,
    REQUEST_TOO_LARGE,
    STREAM_LOG_UNREACHABLE,
    UPSTREAM_UNREACHABLE,
    error_object,
)
from ._events import LiveLanes, PacedFrames
from ._metrics import StreamMetrics
from ._outcome import Outcome
from ._paces import Paces
from ._writer import client_left
from .adapters import UpstreamError
from .clock import Clock
from .config import (
    ProxyConfig,
    ProxyTimeouts,
    ServerConfig,
    UpstreamsConfig,
    check_upstream,
    to_values,
    upstream_list,
    with_options,
)
from .failover import Failed, Sent, failure_of, forward, probe_all, probe_forever, served, serving
from .formats import ROUTES as FORMATS
from .formats import EventFormat
from .prometheus import PacerMetrics
from .resumable import ResumableStreams
from .server import EventStreamResponse, owned_route
from .server import json_error as _error
from .streamlog import MemoryLog, StreamLog, StreamLogError
from .streamroutes import stream_routes
from .upstreams import Failure, Upstream, UpstreamPool, parse_upstream

__all__ = ["ProxyTimeouts", "create_proxy"]

log = logging.getLogger("pacer.proxy")

#: Hop-by-hop fields (RFC 9110 section 7.6.1), plus the proxy credentials meant for us.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authorization",
        "proxy-authenticate",
    }
)


class _NoCookies(http.cookiejar.CookiePolicy):
    """Keeps no cookie and sends none: the upstream client is shared by every client."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = False

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: Any) -> bool:
        return False

    def path_return_ok(self, path: str, request: Any) -> bool:
        return False


def end_to_end(headers: Iterable[tuple[str, str]], drop: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``headers`` without the hop-by-hop ones, those the ``Connection`` field names, and ``drop``."""
    pairs = list(headers)
    skip = set(HOP_BY_HOP) | {name.lower() for name in drop}
    for name, value in pairs:
        if name.lower() == "connection":
            skip.update(token.strip().lower() for token in value.split(",") if token.strip())
    return [(name, value) for name, value in pairs if name.lower() not in skip]


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (``_TooLarge``) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise _TooLarge
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def upstream_path(raw_path: bytes) -> str | None:
    """The request path as the client wrote it, or ``None`` when it could leave the base.

    Refused: a path not starting with ``/``, and any ``.`` or ``..`` segment however it
    is written (``%2e``, ``%2E%2e``, with ``\\`` or an encoded ``/`` as separator).
    """
    path = raw_path.decode("latin-1")
    if not path.startswith("/") or "#" in path:
        return None
    decoded = urllib.parse.unquote(path).replace("\\", "/")
    if any(segment in (".", "..") for segment in decoded.split("/")):
        return None
    return path


async def _timed(pieces: AsyncIterator[bytes], timeouts: ProxyTimeouts) -> AsyncGenerator[bytes, None]:
    """``pieces``, raising ``UpstreamError`` when the upstream is idle or the total is spent."""
    start = anyio.current_time()
    idle = timeouts.idle if timeouts.idle is not None else math.inf
    deadline = start + timeouts.total if timeouts.total is not None else math.inf
    while True:
        # A bare scope, not ``fail_after``: no context-manager generator per read.
        scope = anyio.CancelScope(deadline=min(anyio.current_time() + idle, deadline))
        with scope:
            try:
                piece = await pieces.__anext__()
            except StopAsyncIteration:
                return
        if scope.cancelled_caught:
            if anyio.current_time() >= deadline:
                message = f"upstream stream passed the total timeout of {timeouts.total} s"
            else:
                message = f"upstream sent nothing for {timeouts.idle} s"
            raise UpstreamError(message, type="upstream_timeout")
        yield piece


class _Relay(StreamingResponse):
    """A relayed body that stops (and closes the upstream) when the client leaves, on any
    ASGI version, and that an upstream failure cuts short for the client too."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        failure: Exception | None = None
        async with anyio.create_task_group() as tg:

            async def stream() -> None:
                nonlocal failure
                try:
                    await self.stream_response(send)
                except Exception as exc:  # raised again below, alone
                    failure = exc
                tg.cancel_scope.cancel()

            tg.start_soon(stream)
            await client_left(receive)
            tg.cancel_scope.cancel()
        if failure is not None:
            # The response has started: aborting the connection is the only way to tell
            # the client its body is incomplete.
            log.warning("pacer proxy: relayed body cut short: %r", failure)
            raise failure


def _relay_headers(upstream: httpx.Response) -> list[tuple[bytes, bytes]]:
    """The upstream's end-to-end headers, for a body relayed byte for byte (without its
    ``Date`` and ``Server``: the proxy's server sends its own, once)."""
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in end_to_end(upstream.headers.multi_items(), drop=("date", "server"))
    ]


#: The content codings the proxy decodes itself (httpx, without extras).
_DECODED = ("gzip", "deflate")


def decodable_encodings(accepted: str | None) -> str:
    """The ``Accept-Encoding`` a paced route sends upstream: the codings the proxy can
    decode that the client accepts too (RFC 9110 section 12.5.3), so that a body relayed
    as it came (an upstream's error) is one the client can read; ``identity`` when none."""
    if accepted is None:
        return ", ".join(_DECODED)  # no header: any coding is acceptable to the client
    wanted: dict[str, None] = {}
    for item in accepted.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        quality = params.strip().lower().removeprefix("q=").strip() if params else "1"
        try:
            accepts = float(quality) > 0
        except ValueError:
            accepts = False
        if accepts and name in (*_DECODED, "*"):
            wanted.update(dict.fromkeys(_DECODED if name == "*" else (name,)))
    return ", ".join(wanted) or "identity"


class _Proxy:
    """The proxy's routes, its upstreams (``pool``) and its one upstream client."""

    def __init__(
        self,
        pool: UpstreamPool,
        upstreams: UpstreamsConfig,
        pipeline_factory: Callable[[], Stage],
        stream_options: dict[str, Any],
        timeouts: ProxyTimeouts,
        max_body: int,
        client: httpx.AsyncClient | None,
        max_connections: int | None,
        *,
        streams: ResumableStreams | None = None,
        metrics: PacerMetrics | None = None,
        cors_origins: tuple[str, ...] = (),
    ) -> None:
        self.pool = pool
        self.upstreams = upstreams  # retries, probes
        self.pipeline_factory = pipeline_factory
        self.stream_options = stream_options  # heartbeat, send_timeout, clock, max_line
        self.timeouts = timeouts
        self.max_body = max_body
        self.given_client = client
        self.max_connections = max_connections
        self.own_client: httpx.AsyncClient | None = None
        self.metrics = metrics
        self.streams = streams
        self.cors_origins = cors_origins  # served by the app's Cors middleware (pacer._cors)

    def _count(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_errors.labels(kind).inc()

    def http(self) -> httpx.AsyncClient:
        if self.given_client is not None:
            return self.given_client
        if self.own_client is None:
            # One upstream connection per open stream: httpx's default pool of 100
            # would queue the 101st stream behind the others for their whole length.
            limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=100)
            t = self.timeouts
            # Read timeouts are ours (first byte, idle, total), not httpx's per-read one.
            timeout = httpx.Timeout(None, connect=t.connect, write=t.idle, pool=t.first_byte)
            self.own_client = httpx.AsyncClient(
                timeout=timeout,
                limits=limits,
                cookies=http.cookiejar.CookieJar(_NoCookies()),
                follow_redirects=False,
                trust_env=False,
            )
        return self.own_client

    @contextlib.asynccontextmanager
    async def probing(self) -> AsyncIterator[None]:
        """The active health probe of every upstream, every ``probe_interval`` seconds,
        while the context is open; none when it is ``None`` or there is one upstream (every
        request goes to it whatever its health, and ``/readyz`` asks it itself)."""
        interval = self.upstreams.probe_interval
        async with anyio.create_task_group() as probes:
            if self.pool.probing and interval is not None:
                probes.start_soon(probe_forever, self.pool, self.http(), self.upstreams.probe_path, interval)
            yield
            probes.cancel_scope.cancel()

    async def aclose(self) -> None:
        if self.own_client is not None:
            await self.own_client.aclose()
            self.own_client = None

    def url(self, request: Request, upstream: Upstream) -> str | None:
        """The URL of ``request`` at ``upstream``, or ``None`` when its path would leave
        the upstream's base path."""
        path = upstream_path(request.scope.get("raw_path") or request.url.path.encode())
        if path is None:
            return None
        url = upstream.base + path
        query = request.scope.get("query_string", b"")
        if query:
            url += "?" + query.decode("latin-1")
        base_path = httpx.URL(upstream.base).raw_path.split(b"?")[0].rstrip(b"/")
        if not httpx.URL(url).raw_path.startswith(base_path + b"/"):
            return None
        return url

    def outgoing(
        self, request: Request, content: bytes, headers: list[tuple[str, str]], method: str | None = None
    ) -> Callable[[Upstream], httpx.Request] | None:
        """What makes ``request`` for each upstream it may go to (``None``: its path would
        leave the base path)."""
        if self.url(request, self.pool.upstreams[0]) is None:
            return None

        def build(upstream: Upstream) -> httpx.Request:
            url = self.url(request, upstream)
            assert url is not None  # the path is checked above; every base ends the same way
            return httpx.Request(method or request.method, url, content=content, headers=headers)

        return build

    def failover(self, reason: Failure) -> None:
        """A request moved to the next upstream (before its first byte) because of ``reason``."""
        if self.metrics is not None:
            self.metrics.failovers.labels(str(reason)).inc()

    async def body(self, request: Request) -> bytes | Response:
        try:
            return await _read_body(request, self.max_body)
        except _TooLarge:
            return _error(
                413, f"request body is over the proxy's limit of {self.max_body} bytes", REQUEST_TOO_LARGE
            )
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is there to read it

    async def send(
        self,
        request: Request,
        build: Callable[[Upstream], httpx.Request],
        *,
        exclude: Collection[Upstream] = (),
    ) -> Sent | Response:
        """The response of the first upstream that answers ``build``'s request (headers
        read; failover before the first byte: ``pacer.failover.forward``), or our error
        response; a client that leaves meanwhile cancels the upstream request at once."""
        left = False
        result: Sent | Failed | None = None
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                nonlocal left
                await client_left(request.receive)
                left = True
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            result = await forward(
                self.pool,
                self.http(),
                build,
                retries=self.upstreams.retries,
                first_byte=self.timeouts.first_byte,
                exclude=exclude,
                on_failover=self.failover,
            )
            tg.cancel_scope.cancel()
        if left:
            log.info("pacer proxy: client left before the upstream answered; request cancelled")
            if isinstance(result, Sent):
                await result.aclose(self.pool)
            return Response(status_code=499)
        assert result is not None
        if isinstance(result, Failed):  # one failed request, whatever the tries
            self._count("upstream_timeout" if result.status() == 504 else UPSTREAM_UNREACHABLE)
            return JSONResponse(result.error(), status_code=result.status())
        return result

    def relay(self, sent: Sent) -> Response:
        """The upstream's body exactly as it came (still compressed, if it was)."""
        response = sent.response
        relayed = _Relay(
            served(self.pool, sent, _timed(response.aiter_raw(), self.timeouts)),
            status_code=response.status_code,
        )
        relayed.raw_headers = _relay_headers(response)
        return relayed

    async def paced(self, request: Request, api: type[EventFormat]) -> Response:
        """A streaming request of ``api``'s route: its event stream re-paced in its own format."""
        raw = await self.body(request)
        if isinstance(raw, Response):
            return raw
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, or nested too deep
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
            return _error(400, f"request body is not JSON: {reason}", INVALID_REQUEST)
        if not isinstance(body, dict) or not body.get("stream"):
            return await self.passthrough(request, raw)
        # Ours to decode, so only the encodings httpx decodes without extras.
        headers = [*end_to_end(request.headers.items(), drop=("host", "content-length", "accept-encoding"))]
        headers.append(("accept-encoding", decodable_encodings(request.headers.get("accept-encoding"))))
        build = self.outgoing(request, raw, headers, "POST")
        if build is None:
            return _error(400, "request path leaves the upstream's base path", INVALID_REQUEST)
        sent = await self.send(request, build)
        if not isinstance(sent, Sent):
            return sent
        response = sent.response
        content_type = response.headers.get("content-type", "")
        if response.status_code != 200 or not content_type.startswith("text/event-stream"):
            return self.relay(sent)
        options = self.stream_options
        lanes: list[StreamMetrics] = []
        live = LiveLanes()
        fmt = api()
        used = [sent.upstream]
        continuing = self.continuing(fmt, body, headers, build, used)
        end = _StreamEnd(request, body, live, continuing, sent, used)
        controls = Mailbox() if self.streams is not None else None  # the reader's, from any instance
        frames = PacedFrames(
            _timed(response.aiter_bytes(), self.timeouts),
            fmt,
            self.pipeline_factory,
            clock=options["clock"],
            max_line=options["max_line"],
            pipelines=lanes,
            continuing=continuing,
            controls=controls,
            live=live,
            around=functools.partial(serving, self.pool, sent, used=used),
        )
        paced = EventStreamResponse(
            frames,
            heartbeat=options["heartbeat"],
            send_timeout=options["send_timeout"],
            compress=options["compress"],
            observer=self.metrics.observer() if self.metrics is not None else None,
            pipelines=lanes,  # filled when the stream ends
            on_close=functools.partial(_ended, end, self.metrics),
            streams=self.streams,
            stream_format=api.transcript,
            resume=options["resume"],
            drain=options["drain"],
            controls=controls,
            on_generation_end=functools.partial(_generation_ended, end),
        )
        end.response = paced  # its stream id, once started
        return paced

    def continuing(
        self,
        fmt: EventFormat,
        body: dict[str, Any],
        headers: list[tuple[str, str]],
        build: Callable[[Upstream], httpx.Request],
        used: list[Upstream],
    ) -> Continuing | None:
        """How the stream goes on if its upstream fails mid-answer (``pacer._continue``);
        ``None`` when its route's policy is ``"error"`` or its API cannot continue.
        ``build`` makes the stream's request for an upstream (its URL is the one used);
        ``used``: the upstreams the stream has had, the last its current one."""
        config = self.stream_options["continuation"]
        continuation = fmt.continuation(body, config.policy(fmt.transcript))
        if continuation is None:
            return None
        sent = [(k, v) for k, v in headers if k.lower() != "content-length"]

        async def reopen(asked: dict[str, Any], attempt: int) -> AsyncIterable[bytes]:
            upstream = self.continuation_upstream(used[-1])
            used.append(upstream)
            url = str(build(upstream).url)
            request = httpx.Request("POST", url, content=json.dumps(asked).encode("utf-8"), headers=sent)
            return await self.continuation_stream(request, upstream)

        failures = (UpstreamError, httpx.TransportError)
        return Continuing(continuation, reopen, failures=failures, attempts=config.continue_attempts)

    def continuation_upstream(self, failed: Upstream) -> Upstream:
        """The upstream a continuation goes to after ``failed`` (the stream's current
        upstream, reported to the pool as cut short) failed mid-answer: a healthy other
        one from the pool, or else the same one, once it is back."""
        self.pool.report(failed, Failure.TRUNCATED)
        picked = self.pool.pick(exclude=[failed]) or self.pool.pick()
        assert picked is not None  # nothing excluded: the pool always answers one
        return picked

    async def continuation_stream(self, request: httpx.Request, upstream: Upstream) -> AsyncIterable[bytes]:
        """The event-stream bytes ``upstream`` answers a continuation request with (its
        health reported as any request's); an ``UpstreamError`` otherwise
        (``continuation_refused`` for a 4xx other than 408 and 429: the same request would
        be refused again)."""
        self.pool.opened(upstream)
        try:
            with anyio.fail_after(self.timeouts.first_byte):
                response = await self.http().send(request, stream=True)
        except TimeoutError:
            self.pool.closed(upstream)
            self.pool.report(upstream, Failure.TIMEOUT)
            raise UpstreamError(
                f"upstream sent no response within {self.timeouts.first_byte} s", type="upstream_timeout"
            ) from None
        except httpx.HTTPError as exc:
            self.pool.closed(upstream)
            self.pool.report(upstream, Failure.UNREACHABLE)
            raise UpstreamError(f"upstream unreachable: {exc}", type=UPSTREAM_UNREACHABLE) from None
        sent = Sent(response, upstream, [upstream])
        content_type = response.headers.get("content-type", "")
        if response.status_code == 200 and content_type.startswith("text/event-stream"):
            return served(self.pool, sent, _timed(response.aiter_bytes(), self.timeouts))
        self.pool.report(upstream, failure_of(response.status_code))
        detail = b""
        try:
            async for piece in response.aiter_bytes():  # the start of the answer says why
                detail += piece
                if len(detail) >= 300:
                    break
        except httpx.HTTPError:
            pass
        finally:
            await sent.aclose(self.pool)
        status = response.status_code
        kind = (
            "continuation_refused" if 400 <= status < 500 and status not in (408, 429) else "upstream_status"
        )
        text = detail[:300].decode("utf-8", "replace")
        raise UpstreamError(f"the continuation request got HTTP {status}: {text}", type=kind)

    def stream_routes(self) -> list[Route]:
        """``GET /v1/streams/{id}``, ``POST /v1/streams/{id}/cancel`` and ``/control``
        (``pacer.streamroutes``), or, with resumable streams off, the same paths answering 404."""
        if self.streams is None:
            return [
                owned_route("/v1/streams/{stream_id}", self.no_streams, ["GET"]),
                owned_route("/v1/streams/{stream_id}/cancel", self.no_streams, ["POST"]),
                owned_route("/v1/streams/{stream_id}/control", self.no_streams, ["POST"]),
            ]
        options = self.stream_options
        metrics = self.metrics
        return stream_routes(
            self.streams,
            heartbeat=options["heartbeat"],
            send_timeout=options["send_timeout"],
            compress=options["compress"],
            observers=metrics.observer if metrics is not None else None,
            replays_per_stream=options["replays_per_stream"],
            replays_per_client=options["replays_per_client"],
            drain=options["drain"],
        )

    async def no_streams(self, request: Request) -> Response:
        """The stream endpoints of a proxy that keeps no streams."""
        return _error(404, "this proxy keeps no streams (resumable streams are off)", NOT_FOUND)

    async def healthz(self, request: Request) -> Response:
        """Liveness: the process answers."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Readiness: the stream log's store answers (Redis, with ``--redis``), and at least
        one upstream is healthy: each upstream in rotation is probed now (``GET`` of the
        probe path, any status below 500), each check within two seconds. A 503 says which
        in ``status`` and why in the JSON error object (``{"error": {"message", "type"}}``)."""
        if self.streams is not None:
            try:
                with anyio.fail_after(2.0):
                    await self.streams.log.ping()
            except (TimeoutError, StreamLogError) as exc:
                error = error_object(str(exc) or type(exc).__name__, STREAM_LOG_UNREACHABLE)
                return JSONResponse({"status": "stream log unreachable", **error}, 503)
        pool = self.pool
        met = await probe_all(pool, self.http(), self.upstreams.probe_path, pool.due())
        states = {u.name: str(pool.state(u)) for u in pool.upstreams}
        if pool.healthy():
            return JSONResponse({"status": "ready", "upstreams": states})
        message = (
            "; ".join(f"upstream {name}: {detail}" for name, detail in met.items())
            or "every upstream is backing off"
        )
        error = error_object(message, UPSTREAM_UNREACHABLE)
        return JSONResponse({"status": "upstream unreachable", **error, "upstreams": states}, 503)

    async def prometheus(self, request: Request) -> Response:
        """The Prometheus text format of the proxy's series (``pacer.prometheus``)."""
        if self.metrics is None:
            return _error(404, "metrics need prometheus-client: pip install 'pacer-llm[metrics]'", NOT_FOUND)
        return Response(self.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def passthrough(self, request: Request, raw: bytes | None = None) -> Response:
        if self.url(request, self.pool.upstreams[0]) is None:
            return _error(400, "request path leaves the upstream's base path", INVALID_REQUEST)
        if raw is None:
            body = await self.body(request)
            if isinstance(body, Response):
                return body
            raw = body
        headers = end_to_end(request.headers.items(), drop=("host", "content-length"))
        build = self.outgoing(request, raw, headers)
        assert build is not None  # the path was checked above
        sent = await self.send(request, build)
        return self.relay(sent) if isinstance(sent, Sent) else sent

    async def other(self, request: Request) -> Response:
        return await self.passthrough(request)


class _StreamEnd:
    """What the line at a paced stream's end says besides its outcome: which stream and
    request it answered (``response``: its stream id, once started), and its pipelines'
    figures (read live from its lanes, so a stream that ends before its last lane's end
    still says what it sent). ``closed``: whether the connection's line is written."""

    __slots__ = (
        "closed",
        "continuing",
        "failovers",
        "lanes",
        "model",
        "received",
        "response",
        "route",
        "upstreams",
    )

    def __init__(
        self,
        request: Request,
        body: dict[str, Any],
        lanes: Callable[[], list[StreamMetrics]],
        continuing: Continuing | None,
        sent: Sent,
        used: list[Upstream],
    ) -> None:
        self.response: EventStreamResponse | None = None
        self.continuing = continuing
        self.route = request.url.path
        #: The upstreams that served the stream, in order (a continuation adds the next).
        self.upstreams = used
        self.failovers = sent.failovers  # upstreams that failed before the first byte
        model = body.get("model")
        self.model = model if isinstance(model, str) else None
        self.received = anyio.current_time()  # the clock the pipelines read (asyncio's monotonic)
        self.lanes = lanes
        self.closed = False

    def figures(self, outcome: Outcome) -> dict[str, Any]:
        lanes = self.lanes()
        firsts = [lane.first_output for lane in lanes if lane.first_output is not None]
        blocked = next((lane.blocked for lane in lanes if lane.blocked is not None), None)
        return {
            "outcome": outcome,
            "stream_id": self.response.stream_id if self.response is not None else None,
            "route": self.route,
            "model": self.model,
            "chars": sum(lane.chars_out for lane in lanes),  # every choice
            "first_output_s": min(firsts) - self.received if firsts else None,
            "lag_p99_s": max((lag for lane in lanes if (lag := lane.lag(99)) is not None), default=None),
            "blocked": blocked,
            "upstreams": ",".join(u.name for u in self.upstreams),
            "failovers": self.failovers,
            **self.continued(),
        }

    def continued(self) -> dict[str, Any]:
        """The stream's continuations: how many seams, the longest wait for a
        continuation's first event, and why one was refused (if one was)."""
        c = self.continuing
        if c is None:
            return {}
        waits = [seam.resumed - seam.failed for seam in c.seams if seam.resumed is not None]
        return {
            "continuations": len(c.seams),
            "seam_max_s": max(waits, default=None),
            "not_continued": c.refused,
        }


def _ended(end: _StreamEnd, metrics: PacerMetrics | None, outcome: Outcome) -> None:
    """One log line per stream end: its outcome and figures (JSON fields with --log-format json)."""
    c = end.continuing
    if metrics is not None and c is not None:
        metrics.continued(c.continuation.api, len(c.seams), c.refused is not None)
    end.closed = True
    _log_line("stream ended", end.figures(outcome))


def _generation_ended(end: _StreamEnd, outcome: Outcome, readers: int) -> None:
    """A line when a generation ends after its creator's connection did (a resumable
    stream whose client left): the generation's outcome, its figures then and how many
    clients were reading it; a generation that ends while its creator reads is the
    connection's line alone."""
    if end.closed:
        _log_line("generation ended", end.figures(outcome) | {"readers": readers})


def _log_line(what: str, figures: dict[str, Any]) -> None:
    outcome = figures["outcome"]
    level = logging.WARNING if outcome in (Outcome.ERROR, Outcome.SEND_TIMEOUT) else logging.INFO
    text = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
    log.log(level, "pacer proxy: %s: %s", what, text, extra={"stream": figures})


def upstream_base(upstream: str) -> str:
    """The URL the clients' paths (``/v1/...``) are appended to: ``upstream`` without a
    trailing ``/`` or ``/v1``, the form ``base_url`` takes in the ``openai`` client and in
    vLLM's and LiteLLM's docs (``http://host:8000/v1``; a path prefix before it stays)."""
    base = upstream.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def create_proxy(
    upstream: str | Sequence[str],
    config: ProxyConfig | Callable[[], Stage] | None = None,
    *,
    clock: Clock | None = None,
    client: httpx.AsyncClient | None = None,
    max_connections: int | None = None,
    metrics: PacerMetrics | None = None,
    **options: Any,
) -> Starlette:
    """The proxy in front of ``upstream`` (one URL or several: ``upstream_pool``) as a
    Starlette app, configured by ``config`` (``pacer.config.ProxyConfig``: every default).

    A function given as ``config`` makes each stream's pipeline, the rest of the
    configuration being the defaults; ``options`` set single fields by name
    (``create_proxy(url, Pacer, heartbeat=None, timeouts=ProxyTimeouts(idle=5))``).
    ``max_connections`` caps concurrent upstream requests (default: no cap, so every
    client stream has its upstream stream at once; a capped proxy queues the rest, up
    to ``timeouts.first_byte``). A ``client`` you pass is used as it is: give it no
    cookie jar that could carry one client's cookies to another (requests are built
    without the client's cookies either way). ``GET /metrics`` serves ``metrics`` (a
    new ``pacer.prometheus.PacerMetrics`` when prometheus-client is installed), ``GET
    /healthz`` says the process answers, ``GET /readyz`` that an upstream does.

    A paced stream is compressed for a client that asks (``Accept-Encoding``), each
    event flushed on its own (``pacer._compress``), unless ``stream.compress`` is off.
    With a ``guard`` every paced stream's text is checked sentence by sentence (on a
    ``pacer.CheckPool``, streams taking turns) before it is paced out; a blocked sentence
    ends its choice with ``finish_reason: "content_filter"`` (``pacer.formats``), and
    none of it, nor anything after it, is ever sent. Unless ``resume`` is ``"never"``
    every paced stream is produced into a stream log (``pacer.resumable``), in memory or
    in ``redis``: its response names it in
    ``X-Pacer-Stream-Id``, gives its creator its token in ``X-Pacer-Stream-Token`` and
    every event an SSE ``id``; ``GET /v1/streams/{id}`` replays it after
    ``Last-Event-ID`` and follows it live; ``POST /v1/streams/{id}/cancel`` stops it and
    answers the text its readers received; both only for its creator (``pacer.streamroutes``).
    With ``resume="request"`` (the default) the generation of a stream whose request
    sent ``X-Pacer-Resumable: 1`` goes on while no client reads it, for up to
    ``orphan_timeout`` seconds, and any other stops when its client leaves;
    ``"always"``: every stream goes on; ``"never"``: no log, each stream is tied to
    its connection. ``cors_origin`` are the browser origins allowed (``pacer._cors``).
    """
    config = _proxy_config(config, options)
    stream_options = _stream_options(config, clock)
    if metrics is None:
        with contextlib.suppress(ModuleNotFoundError):
            metrics = PacerMetrics()
    drain = stream_options["drain"]
    streams = _resumable_streams(config, metrics, drain)
    pool = CheckPool(config.check_workers, per_stream=config.checks_per_stream)  # threads start when used
    proxy = _Proxy(
        upstream_pool(upstream, config.upstreams, metrics),
        config.upstreams,
        _pipeline_factory(config, pool),
        stream_options,
        config.timeouts,
        config.max_body,
        client,
        max_connections,
        streams=streams,
        metrics=metrics,
        cors_origins=config.cors_origin or (),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            if streams is not None:
                await stack.enter_async_context(streams)
            stack.enter_context(collecting_less(stream_options["gc_threshold"]))
            await stack.enter_async_context(drain)
            await stack.enter_async_context(proxy.probing())
            yield {DRAIN_STATE: drain}  # for the server's protocol to begin it (pacer._connections)
        await proxy.aclose()
        pool.close()

    app = Starlette(routes=_routes(proxy), lifespan=lifespan)
    app.add_middleware(StreamsPerClient, limit=stream_options["streams_per_client"], routes=FORMATS)
    app.add_middleware(Cors, origins=proxy.cors_origins)
    return app


def _resumable_streams(
    config: ProxyConfig, metrics: PacerMetrics | None, drain: Drain
) -> ResumableStreams | None:
    """The proxy's resumable streams, on the log ``config`` names (none when ``resume`` is
    ``"never"``), with the reader's pause limit and remembered paces; their logs end
    clearly for their readers elsewhere when the shutdown grace is over (``drain``)."""
    if config.resume == "never":
        return None
    log = stream_log(config.redis, config.retention)
    paces = None if config.remember_pace is None else Paces(log, config.remember_pace, config.user_header)
    streams = ResumableStreams(
        log,
        orphan_timeout=config.orphan_timeout,
        on_failure=metrics.producer_failed if metrics is not None else None,
        max_pause=config.max_pause,
        paces=paces,
        grid=config.pacing.tick,
    )
    drain.at_expiry(streams.shut_down)
    return streams


@contextlib.contextmanager
def collecting_less(threshold: int) -> Iterator[None]:
    """While the proxy serves: what start-up made frozen (``gc.freeze``: never scanned
    again) and the youngest generation collected every ``threshold`` allocations (0: the
    collector as it was). Streams make few reference cycles, and at the default threshold
    (700) every stream's objects are scanned hundreds of times a second under load: a
    sixth of the CPU at 250 streams, and the pause holds every stream back. Undone when
    the proxy stops (a test process builds many)."""
    if not threshold:
        yield
        return
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def upstream_pool(
    upstream: str | Sequence[str], config: UpstreamsConfig, metrics: PacerMetrics | None = None
) -> UpstreamPool:
    """The pool of ``upstream`` (one URL, several separated by commas or spaces, or a
    sequence; each ``URL`` or ``NAME=URL``), each checked, with ``config``'s breakers;
    ``metrics`` shows each upstream's health."""
    given = [upstream] if isinstance(upstream, str) else list(upstream)
    pairs = []
    for each in given:
        if not isinstance(each, str):
            raise TypeError(f"create_proxy: upstream must be URLs (str), got {type(each).__name__}: {each!r}")
        for part in upstream_list(each) or [each]:  # nothing listed: the URL check says why
            name, url = parse_upstream(part)
            check_upstream(url, "create_proxy: upstream")
            pairs.append((name, upstream_base(url)))
    if not pairs:
        raise ValueError("create_proxy: upstream must name at least one upstream URL")
    pool = UpstreamPool(
        pairs,
        balance=config.balance,
        probing=config.probe_interval is not None and len(pairs) > 1,
        failures=config.breaker_failures,
        backoff=config.breaker_backoff,
        max_backoff=config.breaker_max_backoff,
    )
    if metrics is not None:
        pool.on_change = metrics.upstream_changed
        for member in pool.upstreams:
            metrics.upstream_changed(member)
    return pool


def _stream_options(config: ProxyConfig, clock: Clock | None) -> dict[str, Any]:
    """What each paced stream's response is made with, from ``config`` (and the
    collector's threshold while the proxy serves)."""
    stream = config.stream
    return {
        "heartbeat": stream.heartbeat,
        "send_timeout": stream.send_timeout,
        "clock": clock,
        "max_line": config.max_line,
        "compress": stream.compress,
        "resume": config.resume,
        "replays_per_stream": config.replays_per_stream,
        "replays_per_client": config.replays_per_client,
        "gc_threshold": config.gc_threshold,  # the process's, while the proxy serves
        "continuation": config.continuation,
        "streams_per_client": config.streams_per_client,
        "drain": Drain(),  # the server's shutdown, as the streams see it (pacer._drain)
    }


def _proxy_config(config: ProxyConfig | Callable[[], Stage] | None, options: dict[str, Any]) -> ProxyConfig:
    if config is None:
        config = ProxyConfig()
    elif not isinstance(config, ProxyConfig):
        config = ProxyConfig(pipeline=config)
    return with_options(config, options) if options else config


def _pipeline_factory(config: ProxyConfig, pool: CheckPool) -> Callable[[], Stage]:
    """Each stream's pipeline: the guard (if any, its checks on ``pool``) in front of the
    configured pipeline."""
    factory = config.pipeline_factory()
    check = config.guard
    if check is None:
        return factory
    if isinstance(check, str):
        check = load_check(check)
    from .guard import Guard

    Guard(check)  # a bad check fails here, not in every stream

    def guarded() -> Stage:
        return Guard(check, pool=pool) | factory()

    return guarded


def _routes(proxy: _Proxy) -> list[Route]:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    paced = [
        Route(path, functools.partial(proxy.paced, api=api), methods=["POST"])
        for path, api in FORMATS.items()
    ]
    ops = [
        *proxy.stream_routes(),
        owned_route("/metrics", proxy.prometheus, ["GET"]),
        owned_route("/healthz", proxy.healthz, ["GET"]),
        owned_route("/readyz", proxy.readyz, ["GET"]),
    ]
    return [*paced, *ops, Route("/{path:path}", proxy.other, methods=methods)]


_SETTINGS_VARIABLE = "PACER_PROXY_SETTINGS"  # how ``serve`` hands its settings to worker processes


def serve(config: ServerConfig) -> None:
    """Run the proxy ``config`` describes with uvicorn until interrupted; ``workers`` > 1
    runs that many processes sharing the port (uvicorn's process manager), one event
    loop each, each building its proxy from the same configuration (which must then be
    plain values: no function as ``pipeline`` or ``guard``, a ``MODULE:FUNCTION`` name
    instead). Logs go to stderr at ``log_level``, as plain lines or JSON lines
    (``log_format``), one line per stream end with its outcome and figures (and one
    when a resumable stream's generation ends after its client left). Connections
    are uvicorn's with the header timeout, connection limit and shutdown grace of
    ``config`` (``pacer._connections.ProxyHTTP``); ``X-Forwarded-For`` is believed only
    from ``forwarded_allow_ips``; the open-file limit is raised to fit the connections.
    """
    import uvicorn

    from ._connections import ProxyHTTP, with_rules
    from ._logs import configure

    app = create_proxy(config.upstream, config.proxy)  # a bad setting fails here, once, not in every worker
    log_config = configure(config.log_level, config.log_format)
    where: dict[str, Any] = {"host": config.host, "port": config.port, "log_level": config.log_level}
    where["log_config"] = log_config
    where |= _connection_settings(config, ProxyHTTP)
    _raise_open_files(2 * config.connection_limit + 256)
    if config.workers == 1:
        uvicorn.run(with_rules(app, _rules(config)), **where)
        return
    if config.proxy.pipeline is not None or callable(config.proxy.guard):
        raise ValueError(
            "serve: workers > 1 rebuild the proxy from plain values: no function as pipeline or guard"
        )
    os.environ[_SETTINGS_VARIABLE] = json.dumps(to_values(config))
    uvicorn.run("pacer.proxy:app_from_environment", factory=True, workers=config.workers, **where)


#: Seconds a stream cut at the end of the shutdown grace has to send its error event and
#: close, before uvicorn cancels what is left (a client that does not read).
_CUT_MARGIN = 3.0


def _connection_settings(config: ServerConfig, protocol: type[Any]) -> dict[str, Any]:
    """uvicorn's options for ``config``'s connections: the bounded protocol
    (``pacer._connections``), the shutdown grace, and whose forwarding headers to believe."""
    trusted = config.forwarded_allow_ips or ()
    return {
        "http": protocol,
        "timeout_graceful_shutdown": config.shutdown_grace + _CUT_MARGIN,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": ",".join(trusted) if trusted else None,
    }


def _rules(config: ServerConfig) -> Any:
    from ._connections import ConnectionRules

    return ConnectionRules(config.header_timeout, config.connection_limit, config.shutdown_grace)


def _raise_open_files(needed: int) -> None:
    """Raise this process's soft limit of open files towards ``needed`` (each client
    connection may have an upstream one beside it), up to the hard limit; a warning
    when that is not enough."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < needed:
        log.warning(
            "pacer proxy: %d open files allowed (ulimit -n), the connection limit wants %d: "
            "lower --connection-limit or raise the limit",
            soft,
            needed,
        )


def settings_values(upstream: str, **settings: Any) -> dict[str, Any]:
    """A ``ServerConfig``'s plain JSON values (``pacer.config.to_values``), from its
    fields by name; a bad one fails here."""
    return to_values(with_options(ServerConfig, {"upstream": upstream, **settings}))


def app_from_settings(settings: dict[str, Any]) -> Starlette:
    """The proxy a ``ServerConfig``'s plain JSON values describe."""
    config = with_options(ServerConfig, settings)
    return create_proxy(config.upstream, config.proxy)


def _served_app(settings: dict[str, Any]) -> Any:
    """``app_from_settings``, with the connection rules its server protocol reads."""
    from ._connections import with_rules

    config = with_options(ServerConfig, settings)
    return with_rules(create_proxy(config.upstream, config.proxy), _rules(config))


def stream_log(redis: str | None, retention: float) -> StreamLog:
    """The log of the proxy's resumable streams: in ``redis`` (a URL) or in memory."""
    if redis is None:
        return MemoryLog(retention=retention)
    from .redislog import RedisLog

    return RedisLog(redis, retention=retention)


def load_check(spec: str) -> Callable[..., Any]:
    """The function ``MODULE:FUNCTION`` names (``pacer proxy --guard``); the current
    directory is searched first, as ``python -m`` would."""
    import importlib
    import sys

    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"--guard must be MODULE:FUNCTION, got {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--guard {spec}: cannot import {module_name}: {exc}") from None
    check = getattr(module, name, None)
    if not callable(check):
        raise ValueError(f"--guard {spec}: {module_name} has no function {name}")
    return check  # type: ignore[no-any-return]


def app_from_environment() -> Any:
    """The proxy of a worker process that ``serve`` started with ``workers`` > 1."""
    settings = os.environ.get(_SETTINGS_VARIABLE)
    if settings is None:
        raise RuntimeError(
            f"pacer proxy worker: {_SETTINGS_VARIABLE} is not set; start it with `pacer proxy`"
        )
    values = json.loads(settings)
    from ._logs import configure

    configure(values["log_level"], values["log_format"])
    return _served_app(values)
