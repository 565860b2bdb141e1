"""Issue #41's continuation, sans I/O: the request each API continues with, the splice of
a continuation's events into the first stream (ids, lanes, no second opening, usage
summed and saying so, one end), and each refusal, which ends the stream with the clear
error (``pacer.formats.splice``, ``pacer._continue``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio
import pytest

from pacer._continue import Continuing
from pacer.formats import UpstreamError
from pacer.formats.choices import ChatCompletions, ChatContinuation, Completions, CompletionsContinuation
from pacer.formats.messages import AnthropicMessages, MessagesContinuation
from pacer.formats.splice import NotContinued
from pacer.sse import ServerSentEvent

ASK = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": True, "max_tokens": 50}


def _chunk(
    content: str | None = None, index: int = 0, finish: str | None = None, **delta: Any
) -> ServerSentEvent:
    if content is not None:
        delta["content"] = content
    body = {"id": "first", "created": 1, "model": "m", "object": "chat.completion.chunk"}
    body["choices"] = [{"index": index, "delta": delta, "finish_reason": finish}]
    return ServerSentEvent(json.dumps(body))


def _text(events: Iterable[ServerSentEvent], index: int = 0) -> str:
    out = ""
    for event in events:
        if event.data == "[DONE]":
            continue
        for choice in json.loads(event.data).get("choices") or ():
            if choice["index"] == index:
                out += choice["delta"].get("content") or ""
    return out


def _noted(continuation: Any, events: list[ServerSentEvent]) -> None:
    for event in events:
        continuation.note(event)


def test_chat_continues_with_the_partial_answer_as_the_final_assistant_message() -> None:
    c = ChatContinuation(ASK, "continue")
    _noted(c, [_chunk("", role="assistant"), _chunk("Hel"), _chunk("lo ")])
    [resume] = c.failed(None, set())
    assert resume.body["messages"][-1] == {"role": "assistant", "content": "Hello "}
    assert resume.body["continue_final_message"] is True and resume.body["add_generation_prompt"] is False
    assert resume.body["max_tokens"] == 48  # two tokens were produced
    assert resume.body["messages"][:-1] == ASK["messages"] and resume.lanes == {0: 0}


def test_a_chat_continuation_splices_into_the_first_stream_with_usage_summed() -> None:
    c = ChatContinuation({**ASK, "stream_options": {"include_usage": True}}, "continue")
    _noted(c, [_chunk("", role="assistant"), _chunk("Hel"), _chunk("lo ")])
    [resume] = c.failed(None, set())
    second = {"id": "other", "created": 2, "model": "m"}
    events = [
        {
            **second,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        },
        {**second, "choices": [{"index": 0, "delta": {"content": "world"}, "finish_reason": None}]},
        {**second, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**second, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}},
    ]
    out = [e for body in events for e in c.rewrite(resume, ServerSentEvent(json.dumps(body)))]
    assert c.rewrite(resume, ServerSentEvent("[DONE]")) == [] and resume.done
    assert _text(out) == "world"
    assert all(json.loads(e.data)["id"] == "first" for e in out)  # one stream id
    assert all("role" not in json.loads(e.data)["choices"][0]["delta"] for e in out)  # no second opening
    closing = c.closing()
    assert closing[-1].data == "[DONE]"
    usage = json.loads(closing[0].data)["usage"]
    assert usage["completion_tokens"] == 3 and usage["total_tokens"] == 12  # 2 counted + 1 reported
    assert usage["pacer"] == {"continuations": 1, "counted_completion_tokens": 2}


def test_each_lane_of_n_choices_continues_on_its_own_and_an_empty_lane_is_asked_again() -> None:
    c = ChatContinuation({**ASK, "n": 3}, "continue")
    _noted(c, [_chunk("A", 0), _chunk("B", 1), _chunk("x", 0), _chunk(None, 2, role="assistant")])
    resumes = c.failed(None, set())
    assert [r.lanes for r in resumes] == [{0: 0}, {0: 1}, {2: 2}]
    assert resumes[0].body["messages"][-1]["content"] == "Ax" and resumes[0].body["n"] == 1
    assert resumes[1].body["messages"][-1]["content"] == "B"
    assert resumes[2].body == {**ASK, "n": 3}  # nothing produced: the request as it came
    out = resumes[1].lanes and c.rewrite(resumes[1], _chunk("C", 0))
    assert json.loads(out[0].data)["choices"][0]["index"] == 1


def test_completions_continue_with_the_text_appended_to_the_prompt() -> None:
    c = CompletionsContinuation({"model": "m", "prompt": "Once", "stream": True}, "continue")
    c.note(
        ServerSentEvent(
            json.dumps({"id": "x", "choices": [{"index": 0, "text": " upon", "finish_reason": None}]})
        )
    )
    [resume] = c.failed(None, set())
    assert (
        resume.body["prompt"] == "Once upon" and resume.body["max_tokens"] == 15
    )  # 16, the API's default, less 1


def test_anthropic_continues_with_a_prefill_without_its_trailing_space_and_checks_it_comes_back() -> None:
    c = MessagesContinuation({**ASK, "max_tokens": 100}, "continue")
    for body in (
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 5}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello "}},
    ):
        c.note(ServerSentEvent(json.dumps(body), body["type"]))
    [resume] = c.failed(None, set())
    assert resume.body["messages"][-1] == {"role": "assistant", "content": "Hello"}  # no trailing space
    assert resume.body["max_tokens"] == 99
    again = [
        {
            "type": "message_start",
            "message": {"id": "msg_2", "usage": {"input_tokens": 7, "output_tokens": 1}},
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " world"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    ]
    out = [e for body in again for e in c.rewrite(resume, ServerSentEvent(json.dumps(body), body["type"]))]
    texts = [json.loads(e.data)["delta"]["text"] for e in out if e.event == "content_block_delta"]
    assert texts == ["world"]  # the space it must begin with is dropped
    assert [e.event for e in out] == ["content_block_delta", "content_block_stop"]
    assert resume.done
    _noted(c, out)  # as the driver notes every event the client's stream carries
    closing = [json.loads(e.data) for e in c.closing()]
    assert [e["type"] for e in closing] == ["message_delta", "message_stop"]
    assert closing[0]["usage"]["output_tokens"] == 3  # 1 counted + 2 reported
    assert closing[0]["usage"]["input_tokens"] == 7 and closing[0]["usage"]["pacer"]["continuations"] == 1


def test_anthropic_with_thinking_or_a_tool_input_is_never_continued() -> None:
    c = MessagesContinuation(ASK, "continue")
    c.note(
        ServerSentEvent(
            json.dumps(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "thinking", "thinking": ""},
                }
            )
        )
    )
    with pytest.raises(NotContinued, match="thinking"):
        c.failed(None, set())
    c = MessagesContinuation({**ASK, "thinking": {"type": "enabled", "budget_tokens": 10}}, "continue")
    c.note(
        ServerSentEvent(
            json.dumps(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a"}}
            )
        )
    )
    with pytest.raises(NotContinued, match="extended thinking"):
        c.failed(None, set())


def test_a_lane_cut_inside_a_tool_call_is_refused() -> None:
    c = ChatContinuation(ASK, "continue")
    call = [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"a": '}}]
    _noted(c, [_chunk("", role="assistant"), _chunk(None, tool_calls=call)])
    with pytest.raises(NotContinued, match="choice 0 was cut inside a tool call"):
        c.failed(None, set())


def test_regenerate_splices_only_the_answer_that_begins_with_the_text_produced() -> None:
    c = ChatContinuation(ASK, "regenerate")
    _noted(c, [_chunk("", role="assistant"), _chunk("Hello "), _chunk("wor")])
    [resume] = c.failed(None, set())
    assert resume.body == ASK  # asked again as the client asked
    out = [e for piece in ("Hel", "lo world", "!") for e in c.rewrite(resume, _chunk(piece))]
    assert _text(out) == "ld!"
    c = ChatContinuation(ASK, "regenerate")
    _noted(c, [_chunk("Hello "), _chunk("wor")])
    [resume] = c.failed(None, set())
    with pytest.raises(NotContinued, match="differs from the text produced at character 3"):
        c.rewrite(resume, _chunk("Help"))


def test_the_error_policy_never_continues() -> None:
    assert ChatCompletions().continuation(ASK, "error") is None
    assert Completions().continuation(ASK, "continue") is not None
    assert AnthropicMessages().continuation(ASK, "continue") is not None
    with pytest.raises(ValueError, match="policy must be one of continue, regenerate, error, got 'maybe'"):
        ChatContinuation(ASK, "maybe")


# -- the driver: a failed stream continued, or ended with the clear error ---------------------


async def _events(items: list[ServerSentEvent | BaseException]) -> AsyncIterator[ServerSentEvent]:
    for item in items:
        if isinstance(item, BaseException):
            raise item
        yield item


def _sse(events: list[ServerSentEvent]) -> bytes:
    return b"".join(e.encode() for e in events)


def _drive(continuing: Continuing, first: list[Any]) -> tuple[list[ServerSentEvent], BaseException | None]:
    out: list[ServerSentEvent] = []

    async def run() -> BaseException | None:
        try:
            async for event in continuing.events(_events(first)):
                out.append(event)
        except UpstreamError as exc:
            return exc
        return None

    return out, anyio.run(run)


def test_a_cut_stream_is_continued_and_ends_once() -> None:
    asked: list[dict[str, Any]] = []

    async def reopen(body: dict[str, Any], attempt: int) -> Any:
        asked.append(body)

        async def data() -> AsyncIterator[bytes]:
            yield _sse(
                [
                    _chunk("", role="assistant"),
                    _chunk("lo"),
                    _chunk(None, finish="stop"),
                    ServerSentEvent("[DONE]"),
                ]
            )

        return data()

    cut = UpstreamError("cut", type="upstream_truncated")
    continuing = Continuing(ChatContinuation(ASK, "continue"), reopen)
    out, error = _drive(continuing, [_chunk("", role="assistant"), _chunk("Hel"), cut])
    assert error is None
    assert _text(out) == "Hello" and [e.data for e in out].count("[DONE]") == 1
    assert asked[0]["messages"][-1]["content"] == "Hel" and len(continuing.seams) == 1


def test_a_refused_continuation_ends_with_the_first_failure_and_why() -> None:
    async def reopen(body: dict[str, Any], attempt: int) -> Any:
        raise UpstreamError(
            "the continuation request got HTTP 400: unknown field", type="continuation_refused"
        )

    cut = UpstreamError("upstream sent nothing for 5 s", type="upstream_timeout")
    continuing = Continuing(ChatContinuation(ASK, "continue"), reopen)
    out, error = _drive(continuing, [_chunk("Hel"), cut])
    assert _text(out) == "Hel"
    assert isinstance(error, UpstreamError) and error.type == "upstream_timeout"
    assert "not continued: the continuation request got HTTP 400" in str(error)
    assert continuing.refused is not None


def test_the_continuation_budget_is_spent_then_the_clear_error() -> None:
    async def reopen(body: dict[str, Any], attempt: int) -> Any:
        raise UpstreamError("upstream unreachable", type="upstream_unreachable")

    continuing = Continuing(ChatContinuation(ASK, "continue"), reopen, attempts=2, backoff=0.001)
    _, error = _drive(continuing, [_chunk("Hel"), UpstreamError("cut", type="upstream_truncated")])
    assert isinstance(error, UpstreamError) and "2 continuation requests are spent" in str(error)
    assert continuing.sent == 2


def test_a_diverging_regenerated_answer_ends_with_the_clear_error() -> None:
    async def reopen(body: dict[str, Any], attempt: int) -> Any:
        async def data() -> AsyncIterator[bytes]:
            yield _sse([_chunk("Help me"), ServerSentEvent("[DONE]")])

        return data()

    continuing = Continuing(ChatContinuation(ASK, "regenerate"), reopen)
    out, error = _drive(continuing, [_chunk("Hello"), UpstreamError("cut", type="upstream_truncated")])
    assert _text(out) == "Hello"  # nothing that contradicts it
    assert isinstance(error, UpstreamError) and "differs from the text produced at character 3" in str(error)


def _response_events(response_id: str, item: str, deltas: list[str], end: bool) -> list[ServerSentEvent]:
    bodies: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": response_id, "status": "in_progress", "output": []}},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"id": item, "type": "message", "content": []},
        },
        {
            "type": "response.content_part.added",
            "item_id": item,
            "output_index": 0,
            "content_index": 0,
            "part": {"type": "output_text", "text": ""},
        },
    ]
    bodies += [
        {
            "type": "response.output_text.delta",
            "item_id": item,
            "output_index": 0,
            "content_index": 0,
            "delta": d,
        }
        for d in deltas
    ]
    if end:
        usage = {"input_tokens": 3, "output_tokens": len(deltas), "total_tokens": 3 + len(deltas)}
        bodies.append(
            {
                "type": "response.completed",
                "response": {"id": response_id, "status": "completed", "usage": usage},
            }
        )
    return [ServerSentEvent(json.dumps(b), b["type"]) for b in bodies]


def test_a_regenerated_response_takes_the_first_ones_ids_and_goes_on_past_the_text_produced() -> None:
    from pacer.formats.responses import Responses, ResponsesContinuation

    assert Responses().continuation({}, "error") is None
    with pytest.raises(ValueError, match="policy must be one of regenerate, error"):
        ResponsesContinuation({}, "continue")
    c = ResponsesContinuation({"model": "m", "input": "Hi", "stream": True}, "regenerate")
    _noted(c, _response_events("resp_1", "msg_1", ["Hel"], end=False))
    [resume] = c.failed(None, set())
    out = [
        e
        for event in _response_events("resp_2", "msg_2", ["Hello", " there"], end=True)
        for e in c.rewrite(resume, event)
    ]
    bodies = [json.loads(e.data) for e in out]
    assert [b["type"] for b in bodies] == ["response.output_text.delta"] * 2 + ["response.completed"]
    assert [b["delta"] for b in bodies[:2]] == ["lo", " there"]
    assert all(b["item_id"] == "msg_1" for b in bodies[:2]) and bodies[-1]["response"]["id"] == "resp_1"
    assert bodies[-1]["response"]["usage"]["output_tokens"] == 3  # 2 reported + 1 counted
    assert resume.done


def test_a_response_cut_inside_a_function_call_is_not_regenerated() -> None:
    from pacer.formats.responses import ResponsesContinuation

    c = ResponsesContinuation({"model": "m", "input": "Hi"}, "regenerate")
    call = {
        "type": "response.output_item.added",
        "output_index": 0,
        "item": {"id": "fc_1", "type": "function_call"},
    }
    c.note(ServerSentEvent(json.dumps(call)))
    with pytest.raises(NotContinued, match="cut inside a tool call"):
        c.failed(None, set())


def test_an_error_event_mid_answer_is_continued_and_an_error_before_any_text_ends_as_before() -> None:
    async def reopen(body: dict[str, Any], attempt: int) -> Any:
        async def data() -> AsyncIterator[bytes]:
            yield _sse([_chunk("lo"), _chunk(None, finish="stop"), ServerSentEvent("[DONE]")])

        return data()

    crash = ServerSentEvent(json.dumps({"error": {"message": "model crashed", "type": "server_error"}}))
    out, error = _drive(Continuing(ChatContinuation(ASK, "continue"), reopen), [_chunk("Hel"), crash])
    assert error is None and _text(out) == "Hello" and out[-1].data == "[DONE]"
    finished = [_chunk("Hi", finish="stop"), crash]  # every lane had finished: nothing to continue
    out, error = _drive(Continuing(ChatContinuation(ASK, "continue"), reopen), finished)
    assert error is None and out[-1] is crash  # the upstream's own error goes on, as it came
