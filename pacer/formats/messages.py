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
from .splice import Continuation, LaneRecord, NotContinued, Resume, remaining, summed

__all__ = ["AnthropicMessages", "MessagesContinuation"]


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


class MessagesContinuation(Continuation):
    """Anthropic Messages: the partial answer as a final assistant message (a prefill),
    which the API continues natively. The API refuses a prefill that ends in white
    space, so that is left off and the new answer must begin with it. Not continued: a
    cut inside a tool's input, and any answer with thinking (the API takes no prefill
    with extended thinking; a thinking block cut before its ``signature_delta`` could not
    be sent back anyway). The continuation's ``message_start`` is dropped (its usage
    summed), its text block joined to the open one, its later blocks numbered on."""

    api = "messages"

    def __init__(self, body: Mapping[str, Any], policy: str) -> None:
        super().__init__(body, policy)
        self.open_block: int | None = None  # the text block the client's stream has open
        self.next_block = 0  # the index the client's next block takes
        self.blocks: dict[int, int] = {}  # a continuation's block index -> the client's
        self.held: list[ServerSentEvent] = []  # a continuation's message_delta, until the end
        self.stop: dict[str, Any] = {}  # the last message_delta's delta

    def note(self, event: ServerSentEvent) -> None:
        body = json_object(event.data)
        if body is None:
            return
        kind = body.get("type")
        record = self.lane(0)
        if kind == "message_start":
            record.opened = True
        elif kind == "content_block_start":
            self._started(body, record)
        elif kind == "content_block_stop" and body.get("index") == self.open_block:
            self.open_block = None
        elif kind == "content_block_delta" and isinstance(delta := body.get("delta"), dict):
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                record.add(delta["text"])
            elif delta.get("type") == "input_json_delta":
                record.structured = "a tool's input"
        elif kind == "message_delta" and isinstance(body.get("delta"), dict):
            record.finished = body["delta"].get("stop_reason") is not None
        elif kind == "message_stop":
            self.complete = True

    def _started(self, body: dict[str, Any], record: LaneRecord) -> None:
        block = body.get("content_block")
        index = body.get("index")
        kind = block.get("type") if isinstance(block, dict) else None
        if isinstance(index, int):
            self.next_block = max(self.next_block, index + 1)
        if kind == "text":
            self.open_block = index if isinstance(index, int) else None
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                record.add(block["text"])
        elif kind in ("thinking", "redacted_thinking"):
            record.structured = "an answer with thinking (no prefill with extended thinking)"
        elif kind in AnthropicMessages.STARTS:
            record.structured = "a tool's input"

    def continued(self, lane: int, record: LaneRecord) -> Resume:
        if isinstance(self.body.get("thinking"), dict) and self.body["thinking"].get("type") == "enabled":
            raise NotContinued("the request enables extended thinking, which takes no prefill")
        messages = self.body.get("messages")
        if not isinstance(messages, list):
            raise NotContinued("the request has no list of messages")
        messages = list(messages)
        last = messages[-1] if messages else None
        prefix = ""
        if isinstance(last, dict) and last.get("role") == "assistant":  # the client's own prefill
            if not isinstance(last.get("content"), str):
                raise NotContinued("the request's own final assistant message is not plain text")
            prefix = last["content"]
            messages.pop()
        prefill = (prefix + record.text).rstrip()
        record.skip = (prefix + record.text)[len(prefill) :]
        messages.append({"role": "assistant", "content": prefill})
        self.blocks = {}
        return Resume(
            {**self.body, "messages": messages, **remaining(self.body, ("max_tokens",), record.total)}, {0: 0}
        )

    def rewrite(self, resume: Resume, event: ServerSentEvent) -> list[ServerSentEvent]:
        body = json_object(event.data)
        if body is None:
            return [event]
        kind = body.get("type")
        if kind == "message_start":
            message = body.get("message")
            if isinstance(message, dict) and isinstance(message.get("usage"), dict):
                summed(self.usage, {k: v for k, v in message["usage"].items() if k != "output_tokens"})
            return []
        if kind == "message_delta":
            if isinstance(body.get("usage"), dict):
                summed(self.usage, body["usage"])
            if isinstance(body.get("delta"), dict):
                self.stop = body["delta"]
            return []
        if kind == "message_stop":
            resume.done = True
            return []
        if kind == "content_block_start":
            return self._block(body, event)
        if kind in ("content_block_delta", "content_block_stop"):
            return self._in_block(body, event)
        return [event]

    def _block(self, body: dict[str, Any], event: ServerSentEvent) -> list[ServerSentEvent]:
        index = body.get("index")
        block = body.get("content_block")
        if not isinstance(index, int):
            return [event]
        if (
            not self.blocks
            and self.open_block is not None
            and isinstance(block, dict)
            and block.get("type") == "text"
        ):
            self.blocks[index] = self.open_block  # the open text block goes on
            return []
        self.blocks[index] = self.next_block
        return [ServerSentEvent(dumps({**body, "index": self.next_block}), event.event)]

    def _in_block(self, body: dict[str, Any], event: ServerSentEvent) -> list[ServerSentEvent]:
        index = self.blocks.get(body.get("index"), body.get("index"))  # type: ignore[arg-type]
        out = {**body, "index": index}
        delta = body.get("delta")
        if (
            isinstance(delta, dict)
            and delta.get("type") == "text_delta"
            and isinstance(delta.get("text"), str)
        ):
            text = self.lane(0).skipped(delta["text"], 0)
            if not text:
                return []
            out["delta"] = {**delta, "text": text}
        return [ServerSentEvent(dumps(out), event.event)]

    def closing(self) -> list[ServerSentEvent]:
        usage = self.note_usage() or {}
        usage["output_tokens"] = usage.get("output_tokens", 0) + self.counted
        usage.setdefault("pacer", {"continuations": self.seams, "counted_completion_tokens": self.counted})
        end: list[dict[str, Any]] = []
        if self.open_block is not None:
            end.append({"type": "content_block_stop", "index": self.open_block})
        end += [
            {
                "type": "message_delta",
                "delta": self.stop or {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": usage,
            },
            {"type": "message_stop"},
        ]
        return [ServerSentEvent(dumps(e), e["type"]) for e in end]


AnthropicMessages.continues = MessagesContinuation
