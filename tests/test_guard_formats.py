"""A Guard inside an API's event stream: whatever a check replaces or blocks, and however
long its replacement, every kept event keeps its place and no field a client reads (end
events and logprobs included) spells out what was checked away."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacer import Guard, Pacer, simulate
from pacer._events import EventPacer
from pacer.formats import FORMATS, Keep, Part, Received, Responses, Text
from pacer.sse import ServerSentEvent
from pacer.testing import streams

APIS = ("chat.completions", "completions", "responses", "messages")


def _completions(n: int) -> list[streams.Event]:
    """A Completions stream of ``n`` choices, interleaved chunk by chunk."""
    out: list[streams.Event] = []
    for t, name, data in streams.completions():
        if data == "[DONE]":
            out.append((t, name, data))
            continue
        body = json.loads(data)
        for index in range(n):
            choice = {**body["choices"][0], "index": index}
            out.append((t, name, json.dumps({**body, "choices": [choice]})))
    return out


def upstream(api: str, n: int) -> list[streams.Event]:
    if api == "chat.completions":
        return streams.chat(n=n)
    if api == "completions":
        return _completions(n)
    return streams.responses() if api == "responses" else streams.messages()


def rechunked(events: list[streams.Event], cut: int) -> list[streams.Event]:
    """``events`` with each text delta cut in pieces of ``cut`` characters, one event each
    (the per-token data on the last)."""
    out: list[streams.Event] = []
    for t, name, data in events:
        body = json.loads(data) if data != "[DONE]" else None
        holder, field = _text_field(body)
        text = holder.get(field) if holder is not None else None
        if not isinstance(text, str) or len(text) <= cut:
            out.append((t, name, data))
            continue
        pieces = [text[i : i + cut] for i in range(0, len(text), cut)]
        for i, piece in enumerate(pieces):
            holder[field] = piece
            part = json.loads(json.dumps(body))
            if i < len(pieces) - 1:
                _drop_logprobs(part)
            out.append((t, name, json.dumps(part)))
    return out


def _text_field(body: Any) -> tuple[dict[str, Any] | None, str]:
    if not isinstance(body, dict):
        return None, ""
    if body.get("choices"):
        choice = body["choices"][0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            field = next((f for f in ("content", "reasoning_content") if isinstance(delta.get(f), str)), "")
            return delta, field
        return choice, "text"
    if body.get("type") in Responses.TEXT:
        return body, "delta"
    delta = body.get("delta")
    if isinstance(delta, dict) and delta.get("type") in TEXT_DELTAS:
        return delta, next(f for f in ("text", "thinking", "partial_json") if f in delta)
    return None, ""


def _drop_logprobs(body: dict[str, Any]) -> None:
    for holder in [body, *(body.get("choices") or [])]:
        if holder.get("logprobs") is not None:
            holder["logprobs"] = [] if isinstance(holder["logprobs"], list) else None


def _event(name: str | None, data: str) -> ServerSentEvent:
    return ServerSentEvent(data=data, event=name or "message")


def paced(
    api: str, events: list[streams.Event], check: Any, latency: float | None = None
) -> list[tuple[str | None, str]]:
    """The ``(event, data)`` a client reads from the stream paced with ``Guard(check)``."""
    fmt = FORMATS[api]()
    trace: list[tuple[float, Text | Keep]] = []
    for t, name, data in events:
        trace += [(t, piece) for piece in fmt.parse(_event(name, data))]
    stage = EventPacer(fmt, lambda: Guard(check, max_hold=None) | Pacer(cps=400))
    timeline = simulate(trace, stage, check_latency=latency)
    out = []
    for chunk in timeline.emissions:
        name, data = None, ""
        for line in chunk.text.strip("\n").split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data = value
        out.append((name, data))
    return out


TEXT_DELTAS = ("text_delta", "thinking_delta", "input_json_delta")


def _arguments_only(call: dict[str, Any]) -> bool:
    return set(call) == {"index", "function"} and set(call["function"]) == {"arguments"}


def _signature(data: str) -> Any:
    """What a kept event is, without its text and numbering; ``None`` for a text event."""
    if data.strip() == "[DONE]":
        return "[DONE]"
    body = json.loads(data)
    if "choices" in body:
        if not body["choices"]:
            return "usage"
        choice = body["choices"][0]
        delta = choice.get("delta") or {}
        rest = {k: v for k, v in delta.items() if v and k not in ("content", "reasoning_content")}
        calls = rest.get("tool_calls") or []
        if calls and all(_arguments_only(c) for c in calls):
            del rest["tool_calls"]  # arguments text
        if not rest and choice.get("finish_reason") is None:
            return None
        return (choice["index"], tuple(sorted(rest)), choice.get("finish_reason"))
    kind = body.get("type")
    if kind in Responses.TEXT or kind == "ping":
        return None
    delta = body.get("delta")
    if kind == "content_block_delta" and delta.get("type") in TEXT_DELTAS:
        return None
    return (kind, body.get("output_index"), body.get("index"))


def _snapshot(received: Received) -> dict[tuple[int, Part], str]:
    return {(i, part): lane.joined(part) for i, lane in received.lanes.items() for part in Part}


def _kept(api: str, frames: list[tuple[str | None, str]]) -> list[tuple[Any, dict[tuple[int, Part], str]]]:
    """Each kept event, with every lane's text and reasoning read before it."""
    reader, received = FORMATS[api](), Received()
    out = []
    for name, data in frames:
        signature = _signature(data)
        if signature is not None:
            out.append((signature, _snapshot(received)))
        reader.read(_event(name, data), received)
    return out


