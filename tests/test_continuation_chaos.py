"""Issue #41, continuation after text was shown, against real processes: the proxy
(``pacer proxy``) in front of two servers of the tiny real model
(``pacer.testing.model_server``), 200 concurrent streams from 200 clients; one upstream
killed at a random point mid-answer and restarted, then the other killed. Every stream
must end with exactly the uninterrupted greedy answer (no character missing or repeated
at a seam), ``[DONE]`` once, and usage summed (``completion_tokens`` is the answer's
length: one token a character)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("torch", reason="the tiny model needs torch: pip install 'pacer-llm[hf]'")
pytest.importorskip("transformers", reason="the tiny model needs transformers: pip install 'pacer-llm[hf]'")

import httpx

from pacer.sse import SSEDecoder
from pacer.testing.model_server import ModelProcess

from .servers import cli_proxy

pytestmark = pytest.mark.timeout(300)

STREAMS = 200
QUESTIONS = [f"Question {i}: what is pacing?" for i in range(20)]


@pytest.fixture(scope="module")
def models() -> Iterator[tuple[ModelProcess, ModelProcess]]:
    options = ("--token-delay", "0.04", "--answer-chars", "50")
    with ModelProcess(*options) as a, ModelProcess(*options) as b:
        yield a, b


def _body(question: str, stream: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": question}], "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _answers(url: str) -> dict[str, str]:
    """The uninterrupted greedy answer of each question."""
    out = {}
    for question in QUESTIONS:
        answer = httpx.post(f"{url}/v1/chat/completions", json=_body(question, False), timeout=60).json()
        out[question] = answer["choices"][0]["message"]["content"]
    return out


async def _read(
    client: httpx.AsyncClient, url: str, question: str, user: int, started: list[int]
) -> dict[str, Any]:
    raw = b""
    key = {"Authorization": f"Bearer user-{user}"}  # 200 clients, each within its stream limit
    async with client.stream(
        "POST", f"{url}/v1/chat/completions", json=_body(question), headers=key
    ) as response:
        async for piece in response.aiter_bytes():
            if not raw:
                started.append(1)  # answering: failover before the first byte is not this test's
            raw += piece
    text, dones, usage, errors = "", 0, None, []
    for event in SSEDecoder().feed(raw):
        if event.data == "[DONE]":
            dones += 1
            continue
        body = json.loads(event.data)
        if event.event == "error" or "error" in body:
            errors.append(body)
            continue
        for choice in body.get("choices") or ():
            text += choice["delta"].get("content") or ""
        usage = body.get("usage") or usage
    return {"question": question, "text": text, "dones": dones, "usage": usage, "errors": errors}


async def _chaos(url: str, models: tuple[ModelProcess, ModelProcess], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=STREAMS + 10)
    async with httpx.AsyncClient(timeout=170, limits=limits) as client:
        started: list[int] = []
        reads = [
            asyncio.create_task(_read(client, url, QUESTIONS[i % len(QUESTIONS)], i, started))
            for i in range(STREAMS)
        ]
        while len(started) < STREAMS:
            await asyncio.sleep(0.01)
        a, b = models
        await asyncio.sleep(rng.uniform(0.1, 1.0))
        a.kill()  # mid-answer: its streams go on on b
        await asyncio.to_thread(a.start)
        await asyncio.sleep(rng.uniform(0.1, 1.0))
        b.kill()  # and b's on a, back again
        results = await asyncio.gather(*reads)
        await asyncio.to_thread(b.start)  # for the next test of the module, as it found it
        return results


def test_two_kills_under_200_streams_leave_every_answer_byte_identical(
    models: tuple[ModelProcess, ModelProcess],
) -> None:
    answers = _answers(models[0].url)
    assert _answers(models[1].url) == answers  # the same model, greedy: one answer a question
    args = (
        "--upstream",
        models[0].url,
        "--upstream",
        models[1].url,
        "--cps",
        "400",
        "--continue-attempts",
        "40",
        "--resume",
        "never",
        "--log-level",
        "warning",
    )
    with cli_proxy(*args, "--idle-timeout", "5") as (url, _):
        start = time.monotonic()
        results = asyncio.run(_chaos(url, models, seed=int(start)))
        metrics = httpx.get(f"{url}/metrics").text
    for result in results:
        answer = answers[result["question"]]
        assert result["errors"] == []
        assert result["text"] == answer
        assert result["dones"] == 1
        assert result["usage"]["completion_tokens"] == len(answer)
    continued = [r for r in results if r["usage"].get("pacer")]
    assert continued  # the kills cut streams mid-answer
    assert all(r["usage"]["pacer"]["continuations"] >= 1 for r in continued)
    seams = sum(r["usage"]["pacer"]["continuations"] for r in continued)
    line = f'pacer_continuations_total{{api="chat.completions",outcome="continued"}} {float(seams)}'
    assert line in metrics
