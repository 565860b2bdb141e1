"""Source adapters: turn provider streams into the text a pipeline takes.

- ``openai_text``: OpenAI chat-completion chunks (SDK objects or parsed JSON) to
  their content deltas; the usage-only chunk with empty ``choices`` and role or
  finish chunks carry no text; an ``{"error": ...}`` chunk raises ``UpstreamError``.
- ``anthropic_text``: Anthropic message stream events to their ``text_delta`` text;
  ``ping`` and unknown event types are ignored; an ``error`` event raises.
- Both take a sync stream (``Stream``, ``MessageStream``, any iterable) and give an
  iterator, or an async one (``AsyncStream``, ``AsyncMessageStream``) and give an
  async iterator, which closes the stream when it ends or is closed.
- ``sse_events`` / ``asse_events``: event-stream bytes (for example ``httpx``'s
  ``iter_bytes``/``aiter_bytes``) to ``ServerSentEvent`` objects.
- ``openai_sse_text`` / ``aopenai_sse_text``: an OpenAI-compatible SSE byte stream
  straight to content text, ending at ``data: [DONE]``.

All work per item is O(size of the item).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, overload

from ._aio import aclose_source
from ._errors import KindedError, error_object
from .sse import ServerSentEvent, SSEDecoder, SSEError

__all__ = [
    "UpstreamError",
    "anthropic_delta",
    "anthropic_text",
    "aopenai_sse_text",
    "asse_events",
    "openai_delta",
    "openai_sse_text",
    "openai_text",
    "parse_json_event",
    "parse_openai_event",
    "sse_events",
]


class UpstreamError(KindedError):
    """The upstream stream reported an error or sent something that cannot be read."""

    def __init__(self, message: str, *, body: Any = None, type: str = "upstream_error") -> None:
        super().__init__(message)
        self.body = body
        self.type = self.kind = type

    def to_json(self) -> dict[str, Any]:
        """The error as an OpenAI-style ``{"error": {...}}`` object."""
        if isinstance(self.body, Mapping) and isinstance(self.body.get("error"), Mapping):
            return {"error": dict(self.body["error"])}
        return error_object(str(self), self.type)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def openai_delta(chunk: Any) -> str:
    """The content text of one chat-completion chunk (``""`` when it has none).

    Takes an SDK ``ChatCompletionChunk`` or the parsed JSON; only choice 0's text.
    """
    error = _get(chunk, "error")
    if error:
        message = _get(error, "message") or str(error)
        raise UpstreamError(f"upstream error: {message}", body={"error": error}, type="upstream_error")
    choices = _get(chunk, "choices")
    if choices is None:
        if isinstance(chunk, Mapping) or hasattr(chunk, "choices"):
            return ""
        raise TypeError(f"openai_text: expected a chat-completion chunk, got {type(chunk).__name__}")
    for choice in choices:  # the usage-only chunk has none
        if (_get(choice, "index") or 0) != 0:
            continue
        delta = _get(choice, "delta")
        content = _get(delta, "content") if delta is not None else None
        if content is None:
            return ""
        if not isinstance(content, str):
            raise UpstreamError(f"upstream delta content is {type(content).__name__}, not text")
        return content
    return ""


@overload
def openai_text(chunks: AsyncIterable[Any]) -> AsyncIterator[str]: ...
@overload
def openai_text(chunks: Iterable[Any]) -> Iterator[str]: ...
def openai_text(chunks: Iterable[Any] | AsyncIterable[Any]) -> Iterator[str] | AsyncIterator[str]:
    """Content deltas of OpenAI chat-completion chunks, skipping chunks with none.

    Takes the ``openai`` SDK's ``Stream`` or ``AsyncStream`` (an async iterable gives an
    async iterator), or any iterable of chunks or their parsed JSON.
    """
    if isinstance(chunks, AsyncIterable):
        return _async_texts(chunks, openai_delta)
    if isinstance(chunks, Iterable):
        return (text for chunk in chunks if (text := openai_delta(chunk)))
    raise TypeError(f"openai_text: expected an (async) iterable of chunks, got {type(chunks).__name__}")


@overload
def anthropic_text(events: AsyncIterable[Any]) -> AsyncIterator[str]: ...
@overload
def anthropic_text(events: Iterable[Any]) -> Iterator[str]: ...
def anthropic_text(events: Iterable[Any] | AsyncIterable[Any]) -> Iterator[str] | AsyncIterator[str]:
    """``text_delta`` text of Anthropic message stream events; raises on an ``error`` event.

    Takes the ``anthropic`` SDK's ``Stream``/``AsyncStream`` of raw events or its
    ``MessageStream``/``AsyncMessageStream`` (from ``messages.stream()``, whose own
    ``text`` events repeat the deltas and are skipped), or any iterable of events.
    """
    if isinstance(events, AsyncIterable):
        return _async_texts(events, anthropic_delta)
    if isinstance(events, Iterable):
        return (text for event in events if (text := anthropic_delta(event)))
    raise TypeError(f"anthropic_text: expected an (async) iterable of events, got {type(events).__name__}")


async def _async_texts(items: AsyncIterable[Any], text_of: Callable[[Any], str]) -> AsyncIterator[str]:
    try:
        async for item in items:
            if text := text_of(item):
                yield text
    finally:
        await aclose_source(items)


def anthropic_delta(event: Any) -> str:
    """The ``text_delta`` text of one Anthropic message stream event (``""`` for others)."""
    kind = _get(event, "type")
    if kind is None:
        raise TypeError(f"anthropic_text: expected a message stream event, got {type(event).__name__}")
    if kind == "content_block_delta":
        delta = _get(event, "delta")
        if _get(delta, "type") == "text_delta":
            return _get(delta, "text") or ""
    elif kind == "error":
        error = _get(event, "error")
        raise UpstreamError(
            f"upstream error: {_get(error, 'message') or error}",
            body={"error": error},
            type=str(_get(error, "type") or "upstream_error"),
        )
    # ping, message_start, content_block_start/stop, message_delta, message_stop, the
    # MessageStream's own text/thinking/input_json events, and any type added later.
    return ""


def sse_events(data: Iterable[bytes], **limits: int) -> Iterator[ServerSentEvent]:
    """Events of an event-stream byte iterable (``SSEDecoder`` limits as keywords).

    A stream that breaks a limit raises ``SSEError`` after every event before the
    failure has been yielded.
    """
    decoder = SSEDecoder(**limits)
    for piece in data:
        yield from _fed(decoder, piece)
    yield from decoder.flush()


async def asse_events(data: AsyncIterable[bytes], **limits: int) -> AsyncIterator[ServerSentEvent]:
    """Events of an async event-stream byte iterable (as ``sse_events``)."""
    decoder = SSEDecoder(**limits)
    async for piece in data:
        for event in _fed(decoder, piece):
            yield event
    for event in decoder.flush():
        yield event


def _fed(decoder: SSEDecoder, piece: bytes) -> Iterator[ServerSentEvent]:
    """The events ``piece`` completes; at a failure, those before it, then the error."""
    try:
        events = decoder.feed(piece)
    except SSEError as exc:
        yield from exc.events
        raise
    yield from events


def parse_json_event(event: ServerSentEvent) -> dict[str, Any]:
    """The JSON object an event carries; ``UpstreamError`` when it carries anything else."""
    try:
        body = json.loads(event.data)
    except (json.JSONDecodeError, RecursionError) as exc:
        if isinstance(exc, json.JSONDecodeError):
            reason = f"{exc.msg} at character {exc.pos}"
        else:
            reason = "nested too deep"
        raise UpstreamError(
            f"upstream sent malformed JSON ({reason}): {event.data[:80]!r}", type="malformed_upstream"
        ) from None
    if not isinstance(body, dict):
        raise UpstreamError(
            f"upstream event data is not a JSON object: {event.data[:80]!r}", type="malformed_upstream"
        )
    return body


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


def _event_text(event: ServerSentEvent) -> str | None:
    """The content text one OpenAI SSE event carries (maybe ``""``); ``None`` at ``[DONE]``."""
    body = parse_openai_event(event)
    return None if body is None else openai_delta(body)


async def aopenai_sse_text(data: AsyncIterable[bytes], **limits: int) -> AsyncIterator[str]:
    """Content text of an OpenAI-compatible SSE byte stream, up to ``data: [DONE]``."""
    async for event in asse_events(data, **limits):
        if (text := _event_text(event)) is None:
            return
        if text:
            yield text


def openai_sse_text(data: Iterable[bytes], **limits: int) -> Iterator[str]:
    """Content text of an OpenAI-compatible SSE byte stream, up to ``data: [DONE]``."""
    for event in sse_events(data, **limits):
        if (text := _event_text(event)) is None:
            return
        if text:
            yield text
