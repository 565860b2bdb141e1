"""Every streaming API through the proxy, read by its official SDK: the same fields as
without the proxy, only the rhythm differs; and the same streams on the virtual clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import anyio
import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from pacer import Pacer, arun, run, simulate
from pacer._events import EventPacer
from pacer._simulate import Timeline
from pacer.adapters import anthropic_text, openai_text
from pacer.formats import ROUTES as FORMATS
from pacer.formats import AnthropicMessages, ChatCompletions, Completions, EventFormat, Keep, Responses, Text
from pacer.proxy import create_proxy, upstream_base
from pacer.sse import ServerSentEvent, SSEDecoder
from pacer.testing import streams
from pacer.testing.rhythm import flowing_cv

from .servers import ScriptedUpstream, serve

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    fake = ScriptedUpstream(speed=10.0)
    # Mounted under a path prefix, as behind a gateway: the proxy is given .../v1.
    with serve(Starlette(routes=[Mount("/gateway", fake.app)])) as url:
        yield f"{url}/gateway"


@pytest.fixture(scope="module")
def proxy(upstream: str) -> Iterator[str]:
    with serve(create_proxy(f"{upstream}/v1", lambda: Pacer(cps=2000, max_lag=0.2))) as url:
        yield url


# -- Chat Completions ----------------------------------------------------------------------------


def _chat(base: str, **options: Any) -> dict[str, Any]:
    """What a client reads from a Chat Completions stream, per choice."""
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    seen: dict[str, Any] = {"usage": None, "ids": set()}
    message = [{"role": "user", "content": "hi"}]
    with client.chat.completions.create(model="m", messages=message, stream=True, **options) as stream:
        for chunk in stream:
            seen["ids"].add((chunk.id, chunk.model, chunk.created, chunk.system_fingerprint))
            if chunk.usage is not None:
                seen["usage"] = chunk.usage.model_dump()
            for choice in chunk.choices:
                mine = seen.setdefault(
                    choice.index, {"order": [], "logprobs": [], "tools": {}, "finish": None}
                )
                delta = choice.delta
                fields = {"role": delta.role, "content": delta.content, "tool_calls": delta.tool_calls}
                fields["reasoning_content"] = (delta.model_extra or {}).get("reasoning_content")
                for name, value in fields.items():
                    if value:
                        if not mine["order"] or mine["order"][-1] != name:
                            mine["order"].append(name)
                        if isinstance(value, str):
                            mine[name] = mine.get(name, "") + value
                for call in delta.tool_calls or []:
                    entry = mine["tools"].setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                    entry["id"] = call.id or entry["id"]
                    if call.function is not None:
                        entry["name"] += call.function.name or ""
                        entry["arguments"] += call.function.arguments or ""
                if choice.logprobs is not None and choice.logprobs.content:
                    mine["logprobs"] += [(t.token, t.logprob) for t in choice.logprobs.content]
                if choice.finish_reason is not None:
                    mine["finish"] = choice.finish_reason
    return seen


def test_chat_completions_with_reasoning_tools_logprobs_and_two_choices(upstream: str, proxy: str) -> None:
    options = {"n": 2, "logprobs": True, "tools": [{"type": "function", "function": {"name": "get_weather"}}]}
    direct, paced = _chat(upstream, **options), _chat(proxy, **options)
    assert paced == direct
    assert direct[0]["order"] == ["role", "reasoning_content", "content", "tool_calls"]
    assert direct[0]["content"] == streams.ANSWERS[0] and direct[1]["content"] == streams.ANSWERS[1]
    assert direct[0]["reasoning_content"] == streams.REASONING
    assert direct[0]["tools"] == {
        0: {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    }
    assert len(direct[0]["logprobs"]) == len(streams.tokens(streams.ANSWERS[0]))
    assert direct["usage"]["total_tokens"] == 73


def test_legacy_completions_with_logprobs(upstream: str, proxy: str) -> None:
    def read(base: str) -> dict[str, Any]:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
        out: dict[str, Any] = {"text": "", "finish": None, "tokens": [], "token_logprobs": [], "offsets": []}
        for chunk in client.completions.create(model="m", prompt="hi", stream=True, logprobs=1):
            choice = chunk.choices[0]
            out["text"] += choice.text
            out["finish"] = choice.finish_reason or out["finish"]
            if choice.logprobs is not None:
                out["tokens"] += choice.logprobs.tokens or []
                out["token_logprobs"] += choice.logprobs.token_logprobs or []
                out["offsets"] += choice.logprobs.text_offset or []
        return out

    direct, paced = read(upstream), read(proxy)
    assert paced == direct
    assert direct["text"] == streams.ANSWERS[0] and direct["finish"] == "stop"
    assert "".join(direct["tokens"]) == direct["text"]


# -- Responses ----------------------------------------------------------------------------------


def _responses(base: str, model: str = "m") -> dict[str, Any]:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    out: dict[str, Any] = {"types": [], "text": {}, "numbers": [], "logprobs": [], "final": None}
    for event in client.responses.create(model=model, input="hi", stream=True):
        out["numbers"].append(event.sequence_number)
        if not out["types"] or out["types"][-1] != event.type or not event.type.endswith(".delta"):
            out["types"].append(event.type)
        if event.type.endswith("text.delta"):
            key = (event.type, event.item_id)
            out["text"][key] = out["text"].get(key, "") + event.delta
            out["logprobs"] += [(lp.token, lp.logprob) for lp in getattr(event, "logprobs", None) or []]
        if event.type == "response.completed":
            out["final"] = event.response.model_dump()
        if event.type == "error":
            out["final"] = (event.code, event.message)
    return out


def test_responses_api_paces_text_and_keeps_every_other_event(upstream: str, proxy: str) -> None:
    direct, paced = _responses(upstream), _responses(proxy)
    numbers = paced.pop("numbers")
    assert numbers == list(range(len(numbers)))  # each event counted once, in order
    direct.pop("numbers")
    assert paced == direct
    assert direct["text"][("response.output_text.delta", "msg_1")] == streams.ANSWERS[0]
    assert direct["text"][("response.reasoning_summary_text.delta", "rs_1")] == streams.REASONING
    assert "response.function_call_arguments.delta" in direct["types"]
    assert direct["final"]["status"] == "completed"


def test_a_responses_error_event_reaches_the_sdk_as_the_upstream_sent_it(upstream: str, proxy: str) -> None:
    direct, paced = _responses(upstream, "error"), _responses(proxy, "error")
    assert paced["final"] == direct["final"] == ("server_error", "model crashed")
    assert paced["types"] == direct["types"]


# -- Anthropic Messages ---------------------------------------------------------------------------


def _messages(base: str, model: str = "m") -> dict[str, Any]:
    client = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
    out: dict[str, Any] = {"types": [], "text": {}}
    message = [{"role": "user", "content": "hi"}]
    for event in client.messages.create(model=model, max_tokens=99, messages=message, stream=True):
        name = event.type + (f":{event.delta.type}" if event.type == "content_block_delta" else "")
        if not out["types"] or out["types"][-1] != name or not name.endswith("_delta"):
            out["types"].append(name)
        if event.type == "content_block_delta":
            value = event.delta.model_dump(exclude={"type"})
            key = (event.index, event.delta.type)
            out["text"][key] = out["text"].get(key, "") + "".join(value.values())
        if event.type == "message_delta":
            out["usage"] = event.usage.model_dump()
    with client.messages.stream(model=model, max_tokens=99, messages=message) as stream:
        out["final"] = stream.get_final_message().model_dump()
    return out


def test_anthropic_messages_pace_text_and_thinking_and_keep_the_rest(upstream: str, proxy: str) -> None:
    direct, paced = _messages(upstream), _messages(proxy)
    assert paced == direct
    assert direct["text"][(1, "text_delta")] == streams.ANSWERS[0]
    assert direct["text"][(0, "thinking_delta")] == streams.REASONING
    assert direct["final"]["stop_reason"] == "tool_use"  # (the SDK drops pings: see the virtual clock test)


def test_an_anthropic_error_event_raises_in_the_sdk_as_without_the_proxy(upstream: str, proxy: str) -> None:
    messages = [{"role": "user", "content": "hi"}]
    errors = []
    for base in (upstream, proxy):
        client = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as caught:
            for _ in client.messages.create(model="error", max_tokens=9, messages=messages, stream=True):
                pass
        errors.append(caught.value.body)
    assert (
        errors[0]
        == errors[1]
        == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )


@pytest.mark.parametrize("path", list(FORMATS))
def test_a_stream_cut_before_its_end_event_ends_with_an_error_event(
    path: str, upstream: str, proxy: str
) -> None:
    body = {"model": "cut", "stream": True}
    with httpx.stream("POST", f"{proxy}{path}", json=body, timeout=30) as response:
        raw = response.read()
    last = SSEDecoder().feed(raw)[-1]
    assert last.event == "error"
    assert json.loads(last.data)["error"]["type"] == "upstream_truncated"


# -- the upstream URL ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("http://h:8000", "http://h:8000"),
        ("http://h:8000/", "http://h:8000"),
        ("http://h:8000/v1", "http://h:8000"),
        ("http://h:8000/v1/", "http://h:8000"),
        ("http://h/gateway/v1", "http://h/gateway"),
        ("http://h/api", "http://h/api"),
    ],
)
def test_the_upstream_is_given_with_or_without_v1(given: str, base: str) -> None:
    assert upstream_base(given) == base


@pytest.mark.parametrize("bad", ["h:8000", "localhost:8000/v1", "ftp://h/v1", "http:///v1", ""])
def test_a_malformed_upstream_url_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ValueError, match=r"http\(s\) URL with a host.*http://localhost:8000/v1"):
        create_proxy(bad, Pacer)


def test_the_cli_says_what_is_wrong_with_an_upstream_url(capsys: pytest.CaptureFixture[str]) -> None:
    from pacer.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["proxy", "--upstream", "host:8000"])
    assert exit_.value.code == 2
    assert "upstream must be an http(s) URL with a host" in capsys.readouterr().err


def test_the_upstream_without_v1_works_too(upstream: str) -> None:
    with serve(create_proxy(upstream, lambda: Pacer(cps=2000))) as url:
        seen = _chat(url)
    assert seen[0]["content"] == streams.ANSWERS[0]


# -- SDK streams as sources, sync and async --------------------------------------------------------


def test_sync_and_async_openai_streams_are_sources(upstream: str) -> None:
    message = [{"role": "user", "content": "hi"}]
    sync = openai.OpenAI(base_url=f"{upstream}/v1", api_key="k", max_retries=0)
    stream = sync.chat.completions.create(model="m", messages=message, stream=True)
    assert "".join(run(Pacer(cps=5000), openai_text(stream))) == streams.ANSWERS[0]

    async def main() -> str:
        client = openai.AsyncOpenAI(base_url=f"{upstream}/v1", api_key="k", max_retries=0)
        source = await client.chat.completions.create(model="m", messages=message, stream=True)
        return "".join([text async for text in arun(Pacer(cps=5000), openai_text(source))])

    assert anyio.run(main) == streams.ANSWERS[0]


def test_sync_and_async_anthropic_streams_are_sources(upstream: str) -> None:
    message = [{"role": "user", "content": "hi"}]
    sync = anthropic.Anthropic(base_url=upstream, api_key="k", max_retries=0)
    with sync.messages.stream(model="m", max_tokens=9, messages=message) as stream:
        assert "".join(run(Pacer(cps=5000), anthropic_text(stream))) == streams.ANSWERS[0]

    async def main() -> list[str]:
        client = anthropic.AsyncAnthropic(base_url=upstream, api_key="k", max_retries=0)
        raw = await client.messages.create(model="m", max_tokens=9, messages=message, stream=True)
        texts = ["".join([t async for t in arun(Pacer(cps=5000), anthropic_text(raw))])]
        async with client.messages.stream(model="m", max_tokens=9, messages=message) as stream:
            texts.append("".join([t async for t in arun(Pacer(cps=5000), anthropic_text(stream))]))
        return texts

    assert anyio.run(main) == [streams.ANSWERS[0]] * 2


def test_adapters_refuse_what_is_not_a_stream() -> None:
    with pytest.raises(TypeError, match="openai_text: expected an \\(async\\) iterable of chunks, got int"):
        openai_text(3)  # type: ignore[call-overload]
    with pytest.raises(
        TypeError, match="anthropic_text: expected an \\(async\\) iterable of events, got int"
    ):
        anthropic_text(3)  # type: ignore[call-overload]


# -- on the virtual clock ----------------------------------------------------------------------------

SCRIPTS = {
    "chat": (lambda: streams.chat(n=1), ChatCompletions),  # two choices: read through the SDK above
    "completions": (streams.completions, Completions),
    "responses": (streams.responses, Responses),
    "messages": (streams.messages, AnthropicMessages),
}


def _pieces(fmt: EventFormat, events: list[streams.Event]) -> list[tuple[float, Text | Keep]]:
    trace: list[tuple[float, Text | Keep]] = []
    for t, name, data in events:
        trace += [(t, piece) for piece in fmt.parse(ServerSentEvent(data=data, event=name or "message"))]
    return trace


def _text_timeline(timeline: Timeline, trace: list[tuple[float, Text | Keep]]) -> Timeline:
    """The text the client reads, as a timeline of its own (arrivals: the upstream's text)."""
    from pacer import Chunk

    emissions = []
    for chunk in timeline.emissions:
        data = chunk.text.split("data: ", 1)[1]
        if data.strip() == "[DONE]":
            continue
        text = _text_of(json.loads(data))
        if text:
            out = Chunk(text, chunk.arrival)
            out.emitted = chunk.emitted
            emissions.append(out)
    arrivals = [(t, piece.text) for t, piece in trace if isinstance(piece, Text)]
    return Timeline(arrivals, emissions, timeline.metrics)


def _text_of(body: dict[str, Any]) -> str:
    if "choices" in body:
        texts = []
        for choice in body["choices"]:
            delta = choice.get("delta") or {}
            texts.append(str(choice.get("text") or ""))
            texts += [v for k, v in delta.items() if k != "role" and isinstance(v, str)]
            texts += [c["function"].get("arguments") or "" for c in delta.get("tool_calls") or ()]
        return "".join(texts)
    delta = body.get("delta")
    if isinstance(delta, str):
        return delta if body.get("type") in Responses.TEXT else ""
    if isinstance(delta, dict) and delta.get("type") in ("text_delta", "thinking_delta", "input_json_delta"):
        return str(delta.get("text") or delta.get("thinking") or delta.get("partial_json") or "")
    return ""


@pytest.mark.parametrize("api", list(SCRIPTS))
def test_each_api_reads_smoother_than_its_upstream_and_loses_nothing(api: str) -> None:
    script, fmt_class = SCRIPTS[api]
    events = script()
    fmt = fmt_class()
    trace = _pieces(fmt, events)
    timeline = simulate(trace, EventPacer(fmt, Pacer))
    paced = _text_timeline(timeline, trace)
    assert paced.text == "".join(p.text for _, p in trace if isinstance(p, Text))
    bursts = _arrival_timeline(trace, timeline)
    assert flowing_cv(paced) < flowing_cv(bursts) / 2, (flowing_cv(paced), flowing_cv(bursts))
    # Every event that is not text went out, in the upstream's order.
    kept = [p.frame for _, p in trace if isinstance(p, Keep)]
    out_kept = [c.text for c in timeline.emissions if c.text in kept]
    if api != "responses":  # (renumbered, so compared through the SDK above)
        assert out_kept == kept


def _arrival_timeline(trace: list[tuple[float, Text | Keep]], paced: Timeline) -> Timeline:
    """The upstream's text as a client without the proxy reads it: each piece when it arrives."""
    from pacer import Chunk

    emissions = []
    for t, piece in trace:
        if isinstance(piece, Text):
            chunk = Chunk(piece.text, t)
            chunk.emitted = t
            emissions.append(chunk)
    return Timeline([(c.arrival, c.text) for c in emissions], emissions, paced.metrics)
