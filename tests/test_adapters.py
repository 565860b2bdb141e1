"""Source adapters: OpenAI chunks, Anthropic events, SSE byte streams."""

from __future__ import annotations

import pytest

from pacer import Pacer, run
from pacer.adapters import (
    UpstreamError,
    anthropic_text,
    aopenai_sse_text,
    openai_sse_text,
    openai_text,
    sse_events,
)


def _chunk(content: str | None = None, *, finish: str | None = None, role: str | None = None) -> dict:
    delta = {k: v for k, v in (("content", content), ("role", role)) if v is not None}
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


CHUNKS = [
    _chunk("", role="assistant"),
    _chunk("Hel"),
    _chunk("lo"),
    _chunk(None),  # a tool-call or empty delta
    _chunk(finish="stop"),
    {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    },
]


def test_openai_dict_chunks() -> None:
    assert list(openai_text(CHUNKS)) == ["Hel", "lo"]


def test_openai_sdk_chunk_objects() -> None:
    from openai.types.chat import ChatCompletionChunk

    objects = [ChatCompletionChunk.model_validate({**c, "created": 0, "model": "m"}) for c in CHUNKS]
    assert list(openai_text(objects)) == ["Hel", "lo"]


def test_openai_other_choices_are_not_mixed_in() -> None:
    chunk = {"choices": [{"index": 1, "delta": {"content": "B"}}, {"index": 0, "delta": {"content": "A"}}]}
    assert list(openai_text([chunk])) == ["A"]


def test_openai_error_chunk_raises_after_earlier_text() -> None:
    got: list[str] = []
    with pytest.raises(UpstreamError, match="overloaded") as info:
        for text in openai_text(
            [_chunk("ok "), {"error": {"message": "overloaded", "type": "server_error"}}]
        ):
            got.append(text)
    assert got == ["ok "]
    assert info.value.to_json() == {"error": {"message": "overloaded", "type": "server_error"}}


def test_openai_wrong_item_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="expected a chat-completion chunk, got int"):
        list(openai_text([3]))


ANTHROPIC = [
    {"type": "message_start", "message": {"id": "m"}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{"}},
    {"type": "brand_new_event_type", "stuff": 1},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "there"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
    {"type": "message_stop"},
]


def test_anthropic_events() -> None:
    assert list(anthropic_text(ANTHROPIC)) == ["Hi ", "there"]


def test_anthropic_sdk_event_objects() -> None:
    pytest.importorskip("anthropic")
    from anthropic.types import RawContentBlockDeltaEvent

    event = RawContentBlockDeltaEvent.model_validate(ANTHROPIC[3])
    assert list(anthropic_text([event])) == ["Hi "]


def test_anthropic_error_event_raises() -> None:
    events = [
        *ANTHROPIC[:4],
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    with pytest.raises(UpstreamError, match="Overloaded") as info:
        list(anthropic_text(events))
    assert info.value.type == "overloaded_error"


STREAM = (
    b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    b": keep-alive\n\n"
    b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\r\n\r\n'
    b'data: {"choices":[{"index":0,"delta":{"content":"lo"}}]}\n\n'
    b"data: [DONE]\n\n"
    b'data: {"choices":[{"index":0,"delta":{"content":"after done"}}]}\n\n'
)


def test_openai_sse_bytes_split_anywhere() -> None:
    for cut in range(len(STREAM)):
        assert list(openai_sse_text([STREAM[:cut], STREAM[cut:]])) == ["Hel", "lo"]


@pytest.mark.anyio
async def test_async_openai_sse_bytes_through_a_pipeline() -> None:
    async def body():  # type: ignore[no-untyped-def]
        for i in range(0, len(STREAM), 7):
            yield STREAM[i : i + 7]

    got = [text async for text in aopenai_sse_text(body())]
    assert got == ["Hel", "lo"]
    assert "".join(run(Pacer(cps=1000), openai_sse_text([STREAM]))) == "Hello"


def test_malformed_sse_json_is_a_clear_error() -> None:
    with pytest.raises(UpstreamError, match="malformed JSON"):
        list(openai_sse_text([b"data: {oops\n\n"]))


def test_sse_events_limits() -> None:
    from pacer.sse import SSEError

    with pytest.raises(SSEError, match="max_line=10"):
        list(sse_events([b"data: 0123456789abcdef"], max_line=10))
