"""Several upstreams (issue 41, before the first byte): each upstream's circuit breaker and
the choice among them (``pacer.upstreams``, driven directly on a clock the test moves),
the settings (``--upstream`` repeated, ``PACER_UPSTREAM`` as a list), and failover through
the proxy in front of fake upstreams on loopback for the protocol's edge cases (a 4xx is
never retried, a 429's ``Retry-After``, 5xx, first-byte timeouts, the retry budget, a
stream cut short). The same with real processes: tests/test_upstreams_processes.py."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pacer import Pacer
from pacer.config import (
    ContinuationConfig,
    ProxyConfig,
    ProxyTimeouts,
    ServerConfig,
    UpstreamsConfig,
    with_options,
)
from pacer.proxy import create_proxy
from pacer.sse import SSEDecoder
from pacer.upstreams import BreakerState, Failure, UpstreamPool, parse_upstream, retry_after_seconds

from .servers import TEXT, StatusUpstream, serve
from .test_operations import _scrape


class Clock:
    """Seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pool(n: int = 2, **options: Any) -> tuple[UpstreamPool, Clock]:
    clock = Clock()
    pool = UpstreamPool([(None, f"http://h{i}:1") for i in range(n)], clock=clock, **options)
    return pool, clock


# -- the breaker and the choice, sans I/O ---------------------------------------------------------


def test_failures_in_a_row_open_the_breaker_and_each_reopening_doubles_the_backoff() -> None:
    pool, clock = _pool(failures=3, backoff=1.0, max_backoff=3.0)
    a = pool.upstreams[0]
    pool.report(a, Failure.SERVER_ERROR)
    pool.report(a, None)  # a success in between: the count starts again
    pool.report(a, Failure.SERVER_ERROR)
    pool.report(a, Failure.TIMEOUT)
    assert pool.state(a) is BreakerState.CLOSED
    pool.report(a, Failure.TRUNCATED)  # the third in a row
    assert pool.state(a) is BreakerState.OPEN and pool.healthy() == [pool.upstreams[1]]
    for backoff in (1.0, 2.0, 3.0, 3.0):  # doubled, up to max_backoff
        assert pool.next_trial() == backoff
        clock.now += backoff
        assert pool.state(a) is BreakerState.HALF_OPEN and a in pool.due()
        pool.report(a, Failure.SERVER_ERROR)  # the trial fails: open again, for longer
        assert pool.state(a) is BreakerState.OPEN and a not in pool.due()
    for _ in range(5000):  # requests sent to it anyway while it is open: no further doubling
        pool.report(a, Failure.UNREACHABLE)
    assert a.breaker.opened == 5 and pool.next_trial() == 3.0
    clock.now += 3.0
    pool.report(a, None)  # the trial answers: closed, the backoff back to its first
    assert pool.state(a) is BreakerState.CLOSED and a.breaker.opened == 0


def test_an_unreachable_upstream_opens_at_once_and_a_429_for_its_retry_after() -> None:
    pool, clock = _pool(failures=3, backoff=1.0)
    a, b = pool.upstreams
    pool.report(a, Failure.UNREACHABLE)
    assert pool.state(a) is BreakerState.OPEN and pool.next_trial() == 1.0
    pool.report(b, Failure.RATE_LIMITED, retry_after=120.0)
    assert pool.state(b) is BreakerState.OPEN and b.breaker.until == clock.now + 120.0
    clock.now += 119.0
    assert pool.state(b) is BreakerState.OPEN
    clock.now += 1.0
    assert pool.state(b) is BreakerState.HALF_OPEN
    pool.report(b, Failure.RATE_LIMITED, retry_after=1e9)  # no reply takes an upstream out for good
    assert b.breaker.until == clock.now + 3600.0


def test_round_robin_takes_the_healthy_in_turn_and_least_streams_the_least_busy() -> None:
    pool, _ = _pool(3)
    a, b, c = pool.upstreams
    assert [pool.pick() for _ in range(4)] == [a, b, c, a]
    pool.report(b, Failure.UNREACHABLE)
    assert [pool.pick() for _ in range(3)] == [c, a, c]
    assert pool.pick(exclude=[a, c]) is b  # only b is left: tried though open
    assert pool.pick(exclude=[a, b, c]) is None
    busy, _ = _pool(3, balance="least_streams")
    a, b, c = busy.upstreams
    busy.opened(a)
    busy.opened(b)
    assert busy.pick() is c
    busy.opened(c)
    busy.closed(b)
    assert busy.pick() is b