def _lane(signature: Any) -> int | None:
    return signature[0] if isinstance(signature, tuple) and isinstance(signature[0], int) else None


def _of(kept: list[tuple[Any, Any]], lane: int) -> list[Any]:
    return [s for s, _ in kept if _lane(s) in (lane, None)]


def _key(item: tuple[Any, Any]) -> int:
    return -1 if _lane(item[0]) is None else _lane(item[0])  # type: ignore[return-value]


words = st.sampled_from(["calmly", "breathes", "stream", "rhythm", "Paced", "pacing", "short"])
marks = st.text("#*", max_size=14)  # shorter than, as long as, and longer than the word


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(APIS),
    st.integers(1, 3),
    words,
    marks,
    st.sampled_from([None, 0.0, 0.3]),
    st.integers(1, 12),
)
def test_kept_events_keep_their_place_whatever_the_length_of_a_redaction(
    api: str, n: int, word: str, mark: str, latency: float | None, cut: int
) -> None:
    events = rechunked(upstream(api, n), cut)
    out = paced(api, events, lambda text: text.replace(word, mark), latency)
    before = _kept(api, [(name, data) for _, name, data in events])
    after = _kept(api, out)
    assert revealing(out, word) == []  # in no field, logprobs and end events included
    for lane in range(n):  # every kept event, in order in its choice (lanes are paced apart)
        assert _of(after, lane) == _of(before, lane)
    for (signature, shown), (_, sent) in zip(sorted(after, key=_key), sorted(before, key=_key), strict=True):
        # A choice's own event comes after its own text; the others' after all text.
        lane = _lane(signature)
        mine = {key: text for key, text in shown.items() if lane is None or key[0] == lane}
        assert mine == {key: text.replace(word, mark) for key, text in sent.items() if key in mine}


# -- nothing checked away reaches any field a client reads ---------------------------------------


def _strings(value: Any, path: tuple[str, ...], out: list[tuple[tuple[str, ...], str]]) -> None:
    if isinstance(value, str):
        out.append((path, value))
    elif isinstance(value, dict):
        for key, item in value.items():
            _strings(item, (*path, key), out)
    elif isinstance(value, list):
        if path and path[-1] == "bytes" and all(isinstance(b, int) for b in value):
            out.append((path, bytes(value).decode("utf-8", "replace")))  # a logprob's token bytes
        else:
            for item in value:
                _strings(item, path, out)


def fields(frames: list[tuple[str | None, str]]) -> dict[tuple[str, ...], str]:
    """Each field's strings (list positions aside), concatenated over the whole stream."""
    joined: dict[tuple[str, ...], str] = {}
    for _, data in frames:
        if data.strip() == "[DONE]":
            continue
        found: list[tuple[tuple[str, ...], str]] = []
        _strings(json.loads(data), (), found)
        for path, text in found:
            joined[path] = joined.get(path, "") + text
    return joined


