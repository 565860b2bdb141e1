"""Issue #41 through the proxy: each route's continuation policy against an upstream that
cuts its first answer mid-way (a dropped connection), and what the client gets: the
answer spliced whole, or the clear error after exactly what was produced, never text
that contradicts it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from pacer import Pacer
from pacer.proxy import create_proxy
from pacer.sse import SSEDecoder

from .servers import serve

pytestmark = pytest.mark.timeout(60)


class CuttingUpstream:
    """Chat Completions whose first answer to each ``user`` is cut after "Hello wor"; a
    request asked again (or continued) is answered whole: "Hello world!" for the model
    "same", "Help!" for "other"; "tool" cuts inside a tool call's arguments."""

    def __init__(self) -> None:
        self.asked: dict[str, list[dict[str, Any]]] = {}
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        asked = self.asked.setdefault(body.get("user", ""), [])
        asked.append(body)
        return StreamingResponse(self.stream(body, first=len(asked) == 1), media_type="text/event-stream")

    async def stream(self, body: dict[str, Any], first: bool) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return f"data: {json.dumps({'id': 'c', 'model': 'm', 'choices': [choice]})}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""})
        if body["model"] == "tool":
            call = {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"city": "Par'}}
            yield chunk({"tool_calls": [call]})
            raise RuntimeError("cut")
        if first:
            for piece in ("Hello ", "wor"):
                yield chunk({"content": piece})
            raise RuntimeError("cut")  # the connection drops mid-answer
        if body.get("continue_final_message"):
            produced = body["messages"][-1]["content"]
            pieces = ["Hello world!"[len(produced) :]]
        else:
            pieces = ["Hello ", "world!"] if body["model"] == "same" else ["Help!"]
        for piece in pieces:
            yield chunk({"content": piece})
        yield chunk({}, "stop")
        yield b"data: [DONE]\n\n"


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[CuttingUpstream, str]]:
    fake = CuttingUpstream()
    with serve(fake.app) as url:
        yield fake, url


def _ask(upstream: str, policy: str, model: str, user: str) -> tuple[str, list[Any], int]:
    app = create_proxy(upstream, lambda: Pacer(cps=5000, max_lag=0.1), continue_chat=policy)
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": True, "user": user}
    with serve(app) as url, httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as r:
        events = SSEDecoder().feed(r.read())
    text, errors, dones = "", [], 0
    for event in events:
        if event.data == "[DONE]":
            dones += 1
        elif event.event == "error":
            errors.append(json.loads(event.data)["error"])
        else:
            text += json.loads(event.data)["choices"][0]["delta"].get("content") or ""
    return text, errors, dones


def test_continue_asks_with_the_text_produced_and_splices_the_rest(
    upstream: tuple[CuttingUpstream, str],
) -> None:
    fake, url = upstream
    assert _ask(url, "continue", "same", "continue") == ("Hello world!", [], 1)
    again = fake.asked["continue"][1]
    assert again["messages"][-1] == {"role": "assistant", "content": "Hello wor"}
    assert again["continue_final_message"] is True and again["add_generation_prompt"] is False


def test_regenerate_splices_an_answer_that_begins_with_the_text_produced(
    upstream: tuple[CuttingUpstream, str],
) -> None:
    fake, url = upstream
    assert _ask(url, "regenerate", "same", "regenerate") == ("Hello world!", [], 1)
    assert fake.asked["regenerate"][1] == fake.asked["regenerate"][0]  # asked again as the client asked


def test_a_regenerated_answer_that_diverges_ends_with_the_clear_error(
    upstream: tuple[CuttingUpstream, str],
) -> None:
    _, url = upstream
    text, errors, dones = _ask(url, "regenerate", "other", "diverges")
    assert text == "Hello wor" and dones == 0  # nothing that contradicts it, no false end
    assert (
        "not continued: the new answer of choice 0 differs from the text produced at character 3"
        in errors[0]["message"]
    )


def test_the_error_policy_ends_with_the_error_as_before(upstream: tuple[CuttingUpstream, str]) -> None:
    fake, url = upstream
    text, errors, dones = _ask(url, "error", "same", "error")
    assert text == "Hello wor" and dones == 0 and len(errors) == 1
    assert len(fake.asked["error"]) == 1  # never asked again


def test_a_lane_cut_inside_a_tool_call_ends_with_the_clear_error(
    upstream: tuple[CuttingUpstream, str],
) -> None:
    fake, url = upstream
    _, errors, dones = _ask(url, "continue", "tool", "tool")
    assert dones == 0 and "not continued: choice 0 was cut inside a tool call" in errors[0]["message"]
    assert len(fake.asked["tool"]) == 1