def test_with_every_upstream_open_the_one_that_half_opens_first_is_still_tried() -> None:
    pool, clock = _pool(2, backoff=5.0)
    a, b = pool.upstreams
    pool.report(b, Failure.UNREACHABLE)
    clock.now += 1.0
    pool.report(a, Failure.UNREACHABLE)
    assert pool.healthy() == [] and pool.pick() is b
    unprobed, clock = _pool(2, probing=False, backoff=5.0)
    a, b = unprobed.upstreams
    unprobed.report(a, Failure.UNREACHABLE)
    unprobed.report(b, Failure.UNREACHABLE)
    clock.now += 5.0  # both half-open: with no probe, requests are the trials
    assert unprobed.pick() is a and unprobed.pick() is b


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert retry_after_seconds("30") == 30.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 60) == 60.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 60) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("-1") is None


def test_a_pool_refuses_what_it_cannot_use() -> None:
    with pytest.raises(ValueError, match="at least one upstream"):
        UpstreamPool([])
    with pytest.raises(ValueError, match="balance must be one of"):
        UpstreamPool([(None, "http://h")], balance="random")
    with pytest.raises(ValueError, match="names must differ"):
        UpstreamPool([("a", "http://h"), ("a", "http://i")])


# -- settings -------------------------------------------------------------------------------------


def _server(argv: list[str]) -> ServerConfig:
    from pacer.cli import _parser, proxy_settings

    args = _parser().parse_args(["proxy", *argv])
    return with_options(ServerConfig, {"upstream": args.upstream, **proxy_settings(args)})  # type: ignore[no-any-return]


def test_upstreams_are_repeated_flags_or_one_list_and_the_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    given = ["--upstream", "http://a:1/v1, gpu=http://b:2", "--upstream", "http://c:3"]
    assert _server(given).upstream == ("http://a:1/v1", "gpu=http://b:2", "http://c:3")
    monkeypatch.setenv("PACER_UPSTREAM", "http://a:1\n http://b:2,http://c:3")
    assert _server([]).upstream == ("http://a:1", "http://b:2", "http://c:3")
    assert _server(["--upstream", "http://d:4"]).upstream == ("http://d:4",)  # a flag wins
    assert ServerConfig(upstream="http://a:1 http://b:2").upstream == ("http://a:1", "http://b:2")
    assert parse_upstream("gpu-1=http://b:2/v1") == ("gpu-1", "http://b:2/v1")
    assert parse_upstream("http://b:2/?x=1") == (None, "http://b:2/?x=1")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--upstream", "http://a:1, b:2"], "--upstream must be an http(s) URL with a host"),
        (["--upstream", "x=http://a:1,x=http://b:2"], "--upstream must give each upstream a different NAME="),
        (["--upstream", "http://a:1", "--retries", "-1"], "--retries must be >= 0"),
        (["--upstream", "http://a:1", "--balance", "random"], "invalid choice: 'random'"),
        (["--upstream", "http://a:1", "--probe-path", "models"], "--probe-path must be a path such as"),
    ],
)
def test_bad_upstream_settings_are_usage_errors_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pacer.cli import main

    with pytest.raises(SystemExit):
        main(["proxy", *argv])
    assert message in capsys.readouterr().err


def test_bad_upstream_settings_in_code_name_the_field() -> None:
    with pytest.raises(ValueError, match="UpstreamsConfig: breaker_max_backoff must be >= breaker_backoff"):
        UpstreamsConfig(breaker_backoff=10, breaker_max_backoff=1)
    with pytest.raises(ValueError, match="ServerConfig: upstream must name at least one upstream"):
        ServerConfig(upstream="  ")
    with pytest.raises(ValueError, match="create_proxy: upstream must be an http"):
        create_proxy(["http://a:1", "ftp://b"])
    with pytest.raises(TypeError, match="create_proxy: upstream must be URLs"):
        create_proxy([b"http://a:1"])  # type: ignore[list-item]