def revealing(frames: list[tuple[str | None, str]], *secrets: str) -> list[tuple[str, ...]]:
    """The fields whose concatenation holds a secret (and the raw frames, as ``("wire",)``)."""
    out = [path for path, text in fields(frames).items() if any(s in text for s in secrets)]
    wire = "".join(data for _, data in frames)
    return [*out, ("wire",)] if any(s in wire for s in secrets) else out


def mask(text: str) -> str:
    return text.replace("calmly", "******")  # as long as the match


def no_breathing(text: str) -> bool:
    return "breathes" not in text


@given(st.sampled_from([None, 0.0, 0.3]))
@settings(max_examples=6, deadline=None)
def test_responses_end_events_carry_only_the_text_sent(latency: float | None) -> None:
    """Issue #37, item 1: ``response.incomplete`` and the ``*.done`` events, items and
    ``response.completed`` are rebuilt from what was sent, never the upstream's copy."""
    events = streams.responses()
    masked = paced("responses", events, mask, latency)
    assert revealing(masked, "calmly") == []
    assert any("******" in data and "response.completed" in data for _, data in masked)
    blocked = paced("responses", events, no_breathing, latency)
    assert revealing(blocked, "breathes", "falls far") == []
    end = json.loads(blocked[-1][1])
    assert end["type"] == "response.incomplete"
    assert end["response"]["incomplete_details"] == {"reason": "content_filter"}
    [message] = [item for item in end["response"]["output"] if item["type"] == "message"]
    assert message["content"][0]["text"] == "Paced text reads calmly. "  # what was sent, and no more


@pytest.mark.parametrize("api", ["chat.completions", "completions", "responses"])
@pytest.mark.parametrize(("check", "secret"), [(mask, "calmly"), (no_breathing, "breathes")])
def test_logprobs_never_spell_out_a_redacted_or_blocked_unit(api: str, check: Any, secret: str) -> None:
    """Issue #37, item 2: per-token data of a unit a check replaced or blocked is not sent
    (nor of the rest of its field after a replacement: its lists are empty)."""
    out = paced(api, upstream(api, 2), check, 0.1)
    assert revealing(out, secret) == []
    tokens = fields(out).get(("choices", "logprobs", "content", "token"), "")
    tokens += fields(out).get(("choices", "logprobs", "tokens"), "")
    tokens += fields(out).get(("logprobs", "token"), "")
    assert "Paced" in tokens  # those of the text before it still go


def no_paris(text: str) -> str:
    return text.replace("Paris", "[city]")


@pytest.mark.parametrize("api", ["chat.completions", "responses", "messages"])
def test_tool_call_arguments_are_checked_as_text(api: str) -> None:
    """Issue #37, item 5: a policy sees a tool call's arguments (the JSON text), and its
    replacement is what the client's arguments say."""
    out = paced(api, upstream(api, 1), no_paris, 0.05)
    assert revealing(out, "Paris") == []
    arguments = fields(out)
    joined = "".join(text for path, text in arguments.items() if path[-1] in ("arguments", "partial_json"))
    assert '{"city": "[city]"}' in joined


def _chat_events(*deltas: dict[str, Any]) -> list[streams.Event]:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    bodies = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    bodies.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return [*((0.1 * i, None, json.dumps(b)) for i, b in enumerate(bodies)), (1.0, None, "[DONE]")]


def _canary(text: str) -> bool:
    return "ZEBRA" not in text


@pytest.mark.parametrize(
    "delta",
    [
        {"content": [{"type": "text", "text": "Fine. The code is ZEBRA-7."}]},
        {"audio": {"id": "a1", "transcript": "Fine. The code is ZEBRA-7."}},
        {"function_call": {"name": "f", "arguments": '{"code": "ZEBRA-7"}'}},
        {
            "tool_calls": [
                {"index": 0, "id": "t", "type": "function", "function": {"name": "f", "arguments": "ZEBRA"}}
            ]
        },
    ],
    ids=["content-parts", "audio-transcript", "function-call", "tool-call-start"],
)
def test_every_chat_channel_goes_through_the_guard(delta: dict[str, Any]) -> None:
    """Issue #37, item 5: list-form content, audio transcripts and call arguments."""
    out = paced("chat.completions", _chat_events({"role": "assistant"}, delta), _canary, 0.05)
    assert revealing(out, "ZEBRA") == []
    finishes = [json.loads(d)["choices"][0]["finish_reason"] for _, d in out if d != "[DONE]"]
    assert "content_filter" in finishes and out[-1][1] == "[DONE]"


