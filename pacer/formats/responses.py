"""OpenAI's Responses stream (``/v1/responses``).

Text lanes (one lane): the ``delta`` of the event types in ``Responses.TEXT``
(``response.output_text.delta`` and ``response.refusal.delta`` are answer text,
``response.reasoning_text.delta`` and ``response.reasoning_summary_text.delta``
reasoning). Kept, in order: every other event (function-call arguments, items and
parts added and done, ``response.completed``, ``error``); ``sequence_number`` is
renumbered so it still counts every event once. A blocked stream ends with
``response.incomplete`` (``incomplete_details.reason: "content_filter"``), a stopped
one with ``response.incomplete`` (``"cancelled"``).

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
    as_sent,
    dumps,
    event_name,
    frame,
    json_object,
    merged_extras,
    parse_json_event,
)

__all__ = ["Responses"]


class Responses(EventFormat):
    """``/v1/responses`` events: the ``delta`` of the types in ``TEXT`` is paced, every
    other event kept (see the module docstring)."""

    transcript = "responses"
    name = "responses"
    #: The event types whose ``delta`` is text, and what each holds.
    TEXT: ClassVar[dict[str, Part]] = {
        "response.output_text.delta": Part.TEXT,
        "response.refusal.delta": Part.TEXT,
        "response.reasoning_text.delta": Part.REASONING,
        "response.reasoning_summary_text.delta": Part.REASONING,
    }
    #: The event types that end the stream.
    END = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})

    def __init__(self) -> None:
        super().__init__()
        self.sequence: int | None = None  # the next sequence number to give
        self.response: dict[str, Any] = {}  # the latest response object an event carried
        self.last_sequence: int | None = None  # the last sequence number read (``read``)

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
        if isinstance(body.get("response"), dict):
            self.response = body["response"]
        name = event_name(event)
        delta = body.get("delta")
        if kind in self.TEXT and isinstance(delta, str) and delta:
            where = ("item_id", "output_index", "content_index", "summary_index")
            key = (kind, *(body.get(name) for name in where))
            return [Text(0, key, delta, (body, name), body.get("logprobs"))]
        return [Keep(0, "", (body, name), failure=event.event == "error")]

    def keep_frame(self, keep: Keep) -> str:
        if keep.body is None:
            return keep.frame
        body, name = keep.body
        return frame(dumps(self._numbered(body)), name)

    def text_frame(self, first: Text, text: str, extras: list[Any]) -> str:
        body, name = first.template
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
        """``response.incomplete`` with ``incomplete_details.reason == "content_filter"``."""
        response = {
            **self.response,
            "status": "incomplete",
            "incomplete_details": {"reason": "content_filter"},
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