# -- failover through the proxy, fake upstreams ---------------------------------------------------


def _inside(app: Any) -> Any:
    """The app's ``_Proxy`` (its pool, its settings)."""
    return next(r.endpoint.func.__self__ for r in app.routes if hasattr(r.endpoint, "func"))


@contextlib.contextmanager
def _proxy(
    *fakes: StatusUpstream, timeouts: ProxyTimeouts | None = None, **upstreams: Any
) -> Iterator[tuple[str, Any]]:
    """The proxy (in this process) in front of ``fakes``, named a, b, c, ..., without
    active probes unless asked, a chat stream cut mid-answer ending with its error (no
    continuation: issue 41's second half, tests/test_continuation.py); yields its URL and
    its ``_Proxy``."""
    upstreams.setdefault("probe_interval", None)
    with contextlib.ExitStack() as stack:
        urls = [f"{'abcdef'[i]}={stack.enter_context(serve(f.app))}" for i, f in enumerate(fakes)]
        config = ProxyConfig(
            pipeline=lambda: Pacer(cps=5000),
            upstreams=UpstreamsConfig(**upstreams),
            timeouts=timeouts or ProxyTimeouts(),
            continuation=ContinuationConfig(continue_chat="error"),  # these fakes cannot continue an answer
        )
        app = create_proxy(urls, config)
        yield stack.enter_context(serve(app)), _inside(app)


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _content(response: httpx.Response) -> str:
    """The text of a chat answer, streamed or not."""
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        return str(response.json()["choices"][0]["message"]["content"])
    text = []
    for event in SSEDecoder().feed(response.content):
        if event.data != "[DONE]" and event.event == "message":
            text += [c["delta"].get("content") or "" for c in json.loads(event.data)["choices"]]
    return "".join(text)


def _ask(url: str, stream: bool = True) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": stream}, timeout=30)


def test_a_4xx_is_the_answer_never_retried_on_the_next_upstream() -> None:
    bad, good = StatusUpstream(400), StatusUpstream()
    with _proxy(bad, good) as (url, _):
        for stream in (True, False):
            response = _ask(url, stream)
            assert response.status_code == 400
            assert response.json()["error"]["message"] == "status 400 from here"  # as it came
            good.requests, bad.requests = 0, 0
            _ask(url, stream)  # round robin: the next request goes to the good one
        metrics = _scrape(url)
    assert sum(v for k, v in metrics.items() if k.startswith("pacer_upstream_failovers_total")) == 0
    assert metrics["pacer_upstream_healthy{upstream=a}"] == 1  # a 400 is an answer


@pytest.mark.parametrize("stream", [True, False])
def test_a_5xx_moves_the_request_to_the_next_upstream(stream: bool) -> None:
    down, good = StatusUpstream(503), StatusUpstream()
    with _proxy(down, good) as (url, _):
        response = _ask(url, stream)
        assert response.status_code == 200 and _content(response) == TEXT
        assert (down.requests, good.requests) == (1, 1)
        assert _scrape(url)["pacer_upstream_failovers_total{reason=server_error}"] == 1


def test_a_429_moves_the_request_on_and_keeps_that_upstream_out_for_its_retry_after() -> None:
    limited, good = StatusUpstream(429, {"Retry-After": "120"}), StatusUpstream()
    with _proxy(limited, good) as (url, proxy):
        for _ in range(4):
            response = _ask(url)
            assert response.status_code == 200 and _content(response) == TEXT
        assert (limited.requests, good.requests) == (1, 4)
        metrics = _scrape(url)
        a = proxy.pool.upstreams[0]
        assert a.breaker.until - time.monotonic() > 100  # its Retry-After, not the 1 s backoff
    assert metrics["pacer_upstream_failovers_total{reason=rate_limited}"] == 1
    assert metrics["pacer_upstream_healthy{upstream=a}"] == 0
    assert metrics["pacer_upstream_healthy{upstream=b}"] == 1


def test_no_response_headers_within_the_first_byte_timeout_moves_the_request_on() -> None:
    slow, good = StatusUpstream(), StatusUpstream()
    slow.delay = 30.0
    with _proxy(slow, good, timeouts=ProxyTimeouts(first_byte=0.3)) as (url, _):
        response = _ask(url)
        assert response.status_code == 200 and _content(response) == TEXT
        assert _scrape(url)["pacer_upstream_failovers_total{reason=timeout}"] == 1


