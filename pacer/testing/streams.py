"""Realistic event streams of the APIs pacer paces, with bursty arrival times.

Each function returns a list of ``(seconds, event, data)``: when the upstream sends
the event, its SSE type (``None`` for an unnamed one) and its data (JSON text, or
``[DONE]``). The sequences follow what OpenAI, vLLM and Anthropic send: role chunk,
reasoning before the answer, logprobs on each text chunk, tool calls after the
text, ``n = 2`` choices interleaved, a usage chunk; Responses events with their
``sequence_number``; Anthropic thinking, signature, text, tool input and usage. The
fake upstreams of the tests and the wire benchmark replay them.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "ANSWERS",
    "REASONING",
    "Event",
    "chat",
    "completions",
    "frames",
    "messages",
    "responses",
    "tokens",
]

Event = tuple[float, "str | None", str]

REASONING = "The user wants a calm stream. Keep it short, and say why pacing helps."
ANSWERS = (
    "Paced text reads calmly. It breathes at sentence ends, and it never falls far "
    "behind the model. 模型一次吐出很多字，读者却看得很舒服。 Emoji stay whole: 👩‍👩‍👧 and 🇫🇷.",
    "A second answer, paced on its own. Each choice keeps its rhythm, with its own pauses.",
)
_TOKEN = re.compile(r"\s*[^\s\u3000-\u9fff，。！？]+|\s*[\u3000-\u9fff，。！？]{1,2}|\s+")


def tokens(text: str) -> list[str]:
    """``text`` cut as a tokenizer would: words with their leading space, CJK by twos."""
    out = _TOKEN.findall(text)
    assert "".join(out) == text
    return out


def _times(count: int, burst: int = 6, gap: float = 0.25, start: float = 0.2) -> list[float]:
    """Bursty arrivals: ``burst`` events at one instant, every ``gap`` seconds."""
    return [start + (i // burst) * gap for i in range(count)]


def _logprob(token: str, i: int) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": round(-0.05 * (i % 9 + 1), 2),
        "bytes": list(token.encode()),
        "top_logprobs": [],
    }


def chat(n: int = 2, logprobs: bool = True, reasoning: bool = True, tools: bool = True) -> list[Event]:
    """A Chat Completions stream (``n`` choices, interleaved token by token)."""
    base = {
        "id": "chatcmpl-7",
        "object": "chat.completion.chunk",
        "created": 1764633600,
        "model": "fake-model",
    }
    base["system_fingerprint"] = "fp_1"
    bodies: list[dict[str, Any]] = []

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> None:
        choice: dict[str, Any] = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}
        bodies.append({**base, "choices": [choice]})

    for index in range(n):
        chunk(index, {"role": "assistant", "content": ""})
    if reasoning:
        for token in tokens(REASONING):
            chunk(0, {"reasoning_content": token})
    streams = [tokens(ANSWERS[i % len(ANSWERS)]) for i in range(n)]
    for i in range(max(len(s) for s in streams)):
        for index, stream in enumerate(streams):
            if i < len(stream):
                lp = {"content": [_logprob(stream[i], i)], "refusal": None} if logprobs else None
                chunk(index, {"content": stream[i]}, lp=lp)
    for index in range(n):
        if tools and index == 0:
            call = {"index": 0, "id": "call_1", "type": "function"}
            chunk(0, {"tool_calls": [{**call, "function": {"name": "get_weather", "arguments": ""}}]})
            for part in ('{"city":', ' "Paris"}'):
                chunk(0, {"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
            chunk(0, {}, finish="tool_calls")
        else:
            chunk(index, {}, finish="stop")
    usage = {"prompt_tokens": 9, "completion_tokens": 64, "total_tokens": 73}
    bodies.append({**base, "choices": [], "usage": usage})
    times = _times(len(bodies) + 1)
    return _unnamed(times, bodies)


def _unnamed(times: list[float], bodies: list[dict[str, Any]]) -> list[Event]:
    """Unnamed events (Chat Completions, Completions), then ``data: [DONE]``."""
    events: list[Event] = [(t, None, json.dumps(b)) for t, b in zip(times, bodies, strict=False)]
    return [*events, (times[-1], None, "[DONE]")]


def completions(logprobs: bool = True) -> list[Event]:
    """A legacy Completions stream, with the per-token logprobs of ``logprobs=1``."""
    base = {"id": "cmpl-7", "object": "text_completion", "created": 1764633600, "model": "fake-model"}
    bodies: list[dict[str, Any]] = []
    offset = 0
    for i, token in enumerate(tokens(ANSWERS[0])):
        lp = None
        if logprobs:
            lp = {
                "tokens": [token],
                "token_logprobs": [-0.1 * (i % 5 + 1)],
                "top_logprobs": [{token: -0.1}],
                "text_offset": [offset],
            }
        offset += len(token)
        bodies.append(
            {**base, "choices": [{"text": token, "index": 0, "logprobs": lp, "finish_reason": None}]}
        )
    bodies.append({**base, "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]})
    times = _times(len(bodies) + 1)
    return _unnamed(times, bodies)


def responses() -> list[Event]:
    """A Responses API stream: a reasoning summary, a message, a function call."""
    events: list[dict[str, Any]] = []
    response = {"id": "resp_7", "object": "response", "created_at": 1764633600, "model": "fake-model"}
    response |= {"status": "in_progress", "output": []}

    def add(kind: str, **fields: Any) -> None:
        events.append({"type": kind, **fields, "sequence_number": len(events)})

    add("response.created", response=response)
    add("response.in_progress", response=response)
    reasoning = {"id": "rs_1", "type": "reasoning", "summary": []}
    add("response.output_item.added", output_index=0, item=reasoning)
    blank = {"type": "summary_text", "text": ""}
    add("response.reasoning_summary_part.added", item_id="rs_1", output_index=0, summary_index=0, part=blank)
    for token in tokens(REASONING):
        add(
            "response.reasoning_summary_text.delta",
            item_id="rs_1",
            output_index=0,
            summary_index=0,
            delta=token,
        )
    where = {"item_id": "rs_1", "output_index": 0, "summary_index": 0}
    add("response.reasoning_summary_text.done", **where, text=REASONING)
    add("response.reasoning_summary_part.done", **where, part={"type": "summary_text", "text": REASONING})
    done_reasoning = {**reasoning, "summary": [{"type": "summary_text", "text": REASONING}]}
    add("response.output_item.done", output_index=0, item=done_reasoning)
    message = {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    add("response.output_item.added", output_index=1, item=message)
    empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    add("response.content_part.added", item_id="msg_1", output_index=1, content_index=0, part=empty)
    text = ANSWERS[0]
    for i, token in enumerate(tokens(text)):
        where = {"item_id": "msg_1", "output_index": 1, "content_index": 0}
        add("response.output_text.delta", **where, delta=token, logprobs=[_logprob(token, i)])
    add("response.output_text.done", item_id="msg_1", output_index=1, content_index=0, text=text, logprobs=[])
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    add("response.content_part.done", item_id="msg_1", output_index=1, content_index=0, part=part)
    done_message = {**message, "status": "completed", "content": [part]}
    add("response.output_item.done", output_index=1, item=done_message)
    call = {
        "id": "fc_1",
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": "",
    }
    call["status"] = "in_progress"
    add("response.output_item.added", output_index=2, item=call)
    for piece in ('{"city":', ' "Paris"}'):
        add("response.function_call_arguments.delta", item_id="fc_1", output_index=2, delta=piece)
    arguments = '{"city": "Paris"}'
    add("response.function_call_arguments.done", item_id="fc_1", output_index=2, arguments=arguments)
    done_call = {**call, "arguments": arguments, "status": "completed"}
    add("response.output_item.done", output_index=2, item=done_call)
    usage = {"input_tokens": 9, "output_tokens": 64, "total_tokens": 73}
    final = {
        **response,
        "status": "completed",
        "output": [done_reasoning, done_message, done_call],
        "usage": usage,
    }
    add("response.completed", response=final)
    times = _times(len(events))
    return [(t, e["type"], json.dumps(e)) for t, e in zip(times, events, strict=True)]


def messages() -> list[Event]:
    """An Anthropic Messages stream: thinking with its signature, text, a tool call, usage."""
    events: list[dict[str, Any]] = []
    message: dict[str, Any] = {"id": "msg_7", "type": "message", "role": "assistant", "model": "fake-model"}
    message |= {
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 1},
    }
    events.append({"type": "message_start", "message": message})
    events.append(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}
    )
    for token in tokens(REASONING):
        events.append(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": token},
            }
        )
    events.append(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "c2ln"}}
    )
    events.append({"type": "content_block_stop", "index": 0})
    events.append({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})
    for i, token in enumerate(tokens(ANSWERS[0])):
        events.append(
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": token}}
        )
        if i == 5:
            events.append({"type": "ping"})
    events.append({"type": "content_block_stop", "index": 1})
    tool = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    events.append({"type": "content_block_start", "index": 2, "content_block": tool})
    for piece in ('{"city":', ' "Paris"}'):
        events.append(
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
        )
    events.append({"type": "content_block_stop", "index": 2})
    stop = {"stop_reason": "tool_use", "stop_sequence": None}
    events.append({"type": "message_delta", "delta": stop, "usage": {"output_tokens": 64}})
    events.append({"type": "message_stop"})
    times = _times(len(events))
    return [(t, e["type"], json.dumps(e)) for t, e in zip(times, events, strict=True)]


def frames(events: list[Event]) -> list[tuple[float, bytes]]:
    """The SSE bytes of each event, with its time."""
    out = []
    for t, name, data in events:
        head = f"event: {name}\n" if name is not None else ""
        out.append((t, f"{head}data: {data}\n\n".encode()))
    return out
