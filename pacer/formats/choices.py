"""OpenAI's streams of ``choices``: Chat Completions and Completions.

- ``ChatCompletions`` (``/v1/chat/completions``): the text lanes are the text fields of
  each choice's ``delta`` (``FIELDS``: ``content`` and ``refusal`` are answer text,
  ``reasoning_content`` and ``reasoning`` reasoning), each choice of an ``n > 1``
  request in a lane of its own; kept: role chunks, tool-call deltas, finish reasons
  and the usage chunk, in order; logprobs travel with the text they belong to.
  ``data: [DONE]`` ends the stream; an ``{"error": ...}`` event ends it as an error.
- ``Completions`` (``/v1/completions``): the text lane is each choice's ``text``, with
  its logprobs; kept: finish reasons and the usage chunk.
- ``OpenAIChunks``: a pipeline's output chunks as ``chat.completion.chunk`` events
  (``PacedEventSource``'s ``encoder``).

A chunk that carries text and something else (a role, a finish reason) is sent as two:
the rest before the text when it announces the message (a role), after it otherwise.
A lane a check blocked ends as OpenAI and Azure end a filtered choice,
``finish_reason: "content_filter"`` (``data: [DONE]`` follows when every choice has
ended so); a stopped stream ends each unfinished choice with ``finish_reason: "stop"``.

Cost: O(size of the event) per event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from .._core import Chunk
from ..sse import ServerSentEvent
from .base import (
    ChunkEncoder,
    Ending,
    EndingKind,
    EventFormat,
    Keep,
    Part,
    Received,
    Text,
    UpstreamError,
    as_sent,
    dumps,
    event_name,
    field_of,
    frame,
    json_object,
    merged_extras,
    parse_json_event,
)

__all__ = ["ChatCompletions", "Completions", "OpenAIChunks", "parse_openai_event"]

_DONE = frame("[DONE]")


def parse_openai_event(event: ServerSentEvent) -> dict[str, Any] | None:
    """The JSON chunk of an OpenAI-compatible event; ``None`` for ``[DONE]``.

    Raises ``UpstreamError`` for an ``error`` event, an ``{"error": ...}`` body or data
    that is not a JSON object.
    """
    if event.data.strip() == "[DONE]":
        return None
    body = parse_json_event(event)
    if event.event == "error" or body.get("error"):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        raise UpstreamError(f"upstream error: {message}", body={"error": error})
    return body


class _Choices(EventFormat):
    """Chat Completions and Completions: chunks of ``choices``, ``[DONE]`` at the end."""

    #: The text fields of a choice (in the order a chunk's pieces take), and what each holds.
    FIELDS: ClassVar[dict[str, Part]] = {}

    # -- parsing ------------------------------------------------------------------------

    def parse(self, event: ServerSentEvent) -> list[Text | Keep]:
        body = parse_openai_event(event)  # raises for an error event or malformed data
        if body is None:
            self.complete = self.ended = True
            return [Keep(None, as_sent(event), end=True)]
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
            return [Keep(None, as_sent(event))]  # the usage chunk, or one we do not know
        name = event_name(event)
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
            return [Keep(lane, as_sent(event) if event is not None else frame(dumps(body), name))]
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

    def _fields(self, choice: dict[str, Any]) -> Any:
        """Where a choice holds its text fields."""
        raise NotImplementedError

    def _texts(self, choice: dict[str, Any]) -> list[tuple[str, str]]:
        fields = self._fields(choice)
        if not isinstance(fields, dict):
            return []
        return [(f, v) for f in self.FIELDS if isinstance(v := fields.get(f), str) and v]

    def _rest(self, choice: dict[str, Any], kinds: set[str]) -> dict[str, Any] | None:
        """The choice without its text, or ``None`` when nothing else is in it."""
        raise NotImplementedError

    # -- rendering ----------------------------------------------------------------------

    def text_frame(self, first: Text, text: str, extras: list[Any]) -> str:
        body, choice, name = first.template
        out = self._with_text(choice, first.kind, text)
        out["finish_reason"] = None
        if choice.get("logprobs") is not None:
            out["logprobs"] = merged_extras(choice["logprobs"], extras)
        return frame(dumps({**body, "choices": [out]}), name)

    def _with_text(self, choice: dict[str, Any], kind: Hashable, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def _no_text(self) -> dict[str, Any]:
        """The text field of a choice's last chunk, empty."""
        raise NotImplementedError

    # -- endings ------------------------------------------------------------------------

    def filtered(self, last: Text) -> Ending:
        """The choice's last chunk, as OpenAI and Azure end a filtered one:
        ``finish_reason: "content_filter"``."""
        body, choice, name = last.template
        end = {**self._with_text(choice, last.kind, ""), "finish_reason": "content_filter"}
        if "delta" in end:
            end["delta"] = {}
        if "logprobs" in end:
            end["logprobs"] = None
        return Ending(EndingKind.BLOCKED, (frame(dumps({**body, "choices": [end]}), name),))

    def closing(self) -> Ending:
        return Ending(EndingKind.BLOCKED, (_DONE,))

    def stopped(self, received: Received) -> Ending:
        """Each unfinished choice with ``finish_reason: "stop"``, then ``data: [DONE]``."""
        frames = []
        for index in sorted(received.lanes):
            lane = received.lanes[index]
            if lane.finished or lane.template is None:
                continue
            body, choice = lane.template
            end: dict[str, Any] = {"index": choice.get("index", index), **self._no_text()}
            end |= {"logprobs": None, "finish_reason": "stop"}
            frames.append(frame(dumps({**body, "choices": [end]})))
        return Ending(EndingKind.STOPPED, (*frames, _DONE))

    # -- reading ------------------------------------------------------------------------

    def read_data(self, data: str, received: Received) -> None:
        body = json_object(data)
        if body is None or "error" in body:
            return
        choices = body.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            lane = received.lane(choice.get("index", 0))
            lane.template = (body, choice)
            fields = self._fields(choice)
            if isinstance(fields, dict):
                for field, part in self.FIELDS.items():
                    if isinstance(value := fields.get(field), str):
                        lane.parts[part].add(value)
            if choice.get("finish_reason") is not None:
                lane.finished = True