def _dead_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_with_the_retries_spent_the_last_answer_is_relayed_or_a_clear_error_names_each_try() -> None:
    fakes = [StatusUpstream(503), StatusUpstream(502), StatusUpstream(503)]
    with _proxy(*fakes, retries=1) as (url, _):
        response = _ask(url)
        assert response.status_code == 502  # the second upstream's answer, as it came
        assert response.json()["error"]["message"] == "status 502 from here"
        assert [f.requests for f in fakes] == [1, 1, 0]
    app = create_proxy([_dead_url(), _dead_url(), _dead_url()], Pacer, retries=1, probe_interval=None)
    with serve(app) as url:
        response = _ask(url)
        metrics = _scrape(url)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "upstream_error"
    assert error["message"].startswith("no upstream answered after 2 tries (retries spent: 1): upstream 0: ")
    assert "; upstream 1: upstream unreachable: " in error["message"] and "127.0.0.1" not in error["message"]
    assert metrics["pacer_upstream_failovers_total{reason=unreachable}"] == 1


def test_a_stream_cut_short_counts_against_its_upstream() -> None:
    cut, good = StatusUpstream(), StatusUpstream()
    cut.cut = True
    with _proxy(cut, good, breaker_failures=1) as (url, _):
        response = _ask(url)
        events = SSEDecoder().feed(response.content)
        assert events[-1].event == "error" and "upstream_truncated" in events[-1].data
        assert _scrape(url)["pacer_upstream_healthy{upstream=a}"] == 0
        assert _content(_ask(url)) == TEXT and good.requests == 1


def test_least_streams_sends_requests_away_from_the_busy_upstream() -> None:
    busy, idle = StatusUpstream(), StatusUpstream()
    busy.hold = threading.Event()
    with (
        _proxy(busy, idle, balance="least_streams") as (url, proxy),
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{url}/v1/chat/completions", json={**CHAT, "stream": True}) as held,
    ):
        try:
            pieces = held.iter_bytes()  # kept: a generator dropped would close the response
            next(pieces)  # the stream to the first upstream is open
            for _ in range(3):
                assert _content(_ask(url)) == TEXT
                _settled(proxy.pool.upstreams[1])
            assert (busy.requests, idle.requests) == (1, 3)
        finally:
            busy.hold.set()
        assert b"[DONE]" in b"".join(pieces)


def _settled(upstream: Any) -> None:
    """Wait (a controlled step) until ``upstream`` has no open request: a client can read
    a stream's end before the proxy's producer has closed its upstream response."""
    deadline = time.monotonic() + 10
    while upstream.streams and time.monotonic() < deadline:
        time.sleep(0.005)
    assert upstream.streams == 0


def test_ready_while_one_upstream_is_and_the_stream_end_names_who_served(caplog: Any) -> None:
    good = StatusUpstream()
    config = ProxyConfig(pipeline=lambda: Pacer(cps=5000), upstreams=UpstreamsConfig(probe_interval=None))
    with serve(good.app) as good_url:
        with serve(create_proxy([f"dead={_dead_url()}", f"live={good_url}"], config)) as url:
            ready = httpx.get(f"{url}/readyz")
            assert ready.status_code == 200
            assert ready.json()["upstreams"] == {"dead": "open", "live": "closed"}
            caplog.set_level(logging.INFO, logger="pacer.proxy")
            assert _content(_ask(url)) == TEXT
            deadline = time.monotonic() + 10  # the line comes once the stream's producer ends
            while not _ends(caplog) and time.monotonic() < deadline:
                time.sleep(0.01)
        with serve(create_proxy([_dead_url(), _dead_url()], config)) as url:
            ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "upstream unreachable"
    error = ready.json()["error"]  # the standard error object, beside the status fields
    assert error["type"] == "upstream_unreachable" and error["message"].startswith("upstream 0: ")
    ends = _ends(caplog)
    assert len(ends) == 1 and "upstreams=live failovers=0" in ends[0]


def _ends(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if "stream ended" in r.getMessage()]
