"""OpenAI's Responses stream (``/v1/responses``).

Text lanes (one lane): the ``delta`` of the event types in ``Responses.TEXT``
(output text, refusals and audio transcripts are answer text, reasoning text and
summaries reasoning, function-call, custom-tool, MCP and code arguments arguments).
Kept, in order: every other event (items and parts added and done,
``response.completed``, ``error``); ``sequence_number`` is renumbered so it still
counts every event once. Every kept event that repeats text (``*.done``, parts,
items, the ``response`` object) is rebuilt from the text sent (``_Released``), never
the upstream's copy. Another ``*.delta`` type that holds text is ``Unchecked``. A
blocked stream ends with ``response.incomplete`` (``incomplete_details.reason:
"content_filter"``, its output the items as far as they were sent), a stopped one with
``response.incomplete`` (``"cancelled"``).

Cost: O(size of the event) per event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..sse import ServerSentEvent
from .base import (
    Ending,
    EndingKind,
    EventFormat,
    Keep,
    Part,
    Received,
    Text,
    Unchecked,
    as_sent,
    dumps,
    event_name,
    frame,
    has_text,
    json_object,
    merged_extras,
    parse_json_event,
)
from .splice import Continuation, Resume

__all__ = ["Responses", "ResponsesContinuation"]


class Responses(EventFormat):
    """``/v1/responses`` events: the ``delta`` of the types in ``TEXT`` is paced, every
    other event kept (see the module docstring)."""

    transcript = "responses"
    name = "responses"
    #: The event types whose ``delta`` is text, and what each holds.
    TEXT: ClassVar[dict[str, Part]] = {
        "response.output_text.delta": Part.TEXT,
        "response.refusal.delta": Part.TEXT,
        "response.audio.transcript.delta": Part.TEXT,
        "response.reasoning_text.delta": Part.REASONING,
        "response.reasoning_summary_text.delta": Part.REASONING,
        "response.function_call_arguments.delta": Part.ARGUMENTS,
        "response.custom_tool_call_input.delta": Part.ARGUMENTS,
        "response.mcp_call_arguments.delta": Part.ARGUMENTS,
        "response.code_interpreter_call_code.delta": Part.ARGUMENTS,
    }
    #: The ``*.delta`` types whose ``delta`` is no text of the model's (audio, as base64).
    OPAQUE: ClassVar[frozenset[str]] = frozenset({"response.audio.delta"})
    #: The event types that end the stream.
    END = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})

    def __init__(self) -> None:
        super().__init__()
        self.sequence: int | None = None  # the next sequence number to give
        self.response: dict[str, Any] = {}  # the latest response object read (``read``)
        self.last_sequence: int | None = None  # the last sequence number read (``read``)
        self.released = _Released()  # the text sent of each field, and the items as sent

    # -- parsing and rendering ------------------------------------------------------------

    def parse(self, event: ServerSentEvent) -> list[Text | Keep]:
        if event.data.strip() == "[DONE]":
            self.ended = True
            return [Keep(0, as_sent(event))]
        body = parse_json_event(event)
        kind = body.get("type")
        if not isinstance(kind, str):
            kind = event.event
        if kind in self.END:
            self.complete = True
        name = event_name(event)
        delta = body.get("delta")
        if kind in self.TEXT and isinstance(delta, str):
            if not delta:
                return [Keep(0, "", (body, name), floating=True)]
            return [Text(0, _key(body, kind), delta, (body, name), body.get("logprobs"))]
        if str(kind).endswith(".delta") and kind not in self.OPAQUE and has_text(delta):
            empty = Text(0, "", "", (body, name))
            return [Unchecked(0, "", f"{kind} events", empty, (body, name))]
        return [Keep(0, "", (body, name), failure=event.event == "error")]

    def keep_frame(self, keep: Keep) -> str:
        if keep.body is None:
            return keep.frame
        body, name = keep.body
        return frame(dumps(self._numbered(self.released.rebuilt(body))), name)

    def text_frame(self, first: Text, text: str, extras: list[Any]) -> str:
        body, name = first.template
        self.released.add(first.kind, text)
        out = {**body, "delta": text}
        if isinstance(body.get("logprobs"), list):
            out["logprobs"] = merged_extras(body["logprobs"], extras)
        return frame(dumps(self._numbered(out)), name)

    def _numbered(self, body: dict[str, Any]) -> dict[str, Any]:
        number = body.get("sequence_number")
        if not isinstance(number, int):
            return body
        if self.sequence is None:
            self.sequence = number  # count on from the upstream's first
        out = {**body, "sequence_number": self.sequence}
        self.sequence += 1
        return out

    # -- endings ------------------------------------------------------------------------

    def filtered(self, last: Text) -> Ending:
        """``response.incomplete`` with ``incomplete_details.reason == "content_filter"``:
        the response as last sent, its output the items as far as they were sent."""
        response = {
            **self.released.response,
            "status": "incomplete",
            "incomplete_details": {"reason": "content_filter"},
            "output": self.released.output(),
        }
        body = {"type": "response.incomplete", "response": response, "sequence_number": 0}
        self.complete = True
        return Ending(EndingKind.BLOCKED, (frame(dumps(self._numbered(body)), "response.incomplete"),))

    def stopped(self, received: Received) -> Ending:
        """``response.incomplete`` with ``incomplete_details.reason == "cancelled"``."""
        response = {**self.response, "status": "incomplete", "incomplete_details": {"reason": "cancelled"}}
        body: dict[str, Any] = {"type": "response.incomplete", "response": response}
        if self.last_sequence is not None:
            body["sequence_number"] = self.last_sequence + 1
        return Ending(EndingKind.STOPPED, (frame(dumps(body), "response.incomplete"),))

    # -- reading ------------------------------------------------------------------------

    def read_data(self, data: str, received: Received) -> None:
        body = json_object(data)
        if body is None:
            return
        kind = body.get("type")
        if isinstance(body.get("response"), dict):
            self.response = body["response"]
        if isinstance(body.get("sequence_number"), int):
            self.last_sequence = body["sequence_number"]
        if kind in self.END and kind != "error":  # an error event ends nothing here
            received.complete = True
        part = self.TEXT.get(str(kind))
        if part is not None and isinstance(body.get("delta"), str):
            received.lane(0).parts[part].add(body["delta"])


def _key(body: dict[str, Any], kind: Any) -> tuple[Any, ...]:
    """The field a text event fills: its type, item and where in the item."""
    return (kind, *(body.get(name) for name in ("item_id", "output_index", "content_index", "summary_index")))


#: The text fields of an item, by the delta type that fills them: where the field is
#: (``content``, ``summary`` or the item itself) and its name.
_ITEM_FIELDS: dict[str, tuple[str | None, str]] = {
    "response.output_text.delta": ("content", "text"),
    "response.refusal.delta": ("content", "refusal"),
    "response.reasoning_text.delta": ("content", "text"),
    "response.reasoning_summary_text.delta": ("summary", "text"),
    "response.function_call_arguments.delta": (None, "arguments"),
    "response.custom_tool_call_input.delta": (None, "input"),
    "response.mcp_call_arguments.delta": (None, "arguments"),
    "response.code_interpreter_call_code.delta": (None, "code"),
}
#: Which delta type fills a content or summary part of each type, and its field.
_PARTS: dict[str, tuple[str, str]] = {
    "output_text": ("response.output_text.delta", "text"),
    "refusal": ("response.refusal.delta", "refusal"),
    "reasoning_text": ("response.reasoning_text.delta", "text"),
    "summary_text": ("response.reasoning_summary_text.delta", "text"),
}
#: The ``*.done`` events that repeat a field's text: the delta type and the field.
_DONE: dict[str, tuple[str, str]] = {
    "response.output_text.done": ("response.output_text.delta", "text"),
    "response.refusal.done": ("response.refusal.delta", "refusal"),
    "response.reasoning_text.done": ("response.reasoning_text.delta", "text"),
    "response.reasoning_summary_text.done": ("response.reasoning_summary_text.delta", "text"),
    "response.function_call_arguments.done": ("response.function_call_arguments.delta", "arguments"),
    "response.custom_tool_call_input.done": ("response.custom_tool_call_input.delta", "input"),
    "response.mcp_call_arguments.done": ("response.mcp_call_arguments.delta", "arguments"),
    "response.code_interpreter_call_code.done": ("response.code_interpreter_call_code.delta", "code"),
    "response.audio.transcript.done": ("response.audio.transcript.delta", "transcript"),
}


class _Released:
    """What a Responses stream has sent: each field's text, each output item as last
    sent, and the response object. Every kept event that repeats text (the ``*.done``
    events, parts, items, ``response.completed``) is rebuilt from it, never from the
    upstream's copy: a field the checks replaced or cut short reads as it was sent,
    and a field no delta filled reads empty."""

    __slots__ = ("items", "response", "text")

    def __init__(self) -> None:
        self.text: dict[tuple[Any, ...], str] = {}  # by ``_key``: type, item, place
        self.items: dict[Any, dict[str, Any]] = {}  # by output index, as last sent
        self.response: dict[str, Any] = {}

    def add(self, key: Any, text: str) -> None:
        self.text[key] = self.text.get(key, "") + text

    def output(self) -> list[dict[str, Any]]:
        """The output items as far as they were sent, by output index."""
        order = sorted(self.items, key=lambda i: i if isinstance(i, int) else -1)
        return [self.item(self.items[i], i) for i in order]

    def sent(
        self, kind: str, item_id: Any, output_index: Any, content: Any = None, summary: Any = None
    ) -> str:
        """The text sent of one field (``content``, ``summary``: the index of its part)."""
        return self.text.get((kind, item_id, output_index, content, summary), "")

    def rebuilt(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with every text it repeats replaced by what was sent."""
        kind = body.get("type")
        out = dict(body)
        where = (body.get("item_id"), body.get("output_index"))
        if kind in _DONE:
            delta, field = _DONE[kind]
            if field in out:
                text = self.sent(delta, *where, body.get("content_index"), body.get("summary_index"))
                out = self._logprobs_cut(out, out[field], text)
                out[field] = text
        if isinstance(body.get("part"), dict):
            index = body.get("summary_index", body.get("content_index"))
            summary = "summary_index" in body
            out["part"] = self.part(body["part"], *where, index, summary)
            self._place(body.get("output_index"), "summary" if summary else "content", index, out["part"])
        if isinstance(body.get("item"), dict):
            out["item"] = self.item(body["item"], body.get("output_index"))
            self.items[body.get("output_index")] = out["item"]
        if isinstance(body.get("response"), dict):
            response = body["response"]
            output = response.get("output")
            if isinstance(output, list):
                items = [self.item(it, i) if isinstance(it, dict) else it for i, it in enumerate(output)]
                response = {**response, "output": items}
            out["response"] = self.response = response
        return out

    def _place(self, output_index: Any, where: str, index: Any, part: dict[str, Any]) -> None:
        """Note a part of an item not yet done, so an early end shows it as far as it was sent."""
        item = self.items.get(output_index)
        if item is None or not isinstance(index, int) or index < 0:
            return
        parts = list(item.get(where) or [])
        parts += [{}] * (index + 1 - len(parts))
        parts[index] = part
        self.items[output_index] = {**item, where: parts}

    def item(self, item: dict[str, Any], output_index: Any) -> dict[str, Any]:
        out = dict(item)
        item_id = item.get("id")
        for delta, (where, field) in _ITEM_FIELDS.items():
            if where is None and isinstance(out.get(field), str) and _owns(item, delta):
                out[field] = self.sent(delta, item_id, output_index)
        for where, summary in (("content", False), ("summary", True)):
            if isinstance(out.get(where), list):
                out[where] = [
                    self.part(part, item_id, output_index, j, summary) if isinstance(part, dict) else part
                    for j, part in enumerate(out[where])
                ]
        return out

    def part(
        self, part: dict[str, Any], item_id: Any, output_index: Any, index: Any, summary: bool
    ) -> dict[str, Any]:
        """A content (or, if ``summary``, summary) part at ``index`` of an item, as sent."""
        filled = _PARTS.get(str(part.get("type")))
        if filled is None or not isinstance(part.get(filled[1]), str):
            return part
        delta, field = filled
        text = self.sent(delta, item_id, output_index, None if summary else index, index if summary else None)
        return {**self._logprobs_cut(part, part[field], text), field: text}

    @staticmethod
    def _logprobs_cut(body: dict[str, Any], upstream: Any, sent: str) -> dict[str, Any]:
        """Per-token data of a text that was not sent as the upstream had it is dropped."""
        if upstream != sent and isinstance(body.get("logprobs"), list):
            return {**body, "logprobs": []}
        return body


