"""What an operator sees: the proxy's Prometheus series agree with what the clients
counted, and its health and readiness endpoints tell the truth."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pacer import Pacer
from pacer.proxy import create_proxy
from pacer.sse import SSEDecoder

from .servers import ScriptedUpstream, serve

prometheus = pytest.importorskip("prometheus_client")
pytestmark = pytest.mark.timeout(120)


def _scrape(url: str) -> dict[str, float]:
    """Every sample of ``GET /metrics``, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
            key = sample.name + (f"{{{labels}}}" if labels else "")
            if "le" not in sample.labels:
                samples[key] = sample.value
    return samples


@pytest.fixture(scope="module")
def proxy() -> Iterator[str]:
    with (
        serve(ScriptedUpstream(speed=10.0).app) as upstream,
        serve(create_proxy(upstream, lambda: Pacer(cps=3000), heartbeat=None)) as url,
    ):
        yield url


def test_metrics_during_and_after_a_load_agree_with_the_clients(proxy: str) -> None:
    n = 6
    body = {"model": "m", "stream": True}
    before = _scrape(proxy)
    events_seen = 0
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client(timeout=30))
        streams: list[tuple[Any, SSEDecoder, Iterator[bytes]]] = []
        for _ in range(n):
            response = stack.enter_context(client.stream("POST", f"{proxy}/v1/chat/completions", json=body))
            streams.append((response, SSEDecoder(), response.iter_bytes()))
        for _response, decoder, pieces in streams:  # every stream has begun
            while not (events := decoder.feed(next(pieces))):
                pass
            events_seen += len(events)
        during = _scrape(proxy)
        assert during["pacer_streams_open"] - before.get("pacer_streams_open", 0) == n
        for _response, decoder, pieces in streams:
            for piece in pieces:
                events_seen += len(decoder.feed(piece))
        wire = sum(response.num_bytes_downloaded for response, _, _ in streams)
    after = _scrape(proxy)

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert after["pacer_streams_open"] == before.get("pacer_streams_open", 0)
    assert grew("pacer_streams_total{outcome=done}") == n
    assert grew("pacer_events_total") == events_seen  # every event the clients read, no more
    assert grew("pacer_wire_bytes_total") == wire  # (compressed: the clients asked for gzip)
    assert grew("pacer_bytes_out_total") > 5 * wire
    assert grew("pacer_time_to_first_output_seconds_count") == n  # one lane a stream
    assert grew("pacer_event_gap_seconds_count") == events_seen - n
    assert grew("pacer_lag_seconds_count") > 0
    assert grew("pacer_heartbeats_total") == 0


def test_health_and_readiness() -> None:
    with serve(ScriptedUpstream().app) as upstream, serve(create_proxy(upstream, Pacer)) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
    with serve(create_proxy("http://127.0.0.1:9", Pacer)) as url:  # nothing listens on port 9
        assert httpx.get(f"{url}/healthz").status_code == 200
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "upstream unreachable"
        failed = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "stream": True})
        assert failed.status_code == 502
        assert _scrape(url)["pacer_upstream_errors_total{type=upstream_unreachable}"] == 1
