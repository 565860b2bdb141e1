"""Issue #41, continuation after text was shown, against real processes: the proxy
(``pacer proxy``) in front of the tiny real model's server (``pacer.testing.model_server``),
killed at a random point mid-answer and restarted, twice, under 200 concurrent streams.
Every stream must end with exactly the uninterrupted greedy answer (no character missing
or repeated at a seam), ``[DONE]`` once, and usage summed (``completion_tokens`` is the
answer's length: one token a character)."""

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
def model() -> Iterator[ModelProcess]:
    with ModelProcess("--token-delay", "0.04", "--answer-chars", "50") as process:
        yield process


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


async def _read(client: httpx.AsyncClient, url: str, question: str, started: list[int]) -> dict[str, Any]:
    raw = b""
    async with client.stream("POST", f"{url}/v1/chat/completions", json=_body(question)) as response:
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


async def _chaos(url: str, model: ModelProcess, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=STREAMS + 10)
    async with httpx.AsyncClient(timeout=170, limits=limits) as client:
        started: list[int] = []
        reads = [
            asyncio.create_task(_read(client, url, QUESTIONS[i % len(QUESTIONS)], started))
            for i in range(STREAMS)
        ]
        while len(started) < STREAMS:
            await asyncio.sleep(0.01)
        for _ in range(2):  # killed mid-answer, restarted; then killed again
            await asyncio.sleep(rng.uniform(0.1, 1.0))
            model.kill()
            await asyncio.to_thread(model.start)
        return await asyncio.gather(*reads)


def test_two_kills_under_200_streams_leave_every_answer_byte_identical(model: ModelProcess) -> None:
    answers = _answers(model.url)
    args = (
        "--upstream",
        model.url,
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
        results = asyncio.run(_chaos(url, model, seed=int(start)))
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
