from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pacer
from pacer import Boundary, Chunk, Packetizer
from pacer._text import Arrivals, graphemes, utf8_len
from pacer.testing.strategies import check_arrivals, hard_text, splits


def packets(text_pieces: list[str], **options: object) -> list[str]:
    p = Packetizer(**options)  # type: ignore[arg-type]
    out: list[str] = []
    for piece in text_pieces:
        out += p.feed(piece)
    return out + p.flush()


@given(st.data(), hard_text, st.integers(4, 40))
def test_packets_are_lossless_bounded_and_never_split_a_grapheme(
    data: st.DataObject, text: str, max_bytes: int
) -> None:
    pieces = data.draw(splits(text))
    min_bytes = data.draw(st.integers(1, max_bytes))
    out = packets(pieces, max_bytes=max_bytes, min_bytes=min_bytes, max_delay=None)
    assert "".join(out) == text
    # Cut points are grapheme boundaries of the whole text.
    boundaries = {0}
    pos = 0
    for g in graphemes(text):
        pos += len(g)
        boundaries.add(pos)
    pos = 0
    for packet in out:
        assert packet
        pos += len(packet)
        assert pos in boundaries
        # Over max_bytes only when the packet is one oversized grapheme.
        assert utf8_len(packet) <= max_bytes or len(graphemes(packet)) == 1


@given(st.data(), hard_text.filter(bool), st.integers(4, 40))
def test_each_packet_carries_the_arrival_of_its_first_character(
    data: st.DataObject, text: str, max_bytes: int
) -> None:
    pieces = [piece for piece in data.draw(splits(text)) if piece]
    min_bytes = data.draw(st.integers(1, max_bytes))
    check_arrivals(Packetizer(max_bytes, min_bytes, max_delay=None), pieces)


@given(st.data(), hard_text)
def test_packets_reach_min_bytes_while_text_keeps_coming(data: st.DataObject, text: str) -> None:
    pieces = data.draw(splits(text))
    out = packets(pieces, max_bytes=32, min_bytes=12, max_delay=None)
    # Every packet but the one flushed at the end has at least min_bytes.
    assert all(utf8_len(p) >= 12 for p in out[:-1])


def test_packet_never_splits_zwj_sequence_or_flag() -> None:
    family = "👩\u200d👩\u200d👧\u200d👦"  # 25 bytes, one grapheme
    out = packets(["ab", family[:3], family[3:], "🇫", "🇷", "cd"], max_bytes=8, min_bytes=1)
    assert family in out
    assert "🇫🇷" in "".join(out)
    assert not any(p in ("🇫", "🇷") for p in out)


def test_combining_mark_in_next_chunk_stays_with_its_letter() -> None:
    out = packets(["abcde", "\u0301fgh"], max_bytes=5, min_bytes=5)
    assert out[0] == "abcd"
    assert out[1].startswith("e\u0301")


def test_crlf_is_one_grapheme() -> None:
    out = packets(["abc\r", "\ndef"], max_bytes=4, min_bytes=4, max_delay=None)
    assert "".join(out) == "abc\r\ndef"
    assert all("\r" not in p or "\r\n" in p for p in out)


def test_idle_delay_sends_a_short_packet() -> None:
    tl = pacer.simulate([(0.0, "hi"), (1.0, " there")], Packetizer(64, 32, max_delay=0.2))
    assert [(c.text, c.emitted) for c in tl.emissions] == [("hi", 0.2), (" there", 1.0)]


def test_flush_on_sentence_sends_at_sentence_end() -> None:
    p = Packetizer(64, 32, flush_on_sentence=True, max_delay=None)
    assert p.push(Chunk("One.", 0.0, Boundary.SENTENCE), 0.0)[0].text == "One."
    assert p.push(Chunk(" Two", 0.0), 0.0) == []


