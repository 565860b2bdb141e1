"""The event formats of the streaming APIs pacer paces in their own format (``EventPacer``).

- ``ChatCompletions`` (``/v1/chat/completions``): the text fields of each choice's
  ``delta`` (``content``, ``reasoning_content``, ``reasoning``, ``refusal``) are paced,
  each choice of an ``n > 1`` request in a lane of its own; role chunks, tool-call
  deltas, finish reasons and the usage chunk are kept in order; logprobs travel with
  the text they belong to. ``data: [DONE]`` ends the stream; an ``{"error": ...}``
  event ends it as an error.
- ``Completions`` (``/v1/completions``): each choice's ``text``, with its logprobs.
- ``Responses`` (``/v1/responses``): ``response.output_text.delta``, refusal, reasoning
  and reasoning-summary text deltas are paced; every other event (function-call
  arguments, items and parts added and done, ``response.completed``, ``error``) is kept
  in order; ``sequence_number`` is renumbered so it still counts every event once.
- ``AnthropicMessages`` (``/v1/messages``): ``content_block_delta`` text and thinking
  deltas are paced; ``message_start``, block starts and stops, ``signature_delta``,
  ``input_json_delta``, ``ping``, ``message_delta`` (usage), ``message_stop`` and
  ``error`` are kept.

When a ``Guard`` in a lane's pipeline blocks, the lane ends the API's way: a Chat
Completions or Completions choice with ``finish_reason: "content_filter"`` (as OpenAI
and Azure do; ``data: [DONE]`` follows when every choice has ended so), a Responses
stream with ``response.incomplete`` (``incomplete_details.reason: "content_filter"``),
a Messages stream with ``stop_reason: "refusal"``.

A chunk that carries text and something else (a role, a finish reason) is sent as two:
the rest before the text when it announces the message (a role), after it otherwise.

Cost: O(size of the event) per event.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar

from .adapters import parse_json_event, parse_openai_event
from .events import EventFormat, Keep, Text, dumps, frame
from .sse import ServerSentEvent, encode

__all__ = ["FORMATS", "AnthropicMessages", "ChatCompletions", "Completions", "Responses"]


def _event_name(event: ServerSentEvent) -> str | None:
    return None if event.event == "message" else event.event


def _as_sent(event: ServerSentEvent) -> str:
    """The event's frame as the upstream sent it (its type and data, line for line)."""
    return encode(event.data, event=_event_name(event)).decode("utf-8")


def _merged(template: Any, extras: list[Any]) -> Any:
    """Per-token data of several upstream events as one: each list field concatenated."""
    if isinstance(template, list):
        return [x for extra in extras if isinstance(extra, list) for x in extra]
    if not isinstance(template, dict):
        return template
    out: dict[str, Any] = {}
    for key, value in template.items():
        lists = [e[key] for e in extras if isinstance(e, dict) and isinstance(e.get(key), list)]
        if lists:
            out[key] = [x for part in lists for x in part]
        else:
            out[key] = [] if isinstance(value, list) else (None if extras else value)
    return out


