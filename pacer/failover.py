"""Talking to an ``UpstreamPool``'s upstreams over HTTP: a request sent with failover
before its first byte (``forward``), a response body that reports how it ended
(``served``), and the active health probe (``probe``, ``probe_forever``).

What moves a request to the next upstream, within ``retries``: no connection (or one
broken before the response headers), no response headers within the first-byte
timeout, a 5xx, a 429 (whose ``Retry-After`` keeps that upstream out of rotation for
as long). Anything else is the answer: a 4xx other than 429 is about the request, and
the next upstream would answer it the same. When no upstream is left to try (or
``retries`` are spent) the last upstream's response is the answer, as it came (a
client's SDK reads its status and ``Retry-After``), or, when none answered, a 502 (a
504 when each attempt timed out) that names each upstream tried (by name, never by URL)
and why it failed.

The request is sent again as it was (its body is in memory): the same method, path,
headers and bytes, under the next upstream's base URL.

Cost: one pool look-up per attempt; a probe round is one ``GET`` per upstream in
rotation, concurrently, every ``probe_interval`` seconds.
"""

from __future__ import annotations

from . import _server_extra  # noqa: F401  (first: a plain install's missing package, named with its extra)

# isort: split

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Sequence

import anyio
import httpx

from ._errors import error_object
from .upstreams import BreakerState, Failure, Upstream, UpstreamPool, retry_after_seconds

__all__ = ["PROBE_TIMEOUT", "Failed", "Sent", "forward", "probe", "probe_forever", "served"]

log = logging.getLogger("pacer.proxy")

#: Seconds a health probe (and ``/readyz``'s check) waits for an upstream's answer.
PROBE_TIMEOUT = 2.0


class Sent:
    """An upstream's response, its headers read: ``upstream`` gave it, after
    ``failovers`` upstreams failed before it (``tried``: every upstream the request
    went to, in order). Its body is the caller's to read through ``served``, or to
    close (``aclose``)."""

    __slots__ = ("response", "tried", "upstream")

    def __init__(self, response: httpx.Response, upstream: Upstream, tried: Sequence[Upstream]) -> None:
        self.response = response
        self.upstream = upstream
        self.tried = tuple(tried)

    @property
    def failovers(self) -> int:
        return len(self.tried) - 1

    async def aclose(self, pool: UpstreamPool) -> None:
        """The response closed, without reading its body; its upstream's request ended."""
        pool.closed(self.upstream)
        with anyio.CancelScope(shield=True):
            await self.response.aclose()


class Failed:
    """No upstream answered: each upstream tried, why it failed and how (``attempts``)."""

    __slots__ = ("attempts", "retries")

    def __init__(self, attempts: list[tuple[Upstream, Failure, str]], retries: int) -> None:
        self.attempts = attempts
        self.retries = retries

    def status(self) -> int:
        """504 when every attempt timed out, else 502."""
        return 504 if all(f is Failure.TIMEOUT for _, f, _ in self.attempts) else 502

    def error(self) -> dict[str, object]:
        """The JSON error body: what each attempt met (a single upstream's as it always was)."""
        kind = "upstream_timeout" if self.status() == 504 else "upstream_error"
        if len(self.attempts) == 1:
            return error_object(self.attempts[0][2], kind)
        said = "; ".join(f"upstream {u.name}: {detail}" for u, _, detail in self.attempts)
        spent = f" (retries spent: {self.retries})" if len(self.attempts) > self.retries else ""
        return error_object(f"no upstream answered after {len(self.attempts)} tries{spent}: {said}", kind)


def failure_of(status: int) -> Failure | None:
    """The failure a response status is, for failover: 429 and 5xx; any other is an answer."""
    if status == 429:
        return Failure.RATE_LIMITED
    return Failure.SERVER_ERROR if status >= 500 else None


async def _attempt(
    pool: UpstreamPool,
    client: httpx.AsyncClient,
    upstream: Upstream,
    outgoing: httpx.Request,
    first_byte: float | None,
) -> httpx.Response | tuple[Failure, str]:
    """``outgoing`` sent to ``upstream``: its response (headers read; the request stays
    counted open until the response is closed) or why there is none."""
    pool.opened(upstream)
    response = None
    try:
        with anyio.fail_after(first_byte):
            response = await client.send(outgoing, stream=True)
    except TimeoutError:
        return Failure.TIMEOUT, f"upstream sent no response within {first_byte} s"
    except httpx.HTTPError as exc:
        return Failure.UNREACHABLE, f"upstream unreachable: {exc}"
    finally:
        if response is None:
            pool.closed(upstream)
    return response