def test_text_at_an_anthropic_block_start_goes_through_the_guard() -> None:
    """Issue #37, item 5: text inside ``content_block_start`` is checked like a delta."""
    events = [
        {"type": "message_start", "message": {"id": "m", "type": "message", "content": []}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": "Ok. ZEBRA here."},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ]
    out = paced(
        "messages", [(0.1 * i, e["type"], json.dumps(e)) for i, e in enumerate(events)], _canary, 0.05
    )
    assert revealing(out, "ZEBRA") == []
    assert fields(out)[("delta", "text")] == "Ok. "
    assert [json.loads(d).get("delta", {}).get("stop_reason") for _, d in out][-2] == "refusal"


def test_a_channel_pacer_does_not_know_ends_its_lane_as_blocked_when_checked() -> None:
    """Issue #37, item 5: unknown text is never passed unchecked (fail closed); without a
    check it goes out as it came."""
    events = _chat_events({"content": "Hello. "}, {"future_text": "ZEBRA"}, {"content": "More."})
    out = paced("chat.completions", events, lambda text: True)
    assert revealing(out, "ZEBRA") == [] and "More." not in "".join(d for _, d in out)
    finishes = [json.loads(d)["choices"][0]["finish_reason"] for _, d in out if d != "[DONE]"]
    assert finishes[-1] == "content_filter" and fields(out)[("choices", "delta", "content")] == "Hello. "
    fmt = FORMATS["chat.completions"]()
    trace = [(t, p) for t, name, data in events for p in fmt.parse(_event(name, data))]
    unchecked = simulate(trace, EventPacer(fmt, lambda: Pacer(cps=400)))
    assert "ZEBRA" in "".join(c.text for c in unchecked.emissions)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(APIS), st.integers(1, 3), words, st.sampled_from([None, 0.0, 0.3]), st.integers(1, 12))
def test_a_blocked_unit_reaches_no_field_and_the_stream_ends_the_apis_way(
    api: str, n: int, word: str, latency: float | None, cut: int
) -> None:
    out = paced(api, rechunked(upstream(api, n), cut), lambda text: word not in text, latency)
    assert revealing(out, word) == []
    last = out[-1][1]
    if api in ("chat.completions", "completions"):
        assert last == "[DONE]"
    else:
        assert json.loads(last)["type"] in ("message_stop", "response.incomplete", "response.completed")


def test_an_unknown_delta_or_block_type_ends_a_responses_or_messages_stream_as_blocked() -> None:
    """Issue #37, item 5 (fail closed), in the single-lane APIs."""
    where = {"item_id": "x", "output_index": 0, "content_index": 0}
    responses = [
        {
            "type": "response.output_text.delta",
            **where,
            "content_index": 0,
            "delta": "Hello. ",
            "sequence_number": 0,
        },
        {"type": "response.future_text.delta", **where, "delta": "ZEBRA", "sequence_number": 1},
        {"type": "response.completed", "response": {"output": []}, "sequence_number": 2},
    ]
    out = paced("responses", [(0.1 * i, e["type"], json.dumps(e)) for i, e in enumerate(responses)], _canary)
    assert revealing(out, "ZEBRA") == [] and json.loads(out[-1][1])["type"] == "response.incomplete"
    messages = [
        {"type": "message_start", "message": {"id": "m", "type": "message", "content": []}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "future", "words": "ZEBRA"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_stop"},
    ]
    out = paced("messages", [(0.1 * i, e["type"], json.dumps(e)) for i, e in enumerate(messages)], _canary)
    assert revealing(out, "ZEBRA") == []
    assert [json.loads(d).get("delta", {}).get("stop_reason") for _, d in out][-2] == "refusal"
