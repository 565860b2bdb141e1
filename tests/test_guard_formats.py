"""A Guard inside an API's event stream: whatever a check replaces or blocks, and however
long its replacement, every kept event keeps its place and no field a client reads (end
events and logprobs included) spells out what was checked away."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pacer import Guard, Pacer, simulate
from pacer.events import EventPacer
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


words = st.sampled_from(["calmly", "breathes", "stream", "choice", "Paced", "pacing", "short"])
marks = st.text("#*", max_size=14)  # shorter than, as long as, and longer than the word


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(APIS), st.integers(1, 3), words, marks, st.sampled_from([None, 0.0, 0.3]))
def test_kept_events_keep_their_place_whatever_the_length_of_a_redaction(
    api: str, n: int, word: str, mark: str, latency: float | None
) -> None:
    events = upstream(api, n)
    out = paced(api, events, lambda text: text.replace(word, mark), latency)
    before = _kept(api, [(name, data) for _, name, data in events])
    after = _kept(api, out)
    for lane in range(n):  # every kept event, in order in its choice (lanes are paced apart)
        assert _of(after, lane) == _of(before, lane)
    for (signature, shown), (_, sent) in zip(sorted(after, key=_key), sorted(before, key=_key), strict=True):
        # A choice's own event comes after its own text; the others' after all text.
        lane = _lane(signature)
        mine = {key: text for key, text in shown.items() if lane is None or key[0] == lane}
        assert mine == {key: text.replace(word, mark) for key, text in sent.items() if key in mine}
