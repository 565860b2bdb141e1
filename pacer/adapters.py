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

What each API's events hold is ``pacer.formats``' knowledge (``ChatCompletions``,
``AnthropicMessages``); ``UpstreamError``, ``parse_json_event`` and
``parse_openai_event`` are defined there and named here too.

All work per item is O(size of the item).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, overload

from ._aio import aclose_source
from .formats import AnthropicMessages, ChatCompletions, UpstreamError
from .formats.base import parse_json_event
from .formats.choices import parse_openai_event
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


def openai_delta(chunk: Any) -> str:
    """The content text of one chat-completion chunk (``""`` when it has none).

    Takes an SDK ``ChatCompletionChunk`` or the parsed JSON; only choice 0's text.
    """
    return ChatCompletions.content_of(chunk)


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
    return AnthropicMessages.text_of(event)


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
