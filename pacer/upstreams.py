"""Several upstreams, each with its health: a circuit breaker per upstream and the
choice of the next one to send a request to (``UpstreamPool``).

Sans-I/O, as the stages are: the pool never opens a socket and never sleeps. Whoever
talks to an upstream tells the pool how it went (``report``), and asks it where to go
next (``pick``); the proxy (``pacer.failover``) drives it with real requests and an
active probe on an interval.

Each upstream's breaker (``Breaker``) is in one of three named states:

- ``CLOSED``: healthy, chosen for requests. ``failures`` failures in a row (an
  unreachable upstream at once: its next request would fail the same) open it.
- ``OPEN``: out of rotation for its backoff: ``backoff`` seconds, doubled each time it
  opens again without having closed in between, up to ``max_backoff``; a 429 opens it
  for the upstream's ``Retry-After`` instead.
- ``HALF_OPEN``: the backoff has passed; the next probe (or, with probing off, the next
  request) is the trial: a success closes the breaker, a failure opens it again for
  twice as long.

``pick`` chooses among the healthy (``CLOSED``) upstreams, by round robin or by the
fewest open streams; when none is healthy it still answers the one whose breaker
half-opens first (with probing off, a ``HALF_OPEN`` one is tried as a trial first), so a
proxy whose every upstream failed once keeps trying them rather than refusing every
request: an upstream that came back is found by the next request.

Cost: ``pick``, ``report`` and ``healthy`` are O(number of upstreams), a handful;
nothing is kept per request.
"""

from __future__ import annotations

import enum
import math
import re
import time
from collections.abc import Callable, Collection, Sequence

__all__ = [
    "BALANCE",
    "FAILOVER_REASONS",
    "Breaker",
    "BreakerState",
    "Failure",
    "Upstream",
    "UpstreamPool",
    "parse_upstream",
    "retry_after_seconds",
]

#: How ``pick`` chooses among healthy upstreams.
BALANCE = ("round_robin", "least_streams")

#: The longest ``Retry-After`` honoured, in seconds: a larger one (or an HTTP date further
#: away) opens the breaker for this long, so no reply can take an upstream out for good.
MAX_RETRY_AFTER = 3600.0


class Failure(str, enum.Enum):
    """Why an exchange with an upstream failed (a ``str`` equal to its value: a
    Prometheus label, a log field)."""

    UNREACHABLE = "unreachable"  # no connection, or it broke before the response headers
    TIMEOUT = "timeout"  # no response headers within the first-byte timeout
    SERVER_ERROR = "server_error"  # a 5xx status
    RATE_LIMITED = "rate_limited"  # a 429 status
    TRUNCATED = "truncated"  # a body cut short, idle past its timeout, or ended before its end event

    def __str__(self) -> str:
        return self.value


#: The failures that move a request to the next upstream before its first byte (the label
#: values of ``pacer_upstream_failovers_total{reason}``).
FAILOVER_REASONS = (Failure.UNREACHABLE, Failure.TIMEOUT, Failure.SERVER_ERROR, Failure.RATE_LIMITED)