class _Choices(EventFormat):
    """Chat Completions and Completions: chunks of ``choices``, ``[DONE]`` at the end."""

    def parse(self, event: ServerSentEvent) -> list[Text | Keep]:
        body = parse_openai_event(event)  # raises for an error event or malformed data
        if body is None:
            self.complete = self.ended = True
            return [Keep(None, _as_sent(event), end=True)]
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
            return [Keep(None, _as_sent(event))]  # the usage chunk, or one we do not know
        name = _event_name(event)
        if len(choices) == 1:
            return self._choice(body, choices[0], name, event)
        pieces: list[Text | Keep] = []
        for i, choice in enumerate(choices):  # one event per choice, the usage on the last
            part = {**body, "choices": [choice]}
            if i < len(choices) - 1 and "usage" in part:
                part["usage"] = None
            pieces += self._choice(part, choice, name, None)
        return pieces

    def _choice(
        self, body: dict[str, Any], choice: dict[str, Any], name: str | None, event: ServerSentEvent | None
    ) -> list[Text | Keep]:
        index = choice.get("index", 0)
        lane = index if isinstance(index, int) and not isinstance(index, bool) else 0
        texts = self._texts(choice)
        if not texts:
            return [Keep(lane, _as_sent(event) if event is not None else frame(dumps(body), name))]
        pieces: list[Text | Keep] = [Text(lane, kind, text, (body, choice, name)) for kind, text in texts]
        last = pieces[-1]
        assert isinstance(last, Text)
        last.extra = choice.get("logprobs")
        rest = self._rest(choice, {kind for kind, _ in texts})
        if rest is None:
            return pieces
        keep = Keep(lane, frame(dumps({**body, "choices": [rest]}), name))
        announces = isinstance(rest.get("delta"), dict) and "role" in rest["delta"]
        return [keep, *pieces] if announces else [*pieces, keep]

    def _texts(self, choice: dict[str, Any]) -> list[tuple[str, str]]:
        raise NotImplementedError

    def _rest(self, choice: dict[str, Any], kinds: set[str]) -> dict[str, Any] | None:
        """The choice without its text, or ``None`` when nothing else is in it."""
        raise NotImplementedError

    def text_frame(self, first: Text, text: str, extras: list[Any]) -> str:
        body, choice, name = first.template
        out = self._with_text(choice, first.kind, text)
        out["finish_reason"] = None
        if choice.get("logprobs") is not None:
            out["logprobs"] = _merged(choice["logprobs"], extras)
        return frame(dumps({**body, "choices": [out]}), name)

    def _with_text(self, choice: dict[str, Any], kind: Hashable, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def filtered(self, last: Text) -> list[str]:
        """The choice's last chunk, as OpenAI and Azure end a filtered one:
        ``finish_reason: "content_filter"``."""
        body, choice, name = last.template
        end = {**self._with_text(choice, last.kind, ""), "finish_reason": "content_filter"}
        if "delta" in end:
            end["delta"] = {}
        if "logprobs" in end:
            end["logprobs"] = None
        return [frame(dumps({**body, "choices": [end]}), name)]

    def closing(self) -> list[str]:
        return [frame("[DONE]")]


class ChatCompletions(_Choices):
    """``/v1/chat/completions`` chunks (see the module docstring)."""

    transcript = "chat.completions"

    name = "chat completions"
    FIELDS = ("reasoning_content", "reasoning", "content", "refusal")

    def _texts(self, choice: dict[str, Any]) -> list[tuple[str, str]]:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return []
        return [(f, v) for f in self.FIELDS if isinstance(v := delta.get(f), str) and v]

    def _rest(self, choice: dict[str, Any], kinds: set[str]) -> dict[str, Any] | None:
        delta = {k: v for k, v in choice["delta"].items() if k not in kinds}
        if choice.get("finish_reason") is None and all(v is None for v in delta.values()):
            return None
        rest = {**choice, "delta": delta}
        if "logprobs" in rest:
            rest["logprobs"] = None  # they went with the text
        return rest

    def _with_text(self, choice: dict[str, Any], kind: Hashable, text: str) -> dict[str, Any]:
        return {**choice, "delta": {kind: text}}


class Completions(_Choices):
    """``/v1/completions`` chunks: each choice's ``text`` (see the module docstring)."""

    transcript = "completions"

    name = "completions"

    def _texts(self, choice: dict[str, Any]) -> list[tuple[str, str]]:
        text = choice.get("text")
        return [("text", text)] if isinstance(text, str) and text else []

    def _rest(self, choice: dict[str, Any], kinds: set[str]) -> dict[str, Any] | None:
        if choice.get("finish_reason") is None:
            return None
        rest = {**choice, "text": ""}
        if "logprobs" in rest:
            rest["logprobs"] = None
        return rest

    def _with_text(self, choice: dict[str, Any], kind: Hashable, text: str) -> dict[str, Any]:
        return {**choice, "text": text}


class Responses(EventFormat):
    """``/v1/responses`` events (see the module docstring)."""

    transcript = "responses"

    name = "responses"
    TEXT = frozenset(
        {
            "response.output_text.delta",
            "response.refusal.delta",
            "response.reasoning_text.delta",
            "response.reasoning_summary_text.delta",
        }
    )
    END = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})

    def __init__(self) -> None:
        super().__init__()
        self.sequence: int | None = None  # the next sequence number to give
        self.response: dict[str, Any] = {}  # the latest response object an event carried

    def parse(self, event: ServerSentEvent) -> list[Text | Keep]:
        if event.data.strip() == "[DONE]":
            self.ended = True
            return [Keep(0, _as_sent(event))]
        body = parse_json_event(event)
        kind = body.get("type")
        if not isinstance(kind, str):
            kind = event.event
        if kind in self.END:
            self.complete = True
        if isinstance(body.get("response"), dict):
            self.response = body["response"]
        name = _event_name(event)
        delta = body.get("delta")
        if kind in self.TEXT and isinstance(delta, str) and delta:
            where = ("item_id", "output_index", "content_index", "summary_index")
            key = (kind, *(body.get(name) for name in where))
            return [Text(0, key, delta, (body, name), body.get("logprobs"))]
        return [Keep(0, "", (body, name))]

    def keep_frame(self, keep: Keep) -> str:
        if keep.body is None:
            return keep.frame
        body, name = keep.body
        return frame(dumps(self._numbered(body)), name)

    def text_frame(self, first: Text, text: str, extras: list[Any]) -> str:
        body, name = first.template
        out = {**body, "delta": text}
        if isinstance(body.get("logprobs"), list):
            out["logprobs"] = _merged(body["logprobs"], extras)
        return frame(dumps(self._numbered(out)), name)

    def filtered(self, last: Text) -> list[str]:
        """``response.incomplete`` with ``incomplete_details.reason == "content_filter"``."""
        response = {
            **self.response,
            "status": "incomplete",
            "incomplete_details": {"reason": "content_filter"},
        }
        body = {"type": "response.incomplete", "response": response, "sequence_number": 0}
        self.complete = True
        return [frame(dumps(self._numbered(body)), "response.incomplete")]

    def _numbered(self, body: dict[str, Any]) -> dict[str, Any]:
        number = body.get("sequence_number")
        if not isinstance(number, int):
            return body
        if self.sequence is None:
            self.sequence = number  # count on from the upstream's first
        out = {**body, "sequence_number": self.sequence}
        self.sequence += 1
        return out


