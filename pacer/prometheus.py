"""Prometheus metrics for paced streams (``pip install 'pacer-llm[metrics]'``).

``PacerMetrics()`` holds the series, in a registry of its own unless given one; the
proxy serves them at ``GET /metrics``. For your own app, give each response an
observer: ``PacedEventSource(..., observer=metrics.observer())`` (any
``EventStreamResponse`` takes one), and serve ``metrics.exposition()``.

Series (all named ``pacer_...``):

- ``streams_open`` (gauge), ``streams_total{outcome}`` (``done``, ``blocked``,
  ``error``, ``disconnect``, ``send_timeout``), ``blocked_total`` (streams a ``Guard``
  stopped);
- ``time_to_first_output_seconds``, ``lag_seconds`` (each chunk, from the pipeline's
  input to its emission), ``event_gap_seconds`` (between two events of a stream),
  histograms;
- ``events_total``, ``bytes_out_total`` (event bytes before compression),
  ``wire_bytes_total`` (after), ``heartbeats_total``;
- ``continuations_total{api, outcome}``: upstream failures mid-answer, ``continued``
  (one per seam: a continuation spliced in) or ``refused`` (the stream ended with the
  error: policy, a tool-call lane, a diverging regenerated answer, a spent budget);
- ``upstream_errors_total{type}`` (the proxy's upstream failures, by pacer's own kind of
  failure: ``FAILURE_KINDS``; anything else, an upstream's own error type or an
  exception's class, is counted as ``other``, so a peer can never grow the label set);
- ``upstream_failovers_total{reason}`` (requests moved to the next upstream before their
  first byte, by why: ``pacer.upstreams.FAILOVER_REASONS``), ``upstream_healthy{upstream}``
  (gauge: 1 while the upstream's breaker is closed, else 0; labelled by its configured
  name or its index, never its URL).

Cost: a few counter updates per event; the lag samples a stream kept (at most
``StreamMetrics.max_samples``) are observed once, when it ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._metrics import StreamMetrics
from .upstreams import FAILOVER_REASONS, BreakerState, Upstream

__all__ = ["FAILURE_KINDS", "PacerMetrics", "StreamObserver", "UpstreamSeries"]

#: The label values of ``upstream_errors_total``: the kinds of failure pacer names itself.
FAILURE_KINDS = frozenset(
    {
        "upstream_error",
        "upstream_timeout",
        "upstream_unreachable",
        "upstream_truncated",
        "upstream_status",
        "malformed_upstream",
        "stream_error",
        "stream_lost",
        "stream_store_unavailable",
        "producer_lost",
        "events_trimmed",
        "other",
    }
)

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PacerMetrics:
    """The series of every paced stream of a process (see the module docstring)."""

    def __init__(self, registry: Any = None) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "PacerMetrics needs prometheus-client: pip install 'pacer-llm[metrics]'",
                name="prometheus_client",
            ) from None
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.streams_open = Gauge("pacer_streams_open", "Paced streams now open", registry=r)
        self.streams = Counter("pacer_streams", "Paced streams ended, by outcome", ["outcome"], registry=r)
        self.blocked = Counter("pacer_blocked", "Streams a Guard's check stopped", registry=r)
        self.first_output = Histogram(
            "pacer_time_to_first_output_seconds",
            "Seconds from a stream's first input to its first output",
            buckets=_SECONDS,
            registry=r,
        )
        self.lag = Histogram(
            "pacer_lag_seconds", "Seconds from a chunk's input to its emission", buckets=_SECONDS, registry=r
        )
        self.gap = Histogram(
            "pacer_event_gap_seconds", "Seconds between two events of a stream", buckets=_SECONDS, registry=r
        )
        self.writes = _Writes(Counter, r)
        self.upstream = UpstreamSeries(r)
        self.continuations = Counter(
            "pacer_continuations",
            "Upstream failures mid-answer, by API and outcome: continued (a seam) or refused",
            ["api", "outcome"],
            registry=r,
        )

    @property
    def upstream_errors(self) -> Any:
        """``pacer_upstream_errors_total{type}`` (``UpstreamSeries.errors``)."""
        return self.upstream.errors

    @property
    def failovers(self) -> Any:
        """``pacer_upstream_failovers_total{reason}`` (``UpstreamSeries.failovers``)."""
        return self.upstream.failovers

    def upstream_changed(self, upstream: Upstream) -> None:
        """``upstream``'s health may have changed (``UpstreamPool(on_change=)``)."""
        healthy = upstream.breaker.status is BreakerState.CLOSED
        self.upstream.healthy.labels(upstream.name).set(1 if healthy else 0)

    def continued(self, api: str, seams: int, refused: bool) -> None:
        """A stream's continuation seams (``seams``), and whether one was refused, under
        ``api`` (a format's name, from pacer's own list)."""
        if seams:
            self.continuations.labels(api, "continued").inc(seams)
        if refused:
            self.continuations.labels(api, "refused").inc()

    def observer(self) -> StreamObserver:
        """A new stream's observer (one per response)."""
        return StreamObserver(self)

    def failed(self, kind: str) -> None:
        """A stream failed upstream, of type ``kind`` (``other`` unless one of ``FAILURE_KINDS``)."""
        self.upstream_errors.labels(kind if kind in FAILURE_KINDS else "other").inc()

    def producer_failed(self, exc: Exception) -> None:
        """A resumable stream's producer failed (``ResumableStreams(on_failure=)``): counted
        as a stream's failure, whether or not a client was reading it."""
        self.failed(failure_kind(exc))

    def exposition(self) -> bytes:
        """The Prometheus text format of every series."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)  # type: ignore[no-any-return]


class UpstreamSeries:
    """The series about the upstreams: failures, failovers, health (``PacerMetrics.upstream``)."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge

        r = registry
        self.errors = Counter(
            "pacer_upstream_errors", "Upstream failures, by error type", ["type"], registry=r
        )
        self.failovers = Counter(
            "pacer_upstream_failovers",
            "Requests moved to the next upstream before their first byte, by reason",
            ["reason"],
            registry=r,
        )
        for reason in FAILOVER_REASONS:  # every reason shown from the start, at 0
            self.failovers.labels(reason.value)
        self.healthy = Gauge(
            "pacer_upstream_healthy",
            "1 while the upstream is in rotation (its breaker closed), else 0",
            ["upstream"],
            registry=r,
        )