def test_flush_on_sentence_does_not_take_a_forced_cut_for_a_sentence_end() -> None:
    # A budget or hold-timer cut (FORCED) is not a sentence end: the packet keeps filling.
    p = Packetizer(64, 32, flush_on_sentence=True, max_delay=None)
    assert p.push(Chunk("Thinking about it for a", 0.0, Boundary.FORCED), 0.0) == []
    assert p.push(Chunk(" while. ", 0.0, Boundary.SENTENCE), 0.0)[0].text == "Thinking about it for a while. "


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_bytes": 3}, "max_bytes must be >= 4"),
        ({"max_bytes": 10, "min_bytes": 11}, r"min_bytes must be in 1..max_bytes \(10\)"),
        ({"min_bytes": 0}, "min_bytes must be in"),
        ({"max_delay": 0}, "max_delay must be > 0"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_parameter(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Packetizer(**kwargs)  # type: ignore[arg-type]


def test_non_int_sizes_raise_type_error() -> None:
    with pytest.raises(TypeError, match="max_bytes must be an int, got float"):
        Packetizer(max_bytes=25.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="min_bytes must be an int, got bool"):
        Packetizer(max_bytes=64, min_bytes=True)
    with pytest.raises(TypeError, match="max_bytes must be an int, got str"):
        Packetizer(max_bytes="64")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Packetizer: max_delay must be a number, got str"):
        Packetizer(max_delay="0.1")  # type: ignore[arg-type]


def test_sizes_may_be_any_integer_type() -> None:
    np = pytest.importorskip("numpy")
    p = Packetizer(max_bytes=np.int64(8), min_bytes=np.uint16(4))
    assert (p.max_bytes, p.min_bytes) == (8, 4)
    assert type(p.max_bytes) is int and type(p.min_bytes) is int
    assert p.feed("abcd efgh ijkl") == ["abcd efg", "h ijk"]


@given(st.lists(st.tuples(st.integers(1, 5), st.integers(0, 3)), min_size=1, max_size=120), st.data())
def test_arrivals_answer_as_a_full_scan_would(pieces: list[tuple[int, int]], data: st.DataObject) -> None:
    # Pieces of 1-5 characters with arrival times that repeat (0-3 s later each); lookups
    # that never go back, past the compaction point (more than 32 pieces behind).
    arrivals = Arrivals()
    starts, times = [], []
    offset, now = 0, 0.0
    for size, wait in pieces:
        now += wait
        arrivals.add(offset, now)
        starts.append(offset)
        times.append(now)
        offset += size
    lookups = sorted(data.draw(st.lists(st.integers(0, offset - 1), max_size=60)))
    for at in lookups:
        expected = times[max(i for i, start in enumerate(starts) if start <= at)]
        assert arrivals.at(at) == expected


_MARKS = st.sampled_from(
    ["\u0301", "\u0308", "\u200d", "\u093e", "\U000e0061", "\ufe0f"]
)  # Extend, ZWJ, SpacingMark


@given(st.data(), st.integers(33, 120), st.sampled_from(["a", "\U0001f469", "क", "\r\n"]), hard_text)
def test_a_cluster_growing_a_mark_at_a_time_stays_whole_as_a_one_shot_cut_would(
    data: st.DataObject, length: int, base: str, after: str
) -> None:
    marks = "".join(data.draw(st.lists(_MARKS, min_size=length, max_size=length)))
    text = "lead " + base + marks + after
    pieces = ["lead " + base, *marks, *data.draw(splits(after))]  # the fast path for every mark
    out = packets(pieces, max_bytes=16, min_bytes=4, max_delay=None)
    assert "".join(out) == text
    boundaries, pos = {0}, 0
    for g in graphemes(text):
        pos += len(g)
        boundaries.add(pos)
    pos = 0
    for packet in out:
        pos += len(packet)
        assert pos in boundaries


def test_a_cluster_growing_a_mark_at_a_time_is_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Was quadratic: every push rescanned the whole growing cluster (40k marks: 14 s).
    import pacer._packets as packets_module

    scanned = [0]
    real = packets_module.GRAPHEME

    class Counting:
        def finditer(self, text: str) -> object:
            scanned[0] += len(text)
            return real.finditer(text)

    monkeypatch.setattr(packets_module, "GRAPHEME", Counting())
    p = Packetizer(max_bytes=64)
    out = p.push(Chunk("x" * 100 + "a", 0.0), 0.0)
    for _ in range(20_000):
        out += p.push(Chunk("\u0301", 0.0), 0.0)
    out += p.push(Chunk(" and on", 0.0), 0.0) + p.finish(0.0)
    assert "".join(c.text for c in out) == "x" * 100 + "a" + "\u0301" * 20_000 + " and on"
    assert "a" + "\u0301" * 20_000 in [c.text for c in out]  # the cluster whole, in its own packet
    assert scanned[0] < 5 * 20_000  # linear, not 20,000 rescans of a growing cluster
