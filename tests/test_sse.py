"""The SSE codec against the WHATWG event-stream rules, whole, at every split and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacer.adapters import sse_events
from pacer.sse import DONE, ServerSentEvent, SSEDecoder, SSEError, encode, encode_comment

E = ServerSentEvent

# (name, stream, events, retry after the stream, last_event_id after the stream)
CASES: list[tuple[str, bytes, list[ServerSentEvent], int | None, str]] = [
    ("simple", b"data: hello\n\n", [E("hello")], None, ""),
    ("no space after colon", b"data:hello\n\n", [E("hello")], None, ""),
    ("only one space removed", b"data:  two\n\n", [E(" two")], None, ""),
    ("tab is not removed", b"data:\tx\n\n", [E("\tx")], None, ""),
    ("multi-line data", b"data: a\ndata: b\ndata:\n\n", [E("a\nb\n")], None, ""),
    ("CRLF line ends", b"data: a\r\ndata: b\r\n\r\n", [E("a\nb")], None, ""),
    ("CR line ends", b"data: a\rdata: b\r\r", [E("a\nb")], None, ""),
    ("mixed line ends", b"data: a\rdata: b\r\ndata: c\n\r\n", [E("a\nb\nc")], None, ""),
    ("CR CR is two line ends", b"data: x\r\rdata: y\n\n", [E("x"), E("y")], None, ""),
    ("LF CR is two line ends", b"data: x\n\rdata: y\n\n", [E("x"), E("y")], None, ""),
    ("event type", b"event: add\ndata: 1\n\n", [E("1", "add")], None, ""),
    (
        "event type resets after dispatch",
        b"event: add\ndata: 1\n\ndata: 2\n\n",
        [E("1", "add"), E("2")],
        None,
        "",
    ),
    ("empty event type is message", b"event:\ndata: 1\n\n", [E("1")], None, ""),
    ("event type without data is dropped", b"event: add\n\ndata: 2\n\n", [E("2")], None, ""),
    ("no data, no event", b"\n\n\n", [], None, ""),
    ("empty data line dispatches empty data", b"data\n\n", [E("")], None, ""),
    ("data with colon only", b"data:\n\n", [E("")], None, ""),
    ("field without colon", b"data\ndata\n\n", [E("\n")], None, ""),
    ("comment ignored", b": hello\ndata: x\n:\n\n", [E("x")], None, ""),
    ("comment-only block dispatches nothing", b": ping\n\n", [], None, ""),
    ("unknown field ignored", b"foo: bar\ndata: x\n\n", [E("x")], None, ""),
    ("field names are case-sensitive", b"Data: x\nDATA: y\ndata: z\n\n", [E("z")], None, ""),
    ("colon inside value kept", b"data: a: b:c\n\n", [E("a: b:c")], None, ""),
    ("id", b"id: 7\ndata: x\n\n", [E("x", id="7")], None, "7"),
    ("id persists", b"id: 7\ndata: x\n\ndata: y\n\n", [E("x", id="7"), E("y", id="7")], None, "7"),
    ("empty id resets", b"id: 7\ndata: x\n\nid\ndata: y\n\n", [E("x", id="7"), E("y")], None, ""),
    (
        "id with NUL ignored",
        b"id: 7\ndata: x\n\nid: a\x00b\ndata: y\n\n",
        [E("x", id="7"), E("y", id="7")],
        None,
        "7",
    ),
    ("id without data still sets last id", b"id: 9\n\n", [], None, "9"),
    ("id not committed before blank line", b"id: 1\ndata: x\n\nid: 2\ndata: y", [E("x", id="1")], None, "1"),
    ("retry digits", b"retry: 2500\ndata: x\n\n", [E("x", retry=2500)], 2500, ""),
    ("retry negative ignored", b"retry: -1\n\n", [], None, ""),
    ("retry with space ignored", b"retry: 1 0\n\n", [], None, ""),
    ("retry with letters ignored", b"retry: 10ms\n\n", [], None, ""),
    ("retry empty ignored", b"retry:\n\n", [], None, ""),
    ("retry non-ASCII digits ignored", "retry: ١٢\n\n".encode(), [], None, ""),
    ("retry zero", b"retry: 0\n\n", [], 0, ""),
    ("retry keeps last valid", b"retry: 5\nretry: x\n\n", [], 5, ""),
    ("BOM stripped", b"\xef\xbb\xbfdata: x\n\n", [E("x")], None, ""),
    ("only one BOM stripped", b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n", [], None, ""),
    ("BOM later is data", b"data: \xef\xbb\xbfx\n\n", [E("\ufeffx")], None, ""),
    ("UTF-8 data", "data: 你好 👋🏽\n\n".encode(), [E("你好 👋🏽")], None, ""),
    ("invalid UTF-8 replaced", b"data: a\xffb\n\n", [E("a\ufffdb")], None, ""),
    (
        "unicode separators are data",
        "data: a\u2028b\u0085c\x0bd\x0ce\n\n".encode(),
        [E("a\u2028b\u0085c\x0bd\x0ce")],
        None,
        "",
    ),
    ("unterminated event discarded", b"data: x\n\ndata: y\n", [E("x")], None, ""),
    ("unterminated line discarded", b"data: x\n\ndata: y", [E("x")], None, ""),
    ("trailing CR ends the line", b"data: x\r\r", [E("x")], None, ""),
    ("space before colon is part of the name", b"data : x\n\n", [], None, ""),
    ("openai done", b"data: [DONE]\n\n", [E("[DONE]")], None, ""),
]


def _decode(chunks: list[bytes]) -> tuple[list[ServerSentEvent], SSEDecoder]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.flush())
    return events, decoder


@pytest.mark.parametrize(("name", "stream", "events", "retry", "last_id"), CASES, ids=[c[0] for c in CASES])
def test_decoder_rules(
    name: str, stream: bytes, events: list[ServerSentEvent], retry: int | None, last_id: str
) -> None:
    splits = [[stream], [stream[i : i + 1] for i in range(len(stream))]]
    splits += [[stream[:i], stream[i:]] for i in range(1, len(stream))]
    for chunks in splits:
        got, decoder = _decode(chunks)
        assert got == events, chunks
        assert decoder.retry == retry
        assert decoder.last_event_id == last_id


def test_cr_split_from_lf_across_chunks_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n") == []  # the LF belongs to the CR: no blank line yet
    assert decoder.feed(b"\r") == [E("a")]
    assert decoder.feed(b"\n") == []


def test_events_come_out_as_soon_as_the_blank_line_arrives() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [E("a")]


@given(st.lists(st.integers(0, 400), max_size=6))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    stream = b"".join(c[1] for c in CASES if not c[0].startswith(("BOM", "only one BOM", "unterminated")))
    stream = b"\xef\xbb\xbf" + stream
    whole, _ = _decode([stream])
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert _decode(chunks)[0] == whole


def test_flush_resets_for_a_new_connection_but_keeps_last_id_and_retry() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 3\nretry: 10\ndata: x\n\ndata: partial")
    assert decoder.flush() == []
    assert decoder.feed(b"\xef\xbb\xbfdata: y\n\n") == [E("y", id="3", retry=10)]
    assert (decoder.last_event_id, decoder.retry) == ("3", 10)


def test_line_limit_bounds_memory() -> None:
    decoder = SSEDecoder(max_line=100)
    assert decoder.feed(b"data: ok\n\n") == [E("ok")]
    with pytest.raises(SSEError, match="max_line=100"):
        for _ in range(200):
            decoder.feed(b"x")


def test_events_before_a_broken_limit_in_the_same_chunk_are_kept() -> None:
    chunk = b"data: one\n\ndata: two\n\ndata: " + b"x" * 200
    with pytest.raises(SSEError, match="max_line=100") as failure:
        SSEDecoder(max_line=100).feed(chunk)
    assert failure.value.events == [E("one"), E("two")]
    seen = []
    with pytest.raises(SSEError, match="max_line=100"):
        for event in sse_events([chunk], max_line=100):
            seen.append(event)
    assert seen == [E("one"), E("two")]


def test_event_limit_bounds_memory() -> None:
    decoder = SSEDecoder(max_line=100, max_event=50)
    with pytest.raises(SSEError, match="max_event=50"):
        for _ in range(100):
            decoder.feed(b"data: 0123456789\n")


def test_decoder_rejects_text() -> None:
    with pytest.raises(TypeError, match="takes bytes, got str"):
        SSEDecoder().feed("data: x\n\n")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [{"max_line": 0}, {"max_event": 0}])
def test_decoder_limits_validated(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        SSEDecoder(**bad)


# -- encoder ------------------------------------------------------------------------


def test_encode_fields_in_order() -> None:
    assert encode("x", event="add", id="4", retry=100, comment="hi") == (
        b": hi\nevent: add\nid: 4\nretry: 100\ndata: x\n\n"
    )


def test_encode_splits_on_cr_lf_crlf_only() -> None:
    frame = encode("a\rb\nc\r\nd\u2028e\u0085f\n")
    assert frame == "data: a\ndata: b\ndata: c\ndata: d\u2028e\u0085f\ndata: \n\n".encode()
    assert _decode([frame])[0] == [E("a\nb\nc\nd\u2028e\u0085f\n")]


def test_empty_data_is_a_real_event() -> None:
    assert encode("") == b"data: \n\n"
    assert _decode([encode("")])[0] == [E("")]


def test_done_and_heartbeat() -> None:
    assert DONE == b"data: [DONE]\n\n"
    assert encode_comment() == b":\n\n"
    assert encode_comment("ping") == b": ping\n\n"
    assert _decode([encode_comment("a\nb")])[0] == []


@given(
    st.text(st.characters(exclude_categories=["Cs"])),
    st.one_of(
        st.none(), st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), min_size=1)
    ),
    st.one_of(st.none(), st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\0"))),
)
def test_round_trip(data: str, event: str | None, id: str | None) -> None:
    event = None if event == "message" else event
    frame = encode(data, event=event, id=id)
    (got,), _decoder = _decode([b"\xef\xbb\xbf" + frame])
    assert got.data == data.replace("\r\n", "\n").replace("\r", "\n")
    assert got.event == (event or "message")
    assert got.id == (id or "")
    assert ServerSentEvent(got.data, got.event, got.id).encode() == encode(
        got.data, event=event, id=id or None
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"event": "a\nb"}, "event must not contain CR or LF"),
        ({"id": "a\rb"}, "id must not contain CR or LF"),
        ({"id": "a\0b"}, "NUL"),
        ({"retry": -1}, "retry must be a non-negative int"),
        ({"retry": True}, "retry must be a non-negative int"),
    ],
)
def test_encode_rejects_bad_fields(kwargs: dict[str, object], error: str) -> None:
    with pytest.raises(SSEError, match=error):
        encode("x", **kwargs)  # type: ignore[arg-type]


def test_encode_requires_text_data() -> None:
    with pytest.raises(TypeError, match="data must be str, got NoneType"):
        encode(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be str, got bytes"):
        encode(b"x")  # type: ignore[arg-type]


def test_a_retry_too_long_for_any_delay_is_ignored_like_any_bad_retry() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"retry: " + b"9" * 5000 + b"\ndata: x\n\nretry: 1500\n")
    assert events == [E("x")]
    assert decoder.retry == 1500  # the next good value is still taken
    decoder = SSEDecoder()
    decoder.feed(b"retry: " + b"1" * 16 + b"\n")
    assert decoder.retry is None


def test_encode_says_where_a_lone_surrogate_is() -> None:
    with pytest.raises(SSEError, match=r"lone surrogate '\\ud83d' at character 8"):
        encode("ab\ud83d")  # "data: ab" is 8 characters before it