async def forward(
    pool: UpstreamPool,
    client: httpx.AsyncClient,
    build: Callable[[Upstream], httpx.Request],
    *,
    retries: int,
    first_byte: float | None,
    exclude: Collection[Upstream] = (),
    on_failover: Callable[[Failure], None] | None = None,
) -> Sent | Failed:
    """The request ``build`` makes for an upstream, sent to the pool's pick and, when that
    upstream fails before the first byte, to the next (none of ``exclude``), up to
    ``retries`` more; ``on_failover`` is told each move and why. Each failure is reported
    to the pool; the answer's health is the caller's to report (``served``)."""
    tried: list[Upstream] = []
    attempts: list[tuple[Upstream, Failure, str]] = []
    held: Sent | None = None  # the last failed response: the answer if no upstream is left
    while len(tried) <= retries:
        upstream = pool.pick(exclude=[*exclude, *tried])
        if upstream is None:
            break
        if attempts:
            if on_failover is not None:
                on_failover(attempts[-1][1])
            if held is not None:
                await held.aclose(pool)
                held = None
        tried.append(upstream)
        result = await _attempt(pool, client, upstream, build(upstream), first_byte)
        if isinstance(result, httpx.Response):
            failure = failure_of(result.status_code)
            if failure is None:
                return Sent(result, upstream, tried)
            header = result.headers.get("retry-after") if failure is Failure.RATE_LIMITED else None
            pool.report(upstream, failure, retry_after=retry_after_seconds(header))
            held = Sent(result, upstream, tried)
            attempts.append((upstream, failure, f"status {result.status_code}"))
        else:
            pool.report(upstream, result[0])
            attempts.append((upstream, *result))
        log.warning(
            "pacer proxy: upstream %s failed before the first byte: %s", upstream.name, attempts[-1][2]
        )
    if held is not None:
        return held
    return Failed(attempts, retries)


#: The errors of a body read that are the upstream's failing (its kinds, as ``UpstreamError``
#: and ``SSEError`` name them): anything else (a check, the client) says nothing of its health.
_UPSTREAM_KINDS = frozenset({"upstream_truncated", "upstream_timeout", "malformed_upstream", "stream_error"})


@contextlib.asynccontextmanager
async def serving(pool: UpstreamPool, sent: Sent, *, used: Sequence[Upstream] = ()) -> AsyncIterator[None]:
    """Around the reading of ``sent``'s body (and whatever is made of it): the response
    closed however it ends, and the pool told how it ended: a success when the block ended
    without an error, ``TRUNCATED`` when it was cut, went quiet or ended early, nothing when
    the client left (a cancellation), nor when the stream went on with another upstream
    (``used``: the upstreams it had; each continuation's own body reports its upstream)."""
    verdict: tuple[Failure | None] | None = None
    try:
        yield
        verdict = (None,)
    except Exception as exc:
        if isinstance(exc, httpx.TransportError) or getattr(exc, "kind", None) in _UPSTREAM_KINDS:
            verdict = (Failure.TRUNCATED,)
        raise
    finally:
        if verdict is not None and len(used) <= 1:
            pool.report(sent.upstream, verdict[0])
        await sent.aclose(pool)


async def served(
    pool: UpstreamPool, sent: Sent, pieces: AsyncIterator[bytes], *, used: Sequence[Upstream] = ()
) -> AsyncGenerator[bytes, None]:
    """``pieces`` (made from ``sent``'s body), ``serving`` around them."""
    async with serving(pool, sent, used=used):
        async for piece in pieces:
            yield piece


async def probe(client: httpx.AsyncClient, upstream: Upstream, path: str) -> tuple[Failure | None, str]:
    """``GET path`` of ``upstream`` within ``PROBE_TIMEOUT``: ``(None, status)`` for an
    answer below 500 (a 401 is a server that answers), else the failure and what it met."""
    try:
        with anyio.fail_after(PROBE_TIMEOUT):
            answer = await client.get(upstream.base + path)
    except TimeoutError:
        return Failure.TIMEOUT, f"no answer within {PROBE_TIMEOUT} s"
    except httpx.HTTPError as exc:
        return Failure.UNREACHABLE, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return failure_of(answer.status_code), f"status {answer.status_code}"


async def probe_all(
    pool: UpstreamPool, client: httpx.AsyncClient, path: str, upstreams: Sequence[Upstream]
) -> dict[str, str]:
    """Probe ``upstreams`` concurrently and report each to the pool; what each met, by name."""
    met: dict[str, str] = {}

    async def one(upstream: Upstream) -> None:
        failure, detail = await probe(client, upstream, path)
        before = pool.state(upstream)
        pool.report(upstream, failure)
        met[upstream.name] = detail
        after = pool.state(upstream)
        if after is not before:
            log.warning("pacer proxy: upstream %s is %s (probe: %s)", upstream.name, after, detail)

    async with anyio.create_task_group() as tg:
        for upstream in upstreams:
            tg.start_soon(one, upstream)
    return met


async def probe_forever(pool: UpstreamPool, client: httpx.AsyncClient, path: str, interval: float) -> None:
    """Every ``interval`` seconds, probe each upstream in rotation; between rounds, each
    upstream as soon as its breaker half-opens (its trial). Runs until cancelled."""
    next_round = anyio.current_time()
    while True:
        now = anyio.current_time()
        await anyio.sleep(max(min(next_round - now, pool.next_trial()), 0.0))
        if anyio.current_time() >= next_round:
            next_round = anyio.current_time() + interval
            targets = pool.due()
        else:
            targets = [u for u in pool.upstreams if pool.state(u) is BreakerState.HALF_OPEN]
        await probe_all(pool, client, path, targets)