class BreakerState(str, enum.Enum):
    """An upstream's breaker (see the module docstring)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __str__(self) -> str:
        return self.value


class Breaker:
    """One upstream's circuit breaker, on the clock's seconds (``now`` is always given).

    ``failures``: failures in a row that open it; ``backoff``: seconds it first stays
    open, doubled each time it opens again before closing, up to ``max_backoff``.
    """

    __slots__ = ("backoff", "failures", "in_a_row", "max_backoff", "opened", "status", "until")

    def __init__(self, failures: int = 3, backoff: float = 1.0, max_backoff: float = 60.0) -> None:
        self.failures = failures
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.status = BreakerState.CLOSED  # as last set; ``state(now)`` adds the half-open
        self.in_a_row = 0  # failures since the last success
        self.opened = 0  # times opened since it last closed
        self.until = 0.0  # when an open breaker half-opens

    def state(self, now: float) -> BreakerState:
        """The state at ``now``: an ``OPEN`` breaker whose backoff has passed is ``HALF_OPEN``."""
        if self.status is BreakerState.OPEN and now >= self.until:
            return BreakerState.HALF_OPEN
        return self.status

    def succeeded(self) -> None:
        """The upstream answered: closed, its backoff back to the first."""
        self.status = BreakerState.CLOSED
        self.in_a_row = 0
        self.opened = 0

    def failed(self, now: float, failure: Failure, retry_after: float | None = None) -> None:
        """An exchange failed at ``now``; a 429's ``retry_after`` (seconds) opens the breaker
        for that long (at most ``MAX_RETRY_AFTER``), without growing the backoff."""
        self.in_a_row += 1
        if failure is Failure.RATE_LIMITED:
            wait = self.backoff if retry_after is None else min(max(retry_after, 0.0), MAX_RETRY_AFTER)
            self._open(now, wait)
            return
        state = self.state(now)
        if state is BreakerState.OPEN:
            return  # already out (a request sent anyway, none being healthy): one outage, one doubling
        if (
            state is BreakerState.HALF_OPEN
            or failure is Failure.UNREACHABLE
            or self.in_a_row >= self.failures
        ):
            self.opened += 1
            doublings = min(self.opened - 1, 32)  # past max_backoff long before; no float overflow
            self._open(now, min(self.backoff * 2**doublings, self.max_backoff))

    def _open(self, now: float, seconds: float) -> None:
        until = now + seconds
        self.until = max(self.until, until) if self.status is BreakerState.OPEN else until
        self.status = BreakerState.OPEN


class Upstream:
    """One upstream: its ``base`` URL (the clients' ``/v1/...`` paths are appended to it),
    its ``name`` (the configured one, else its index: what metrics and logs show, never
    the URL, which may hold credentials), its ``breaker`` and its open ``streams``."""

    __slots__ = ("base", "breaker", "index", "name", "streams")

    def __init__(self, index: int, base: str, name: str, breaker: Breaker) -> None:
        self.index = index
        self.base = base
        self.name = name
        self.breaker = breaker
        self.streams = 0

    def __repr__(self) -> str:
        return f"Upstream({self.index}, name={self.name!r}, {self.breaker.status})"


_NAMED = re.compile(r"([A-Za-z0-9_.-]{1,64})=(.*)", re.S)


def parse_upstream(given: str) -> tuple[str | None, str]:
    """``NAME=URL`` or ``URL`` as ``(name or None, URL)``: a name is 1-64 letters, digits,
    ``_``, ``.`` or ``-`` (a URL never starts that way and then ``=``, as it starts with
    its scheme and ``:``)."""
    named = _NAMED.fullmatch(given)
    return (named.group(1), named.group(2)) if named else (None, given)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header's seconds from now (RFC 9110 section 10.2.3: delay-seconds
    or an HTTP date), or ``None`` when absent or unreadable; ``now`` is the wall clock
    (``time.time()``) an HTTP date is measured from."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


class UpstreamPool:
    """Upstreams and their health; which one a request goes to next.

    ``upstreams``: ``(name or None, base URL)`` pairs in order (a ``None`` name is the
    index). ``balance``: ``"round_robin"`` or ``"least_streams"`` (the fewest open
    streams, round robin among equals). ``probing``: whether an active probe runs
    (then a half-open upstream waits for the probe's trial; without, the next request is
    the trial). ``clock``: seconds, monotonic. ``on_change`` is called with an upstream
    whose state may have changed (a metric's gauge).
    """

    def __init__(
        self,
        upstreams: Sequence[tuple[str | None, str]],
        *,
        balance: str = "round_robin",
        probing: bool = True,
        failures: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[Upstream], None] | None = None,
    ) -> None:
        if not upstreams:
            raise ValueError("UpstreamPool: upstreams must name at least one upstream")
        if balance not in BALANCE:
            raise ValueError(f"UpstreamPool: balance must be one of {BALANCE}, got {balance!r}")
        names = [name if name is not None else str(i) for i, (name, _) in enumerate(upstreams)]
        if len(set(names)) != len(names):
            raise ValueError(f"UpstreamPool: upstream names must differ, got {names}")
        self.upstreams = tuple(
            Upstream(i, base, name, Breaker(failures, backoff, max_backoff))
            for i, (name, (_, base)) in enumerate(zip(names, upstreams, strict=True))
        )
        self.balance = balance
        self.probing = probing
        self.clock = clock
        self.on_change = on_change
        self._next = 0  # round robin's cursor

    def healthy(self) -> list[Upstream]:
        """The upstreams whose breaker is closed, in order."""
        return [u for u in self.upstreams if u.breaker.status is BreakerState.CLOSED]

    def state(self, upstream: Upstream) -> BreakerState:
        """``upstream``'s breaker state now."""
        return upstream.breaker.state(self.clock())

    def pick(self, exclude: Collection[Upstream] = ()) -> Upstream | None:
        """The upstream for the next request, none of ``exclude`` (those a request already
        tried); ``None`` when every upstream is excluded. A healthy one when there is one
        (round robin or least streams); else, with probing off, a half-open one (its
        trial); else the one whose breaker half-opens first."""
        now = self.clock()
        left = [u for u in self.upstreams if u not in exclude]
        if not left:
            return None
        chosen = [u for u in left if u.breaker.state(now) is BreakerState.CLOSED]
        if not chosen and not self.probing:
            chosen = [u for u in left if u.breaker.state(now) is BreakerState.HALF_OPEN]
        if not chosen:
            return min(left, key=lambda u: (u.breaker.until, u.index))
        return self._balanced(chosen)

    def _balanced(self, chosen: list[Upstream]) -> Upstream:
        count = len(self.upstreams)
        order = sorted(chosen, key=lambda u: (u.index - self._next) % count)  # round robin from the cursor
        if self.balance == "least_streams":
            fewest = min(u.streams for u in order)
            order = [u for u in order if u.streams == fewest]
        picked = order[0]
        self._next = (picked.index + 1) % count
        return picked

    def report(
        self, upstream: Upstream, failure: Failure | None, *, retry_after: float | None = None
    ) -> None:
        """How an exchange with ``upstream`` went: ``None`` for a success (it answered, or
        its stream ended as it should), else its ``Failure``; ``retry_after``: a 429's
        ``Retry-After`` in seconds."""
        if failure is None:
            upstream.breaker.succeeded()
        else:
            upstream.breaker.failed(self.clock(), Failure(failure), retry_after)
        if self.on_change is not None:
            self.on_change(upstream)

    def opened(self, upstream: Upstream) -> None:
        """A request to ``upstream`` started (``least_streams`` counts them)."""
        upstream.streams += 1

    def closed(self, upstream: Upstream) -> None:
        """A request to ``upstream`` ended, its response closed."""
        upstream.streams -= 1

    def due(self) -> list[Upstream]:
        """The upstreams an active probe should check now: every closed one, and every one
        whose breaker has half-opened (its trial)."""
        now = self.clock()
        return [u for u in self.upstreams if u.breaker.state(now) is not BreakerState.OPEN]

    def next_trial(self) -> float:
        """Seconds until the first open breaker half-opens (``inf``: none is open)."""
        now = self.clock()
        waits = [u.breaker.until - now for u in self.upstreams if u.breaker.state(now) is BreakerState.OPEN]
        return max(min(waits), 0.0) if waits else math.inf
