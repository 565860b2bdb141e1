"""Anthropic's Messages stream (``/v1/messages``).

Text lanes (one lane): the text of ``content_block_delta`` events whose delta type is
in ``AnthropicMessages.TEXT`` (``text_delta``'s ``text`` is answer text,
``thinking_delta``'s ``thinking`` reasoning, ``input_json_delta``'s ``partial_json``
a tool's input), and the text (or tool input) a ``content_block_start`` carries, sent
on as the delta that would carry it. Kept: ``message_start``, block starts and stops,
``signature_delta`` and ``citations_delta``, ``ping`` (floating), ``message_delta``
(usage), ``message_stop`` and ``error``; a delta or block of a type not known here
that holds text is ``Unchecked``. A blocked stream ends with its open block stopped,
``stop_reason: "refusal"`` and ``message_stop``; a stopped one with its open blocks
stopped, ``stop_reason: "end_turn"`` and ``message_stop``.

Cost: O(size of the event) per event.
"""

from __future__ import annotations

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
    UpstreamError,
    as_sent,
    dumps,
    event_name,
    field_of,
    frame,
    has_text,
    json_object,
    parse_json_event,
)

__all__ = ["AnthropicMessages"]


def _frames(events: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(frame(dumps(e), e["type"]) for e in events)


class AnthropicMessages(EventFormat):
    """Anthropic ``/v1/messages`` events: ``content_block_delta`` text of the delta types
    in ``TEXT`` is paced, every other event kept (see the module docstring)."""

    transcript = "messages"
    name = "messages"
    #: The delta types that carry text: the field that holds it, and what it holds.
    TEXT: ClassVar[dict[str, tuple[str, Part]]] = {
        "text_delta": ("text", Part.TEXT),
        "thinking_delta": ("thinking", Part.REASONING),
        "input_json_delta": ("partial_json", Part.ARGUMENTS),
    }
    #: The delta types that carry no text of the model's: kept as they came.
    OPAQUE: ClassVar[frozenset[str]] = frozenset({"signature_delta", "citations_delta"})
    #: What each content block type starts with, as the delta that would carry it:
    #: its field, the delta type, and the delta's field.
    STARTS: ClassVar[dict[str, tuple[str, str, str]]] = {
        "text": ("text", "text_delta", "text"),
        "thinking": ("thinking", "thinking_delta", "thinking"),
        "tool_use": ("input", "input_json_delta", "partial_json"),
        "server_tool_use": ("input", "input_json_delta", "partial_json"),
    }

    def __init__(self) -> None:
        super().__init__()
        self.started = False  # message_start was read (``read``)
        self.open_blocks: list[Any] = []  # the content blocks started and not stopped (``read``)

    # -- parsing and rendering ------------------------------------------------------------

    def parse(self, event: ServerSentEvent) -> list[Text | Keep]:
        body = parse_json_event(event)
        kind = body.get("type")
        if kind in ("message_stop", "error"):
            self.complete = True
        delta = body.get("delta")
        if kind == "content_block_delta" and isinstance(delta, dict):
            field, _ = self.TEXT.get(str(delta.get("type")), (None, None))
            text = delta.get(field) if field is not None else None
            if field is not None and isinstance(text, str):
                if not text:
                    return [Keep(0, as_sent(event), floating=True)]
                key = (delta["type"], body.get("index"))
                return [Text(0, key, text, (body, field, event_name(event)))]
            if delta.get("type") not in self.OPAQUE and has_text({**delta, "type": None}):
                empty = Text(0, "text_delta", "", (body, "text", "content_block_delta"))
                return [Unchecked(0, as_sent(event), f"content_block_delta {delta.get('type')}", empty)]
        if kind == "content_block_start" and isinstance(body.get("content_block"), dict):
            return self._start(body, event)
        return [Keep(0, as_sent(event), floating=kind == "ping", failure=event.event == "error")]

    def _start(self, body: dict[str, Any], event: ServerSentEvent) -> list[Text | Keep]:
        """A block start: any text it starts with is sent as the delta that would carry
        it, after the start with that text taken out."""
        block = body["content_block"]
        kind = str(block.get("type"))
        index = body.get("index")
        empty = Text(
            0, "text_delta", "", ({**body, "type": "content_block_delta"}, "text", "content_block_delta")
        )
        if kind not in self.STARTS:
            if kind == "redacted_thinking" or kind.endswith("_tool_result"):
                return [Keep(0, as_sent(event))]  # no text of the model's
            if has_text({k: v for k, v in block.items() if k != "type"}):
                return [Unchecked(0, as_sent(event), f"content_block_start {kind}", empty)]
            return [Keep(0, as_sent(event))]
        field, delta_type, delta_field = self.STARTS[kind]
        value = block.get(field)
        text = value if isinstance(value, str) else (dumps(value) if value else "")
        if not text:
            return [Keep(0, as_sent(event))]
        start = {**body, "content_block": {**block, field: "" if isinstance(value, str) else {}}}
        delta = {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": delta_type, delta_field: ""},
        }
        piece = Text(0, (delta_type, index), text, (delta, delta_field, "content_block_delta"))
        return [Keep(0, frame(dumps(start), "content_block_start")), piece]

    def text_frame(self, first: Text, text: str, extras: list[Any]) -> str:
        body, field, name = first.template
        return frame(dumps({**body, "delta": {**body["delta"], field: text}}), name)

    # -- endings ------------------------------------------------------------------------

    def filtered(self, last: Text) -> Ending:
        """The open block closed, then ``stop_reason: "refusal"`` and ``message_stop``."""
        body = last.template[0]
        stop = {"type": "content_block_stop", "index": body.get("index", 0)}
        delta = {"stop_reason": "refusal", "stop_sequence": None}
        ending = {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 0}}
        self.complete = True
        return Ending(EndingKind.BLOCKED, _frames([stop, ending, {"type": "message_stop"}]))

    def stopped(self, received: Received) -> Ending:
        """The open blocks stopped, then ``stop_reason: "end_turn"`` and ``message_stop``;
        nothing before ``message_start``."""
        if not self.started:
            return Ending(EndingKind.STOPPED)
        events: list[dict[str, Any]] = [{"type": "content_block_stop", "index": i} for i in self.open_blocks]
        delta = {"stop_reason": "end_turn", "stop_sequence": None}
        events += [
            {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 0}},
            {"type": "message_stop"},
        ]
        self.open_blocks = []
        return Ending(EndingKind.STOPPED, _frames(events))

    # -- reading ------------------------------------------------------------------------

    def read_data(self, data: str, received: Received) -> None:
        body = json_object(data)
        if body is None:
            return
        kind = body.get("type")
        if kind == "message_start":
            self.started = True
        elif kind == "content_block_start":
            self.open_blocks.append(body.get("index"))
            block = body.get("content_block")
            start = self.STARTS.get(str(block.get("type"))) if isinstance(block, dict) else None
            if start is not None and isinstance(block, dict) and isinstance(text := block.get(start[0]), str):
                received.lane(0).parts[Part.REASONING if start[0] == "thinking" else Part.TEXT].add(text)
        elif kind == "content_block_stop" and body.get("index") in self.open_blocks:
            self.open_blocks.remove(body.get("index"))
        elif kind == "message_stop":
            received.complete = True
        delta = body.get("delta")
        if kind == "content_block_delta" and isinstance(delta, dict):
            field, part = self.TEXT.get(str(delta.get("type")), (None, None))
            if field is not None and part is not None and isinstance(delta.get(field), str):
                received.lane(0).parts[part].add(delta[field])

    @classmethod
    def text_of(cls, event: Any) -> str:
        """The answer text (``text_delta``) of one event, from the SDK or parsed JSON
        (``""`` for others); ``UpstreamError`` for an ``error`` event."""
        kind = field_of(event, "type")
        if kind is None:
            raise TypeError(f"anthropic_text: expected a message stream event, got {type(event).__name__}")
        if kind == "content_block_delta":
            delta = field_of(event, "delta")
            field, part = cls.TEXT.get(str(field_of(delta, "type")), (None, None))
            if field is not None and part is Part.TEXT:
                return field_of(delta, field) or ""
        elif kind == "error":
            error = field_of(event, "error")
            raise UpstreamError(
                f"upstream error: {field_of(error, 'message') or error}",
                body={"error": error},
                type=str(field_of(error, "type") or "upstream_error"),
            )
        # ping, message_start, content_block_start/stop, message_delta, message_stop, the
        # MessageStream's own text/thinking/input_json events, and any type added later.
        return ""