def failure_kind(exc: BaseException) -> str:
    """The label an exception is counted under: pacer's own kind of failure, else ``other``."""
    kind = str(getattr(exc, "kind", type(exc).__name__))
    return kind if kind in FAILURE_KINDS else "other"


class _Writes:
    """The series of what is written: events, their bytes before and after compression,
    heartbeats."""

    def __init__(self, counter: Any, r: Any) -> None:
        self.events = counter("pacer_events", "Events sent (heartbeats not counted)", registry=r)
        self.bytes_out = counter("pacer_bytes_out", "Bytes of events sent, before compression", registry=r)
        self.wire_bytes = counter("pacer_wire_bytes", "Bytes sent on the wire, after compression", registry=r)
        self.heartbeats = counter("pacer_heartbeats", "Heartbeat comments sent", registry=r)

    def sent(self, frame: bytes, wire: int, heartbeat: bool) -> bool:
        """Count one write; whether it was an event."""
        self.wire_bytes.inc(wire)
        if heartbeat:
            self.heartbeats.inc()
            return False
        if not frame:
            return False
        self.events.inc()
        self.bytes_out.inc(len(frame))
        return True


class StreamObserver:
    """What an ``EventStreamResponse`` tells the metrics about one stream."""

    def __init__(self, metrics: PacerMetrics) -> None:
        self.metrics = metrics
        self.last_event: float | None = None
        self.closed_already = False

    def opened(self) -> None:
        self.metrics.streams_open.inc()

    def sent(self, frame: bytes, wire: int, now: float, heartbeat: bool) -> None:
        """One write: ``frame`` (before compression), ``wire`` bytes of it on the wire."""
        m = self.metrics
        if not m.writes.sent(frame, wire, heartbeat):
            return
        if self.last_event is not None:
            m.gap.observe(now - self.last_event)
        self.last_event = now

    def failed(self, kind: str) -> None:
        """The stream ended on an upstream failure of type ``kind`` (``other`` unless it is
        one of ``FAILURE_KINDS``)."""
        self.metrics.failed(kind)  # (the writer's: a stream with no log)

    def closed(self, outcome: str, pipelines: Iterable[StreamMetrics] = ()) -> None:
        """The stream ended (``outcome``); ``pipelines``: its pipelines' metrics."""
        if self.closed_already:
            return
        self.closed_already = True
        m = self.metrics
        m.streams_open.dec()
        m.streams.labels(outcome).inc()
        for stream in pipelines:
            first = stream.time_to_first_output
            if first is not None:
                m.first_output.observe(first)
            for lag in stream.lag_samples.values:
                m.lag.observe(lag)
            if stream.blocked is not None:
                m.blocked.inc()
