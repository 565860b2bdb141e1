"""Several upstreams with real processes (issue 41, before the first byte): ``pacer proxy
--upstream A --upstream B`` in its own process in front of two ``pacer.testing.model_server``
processes (a real tiny model, greedy, so every answer to one request is the same text). One
is killed: every request still succeeds on the other; it is restarted: the probe closes its
breaker and it serves again. A 4xx is not retried. A 429's ``Retry-After`` keeps its
upstream out, and with the retries spent the answer is the clear error: the real proxy
process in front of fakes and of ports where nothing listens."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover
    if os.environ.get("CI"):
        raise
    pytest.skip(
        "the model server needs torch and transformers: pip install 'pacer-llm[hf]'", allow_module_level=True
    )

import httpx

from pacer.sse import SSEDecoder
from pacer.testing.model_server import ModelProcess

from .servers import StatusUpstream, cli_proxy, serve

QUESTION = {"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 40}
FAST = ["--cps", "5000", "--max-lag", "0.05", "--probe-interval", "0.1", "--breaker-backoff", "0.1"]
FAST += ["--breaker-max-backoff", "0.2", "--connect-timeout", "2"]


@pytest.fixture(scope="module")
def models() -> Iterator[tuple[ModelProcess, ModelProcess]]:
    a, b = ModelProcess("--token-delay", "0"), ModelProcess("--token-delay", "0")
    a.launch()
    b.launch()
    try:
        a.wait()
        b.wait()
        yield a, b
    finally:
        a.kill()
        b.kill()


def _answer(url: str, stream: bool) -> tuple[int, str]:
    """The status and the text of one chat answer through the proxy at ``url``."""
    response = httpx.post(f"{url}/v1/chat/completions", json={**QUESTION, "stream": stream}, timeout=60)
    if response.status_code != 200:
        return response.status_code, response.text
    if not stream:
        return 200, response.json()["choices"][0]["message"]["content"]
    text = []
    for event in SSEDecoder().feed(response.content):
        assert event.event == "message", event.data
        if event.data != "[DONE]":
            text += [c["delta"].get("content") or "" for c in json.loads(event.data)["choices"]]
    return 200, "".join(text)


def _metrics(url: str) -> dict[str, float]:
    from .test_operations import _scrape

    return _scrape(url)


def _until(check: Any, what: str) -> None:
    """Wait, in controlled steps, until ``check()`` holds (at most 60 s)."""
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _states(url: str) -> dict[str, str]:
    return httpx.get(f"{url}/readyz", timeout=10).json()["upstreams"]  # type: ignore[no-any-return]


def test_one_upstream_killed_requests_succeed_on_the_other_and_it_comes_back(
    models: tuple[ModelProcess, ModelProcess],
) -> None:
    a, b = models
    with cli_proxy("--upstream", f"a={a.url}/v1", "--upstream", f"b={b.url}", *FAST) as (url, _):
        expected = _answer(url, stream=False)
        assert expected[0] == 200 and expected[1]
        assert _answer(url, stream=True) == expected
        a.kill()
        for i in range(6):  # round robin would send every other one to the dead upstream
            assert _answer(url, stream=i % 2 == 0) == expected
        assert _metrics(url)["pacer_upstream_healthy{upstream=a}"] == 0
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["upstreams"]["b"] == "closed"
        a.restart()
        _until(lambda: _states(url)["a"] == "closed", "the probe closes the restarted upstream's breaker")
        b.kill()  # now only the restarted one can answer
        for i in range(4):
            assert _answer(url, stream=i % 2 == 0) == expected
        b.restart()
        _until(lambda: _states(url)["b"] == "closed", "the probe closes b's breaker")
        assert _metrics(url)["pacer_upstream_healthy{upstream=a}"] == 1


def test_a_4xx_from_a_real_upstream_is_not_retried(models: tuple[ModelProcess, ModelProcess]) -> None:
    a, b = models
    with cli_proxy("--upstream", f"{a.url} {b.url}", *FAST) as (url, _):
        for stream in (True, False):
            body = {**QUESTION, "n": 99, "stream": stream}  # the model server refuses n > 16: a 400
            response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
            assert (
                response.status_code == 400 and "n must be an integer" in response.json()["error"]["message"]
            )
        metrics = _metrics(url)
    assert sum(v for k, v in metrics.items() if k.startswith("pacer_upstream_failovers_total")) == 0
    assert metrics["pacer_upstream_healthy{upstream=0}"] == metrics["pacer_upstream_healthy{upstream=1}"] == 1


def test_a_429_with_retry_after_moves_the_request_on_and_keeps_the_upstream_out() -> None:
    limited, good = StatusUpstream(429, {"Retry-After": "600"}), StatusUpstream()
    with (
        serve(limited.app) as limited_url,
        serve(good.app) as good_url,
        cli_proxy("--upstream", f"{limited_url},{good_url}", "--cps", "5000") as (url, _),
    ):
        for _ in range(4):
            response = httpx.post(f"{url}/v1/chat/completions", json={**QUESTION, "stream": True}, timeout=60)
            assert response.status_code == 200 and b"[DONE]" in response.content
        assert (limited.requests, good.requests) == (1, 4)
        metrics = _metrics(url)
        assert _states(url) == {"0": "open", "1": "closed"}  # the probe leaves it out too
    assert metrics["pacer_upstream_failovers_total{reason=rate_limited}"] == 1


def _dead() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://user:secret@127.0.0.1:{s.getsockname()[1]}/v1"


def test_with_the_retries_spent_the_answer_is_the_clear_error() -> None:
    upstreams = f"{_dead()} {_dead()} {_dead()}"
    with cli_proxy("--upstream", upstreams, "--retries", "1", "--probe-interval", "0") as (url, process):
        response = httpx.post(f"{url}/v1/chat/completions", json={**QUESTION, "stream": True}, timeout=60)
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["type"] == "upstream_error"
        assert re.fullmatch(
            r"no upstream answered after 2 tries \(retries spent: 1\): "
            r"upstream \d: upstream unreachable: .+; upstream \d: upstream unreachable: .+",
            error["message"],
        )
        assert "secret" not in error["message"] and "127.0.0.1" not in error["message"]
    assert "secret" not in process.log
