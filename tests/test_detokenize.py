from __future__ import annotations

import gc
import os
import weakref
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pacer
from pacer import _detokenize as detokenize
from pacer._detokenize import Detokenizer
from pacer.testing.backends import ALL, get
from pacer.testing.strategies import hard_text, runs, splits

pytest.importorskip("tiktoken")
pytest.importorskip("transformers")


@pytest.fixture(autouse=True, params=["C lookup", "pure Python"])
def speedups(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the optional C lookup and without it: same results."""
    if request.param == "C lookup" and detokenize._speedups is None:
        if os.environ.get("PACER_COMPILE") == "1" and os.environ.get("PACER_PURE") != "1":
            pytest.fail("PACER_COMPILE=1 must build pacer._speedups (a C compiler and Python headers)")
        pytest.skip("pacer._speedups is built only by a compiled build (PACER_COMPILE=1)")
    monkeypatch.setattr(detokenize, "_SPEEDUPS", request.param == "C lookup")
    return str(request.param)


@st.composite
def id_splits(draw: st.DrawFn, ids: list[int]) -> list[list[int]]:
    return runs(draw, ids, 5)


def any_id(vocab_size: int) -> st.SearchStrategy[int]:
    # Low ids are byte tokens and specials on these vocabularies: the invalid-UTF-8 cases.
    return st.one_of(st.integers(0, min(300, vocab_size - 1)), st.integers(0, vocab_size - 1))


def stream(tokenizer: object, batches: list[list[int]], skip: bool = False) -> tuple[str, list[str]]:
    d = Detokenizer(tokenizer, skip_special_tokens=skip)
    pieces: list[str] = []
    for batch in batches:
        pieces += d.feed(batch if len(batch) != 1 else batch[0])
    pieces += d.flush()
    return "".join(pieces), pieces


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=40)
@given(data=st.data(), text=hard_text)
def test_streamed_text_equals_one_shot_decode_of_encoded_text(
    name: str, data: st.DataObject, text: str
) -> None:
    b = get(name)
    ids = b.encode(text)
    for skip in (False, True):
        joined, pieces = stream(b.tokenizer, data.draw(id_splits(ids)), skip)
        assert joined == b.decode(ids, skip)
        assert "" not in pieces


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=40)
@given(data=st.data())
def test_streamed_text_equals_one_shot_decode_of_random_ids(name: str, data: st.DataObject) -> None:
    b = get(name)
    ids = data.draw(st.lists(any_id(b.vocab_size), min_size=1, max_size=40))
    for skip in (False, True):
        joined, _ = stream(b.tokenizer, data.draw(id_splits(ids)), skip)
        assert joined == b.decode(ids, skip)


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=30)
@given(data=st.data())
def test_every_route_for_one_id_gives_the_same_text(name: str, data: st.DataObject) -> None:
    # One id can take the table-only path (feed(id)), the timed path (feed(id, now)),
    # the sequence path (feed([id])) or a pipeline's ingest: mixed freely, the text
    # must still be the one-shot decode, whatever state each path leaves behind.
    b = get(name)
    text_ids = b.encode(data.draw(hard_text))
    ids = data.draw(st.lists(st.one_of(st.sampled_from(text_ids or [0]), any_id(b.vocab_size)), max_size=30))
    for skip in (False, True):
        d = Detokenizer(b.tokenizer, skip_special_tokens=skip)
        through_pipeline = pacer.pipeline(d)
        pieces: list[str] = []
        for i in ids:
            route = data.draw(st.sampled_from(["id", "timed", "list", "pipeline"]))
            if route == "id":
                pieces += d.feed(i)
            elif route == "timed":
                pieces += d.feed(i, now=1.0)
            elif route == "list":
                pieces += d.feed([i])
            else:
                pieces += through_pipeline.feed(i)
        pieces += d.flush()
        assert "".join(pieces) == b.decode(ids, skip)
        assert "" not in pieces


@pytest.mark.parametrize("name", [n for n in ALL if ".model." in n])
def test_a_control_token_between_byte_tokens_is_decoded_as_the_tokenizer_does(name: str) -> None:
    # Native SentencePiece decodes each run of byte tokens on its own, so <s> between
    # the two bytes of "é" leaves two invalid bytes; HF's ByteFallback joins them when
    # the special token is skipped. Fed at once or one id at a time, pacer must agree.
    b = get(name)
    tok = b.tokenizer
    to_id = (
        getattr(tok, "piece_to_id", None) or getattr(tok, "token_to_id", None) or tok.convert_tokens_to_ids
    )
    c3, a9, bos = to_id("<0xC3>"), to_id("<0xA9>"), 1
    for ids in ([c3, bos, a9], [c3, a9, bos, c3], [bos, c3, bos, bos, a9, c3, a9]):
        for skip in (False, True):
            expected = b.decode(ids, skip)
            assert stream(tok, [ids], skip)[0] == expected, (ids, skip)
            assert stream(tok, [[i] for i in ids], skip)[0] == expected, (ids, skip)


@pytest.mark.parametrize("name", ALL)
def test_no_spurious_replacement_character_and_genuine_one_never_stalls(name: str) -> None:
    b = get(name)
    text = "ok \ufffd then 中文 and 🤖 end"
    ids = b.encode(text)
    d = Detokenizer(b.tokenizer)
    shown = "".join(t for i in ids for t in d.feed(i))
    full = shown + "".join(d.flush())
    assert full == b.decode(ids, False)
    assert full.count("\ufffd") == b.decode(ids, False).count("\ufffd")
    assert "\ufffd" not in shown.replace("\ufffd", "", 1)
    # Everything up to the last token is out before flush, U+FFFD included. (BERT's
    # normalizer deletes U+FFFD before tokenizing; the small vocabularies trained for
    # the tests map it to an unknown token: then no id carries it.)
    if "wordpiece" in name:
        assert "\ufffd" not in full and "ok then" in shown
    elif name in ("hf-rust-bpe-suffix", "hf-fast-bpe-suffix", "hf-rust-no-decoder", "hf-rust-ctc"):
        assert "\ufffd" not in full and "<unk>" in shown and "end" in shown
    else:
        assert "\ufffd then" in shown


def test_feed_takes_numpy_and_torch_shapes() -> None:
    np = pytest.importorskip("numpy")
    b = get("tiktoken-tekken")
    text = "Hello there, world: one two three four five six."
    ids = b.encode(text)
    assert len(ids) > 6
    d = Detokenizer(b.tokenizer)
    out = d.feed(np.array(ids[:2])) + d.feed(np.array([ids[2:4]])) + d.feed(np.int64(ids[4]))
    torch = pytest.importorskip("torch")
    out += d.feed(torch.tensor([ids[5:]])) + d.flush()
    assert "".join(out) == text
    with pytest.raises(ValueError, match=r"shape \[n\] or \[1, n\]"):
        Detokenizer(b.tokenizer).feed(np.zeros((2, 2), dtype=int))


def test_out_of_vocabulary_and_negative_ids_name_id_and_position() -> None:
    b = get("sentencepiece-tokenizer.model.v1")
    d = Detokenizer(b.tokenizer)
    hello = b.encode("Hello")
    assert d.feed(hello) == ["Hello"]
    with pytest.raises(
        ValueError, match=r"token id 99999 at position 1 of this feed \(token 2 of the stream\)"
    ):
        d.feed([hello[0], 99999])
    with pytest.raises(ValueError, match=r"token id -1 at position 0"):
        d.feed(-1)
    # The bad feed changed nothing: the detokenizer goes on.
    assert "".join(d.feed(b.encode("world")) + d.flush()) == " world"


def test_non_integer_ids_raise_type_error() -> None:
    d = Detokenizer(get("tiktoken-tekken").tokenizer)
    with pytest.raises(TypeError, match="must be an int, got str"):
        d.feed(["a"])
    with pytest.raises(TypeError, match="expected an int or a sequence of ints, got str"):
        d.feed("hello")
    with pytest.raises(TypeError, match="got bool"):
        d.feed(True)
    with pytest.raises(TypeError, match="got float"):
        d.feed([1.5])


def test_unsupported_tokenizer_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="Detokenizer supports"):
        Detokenizer(object())


def test_detokenizer_heads_a_pipeline() -> None:
    b = get("tiktoken-tekken")
    text = "Streaming text, token by token: 中文 and emoji 🤖 too."
    ids = b.encode(text)
    p = Detokenizer(b.tokenizer) | pacer.Packetizer(16, 8)
    assert "".join(p(ids)) == text
    with pytest.raises(TypeError, match="put it first"):
        (pacer.Packetizer(4, 1) | Detokenizer(b.tokenizer)).feed("text!")


@given(st.data(), st.binary(max_size=60), hard_text)
def test_byte_decoder_equals_one_shot_decode_for_any_split(
    data: st.DataObject, noise: bytes, text: str
) -> None:
    blob = text.encode() + noise + text.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=10)))
    d = pacer.ByteDecoder()
    out: list[str] = []
    prev = 0
    for cut in [*cuts, len(blob)]:
        out += d.feed(blob[prev:cut])
        prev = cut
    out += d.flush()
    assert "".join(out) == blob.decode("utf-8", "replace")


def test_byte_decoder_strict_raises_and_rejects_other_types() -> None:
    d = pacer.ByteDecoder("strict")
    assert d.feed(b"\xe4\xb8") == []
    assert d.feed(b"\xad!") == ["中!"]
    with pytest.raises(UnicodeDecodeError):
        d.feed(b"\xff")
    with pytest.raises(TypeError, match="ByteDecoder takes bytes or str, got int"):
        pacer.ByteDecoder().feed(3)
    with pytest.raises(ValueError, match="errors must be"):
        pacer.ByteDecoder("ignore")


CLEANUP_TEXT = st.lists(
    st.sampled_from(
        [" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're", " ", "'", "n", "a", "s."]
    ),
    max_size=25,
).map("".join)


_SHARED_MOVES: list[Any] = []  # one set of remembered moves across examples, as a vocabulary's is


@given(st.data(), CLEANUP_TEXT, st.booleans())
def test_streaming_cleanup_equals_transformers_sequential_replaces(
    data: st.DataObject, text: str, shared: bool
) -> None:
    from pacer._cleanup import CLEANUP_REPLACEMENTS, Cleanup, CleanupMoves

    expected = text
    for pattern, replacement in CLEANUP_REPLACEMENTS:
        expected = expected.replace(pattern, replacement)
    if shared and not _SHARED_MOVES:
        _SHARED_MOVES.append(CleanupMoves())
    cleanup = Cleanup(_SHARED_MOVES[0] if shared else None)
    pieces = data.draw(splits(text))
    assert "".join(cleanup.feed(p) for p in pieces) + cleanup.flush() == expected
    assert not cleanup.holding


def test_cleanup_moves_remembered_are_bounded_and_the_rest_still_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pacer._cleanup import Cleanup, CleanupMoves

    moves = CleanupMoves(kept=4)
    out: list[str] = []
    words = [f"w{k}" for k in range(50)]
    for word in words:  # " '" holds; the word after it decides
        cleanup = Cleanup(moves)
        out.append(cleanup.feed(" '") + cleanup.feed(" " + word) + cleanup.feed(" n") + cleanup.feed("'t"))
        out[-1] += cleanup.flush()
    assert out == [f"'{w}n't" for w in words]  # " ' " is "'", and " n't" is "n't"
    assert len(moves.states) < 10 and all(len(m) <= 4 for m in moves.moves)


@pytest.mark.parametrize("kind", ["slow", "fast-bpe-ignored", "fast-bpe-forced"])
@settings(max_examples=30)
@given(data=st.data(), text=st.one_of(hard_text, CLEANUP_TEXT.map(lambda t: "Well" + t + " ok")))
def test_clean_up_tokenization_spaces_is_reproduced(kind: str, data: st.DataObject, text: str) -> None:
    import copy

    b = get("hf-slow-tokenizer.model.v1" if kind == "slow" else "hf-fast-tokenizer.model.v1")
    tok = copy.copy(b.tokenizer)  # a separate object: the shared fixture keeps its settings
    tok.clean_up_tokenization_spaces = True
    if kind == "fast-bpe-forced":
        tok.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output = True
    ids = tok.encode(text, add_special_tokens=True)
    joined, _ = stream(tok, data.draw(id_splits(ids)))
    assert joined == tok.decode(ids)


def test_a_vocab_given_directly_carries_its_cleanup_and_the_setting_is_read_per_detokenizer() -> None:
    import copy

    from pacer.tokenizers import vocab_for

    tok = copy.copy(get("hf-slow-tokenizer.model.v1").tokenizer)
    text = "Well , it is n't over . Is it ? Yes !"
    ids = tok.encode(text, add_special_tokens=False)
    tok.clean_up_tokenization_spaces = True
    cleaned = vocab_for(tok)
    assert cleaned.cleanup
    tok.clean_up_tokenization_spaces = False
    raw = vocab_for(tok)
    assert not raw.cleanup and raw.pieces is cleaned.pieces  # one table, two settings
    # A Vocab handed over directly keeps the rule it was built with.
    d = Detokenizer(cleaned)
    assert "".join(d.feed(ids) + d.flush()) == tok.decode(ids, clean_up_tokenization_spaces=True)
    d = Detokenizer(raw)
    assert "".join(d.feed(ids) + d.flush()) == tok.decode(ids, clean_up_tokenization_spaces=False)
    assert tok.decode(ids, clean_up_tokenization_spaces=True) != tok.decode(
        ids, clean_up_tokenization_spaces=False
    )


def test_feed_is_the_c_lookup_when_built_and_a_feed_bound_early_stays_exact(speedups: str) -> None:
    b = get("tiktoken-tekken")
    d = Detokenizer(b.tokenizer)
    assert (d._lookup_state is not None) == (speedups == "C lookup")
    if detokenize._speedups is not None:
        assert type(Detokenizer.__dict__["feed"]).__name__ == "FeedMethod"
        assert Detokenizer.feed.__doc__ == Detokenizer.feed.__wrapped__.__doc__  # type: ignore[attr-defined]
    assert Detokenizer(b.tokenizer).feed(b.encode("Hi")) == ["Hi"]  # a temporary: kept alive by the call
    feed = d.feed  # bound once, used across partial characters, errors and the end
    ids = b.encode("plain words, then 🤖中文 split across tokens, then plain again")
    out = [t for i in ids for t in feed(i)]
    if speedups == "C lookup":
        assert d._lookup_state.count == len(ids)  # C answered every id, the parts of split characters too
    with pytest.raises(TypeError, match="expected an int or a sequence of ints, got float"):
        feed(1.5)
    with pytest.raises(TypeError, match="bool"):
        feed(True)
    with pytest.raises(ValueError, match=r"token id -1 at position 0 of this feed \(token"):
        feed(-1)
    with pytest.raises(ValueError, match=r"token id 10{30} at position 0"):
        feed(10**30)  # beyond any C integer: the C lookup must hand it over, not fail
    out += feed(ids[0], now=1.0) + feed(ids[1], 2.0)  # positional and keyword time: checked path
    out += d.flush()
    assert "".join(out) == b.decode([*ids, ids[0], ids[1]], False)
    with pytest.raises(pacer.StageClosedError):
        feed(ids[0])


def test_ingest_is_the_c_lookup_when_built_and_makes_the_chunks_the_python_path_makes(speedups: str) -> None:
    b = get("tiktoken-tekken")
    if detokenize._speedups is not None:
        assert type(Detokenizer.__dict__["ingest"]).__name__ == "FeedMethod"
    d = Detokenizer(b.tokenizer)
    ingest = d.ingest  # what a pipeline binds once
    ids = b.encode("plain words, then 🤖中文 split across tokens, then plain again")
    chunks: list[pacer.Chunk] = []
    for k, i in enumerate(ids):
        out = ingest(i, float(k))
        assert all(type(c) is pacer.Chunk and c.text and c.arrival == float(k) for c in out)
        chunks += out
    if speedups == "C lookup":
        assert d._lookup_state.count == len(ids)  # C answered every id, the parts of split characters too
    with pytest.raises(TypeError, match="expected an int or a sequence of ints, got float"):
        ingest(1.5, 0.0)
    where = rf"token id 10{{30}} at position 0 of this feed \(token {len(ids)} of the stream"
    with pytest.raises(ValueError, match=where):
        ingest(10**30, 0.0)  # beyond any C integer: handed to the Python path, which counts C's ids too
    chunks += d.finish(99.0)
    assert "".join(c.text for c in chunks) == b.decode(ids, False)


def test_c_ingest_gives_no_chunk_for_an_empty_text_as_the_python_path_does() -> None:
    if detokenize._speedups is None:
        pytest.skip("pacer._speedups is not built")
    d = Detokenizer(get("tiktoken-tekken").tokenizer)
    # A table with an empty text; bytes that finish no character.
    d._lookup_state = state = detokenize._speedups.TableState(
        ("", "x", None), (None, None, b"\xe4"), "strict"
    )
    state.mode = 2
    assert d.ingest(0, 1.0) == []
    assert d.ingest(1, 2.0) == [pacer.Chunk("x", 2.0)]
    assert d.ingest(2, 3.0) == [] and state.pending == b"\xe4"
    assert state.count == 3


def test_out_of_vocabulary_error_counts_every_id_taken_by_either_path(speedups: str) -> None:
    b = get("tiktoken-tekken")
    d = Detokenizer(b.tokenizer)
    for i in b.encode("one two three"):
        d.feed(i)
    taken = len(b.encode("one two three"))
    with pytest.raises(ValueError, match=rf"\(token {taken + 1} of the stream\)"):
        d.feed([b.encode(" four")[0], 10**9])


def test_a_detokenizer_is_freed_by_reference_counting_alone(speedups: str) -> None:
    b = get("tiktoken-tekken")
    gc.disable()
    try:
        d = Detokenizer(b.tokenizer)
        d.feed(b.encode("hello")[0])
        d.feed(b.encode("🤖")[:1])  # a partial character: the checked path too
        ref = weakref.ref(d)
        del d
        assert ref() is None  # no reference cycle anywhere in it
    finally:
        gc.enable()


def test_feed_on_a_subclass_or_a_foreign_object_is_safe(speedups: str) -> None:
    # The C feed reads its state from a slot at a fixed offset: it must check that the
    # object really is a Detokenizer first, and take the Python path when not.
    b = get("tiktoken-tekken")

    class Named(Detokenizer):
        def __init__(self, tokenizer: object) -> None:
            super().__init__(tokenizer)
            self.label = "named"

    ids = b.encode("a subclass streams the same text")
    d = Named(b.tokenizer)
    assert "".join([t for i in ids for t in d.feed(i)] + d.flush()) == b.decode(ids, False)
    with pytest.raises(AttributeError):
        Detokenizer.feed(object(), ids[0])  # type: ignore[arg-type]
    bare = Detokenizer.__new__(Detokenizer)  # never initialised: the slot is empty
    with pytest.raises(AttributeError):
        bare.feed(ids[0])
    with pytest.raises(TypeError):  # no id at all: the C method must not read past its arguments
        d.feed()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Detokenizer.ingest(d)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("name", "text", "python_ids"),
    [
        ("tiktoken-tekken", "中文 and 🤖👩‍👩‍👧 split over tokens", 0),  # the bytes of split characters
        ("hf-fast-mistral_instruct_tokenizer_240323.model.v3", "中文 and 🤖 as byte runs", 1),  # + the start
        ("hf-fast-wordpiece", "plain words then more words", 1),  # text the clean-up leaves as it is
        ("hf-fast-wordpiece", "words, then more. A question? Yes!", 1),  # marks whose space it drops
    ],
)
def test_the_c_lookup_takes_split_characters_byte_runs_and_text_the_clean_up_keeps(
    speedups: str, name: str, text: str, python_ids: int
) -> None:
    b = get(name)
    ids = b.encode(text)
    d = Detokenizer(b.tokenizer)
    out = [t for i in ids for t in d.feed(i)] + d.flush()
    assert "".join(out) == b.decode(ids, False)
    if speedups == "C lookup":
        assert d._lookup_state.count == len(ids) - python_ids  # the first id of a start rule is Python's


def test_the_c_lookup_takes_what_the_clean_up_held_by_the_moves_it_remembers(speedups: str) -> None:
    # Quote marks and "n" start a clean-up pattern (" ' ", " n't"): the clean-up holds them
    # until the next token. Once a stream has met a held text and what followed it, every
    # later stream of the vocabulary (and this one) moves on by the remembered move.
    b = get("hf-fast-wordpiece")
    ids = b.encode("print(text, end='') then n = 'a' isn't it ' s")
    for _ in range(2):
        d = Detokenizer(b.tokenizer)
        out = [t for i in ids for t in d.feed(i)] + d.flush()
        assert "".join(out) == b.decode(ids, False)
        assert "" not in out
    if speedups == "C lookup":
        assert d._lookup_state.count == len(ids) - 1  # the first id of a start rule is Python's


@pytest.mark.parametrize("name", ["tiktoken-tekken", "hf-fast-wordpiece"])
def test_ids_fed_at_once_take_the_c_lookup_and_a_bad_one_changes_nothing(speedups: str, name: str) -> None:
    b = get(name)
    ids = b.encode("print(text, end='') isn't 中文 and 🤖 then 'quoted' words.")
    warm = Detokenizer(b.tokenizer)  # meets every clean-up move these ids need
    for i in ids:
        warm.feed(i)
    d = Detokenizer(b.tokenizer)
    with pytest.raises(
        ValueError, match=r"token id 10000000 at position 1 of this feed \(token 1 of the stream\)"
    ):
        d.feed([ids[0], 10_000_000])  # a start rule's feed is checked whole first too
    head, rest = ids[:3], ids[3:]
    out = d.feed(head) + d.feed(rest)
    with pytest.raises(ValueError, match=r"token id 10000000 at position 2 of this feed"):
        d.feed([ids[0], ids[1], 10_000_000])  # checked before anything changed
    with pytest.raises(TypeError, match=r"position 1 must be an int, got str"):
        d.feed((ids[0], "x"))
    out += d.feed(tuple(ids)) + d.flush()
    assert "".join(out) == b.decode(ids + ids, False)
    if speedups == "C lookup":
        # a start rule's first id is Python's, and the ids after it in that feed are C's
        assert d._lookup_state.count == len(ids) * 2 - (1 if "wordpiece" in name else 0)


def test_a_clean_up_move_not_yet_remembered_in_a_feed_of_many_ids_is_found_exactly(speedups: str) -> None:
    import dataclasses

    from pacer.tokenizers import vocab_for

    b = get("hf-fast-wordpiece")
    cold = dataclasses.replace(vocab_for(b.tokenizer))  # a copy: no moves remembered yet
    ids = b.encode("so it's 'here' , and n't there")
    d = Detokenizer(cold)
    out = d.feed(ids[:2]) + d.feed(ids[2:]) + d.flush()
    assert "".join(out) == b.decode(ids, False)
    d = Detokenizer(cold)  # now every move is remembered: the C lookup takes all but the first id
    out = d.feed(ids[:2]) + d.feed(ids[2:]) + d.flush()
    assert "".join(out) == b.decode(ids, False)
    if speedups == "C lookup":
        assert d._lookup_state.count == len(ids) - 1


# Bytes around every edge of UTF-8's well-formed sequences: leads that are never valid
# (C0, C1, F5), the narrowed second bytes after E0, ED, F0 and F4, continuations, ASCII.
_EDGE_BYTES = [0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xED]
_EDGE_BYTES += [0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF]


@given(st.lists(st.sampled_from(_EDGE_BYTES), max_size=12))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_single_byte_tokens_decode_as_one_shot_decode_does_valid_or_not(
    speedups: str, data: list[int]
) -> None:
    # One token a byte: every id goes through the split-character path (the C one's
    # shortcut for a character's first bytes and its last), well-formed or not.
    b = get("tiktoken-tekken")
    ids = [b.tokenizer.encode_single_token(bytes([x])) for x in data]
    d = Detokenizer(b.tokenizer)
    out = [t for i in ids for t in d.feed(i)] + d.flush()
    assert "".join(out) == b.decode(ids, False)
