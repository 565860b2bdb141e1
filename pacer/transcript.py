"""What a stream's written events say: the text its readers were shown, and the events
that end it cleanly where it was cut.

A ``Transcript`` reads the SSE frames a stream sent (or logged), in one of the formats
pacer streams: ``"text"`` (each event's data is text, ``PacedEventSource``'s default),
``"chat.completions"``, ``"completions"``, ``"responses"`` and ``"messages"`` (the
APIs of ``pacer.apis``). ``text`` is the answer's text as a client shows it (the
``content`` of the first choice, the ``output_text`` of a response, the ``text``
blocks of a message), ``reasoning`` the reasoning or thinking text; ``choices`` has
both for each choice of an ``n > 1`` request. ``stop_frames()`` are the events that
end the stream the API's own way after the last one read, as a client's "stop" would
have it: each unfinished choice with ``finish_reason: "stop"`` then ``data: [DONE]``;
a response with ``response.incomplete`` (``incomplete_details.reason: "cancelled"``);
a message with its open blocks stopped, ``stop_reason: "end_turn"`` and
``message_stop``. Error events are no text, and end nothing.

This is how ``pacer.resumable`` answers a cancel: from the events written, so the text
it reports is exactly what every reader received.

Cost: O(size of the frames) once each.
"""

from __future__ import annotations

import json
from typing import Any

from .apis import Responses
from .events import dumps, frame
from .sse import ServerSentEvent, SSEDecoder

__all__ = ["FORMAT_NAMES", "Transcript"]

#: The formats a transcript reads, by name.
FORMAT_NAMES = ("text", "chat.completions", "completions", "responses", "messages")

_CHOICE_TEXT = {"content": "text", "refusal": "text", "text": "text", "reasoning_content": "reasoning"}
_CHOICE_TEXT["reasoning"] = "reasoning"
_RESPONSE_TEXT = {
    "response.output_text.delta": "text",
    "response.refusal.delta": "text",
    "response.reasoning_text.delta": "reasoning",
    "response.reasoning_summary_text.delta": "reasoning",
}
_RESPONSE_END = Responses.END - {"error"}  # an error event ends nothing here


class _Choice:
    __slots__ = ("finished", "parts", "template")

    def __init__(self) -> None:
        self.parts: dict[str, list[str]] = {"text": [], "reasoning": []}
        self.finished = False
        self.template: tuple[dict[str, Any], dict[str, Any]] | None = None  # a chunk and its choice


