"""OpenAI's streams of ``choices``: Chat Completions and Completions.

- ``ChatCompletions`` (``/v1/chat/completions``): the text lanes are the text fields of
  each choice's ``delta`` (``FIELDS``: ``content`` and ``refusal`` are answer text,
  ``reasoning_content`` and ``reasoning`` reasoning), each text part of a list
  ``content``, the audio ``transcript``, and each tool call's (or function call's)
  ``arguments``, each choice of an ``n > 1`` request in a lane of its own; kept: role
  chunks, the rest of tool-call deltas (ids, names), finish reasons and the usage
  chunk, in order; logprobs travel with the text they belong to. A ``delta`` field
  not in ``KNOWN`` that holds text is ``Unchecked``.
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
    FrameTemplate,
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
    merged_extras,
    parse_json_event,
)
from .splice import Continuation, LaneRecord, NotContinued, Resume, remaining, summed

__all__ = [
    "ChatCompletions",
    "ChatContinuation",
    "Completions",
    "CompletionsContinuation",
    "OpenAIChunks",
    "parse_openai_event",
]

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

    def __init__(self) -> None:
        super().__init__()
        self._frames = FrameTemplate()  # the frames of the event being paced out

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
        unknown = self._unknown(choice)
        if not texts:
            sent = as_sent(event) if event is not None else frame(dumps(body), name)
            if unknown is not None:
                return [Unchecked(lane, sent, unknown, Text(lane, "content", "", (body, choice, name)))]
            return [Keep(lane, sent, floating=self._empty(choice))]
        pieces: list[Text | Keep] = [Text(lane, kind, text, (body, choice, name)) for kind, text in texts]
        last = pieces[-1]
        assert isinstance(last, Text)
        last.extra = choice.get("logprobs")
        rest = self._rest(choice, {kind for kind, _ in texts})
        if rest is None:
            return pieces
        sent = frame(dumps({**body, "choices": [rest]}), name)
        keep = Keep(lane, sent) if unknown is None else Unchecked(lane, sent, unknown, last)
        announces = isinstance(rest.get("delta"), dict) and "role" in rest["delta"]
        return [keep, *pieces] if announces else [*pieces, keep]

    def _unknown(self, choice: dict[str, Any]) -> str | None:
        """The field of a choice that carries text in a channel this format does not know."""
        return None

    def _empty(self, choice: dict[str, Any]) -> bool:
        """Whether a choice without text says nothing (then it may float: ``Keep``)."""
        fields = self._fields(choice)
        values = fields.values() if isinstance(fields, dict) else ()
        return choice.get("finish_reason") is None and not any(values) and not choice.get("logprobs")

    def _part(self, kind: Hashable) -> Part:
        """What the text of a channel holds."""
        if isinstance(kind, str):
            return self.FIELDS[kind]
        return Part.ARGUMENTS if kind[0] in ("tool_calls", "function_call") else Part.TEXT  # type: ignore[index]

    def _fields(self, choice: dict[str, Any]) -> Any:
        """Where a choice holds its text fields."""
        raise NotImplementedError

    def _texts(self, choice: dict[str, Any]) -> list[tuple[Hashable, str]]:
        fields = self._fields(choice)
        if not isinstance(fields, dict):
            return []
        return [(f, v) for f in self.FIELDS if isinstance(v := fields.get(f), str) and v]

    def _rest(self, choice: dict[str, Any], kinds: set[Hashable]) -> dict[str, Any] | None:
        """The choice without its text, or ``None`` when nothing else is in it."""
        raise NotImplementedError

    # -- rendering ----------------------------------------------------------------------

    def text_frame(self, first: Text, text: str, extras: list[Any]) -> str:
        body, choice, name = first.template
        kind = first.kind

        def make(text: str) -> str:
            out = self._with_text(choice, kind, text)
            out["finish_reason"] = None
            if choice.get("logprobs") is not None:
                out["logprobs"] = merged_extras(choice["logprobs"], extras)
            return frame(dumps({**body, "choices": [out]}), name)

        if choice.get("logprobs") is not None:  # each frame's own: rendered whole
            return make(text)
        return self._frames.render(first.template, kind, text, make)

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
            for kind, text in self._texts(choice):
                lane.parts[self._part(kind)].add(text)
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

    #: The ``delta`` fields this format knows: text (``FIELDS``), or text inside
    #: (``content`` as a list of parts, tool-call and function-call arguments, the audio
    #: transcript), or none (``role``). Any other field with text is ``Unchecked``.
    KNOWN: ClassVar[frozenset[str]] = frozenset(
        {
            "role",
            "content",
            "refusal",
            "reasoning_content",
            "reasoning",
            "tool_calls",
            "function_call",
            "audio",
        }
    )

    def _fields(self, choice: dict[str, Any]) -> Any:
        return choice.get("delta")

    def _texts(self, choice: dict[str, Any]) -> list[tuple[Hashable, str]]:
        """Each text channel of the delta: ``FIELDS``, then each text part of a list
        ``content`` (``("content", i)``), each tool call's arguments (``("tool_calls",
        index)``), a function call's (``("function_call",)``) and the audio transcript
        (``("audio",)``)."""
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return []
        out: list[tuple[Hashable, str]] = [
            (f, v) for f in self.FIELDS if isinstance(v := delta.get(f), str) and v
        ]
        content = delta.get("content")
        if isinstance(content, list):
            for i, part in enumerate(content):
                if isinstance(part, dict) and isinstance(text := part.get("text"), str) and text:
                    out.append((("content", i), text))
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict) and (arguments := _arguments(call.get("function"))):
                out.append((("tool_calls", call.get("index", 0)), arguments))
        if arguments := _arguments(delta.get("function_call")):
            out.append((("function_call",), arguments))
        audio = delta.get("audio")
        if isinstance(audio, dict) and isinstance(text := audio.get("transcript"), str) and text:
            out.append((("audio",), text))
        return out

    def _unknown(self, choice: dict[str, Any]) -> str | None:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return None
        for key, value in delta.items():
            if key not in self.KNOWN and has_text(value):
                return f"delta.{key}"
        content = delta.get("content")
        if isinstance(content, list):
            for part in content:
                if not isinstance(part, dict) or has_text(
                    {k: v for k, v in part.items() if k not in ("type", "text")}
                ):
                    return "delta.content part"
        return None

    def _rest(self, choice: dict[str, Any], kinds: set[Hashable]) -> dict[str, Any] | None:
        delta = {
            key: _without_text(key, value, kinds)
            for key, value in choice["delta"].items()
            if key not in kinds
        }
        if choice.get("finish_reason") is None and all(v is None for v in delta.values()):
            return None
        rest = {**choice, "delta": delta}
        if "logprobs" in rest:
            rest["logprobs"] = None  # they went with the text
        return rest

    def _with_text(self, choice: dict[str, Any], kind: Hashable, text: str) -> dict[str, Any]:
        if isinstance(kind, str):
            return {**choice, "delta": {kind: text}}
        delta = choice.get("delta") or {}
        match kind:
            case ("content", int(i)):
                parts = delta.get("content") or []
                part = parts[i] if i < len(parts) and isinstance(parts[i], dict) else {"type": "text"}
                return {**choice, "delta": {"content": [{**part, "text": text}]}}
            case ("tool_calls", index):
                return {
                    **choice,
                    "delta": {"tool_calls": [{"index": index, "function": {"arguments": text}}]},
                }
            case ("function_call",):
                return {**choice, "delta": {"function_call": {"arguments": text}}}
            case _:
                audio = delta.get("audio") or {}
                kept = {k: v for k, v in audio.items() if k == "id"}
                return {**choice, "delta": {"audio": {**kept, "transcript": text}}}

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


def _arguments(function: Any) -> str:
    """The arguments text of a tool call's ``function`` (``""`` when it has none)."""
    if isinstance(function, dict) and isinstance(arguments := function.get("arguments"), str):
        return arguments
    return ""


