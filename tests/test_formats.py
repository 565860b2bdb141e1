"""The format registry: one object per API, whose endings say what they are."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacer import Chunk
from pacer.formats import (
    FORMAT_NAMES,
    FORMATS,
    ROUTES,
    ChatCompletions,
    EndingKind,
    Keep,
    OpenAIChunks,
    PlainText,
    Text,
    TextEvents,
    Transcript,
    UpstreamError,
)
from pacer.sse import ServerSentEvent


def test_every_route_format_is_registered_under_its_transcript_name() -> None:
    assert FORMAT_NAMES == ("text", "chat.completions", "completions", "responses", "messages")
    for fmt in ROUTES.values():
        assert FORMATS[fmt.transcript] is fmt


def test_the_chat_text_fields_are_read_by_the_parser_and_the_transcript_alike() -> None:
    delta = {"reasoning": "think ", "content": "say ", "refusal": "no"}
    body = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    data = json.dumps(body)
    pieces = ChatCompletions().parse(ServerSentEvent(data=data))
    assert [(p.kind, p.text) for p in pieces if isinstance(p, Text)] == [
        ("reasoning", "think "),
        ("content", "say "),
        ("refusal", "no"),
    ]
    transcript = Transcript("chat.completions")
    transcript.feed(f"data: {data}\n\n".encode())
    assert (transcript.text, transcript.reasoning) == ("say no", "think ")


def test_a_stop_ending_says_it_stopped_and_ends_only_once() -> None:
    transcript = Transcript("messages")
    transcript.feed(b'event: message_start\ndata: {"type":"message_start","message":{}}\n\n')
    ending = transcript.stopped()
    assert ending.kind is EndingKind.STOPPED
    assert [f.split("\n")[0] for f in ending.frames] == [
        "event: message_delta",
        "event: message_stop",
    ]
    assert transcript.complete and transcript.stop_frames() == []


@pytest.mark.parametrize("blocked", [False, True])
def test_a_chunk_encoders_ending_says_whether_a_check_blocked_it(blocked: bool) -> None:
    chat = OpenAIChunks(model="m", id="x", created=0).ending(blocked, done=True)
    plain = TextEvents().ending(blocked, done=True)
    want = EndingKind.BLOCKED if blocked else EndingKind.DONE
    assert chat.kind is plain.kind is want
    assert chat.frames[-1] == "data: [DONE]\n\n"
    reason = "content_filter" if blocked else "stop"
    assert json.loads(chat.frames[0][len("data: ") :])["choices"][0]["finish_reason"] == reason
    assert plain.frames == (
        (
            'event: error\ndata: {"error": {"message": "the rest of the answer was withheld by an '
            'output check", "type": "content_filter"}}\n\n',
        )
        if blocked
        else ("data: [DONE]\n\n",)
    )


def test_plain_text_parses_each_events_data_as_text_and_done_as_its_end() -> None:
    fmt = PlainText()
    text = fmt.parse(ServerSentEvent(data="Hello"))
    assert [(p.lane, p.text) for p in text if isinstance(p, Text)] == [(0, "Hello")]
    assert fmt.text_frame(text[0], "a\nb", []) == "data: a\ndata: b\n\n"  # type: ignore[arg-type]
    end = fmt.parse(ServerSentEvent(data="[DONE]"))
    assert isinstance(end[0], Keep) and end[0].end and fmt.complete
    with pytest.raises(UpstreamError):
        fmt.parse(ServerSentEvent(data='{"error": {"message": "x"}}', event="error"))
    assert TextEvents()(Chunk("hi", 0.0)) == b"data: hi\n\n"


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.text(), min_size=1, max_size=6),
    fields=st.dictionaries(
        st.text(max_size=8), st.text(max_size=8) | st.integers() | st.floats(), max_size=4
    ),
    name=st.sampled_from([None, "message", "chunk"]),
)
def test_a_frame_from_its_events_template_is_the_frame_rendered_whole(
    texts: list[str], fields: dict[str, Any], name: str | None
) -> None:
    """Every byte as ``dumps`` writes it, lone surrogates, control characters and a field
    that holds the template's hole text included."""
    from pacer.formats.base import FrameTemplate, dumps, frame

    body = {"id": "x", **fields, "hole": "\x00pacer: the text goes here\x00"} if texts[0] == "" else fields
    template, frames = (body, name), FrameTemplate()

    def make(text: str) -> str:
        return frame(dumps({**body, "choices": [{"delta": {"content": text}, "finish_reason": None}]}), name)

    for text in texts:
        assert frames.render(template, "content", text, make) == make(text)