class Transcript:
    """The text of a stream's frames, fed in order, and how to end it (module docstring)."""

    def __init__(self, fmt: str) -> None:
        if fmt not in FORMAT_NAMES:
            raise ValueError(f"Transcript: fmt must be one of {', '.join(FORMAT_NAMES)}, got {fmt!r}")
        self.fmt = fmt
        self.complete = False  # the stream's own end event was read
        self._decoder = SSEDecoder()
        self._choices: dict[int, _Choice] = {}
        self._response: dict[str, Any] = {}  # the latest response object (Responses)
        self._sequence: int | None = None  # the last sequence number (Responses)
        self._open: list[Any] = []  # open content blocks (Messages)
        self._started = False  # message_start was read (Messages)

    def feed(self, data: bytes) -> None:
        """Read the next frames (any bytes of the stream, split anywhere)."""
        for event in self._decoder.feed(data):
            self._event(event)

    @property
    def text(self) -> str:
        """The first choice's answer text."""
        return self._joined(0, "text")

    @property
    def reasoning(self) -> str:
        """The first choice's reasoning (or thinking) text."""
        return self._joined(0, "reasoning")

    @property
    def choices(self) -> list[dict[str, Any]]:
        """``{"index", "text", "reasoning"}`` of each choice, by index."""
        return [
            {"index": i, "text": self._joined(i, "text"), "reasoning": self._joined(i, "reasoning")}
            for i in sorted(self._choices)
        ]

    def _joined(self, index: int, kind: str) -> str:
        choice = self._choices.get(index)
        return "" if choice is None else "".join(choice.parts[kind])

    def _choice(self, index: object) -> _Choice:
        lane = index if isinstance(index, int) and not isinstance(index, bool) else 0
        choice = self._choices.get(lane)
        if choice is None:
            choice = self._choices[lane] = _Choice()
        return choice

    # -- reading ----------------------------------------------------------------------

    def _event(self, event: ServerSentEvent) -> None:
        if event.event == "error":
            return
        if event.data.strip() == "[DONE]":
            self.complete = True
            return
        if self.fmt == "text":
            self._choice(0).parts["text"].append(event.data)
            return
        try:
            body = json.loads(event.data)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        if "error" in body and self.fmt in ("chat.completions", "completions"):
            return
        if self.fmt == "responses":
            self._response_event(body)
        elif self.fmt == "messages":
            self._message_event(body)
        else:
            self._choices_event(body)

    def _choices_event(self, body: dict[str, Any]) -> None:
        choices = body.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            lane = self._choice(choice.get("index", 0))
            lane.template = (body, choice)
            fields = choice.get("delta") if self.fmt == "chat.completions" else choice
            if isinstance(fields, dict):
                for field, kind in _CHOICE_TEXT.items():
                    value = fields.get(field)
                    if isinstance(value, str) and (field != "text" or self.fmt == "completions"):
                        lane.parts[kind].append(value)
            if choice.get("finish_reason") is not None:
                lane.finished = True

    def _response_event(self, body: dict[str, Any]) -> None:
        kind = body.get("type")
        if isinstance(body.get("response"), dict):
            self._response = body["response"]
        if isinstance(body.get("sequence_number"), int):
            self._sequence = body["sequence_number"]
        if kind in _RESPONSE_END:
            self.complete = True
        part = _RESPONSE_TEXT.get(str(kind))
        if part is not None and isinstance(body.get("delta"), str):
            self._choice(0).parts[part].append(body["delta"])

    def _message_event(self, body: dict[str, Any]) -> None:
        kind = body.get("type")
        if kind == "message_start":
            self._started = True
        elif kind == "content_block_start":
            self._open.append(body.get("index"))
        elif kind == "content_block_stop" and body.get("index") in self._open:
            self._open.remove(body.get("index"))
        elif kind == "message_stop":
            self.complete = True
        delta = body.get("delta")
        if kind == "content_block_delta" and isinstance(delta, dict):
            for field, part in (("text", "text"), ("thinking", "reasoning")):
                if delta.get("type") == f"{field}_delta" and isinstance(delta.get(field), str):
                    self._choice(0).parts[part].append(delta[field])

    # -- ending -------------------------------------------------------------------------

    def stop_frames(self) -> list[bytes]:
        """The events that end the stream after what was read (none if it had ended)."""
        if self.complete:
            return []
        if self.fmt == "responses":
            frames = self._response_stop()
        elif self.fmt == "messages":
            frames = self._message_stop()
        elif self.fmt == "text":
            frames = [frame("[DONE]")]
        else:
            frames = self._choices_stop()
        self.complete = True
        return [f.encode("utf-8") for f in frames]

    def _choices_stop(self) -> list[str]:
        frames = []
        for index in sorted(self._choices):
            lane = self._choices[index]
            if lane.finished or lane.template is None:
                continue
            body, choice = lane.template
            end: dict[str, Any] = {"index": choice.get("index", index)}
            if self.fmt == "chat.completions":
                end["delta"] = {}
            else:
                end["text"] = ""
            end |= {"logprobs": None, "finish_reason": "stop"}
            frames.append(frame(dumps({**body, "choices": [end]})))
        return [*frames, frame("[DONE]")]

    def _response_stop(self) -> list[str]:
        response = {**self._response, "status": "incomplete", "incomplete_details": {"reason": "cancelled"}}
        body: dict[str, Any] = {"type": "response.incomplete", "response": response}
        if self._sequence is not None:
            body["sequence_number"] = self._sequence + 1
        return [frame(dumps(body), "response.incomplete")]

    def _message_stop(self) -> list[str]:
        if not self._started:
            return []
        events: list[dict[str, Any]] = [{"type": "content_block_stop", "index": i} for i in self._open]
        delta = {"stop_reason": "end_turn", "stop_sequence": None}
        events += [
            {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 0}},
            {"type": "message_stop"},
        ]
        self._open = []
        return [frame(dumps(e), e["type"]) for e in events]