def _without_text(key: str, value: Any, kinds: set[Hashable]) -> Any:
    """A delta field with the text the lanes carry taken out (``None``: nothing is left)."""
    if key == "content" and isinstance(value, list):
        return [p for i, p in enumerate(value) if ("content", i) not in kinds] or None
    if key == "tool_calls" and isinstance(value, list):
        return [c for c in map(_without_arguments, value) if c is not None] or None
    if key == "function_call":
        return _without_arguments(value)
    if key == "audio" and isinstance(value, dict):
        rest = {k: v for k, v in value.items() if k != "transcript"}
        return rest if set(rest) - {"id"} else None
    return value


def _without_arguments(call: Any) -> Any:
    """A tool call (or its ``function``) with its arguments text taken out; ``None`` when
    nothing else is in it (its index aside)."""
    if not isinstance(call, dict):
        return call
    function = call.get("function", call)
    if not isinstance(function, dict) or not _arguments(function):
        return call
    function = {**function, "arguments": ""}
    if "function" not in call:
        return function if set(function) - {"arguments"} else None
    out = {**call, "function": function}
    return out if set(call) - {"index", "function"} or set(function) - {"arguments"} else None


class Completions(_Choices):
    """``/v1/completions`` chunks: each choice's ``text`` is its text lane, the rest kept
    (see the module docstring)."""

    transcript = "completions"
    name = "completions"
    FIELDS: ClassVar[dict[str, Part]] = {"text": Part.TEXT}

    def _fields(self, choice: dict[str, Any]) -> Any:
        return choice

    def _rest(self, choice: dict[str, Any], kinds: set[Hashable]) -> dict[str, Any] | None:
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