class AnthropicMessages(EventFormat):
    """Anthropic ``/v1/messages`` events (see the module docstring)."""

    transcript = "messages"

    name = "messages"
    TEXT: ClassVar[dict[str, str]] = {"text_delta": "text", "thinking_delta": "thinking"}

    def parse(self, event: ServerSentEvent) -> list[Text | Keep]:
        body = parse_json_event(event)
        kind = body.get("type")
        if kind in ("message_stop", "error"):
            self.complete = True
        delta = body.get("delta")
        if kind == "content_block_delta" and isinstance(delta, dict):
            field = self.TEXT.get(str(delta.get("type")))
            text = delta.get(field) if field is not None else None
            if field is not None and isinstance(text, str) and text:
                key = (delta["type"], body.get("index"))
                return [Text(0, key, text, (body, field, _event_name(event)))]
        return [Keep(0, _as_sent(event))]

    def text_frame(self, first: Text, text: str, extras: list[Any]) -> str:
        body, field, name = first.template
        return frame(dumps({**body, "delta": {**body["delta"], field: text}}), name)

    def filtered(self, last: Text) -> list[str]:
        """The open block closed, then ``stop_reason: "refusal"`` and ``message_stop``."""
        body = last.template[0]
        stop = {"type": "content_block_stop", "index": body.get("index", 0)}
        delta = {"stop_reason": "refusal", "stop_sequence": None}
        ending = {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 0}}
        self.complete = True
        events = (stop, ending, {"type": "message_stop"})
        return [frame(dumps(e), e["type"]) for e in events]  # type: ignore[arg-type]


#: The format of each streaming route, by path.
FORMATS: dict[str, type[EventFormat]] = {
    "/v1/chat/completions": ChatCompletions,
    "/v1/completions": Completions,
    "/v1/responses": Responses,
    "/v1/messages": AnthropicMessages,
}
