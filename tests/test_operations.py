"""What an operator sees: the proxy's Prometheus series agree with what the clients
counted, and its health and readiness endpoints tell the truth."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import pacer
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
        assert ready.json()["error"]["type"] == "upstream_unreachable"
        assert ready.json()["error"]["message"].startswith("upstream 0: ")
        failed = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "stream": True})
        assert failed.status_code == 502
        assert _scrape(url)["pacer_upstream_errors_total{type=upstream_unreachable}"] == 1


# -- every setting, by flag and by environment variable -----------------------------------------

FLAGS = {  # flag -> (value given, where it must arrive)
    "--cps": ("77", lambda p, pacer, packets: pacer.rate == 77.0),
    "--unit": ("word", lambda p, pacer, packets: pacer.unit == "word"),
    "--max-lag": ("1.5", lambda p, pacer, packets: pacer.max_lag == 1.5),
    "--sentence-pause": ("0.3", lambda p, pacer, packets: pacer.sentence_pause == 0.3),
    "--clause-pause": ("0.05", lambda p, pacer, packets: pacer.clause_pause == 0.05),
    "--max-bytes": ("128", lambda p, pacer, packets: packets is not None and packets.max_bytes == 128),
    "--heartbeat": ("7", lambda p, pacer, packets: p.stream_options["heartbeat"] == 7.0),
    "--send-timeout": ("9", lambda p, pacer, packets: p.stream_options["send_timeout"] == 9.0),
    "--connect-timeout": ("3", lambda p, pacer, packets: p.timeouts.connect == 3.0),
    "--first-byte-timeout": ("4", lambda p, pacer, packets: p.timeouts.first_byte == 4.0),
    "--idle-timeout": ("0", lambda p, pacer, packets: p.timeouts.idle is None),
    "--total-timeout": ("6", lambda p, pacer, packets: p.timeouts.total == 6.0),
    "--max-body": ("1000", lambda p, pacer, packets: p.max_body == 1000),
    "--max-line": ("2048", lambda p, pacer, packets: p.stream_options["max_line"] == 2048),
    "--no-compress": (None, lambda p, pacer, packets: p.stream_options["compress"] is False),
    "--guard": ("tests.guards:no_breathing", lambda p, pacer, packets: "Guard" in repr(p.pipeline_factory())),
    "--orphan-timeout": ("2.5", lambda p, pacer, packets: p.streams.orphan_timeout == 2.5),
    "--retention": ("30", lambda p, pacer, packets: p.streams.log.retention == 30.0),
    "--resume": ("never", lambda p, pacer, packets: p.streams is None),
    "--replays-per-stream": ("3", lambda p, pacer, packets: p.stream_options["replays_per_stream"] == 3),
    "--replays-per-client": ("0", lambda p, pacer, packets: p.stream_options["replays_per_client"] == 0),
    "--streams-per-client": ("3", lambda p, pacer, packets: p.stream_options["streams_per_client"] == 3),
    "--cors-origin": (
        "https://a.example,https://b.example",
        lambda p, pacer, packets: len(p.cors_origins) == 2,
    ),
    "--continue-chat": (
        "regenerate",
        lambda p, pacer, packets: _continuation(p).continue_chat == "regenerate",
    ),
    "--continue-completions": (
        "error",
        lambda p, pacer, packets: _continuation(p).continue_completions == "error",
    ),
    "--continue-messages": ("error", lambda p, pacer, packets: _continuation(p).continue_messages == "error"),
    "--continue-responses": (
        "regenerate",
        lambda p, pacer, packets: _continuation(p).continue_responses == "regenerate",
    ),
    "--continue-attempts": ("7", lambda p, pacer, packets: _continuation(p).continue_attempts == 7),
    "--retries": ("5", lambda p, pacer, packets: p.upstreams.retries == 5),
    "--balance": ("least_streams", lambda p, pacer, packets: p.pool.balance == "least_streams"),
    "--probe-interval": (
        "0",
        lambda p, pacer, packets: p.upstreams.probe_interval is None,
    ),
    "--probe-path": ("/health", lambda p, pacer, packets: p.upstreams.probe_path == "/health"),
    "--breaker-failures": ("7", lambda p, pacer, packets: p.pool.upstreams[0].breaker.failures == 7),
    "--breaker-backoff": ("0.25", lambda p, pacer, packets: p.pool.upstreams[0].breaker.backoff == 0.25),
    "--breaker-max-backoff": ("9", lambda p, pacer, packets: p.pool.upstreams[0].breaker.max_backoff == 9.0),
    "--redis": (
        "redis://127.0.0.1:9/3",
        lambda p, pacer, packets: getattr(p.streams.log, "url", "") == "redis://127.0.0.1:9/3",
    ),
    "--tick": ("0.02", lambda p, pacer, packets: pacer.tick == 0.02),
    "--max-pause": ("7", lambda p, pacer, packets: p.streams.max_pause == 7.0),
    "--remember-pace": (
        "60",
        lambda p, pacer, packets: p.streams.paces is not None and p.streams.paces.ttl == 60.0,
    ),
    # What the proxy does with it while it serves: test_config's test of the collector.
    "--gc-threshold": ("5000", lambda p, pacer, packets: p.stream_options["gc_threshold"] == 5000),
}


def _continuation(proxy: Any) -> Any:
    return proxy.stream_options["continuation"]


# Checked by running the proxy (test_the_cli_proxy_takes_its_process_settings_from_the_environment;
# the connection and shutdown flags in tests/test_proxy_bounds.py).
PROCESS_FLAGS = {"--upstream", "--host", "--port", "--workers", "--log-level", "--log-format"}
# Checked with a guard, whose pool they set (tests/test_guard_pool.py).
POOL_FLAGS = {"--check-workers", "--checks-per-stream"}
PROCESS_FLAGS |= {"--header-timeout", "--connection-limit", "--shutdown-grace", "--forwarded-allow-ips"}
# Checked with --remember-pace, by two proxy processes (tests/test_stream_controls.py).
PACE_FLAGS = {"--user-header"}


def _built(argv: list[str]) -> Any:
    """The proxy (its _Proxy) that ``pacer proxy ARGV`` would serve."""
    from pacer.cli import _parser, proxy_settings
    from pacer.proxy import app_from_settings, settings_values

    args = _parser().parse_args(["proxy", "--upstream", "http://127.0.0.1:9/v1", *argv])
    settings = proxy_settings(args)
    for name in ("host", "port", "workers"):
        settings.pop(name)
    app = app_from_settings(settings_values(args.upstream, **settings))
    return next(r.endpoint.func.__self__ for r in app.routes if hasattr(r.endpoint, "func"))


def _stages(proxy: Any) -> tuple[Any, Any]:
    from pacer import Packetizer

    made = proxy.pipeline_factory()
    stages = made.stages if isinstance(made, pacer.Pipeline) else (made,)
    pacer_stage = next(s for s in stages if isinstance(s, pacer.Pacer))
    packets = next((s for s in stages if isinstance(s, Packetizer)), None)
    return pacer_stage, packets


@pytest.mark.parametrize("flag", list(FLAGS))
def test_every_proxy_flag_reaches_the_pipeline_or_the_transport(flag: str) -> None:
    value, arrived = FLAGS[flag]
    proxy = _built([flag] if value is None else [flag, value])
    assert arrived(proxy, *_stages(proxy))
    default = _built([])
    assert not arrived(default, *_stages(default)), f"{flag}'s test cannot tell it from the default"


@pytest.mark.parametrize("flag", list(FLAGS))
def test_every_proxy_flag_is_also_an_environment_variable(flag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    value, arrived = FLAGS[flag]
    monkeypatch.setenv("PACER_" + flag[2:].upper().replace("-", "_"), "1" if value is None else value)
    proxy = _built([])
    assert arrived(proxy, *_stages(proxy))


def test_no_flag_goes_untested() -> None:
    from pacer.cli import _parser

    proxy_parser = _parser()._subparsers._group_actions[0].choices["proxy"]  # type: ignore[union-attr]
    flags = {a.option_strings[-1] for a in proxy_parser._actions if a.option_strings and a.dest != "help"}
    assert flags == set(FLAGS) | PROCESS_FLAGS | POOL_FLAGS | PACE_FLAGS


@pytest.mark.parametrize(
    ("argv", "environment", "message"),
    [
        ([], {}, "--upstream (or PACER_UPSTREAM) is required"),
        (["--max-lag", "0"], {}, "--max-lag must be > 0 seconds"),
        (["--cps", "-1", "--max-line", "0"], {}, "--cps must be > 0; --max-line must be > 0"),
        ([], {"PACER_CPS": "fast"}, "PACER_CPS='fast' is not a valid --cps"),
        ([], {"PACER_UNIT": "letter"}, "PACER_UNIT='letter' is not a valid --unit"),
        ([], {"PACER_NO_COMPRESS": "maybe"}, "PACER_NO_COMPRESS='maybe' is not a valid --no-compress"),
        (["--log-format", "xml"], {}, "invalid choice: 'xml'"),
    ],
)
def test_bad_settings_are_usage_errors_naming_the_flag_or_variable(
    argv: list[str], environment: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from pacer.cli import main

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    upstream = [] if not argv and not environment else ["--upstream", "http://127.0.0.1:9"]
    with pytest.raises(SystemExit) as exit_:
        main(["proxy", *upstream, *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_the_cli_proxy_takes_its_process_settings_from_the_environment(redis: Any) -> None:
    import json

    from .servers import cli_proxy

    with serve(ScriptedUpstream(speed=20.0).app) as upstream:
        environment = {"PACER_UPSTREAM": f"{upstream}/v1", "PACER_WORKERS": "2", "PACER_LOG_FORMAT": "json"}
        # Several workers keep resumable streams in Redis only (a usage error otherwise).
        environment["PACER_REDIS"] = redis.url
        with cli_proxy("--cps", "5000", env=environment) as (url, process):
            stream = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "stream": True})
            events = SSEDecoder().feed(stream.content)
            assert events[-1].data == "[DONE]" and events[-1].id == str(len(events))
    lines = [json.loads(line) for line in process.log.splitlines() if line.startswith("{")]
    assert sum("Started server process" in line["message"] for line in lines) == 2  # two workers
    ended = [line for line in lines if line["message"].startswith("pacer proxy: stream ended")]
    assert ended and ended[0]["outcome"] == "done" and ended[0]["chars"] > 100 and ended[0]["level"] == "info"


@pytest.mark.parametrize("resume", ["never", "request"])
def test_upstream_error_types_never_become_label_values(resume: str) -> None:
    """An upstream's own error ``type`` is the peer's to choose: as a label value it would
    grow the series without bound (300 values after 300 requests). Counted by pacer's own
    kind of failure instead, once per stream, with or without a stream log (the
    resumable mode counted none)."""
    import json

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from pacer.prometheus import FAILURE_KINDS

    async def chat(request: Request) -> StreamingResponse:
        kind = (await request.json())["user"]

        async def events() -> Any:
            chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}]}
            chunk["choices"][0]["delta"] = {"content": "Hello there. "}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield f"data: {json.dumps({'error': {'message': 'boom', 'type': kind}})}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    upstream_app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with (
        serve(upstream_app) as upstream,
        serve(create_proxy(upstream, lambda: Pacer(cps=3000), resume=resume)) as url,
    ):
        for n in range(5):
            body = {"model": "m", "stream": True, "messages": [], "user": f"peer-chosen-{n}"}
            events = SSEDecoder().feed(httpx.post(f"{url}/v1/chat/completions", json=body).content)
            assert events[-1].event == "error"
        samples = _scrape(url)
    labels = {k for k in samples if k.startswith("pacer_upstream_errors_total{")}
    assert labels and all(
        k.removeprefix("pacer_upstream_errors_total{type=").rstrip("}") in FAILURE_KINDS for k in labels
    )
    assert sum(samples[k] for k in labels) == 5


def test_readiness_says_when_the_stream_log_is_unreachable(redis: Any) -> None:
    """With --redis every stream needs the log: /readyz is 503 while Redis is down."""
    with (
        serve(ScriptedUpstream().app) as upstream,
        serve(create_proxy(upstream, Pacer, redis=redis.url)) as url,
    ):
        assert httpx.get(f"{url}/readyz").status_code == 200
        redis.stop()
        try:
            ready = httpx.get(f"{url}/readyz", timeout=10)
            assert ready.status_code == 503 and ready.json()["status"] == "stream log unreachable"
            error = ready.json()["error"]
            assert error["type"] == "stream_log_unreachable" and error["message"]
            assert httpx.get(f"{url}/healthz").status_code == 200  # the process itself answers
        finally:
            redis.start()


def test_a_relayed_answer_has_one_date_and_one_server_header() -> None:
    with serve(ScriptedUpstream().app) as upstream, serve(create_proxy(upstream, Pacer)) as url:
        relayed = httpx.get(f"{url}/v1/models")  # relayed as the upstream answered it (a 404 here)
    assert relayed.status_code == 404 and relayed.headers["content-type"].startswith("text/plain")
    assert len(relayed.headers.get_list("date")) == 1 and len(relayed.headers.get_list("server")) == 1


@pytest.mark.parametrize(
    ("accepted", "asked"),
    [
        (None, "gzip, deflate"),
        ("identity", "identity"),
        ("gzip;q=0, deflate", "deflate"),
        ("br, zstd", "identity"),
        ("*", "gzip, deflate"),
        ("gzip; q=0.5, identity", "gzip"),
    ],
)
def test_a_paced_route_asks_the_upstream_only_for_codings_its_client_accepts(
    accepted: str | None, asked: str
) -> None:
    from pacer.proxy import decodable_encodings

    assert decodable_encodings(accepted) == asked


def test_an_upstream_error_body_reaches_an_identity_client_uncompressed() -> None:
    from starlette.applications import Starlette
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def refuse(request: Any) -> JSONResponse:
        return JSONResponse({"error": {"message": "no " * 400, "type": "invalid_request_error"}}, 400)

    upstream_app = Starlette(routes=[Route("/v1/chat/completions", refuse, methods=["POST"])])
    upstream_app.add_middleware(GZipMiddleware, minimum_size=10)  # compresses for whoever asks
    with serve(upstream_app) as upstream, serve(create_proxy(upstream, Pacer)) as url:
        answer = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "m", "stream": True, "messages": []},
            headers={"accept-encoding": "identity"},
        )
    assert answer.status_code == 400 and "content-encoding" not in answer.headers
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_the_stream_end_line_names_the_request_and_counts_every_choice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="pacer.proxy")
    with (
        serve(ScriptedUpstream(speed=20.0).app) as upstream,
        serve(create_proxy(upstream, lambda: Pacer(cps=3000))) as url,
    ):
        response = httpx.post(
            f"{url}/v1/chat/completions", json={"model": "m", "stream": True, "messages": []}
        )
    from pacer.formats import Transcript

    transcript = Transcript("chat.completions")
    transcript.feed(response.content)
    sent = transcript.text + transcript.reasoning  # every text lane the pacer paced
    ended = [r for r in caplog.records if r.getMessage().startswith("pacer proxy: stream ended")]
    assert ended, "no stream-end line"
    figures = ended[-1].stream  # type: ignore[attr-defined]
    assert figures["route"] == "/v1/chat/completions" and figures["model"] == "m"
    assert figures["outcome"] == "done" and figures["chars"] == len(sent) > 0
    assert figures["first_output_s"] is not None and figures["first_output_s"] > 0