class ChatCompletions(_Choices):
    """``/v1/chat/completions`` chunks: each choice's ``delta`` fields in ``FIELDS`` are
    text lanes, everything else is kept (see the module docstring)."""

    transcript = "chat.completions"
    name = "chat completions"
    FIELDS: ClassVar[dict[str, Part]] = {
        "reasoning_content": Part.REASONING,
        "reasoning": Part.REASONING,
        "content": Part.TEXT,
        "refusal": Part.TEXT,
    }

    def _fields(self, choice: dict[str, Any]) -> Any:
        return choice.get("delta")

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

    def _no_text(self) -> dict[str, Any]:
        return {"delta": {}}

    @staticmethod
    def content_of(chunk: Any) -> str:
        """The ``content`` text of one chunk's choice 0 (``""`` when it has none), from an
        SDK ``ChatCompletionChunk`` or the parsed JSON; ``UpstreamError`` for an error."""
        error = field_of(chunk, "error")
        if error:
            message = field_of(error, "message") or str(error)
            raise UpstreamError(f"upstream error: {message}", body={"error": error}, type="upstream_error")
        choices = field_of(chunk, "choices")
        if choices is None:
            if isinstance(chunk, Mapping) or hasattr(chunk, "choices"):
                return ""
            raise TypeError(f"openai_text: expected a chat-completion chunk, got {type(chunk).__name__}")
        for choice in choices:  # the usage-only chunk has none
            if (field_of(choice, "index") or 0) != 0:
                continue
            delta = field_of(choice, "delta")
            content = field_of(delta, "content") if delta is not None else None
            if content is None:
                return ""
            if not isinstance(content, str):
                raise UpstreamError(f"upstream delta content is {type(content).__name__}, not text")
            return content
        return ""


class Completions(_Choices):
    """``/v1/completions`` chunks: each choice's ``text`` is its text lane, the rest kept
    (see the module docstring)."""

    transcript = "completions"
    name = "completions"
    FIELDS: ClassVar[dict[str, Part]] = {"text": Part.TEXT}

    def _fields(self, choice: dict[str, Any]) -> Any:
        return choice

    def _rest(self, choice: dict[str, Any], kinds: set[str]) -> dict[str, Any] | None:
        if choice.get("finish_reason") is None:
            return None
        rest = {**choice, "text": ""}
        if "logprobs" in rest:
            rest["logprobs"] = None
        return rest

    def _with_text(self, choice: dict[str, Any], kind: Hashable, text: str) -> dict[str, Any]:
        return {**choice, "text": text}

    def _no_text(self) -> dict[str, Any]:
        return {"text": ""}


class OpenAIChunks(ChunkEncoder):
    """An encoder for ``PacedEventSource`` that sends each chunk as an OpenAI
    ``chat.completion.chunk``, so the ``openai`` SDK and OpenAI-format clients read the
    paced stream: ``PacedEventSource(source, pipeline, encoder=OpenAIChunks(model=...))``.

    The first chunk carries ``role: "assistant"``; the stream ends with a chunk whose
    ``finish_reason`` is ``"stop"``, or ``"content_filter"`` when a ``Guard`` in the
    pipeline blocked the rest (as OpenAI and Azure end a filtered answer), then
    ``data: [DONE]``.
    """

    transcript = "chat.completions"

    def __init__(self, model: str = "pacer", id: str | None = None, created: int | None = None) -> None:
        self.base = {
            "id": id or f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()) if created is None else created,
            "model": model,
        }
        self.started = False

    def __call__(self, chunk: Chunk) -> bytes:
        delta = {"content": chunk.text}
        if not self.started:
            self.started = True
            delta = {"role": "assistant", **delta}
        return self._frame(delta, None).encode("utf-8")

    def end(self, blocked: bool) -> bytes:
        """The last chunk: ``finish_reason`` ``"content_filter"`` if ``blocked``, else ``"stop"``."""
        return self._frame({}, "content_filter" if blocked else "stop").encode("utf-8")

    def ending(self, blocked: bool, done: bool) -> Ending:
        last = self._frame({}, "content_filter" if blocked else "stop")
        kind = EndingKind.BLOCKED if blocked else EndingKind.DONE
        return Ending(kind, (last, _DONE) if done else (last,))

    def _frame(self, delta: dict[str, Any], finish: str | None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return frame(dumps({**self.base, "choices": [choice]}))