# -- continuing a broken answer (``pacer.formats.splice``) ------------------------------


class _ChoicesContinuation(Continuation):
    """A stream of ``choices``: each lane a choice; the usage chunk held back and summed."""

    #: The request's token limits, the first the one a continuation lowers by default.
    LIMITS: ClassVar[tuple[str, ...]] = ("max_tokens",)
    #: The field of a choice that carries its answer text.
    TEXT: ClassVar[str] = "text"

    def __init__(self, body: Mapping[str, Any], policy: str) -> None:
        super().__init__(body, policy)
        self.head: dict[str, Any] = {}  # the first stream's id, created, model, ...

    def lane_count(self) -> int:
        n = self.body.get("n", 1)
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1

    def failure(self, event: ServerSentEvent) -> UpstreamError | None:
        try:
            parse_openai_event(event)
        except UpstreamError as exc:
            return None if exc.type == "malformed_upstream" else exc
        return None

    def note(self, event: ServerSentEvent) -> None:
        if event.data.strip() == "[DONE]":
            self.complete = True
            return
        body = json_object(event.data)
        if body is None:
            return
        if not self.head:
            self.head = {k: body[k] for k in ("id", "created", "model", "system_fingerprint") if k in body}
        for choice in body.get("choices") or ():
            if isinstance(choice, dict):
                self._note_choice(choice)

    def _note_choice(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        record = self.lane(index if isinstance(index, int) else 0)
        fields = self._fields(choice)
        if isinstance(fields, dict):
            record.opened = record.opened or "role" in fields
            text = fields.get(self.TEXT)
            if isinstance(text, str):
                record.add(text)
            elif text is not None:
                record.structured = "content parts"
            record.structured = self._structured(fields) or record.structured
        if choice.get("finish_reason") is not None:
            record.finished = True

    def _fields(self, choice: dict[str, Any]) -> Any:
        return choice

    def _structured(self, fields: dict[str, Any]) -> str | None:
        return None

    def rewrite(self, resume: Resume, event: ServerSentEvent) -> list[ServerSentEvent]:
        if event.data.strip() == "[DONE]":
            resume.done = True
            return []
        body = parse_openai_event(event)
        assert body is not None
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            if isinstance(body.get("usage"), dict):
                summed(self.usage, body["usage"])
            return []
        out = [c for c in (self._spliced(resume, c) for c in choices if isinstance(c, dict)) if c is not None]
        if not out:
            return []
        return [ServerSentEvent(dumps({**body, **self.head, "choices": out}), event.event)]

    def _spliced(self, resume: Resume, choice: dict[str, Any]) -> dict[str, Any] | None:
        """A continuation's choice as the client lane's: its index, without a second
        role, its text past what the lane must begin with; ``None``: nothing is left."""
        index = resume.lanes.get(choice.get("index", 0))
        if index is None:
            return None
        record = self.lane(index)
        fields = dict(self._fields(choice) or {})
        if record.opened:
            fields.pop("role", None)
        text = fields.get(self.TEXT)
        if isinstance(text, str):
            fields[self.TEXT] = record.skipped(text, index)
            if record.finished and fields[self.TEXT]:
                raise NotContinued(f"the new answer of choice {index} goes on past the text produced")
        finish = None if record.finished else choice.get("finish_reason")
        if not any(v for v in fields.values()) and finish is None:
            return None
        return self._choice({**choice, "index": index, "finish_reason": finish}, fields)

    def _choice(self, choice: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        return {**choice, **fields}

    def closing(self) -> list[ServerSentEvent]:
        usage = self.note_usage()
        events = []
        if usage is not None:
            usage["completion_tokens"] = usage.get("completion_tokens", 0) + self.counted
            usage["total_tokens"] = usage.get("total_tokens", 0) + self.counted
            events.append(ServerSentEvent(dumps({**self.head, "choices": [], "usage": usage})))
        return [*events, ServerSentEvent("[DONE]")]

    def _limits(self, record: LaneRecord) -> dict[str, Any]:
        return remaining(self.body, self.LIMITS, record.total, None)


class ChatContinuation(_ChoicesContinuation):
    """Chat Completions: the partial answer as the final assistant message, with vLLM's
    and SGLang's ``continue_final_message: true, add_generation_prompt: false``
    (llama.cpp's server continues a final assistant message by itself and ignores
    both). A lane cut in its reasoning, a refusal or a tool call is not continued."""

    api = "chat.completions"
    LIMITS = ("max_completion_tokens", "max_tokens")
    TEXT = "content"

    def _fields(self, choice: dict[str, Any]) -> Any:
        return choice.get("delta")

    def _structured(self, fields: dict[str, Any]) -> str | None:
        for key, reason in (
            ("tool_calls", "a tool call"),
            ("function_call", "a function call"),
            ("reasoning_content", "its reasoning"),
            ("reasoning", "its reasoning"),
            ("refusal", "a refusal"),
            ("audio", "audio"),
        ):
            if fields.get(key):
                return reason
        return None

    def _choice(self, choice: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        return {**choice, "delta": fields}

    def continued(self, lane: int, record: LaneRecord) -> Resume:
        messages = self.body.get("messages")
        if not isinstance(messages, list):
            raise NotContinued("the request has no list of messages")
        messages = list(messages)
        last = messages[-1] if messages else None
        prefilled = isinstance(last, dict) and last.get("role") == "assistant"
        if self.body.get("continue_final_message") and prefilled:
            assert isinstance(last, dict)
            if not isinstance(last.get("content"), str):
                raise NotContinued("the request's own final assistant message is not plain text")
            messages[-1] = {**last, "content": last["content"] + record.text}
        else:
            messages.append({"role": "assistant", "content": record.text})
        body = {**self.body, "messages": messages, "continue_final_message": True}
        body |= {"add_generation_prompt": False, "n": 1, **self._limits(record)}
        return Resume(body, {0: lane})


class CompletionsContinuation(_ChoicesContinuation):
    """Completions: the partial text appended to the prompt (``max_tokens`` lowered;
    16 when the request left it out, the API's default)."""

    api = "completions"

    def continued(self, lane: int, record: LaneRecord) -> Resume:
        prompt = self.body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise NotContinued("the request's prompt is not one string")
        if self.body.get("echo"):
            raise NotContinued("the request asks for its prompt echoed")
        limits = remaining(self.body, self.LIMITS, record.total, 16)
        return Resume({**self.body, "prompt": prompt + record.text, "n": 1, **limits}, {0: lane})


ChatCompletions.continues = ChatContinuation
Completions.continues = CompletionsContinuation