def _owns(item: dict[str, Any], delta: str) -> bool:
    """Whether an item's own field (``arguments``, ``input``, ``code``) is filled by ``delta``."""
    kind = str(item.get("type"))
    return {
        "response.function_call_arguments.delta": kind == "function_call",
        "response.custom_tool_call_input.delta": kind == "custom_tool_call",
        "response.mcp_call_arguments.delta": kind == "mcp_call",
        "response.code_interpreter_call_code.delta": kind == "code_interpreter_call",
    }.get(delta, False)


class ResponsesContinuation(Continuation):
    """The Responses API cannot continue an answer (no prefill): ``regenerate`` asks again
    as the client asked and splices the new answer past the text produced, which it must
    begin with exactly; the new response's id and item ids become the first's, the events
    that opened what was already open are dropped. A response cut inside a tool call's
    arguments or its reasoning is not regenerated."""

    api = "responses"
    policies = ("regenerate", "error")
    ERRORS = ("error", "response.failed")
    #: Item types whose content is no answer text: a cut inside one is refused.
    STRUCTURED: ClassVar[dict[str, str]] = {
        "function_call": "a tool call",
        "custom_tool_call": "a tool call",
        "mcp_call": "a tool call",
        "code_interpreter_call": "a tool call",
        "reasoning": "its reasoning",
    }

    def __init__(self, body: Mapping[str, Any], policy: str) -> None:
        super().__init__(body, policy)
        self.response_id: Any = None  # the first response's id
        self.items: dict[Any, Any] = {}  # output index -> the first stream's item id
        self.opened: set[tuple[Any, ...]] = set()  # (type, output index, part index) sent

    def note(self, event: ServerSentEvent) -> None:
        body = json_object(event.data)
        if body is None:
            return
        kind = body.get("type")
        record = self.lane(0)
        if isinstance(body.get("response"), dict) and self.response_id is None:
            self.response_id = body["response"].get("id")
        if kind in ("response.output_item.added", "response.content_part.added"):
            self.opened.add((kind, body.get("output_index"), body.get("content_index")))
        item = body.get("item")
        if kind == "response.output_item.added" and isinstance(item, dict):
            self.items.setdefault(body.get("output_index"), item.get("id"))
            record.structured = self.STRUCTURED.get(str(item.get("type")), record.structured)
        elif kind == "response.output_text.delta" and isinstance(body.get("delta"), str):
            record.add(body["delta"])
        elif kind in Responses.END:
            self.complete = True

    def rewrite(self, resume: Resume, event: ServerSentEvent) -> list[ServerSentEvent]:
        body = json_object(event.data)
        if body is None:
            return [event]
        kind = body.get("type")
        if kind in ("response.created", "response.in_progress") and self.response_id is not None:
            return []
        if (kind, body.get("output_index"), body.get("content_index")) in self.opened:
            return []
        out = self._same_ids(body)
        if kind == "response.output_text.delta" and isinstance(body.get("delta"), str):
            out["delta"] = self.lane(0).skipped(body["delta"], 0)
            if not out["delta"]:
                return []
        if kind in Responses.END:
            resume.done = True
            response = out.get("response")
            if isinstance(response, dict) and isinstance(response.get("usage"), dict):
                usage = dict(response["usage"])
                usage["output_tokens"] = usage.get("output_tokens", 0) + self.counted
                usage["pacer"] = {"continuations": self.seams, "counted_completion_tokens": self.counted}
                out["response"] = {**response, "usage": usage}
        return [ServerSentEvent(dumps(out), event.event)]

    def _same_ids(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the first stream's response id and item ids."""
        out = dict(body)
        index = body.get("output_index")
        if "item_id" in out and index in self.items:
            out["item_id"] = self.items[index]
        if isinstance(out.get("item"), dict) and index in self.items:
            out["item"] = {**out["item"], "id": self.items[index]}
        if isinstance(out.get("response"), dict) and self.response_id is not None:
            out["response"] = {**out["response"], "id": self.response_id}
        return out

    def closing(self) -> list[ServerSentEvent]:
        return []


Responses.continues = ResponsesContinuation
