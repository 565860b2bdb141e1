"""SentenceSplitter: the labelled set, fragmentation independence, budgets, hold timer, bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacer import Boundary, Chunk, SentenceSplitter, _breaks, run, simulate, split_sentences
from pacer._punkt import PunktModel, english_punkt
from pacer.testing.cases import CASES
from pacer.testing.strategies import HARD_PIECES, check_arrivals, hard_text, runs, splits

MARKDOWN_PIECES = [
    "\n",
    "\n\n",
    "```",
    "```py\n",
    "~~~",
    "`",
    "``",
    "# ",
    "- ",
    "* ",
    "1. ",
    "a) ",
    "| ",
    "> ",
    "---",
    "  ",
    ". ",
    "? ",
    "! ",
    "...",
    "。",
    "！",
    "「",
    "」",
    "“",
    "”",
    "(",
    ")",
    '"',
    "Dr. ",
    "e.g. ",
    "J. ",
    "U.S. ",
    "The ",
    "it ",
    "No. 4",
    "3.5",
    "と",
    "你好",
    "x",
    "Word",
    ", ",
    "、",
    "Fig. ",
    "S1",
    "Mr",
    "U.S.A. ",
    "！”",
    "他说",
    "：",
    "1. ",
    "；2. ",
    "]",
    "[",
    ":(",
    ":-)",
    "f(",
    "张老师笑着",
    "说",
    "知道",
    "Everyone ",
    "Sir ",
    "Pfc. ",
    "He ",
    "is ",
    "He's ",
]

markdownish = st.lists(
    st.one_of(st.sampled_from(MARKDOWN_PIECES), st.sampled_from(HARD_PIECES), st.text(max_size=4)),
    max_size=40,
).map("".join)


def fragments(draw: st.DrawFn, text: str) -> list[str]:
    return runs(draw, text, 6)


def stream(splitter: SentenceSplitter, pieces: list[str]) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        out.extend(splitter.feed(piece))
    return out + splitter.flush()


@pytest.mark.parametrize(
    ("lang", "topic", "units"), CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)]
)
def test_labelled_case_offline(lang: str, topic: str, units: list[str]) -> None:
    assert split_sentences("".join(units)) == units


def test_labelled_set_is_big_enough_and_lossless() -> None:
    assert len(CASES) >= 150
    for lang in ("en", "zh", "ja", "md"):
        assert sum(1 for c in CASES if c[0] == lang) >= 15
    assert all(all(unit for unit in units) for _, _, units in CASES)


@pytest.mark.parametrize(
    "units", [c[2] for c in CASES], ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)]
)
@settings(max_examples=15)
@given(data=st.data())
def test_labelled_case_streamed_in_random_fragments(units: list[str], data: st.DataObject) -> None:
    text = "".join(units)
    assert stream(SentenceSplitter(), fragments(data.draw, text)) == units


def test_labelled_set_streamed_one_character_at_a_time() -> None:
    for _, _, units in CASES:
        assert stream(SentenceSplitter(), list("".join(units))) == units


@settings(max_examples=400)
@given(markdownish, st.data(), st.sampled_from([None, 8, 30]))
def test_output_never_depends_on_fragmentation(text: str, data: st.DataObject, max_chars: int | None) -> None:
    whole = split_sentences(text, max_chars=max_chars)
    assert "".join(whole) == text
    streamed = stream(SentenceSplitter(max_chars=max_chars), fragments(data.draw, text))
    assert streamed == whole


@settings(max_examples=200)
@given(markdownish, st.sampled_from([8, 13, 30]))
def test_budget_bounds_every_unit_code_too(text: str, max_chars: int) -> None:
    splitter = SentenceSplitter(max_chars=max_chars)
    chunks = splitter.push(Chunk(text, 0.0), 0.0) + splitter.finish(0.0) if text else []
    assert "".join(c.text for c in chunks) == text
    for c in chunks:  # code included: the budget wins over keeping code whole
        assert len(c.text.rstrip()) <= max_chars, c


def test_streamed_sentences_come_out_as_soon_as_proven() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Hello there.") == []
    assert splitter.feed(" ") == []
    assert splitter.feed("N") == ["Hello there. "]
    assert splitter.feed("ext one. Mr.") == ["Next one. "]
    assert splitter.feed(" Smith") == []  # Mr. is a title: never an end
    assert splitter.flush() == ["Mr. Smith"]


def test_cjk_needs_no_space_to_commit() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("你好。") == []
    assert splitter.feed("我") == ["你好。"]
    assert splitter.feed("很好」と") == []
    assert splitter.flush() == ["我很好」と"]


def test_abbreviation_waits_for_the_next_word() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("We need eggs, etc. Th") == []
    assert splitter.feed("e") == []
    assert splitter.feed(" list") == ["We need eggs, etc. "]


def test_after_a_number_the_next_word_decides_as_soon_as_its_start_does() -> None:
    shipped = english_punkt()
    # A model where only "None" keeps a sentence going after a number (seen capitalised
    # only mid-sentence): any word that cannot become "none" ends the sentence at once.
    model = PunktModel(
        abbreviations=shipped.abbreviations,
        titles=shipped.titles,
        numeric_only=shipped.numeric_only,
        collocations=frozenset(),
        sentence_starters=shipped.sentence_starters,
        ortho_context={"none": 4},
    )
    assert model.after_number_prefixes == {"n", "no", "non", "none"}
    splitter = SentenceSplitter(punkt=model)
    assert splitter.feed("It was 5. No") == []  # may still become "None"
    assert splitter.feed("t") == ["It was 5. "]
    splitter = SentenceSplitter(punkt=model)
    assert splitter.feed("It was 5. None") == []
    assert splitter.feed(" of them.") == []  # "None" kept the sentence going
    assert splitter.flush() == ["It was 5. None of them."]


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("- milk\n-", ["- milk\n"]),  # after a list item, an unindented line starts a unit
        ("# Title\nT", ["# Title\n"]),  # after a heading, any line does
        ("Intro:\n- ", ["Intro:\n"]),  # a list item or a thematic break: both start a unit
        ("Intro:\n-", []),  # may still be "-5 degrees", which goes on
        ("Intro:\n```", ["Intro:\n"]),  # a fence, whatever its length and info string
        ("Intro:\n``", []),  # may be inline code
        ("- item\n  -", []),  # may continue the item
        ("- item\n  - ", ["- item\n  "]),  # a nested item (a unit keeps the space after it)
    ],
)
def test_markdown_line_starts_a_unit_as_soon_as_its_start_proves_it(text: str, out: list[str]) -> None:
    splitter = SentenceSplitter()
    assert splitter.feed(text) == out
    assert "".join(out + splitter.flush()) == text


def test_fenced_code_is_one_unit_while_it_flows_and_max_hold_still_holds_inside_it() -> None:
    # Was "the open fence is never cut": that let an unclosed fence hold the rest of the
    # stream past max_hold for ever (issue 20). The bound wins; flowing code stays whole.
    splitter = SentenceSplitter(max_hold=0.5)
    out = splitter.push(Chunk("Intro.\n```py\nx = 1. Y = 2.\n", 0.0), 0.0)
    out += splitter.push(Chunk("z = 3.\n```\nAfter.", 0.3), 0.3) + splitter.finish(0.3)
    assert [c.text for c in out] == ["Intro.\n", "```py\nx = 1. Y = 2.\nz = 3.\n```\n", "After."]
    splitter = SentenceSplitter(max_hold=0.5)
    splitter.push(Chunk("Intro.\n```py\nx = 1. Y = 2.\n", 0.0), 0.0)
    assert splitter.deadline == 0.5
    held = splitter.poll(0.5)
    assert [(c.text, c.boundary) for c in held] == [("```py\nx = 1. Y = 2.\n", Boundary.FORCED)]


@pytest.mark.parametrize("opening", ["`", "```", "~~~py\n"])
def test_a_stray_backtick_or_unclosed_fence_never_defeats_max_chars_or_max_hold(opening: str) -> None:
    splitter = SentenceSplitter(max_chars=200, max_hold=0.5)
    piece = "word and more words; then a line\n" * 300  # ~10 kB a push
    pending = 0
    now = 0.0
    out = splitter.push(Chunk("Start. " + opening, now), now)
    for _ in range(100):  # ~1 MB after the opening, never closed
        now += 0.01
        out += splitter.push(Chunk(piece, now), now)
        sent = sum(len(c.text) for c in out)
        pending = len("Start. " + opening) + (len(piece) * (_ + 1)) - sent
        assert pending <= 400  # was: everything since the opening
    assert all(len(c.text.rstrip()) <= 200 for c in out)
    now += 0.6
    assert splitter.deadline is not None and splitter.deadline <= now
    out += splitter.poll(now)
    assert "".join(c.text for c in out) == "Start. " + opening + piece * 100  # nothing held past max_hold


def test_hold_timer_sends_pending_text_when_the_source_stalls() -> None:
    trace = [(0.0, "Thinking about it"), (0.1, " for a while"), (2.0, ". Done.")]
    timeline = simulate(trace, SentenceSplitter(max_hold=0.4))
    emitted = [(e.emitted, e.text, e.boundary) for e in timeline.emissions]
    assert emitted[0] == (pytest.approx(0.5), "Thinking about it for a while", Boundary.FORCED)
    assert "".join(e.text for e in timeline.emissions) == "Thinking about it for a while. Done."


def test_clause_and_forced_cuts_say_what_they_are() -> None:
    splitter = SentenceSplitter(max_chars=30, first_max_chars=12)
    text = "Well, this sentence runs on, and on, and on without any stop at all, for ever and ever"
    chunks = splitter.push(Chunk(text, 0.0), 0.0) + splitter.finish(0.0)
    assert "".join(c.text for c in chunks) == text
    assert chunks[0].text == "Well, "
    assert chunks[0].boundary == Boundary.CLAUSE
    assert all(len(c.text.rstrip()) <= 30 for c in chunks)
    assert {c.boundary for c in chunks[1:-1]} <= {Boundary.CLAUSE, Boundary.FORCED}
    assert chunks[-1].boundary == Boundary.SENTENCE


def test_cjk_clause_cut() -> None:
    text = "这是一个很长的句子，里面有很多逗号，而且没有句号，所以需要在逗号处切开"
    out = split_sentences(text, max_chars=12)
    assert "".join(out) == text
    assert out[0] == "这是一个很长的句子，"
    assert all(len(u) <= 12 for u in out)


def test_no_boundary_text_streams_in_bounded_memory_with_a_budget() -> None:
    splitter = SentenceSplitter(max_chars=200)
    total = 0
    piece = "lorem ipsum dolor sit amet consectetur " * 1000  # ~39 kB, no boundary
    for _ in range(256):  # ~10 MB
        for text in splitter.feed(piece):
            total += len(text)
            assert len(text.rstrip()) <= 200
        assert len(splitter._scanner.buf) < 200_000  # pending text stays bounded
    total += sum(len(t) for t in splitter.flush())
    assert total == len(piece) * 256


def test_no_boundary_text_without_budget_is_one_unit() -> None:
    text = "x" * 100_000
    splitter = SentenceSplitter()
    assert all(splitter.feed(text[i : i + 3]) == [] for i in range(0, len(text), 3))
    assert splitter.flush() == [text]


def test_chunks_carry_arrival_of_their_first_character() -> None:
    splitter = SentenceSplitter()
    out = splitter.push(Chunk("One. T", 1.0), 1.0)
    out += splitter.push(Chunk("wo. Three", 2.0), 2.0)
    out += splitter.finish(3.0)
    assert [(c.text, c.arrival) for c in out] == [("One. ", 1.0), ("Two. ", 1.0), ("Three", 2.0)]


@given(st.data(), hard_text.filter(bool), st.sampled_from([None, 8, 20]))
def test_every_unit_carries_the_arrival_of_its_first_character(
    data: st.DataObject, text: str, budget: int | None
) -> None:
    pieces = [piece for piece in data.draw(splits(text)) if piece]
    check_arrivals(SentenceSplitter(max_chars=budget), pieces)


def test_in_a_pipeline_run() -> None:
    pieces = ["Hel", "lo. Wor", "ld! ", "你好。", "再见"]
    assert list(run(SentenceSplitter(), pieces)) == ["Hello. ", "World! ", "你好。", "再见"]


def test_lang_en_ignores_cjk_marks_and_zh_skips_abbreviations() -> None:
    assert split_sentences("你好。我", lang="en") == ["你好。我"]
    assert split_sentences("Dr. Who is here.", lang="zh") == ["Dr. ", "Who is here."]
    assert split_sentences("Dr. Who is here.", lang="en") == ["Dr. Who is here."]


def test_shipped_punkt_parameters_load_without_pickle_and_drive_nltk() -> None:
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    model = english_punkt()
    assert {"dr", "e.g", "etc", "u.s"} <= model.abbreviations
    assert "the" in model.sentence_starters
    tokenizer = PunktSentenceTokenizer(model.to_nltk())
    assert tokenizer.tokenize("Dr. Patel is in. The rest are out.") == [
        "Dr. Patel is in.",
        "The rest are out.",
    ]
    with pytest.raises(ValueError, match="not a pacer Punkt parameter file"):
        PunktModel.from_json({"abbrev_types": []})


@pytest.mark.parametrize("bad", [b"bytes", 3, None, ["list"]])
def test_non_text_input_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="SentenceSplitter takes str or Chunk"):
        SentenceSplitter().feed(bad)
    with pytest.raises(TypeError, match="split_sentences takes str"):
        split_sentences(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_chars": 0}, "max_chars"),
        ({"max_chars": 3}, "max_chars"),
        ({"first_max_chars": -1}, "first_max_chars"),
        ({"max_chars": 20, "first_max_chars": 40}, "first_max_chars"),
        ({"max_hold": 0}, "max_hold"),
        ({"lang": "fr"}, "lang"),
    ],
)
def test_bad_options_name_the_parameter(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SentenceSplitter(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_chars": "80"}, "max_chars must be an int, got str"),
        ({"first_max_chars": 40.0}, "first_max_chars must be an int, got float"),
        ({"max_hold": "1s"}, "max_hold must be a number, got str"),
    ],
)
def test_options_of_the_wrong_type_are_type_errors_naming_the_parameter(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=f"SentenceSplitter: {message}"):
        SentenceSplitter(**kwargs)  # type: ignore[arg-type]


def test_budgets_take_numpy_ints() -> None:
    np = pytest.importorskip("numpy")
    s = SentenceSplitter(max_chars=np.int32(40), first_max_chars=np.int64(20), max_hold=np.float32(0.5))
    assert (s.max_chars, s.first_max_chars, s.max_hold) == (40, 20, 0.5)
    assert type(s.max_chars) is int and type(s.max_hold) is float


@given(st.text(st.sampled_from("ab .?!\n`,。」\t"), max_size=12) | st.text(max_size=12))
def test_quiet_text_is_text_the_interesting_pattern_does_not_match(text: str) -> None:
    # The compiled build checks ASCII text with a loop, everything else with _INTERESTING.
    assert _breaks.quiet(text) == (_breaks._INTERESTING.search(text) is None)


def test_min_chars_merges_short_sentences_with_the_next() -> None:
    # LiveKit's min_sentence_len: a voice is not handed "Yes." alone.
    text = "Yes. No. I think that is right. Ok. Sure thing, my friend. Bye."
    splitter = SentenceSplitter(min_chars=20)
    out = [unit for ch in text for unit in splitter.feed(ch)]
    assert out == ["Yes. No. I think that is right. ", "Ok. Sure thing, my friend. "]
    assert splitter.flush() == ["Bye."]  # the last one goes at the end, short or not
    assert split_sentences("Hi. There.") == ["Hi. ", "There."]  # no merging unless asked


def test_min_chars_does_not_hold_past_the_hold_timer() -> None:
    trace = [(0.0, "Yes. "), (0.1, "No. And"), (2.0, " then more.")]
    timeline = simulate(trace, SentenceSplitter(min_chars=20, max_hold=0.5))
    assert [(c.text, c.boundary, c.emitted) for c in timeline.emissions] == [
        ("Yes. No. ", Boundary.SENTENCE, 0.6),  # whole sentences, merged, let go by the timer
        ("And", Boundary.FORCED, 0.6),
        (" then more.", Boundary.SENTENCE, 2.0),
    ]


@given(hard_text, st.integers(0, 40))
def test_min_chars_is_lossless_and_every_unit_but_the_last_is_long_enough(text: str, least: int) -> None:
    splitter = SentenceSplitter(min_chars=least)
    units = splitter.feed(text) + splitter.flush()
    assert "".join(units) == text
    assert all(len(u.rstrip()) >= least for u in units[:-1])


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"min_chars": -1}, ValueError),
        ({"min_chars": 50, "max_chars": 40}, ValueError),
        ({"min_chars": 2.5}, TypeError),
    ],
)
def test_bad_min_chars_is_refused(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error, match="min_chars"):
        SentenceSplitter(**kwargs)  # type: ignore[arg-type]


def test_a_numbering_word_waits_for_the_label_after_it() -> None:
    # Was: "See Fig. " went out as soon as the "S" of "S1" came (issue 39).
    splitter = SentenceSplitter()
    assert [unit for ch in "See Fig. S1" for unit in splitter.feed(ch)] == []
    assert splitter.feed(" for the run. Then") == ["See Fig. S1 for the run. "]
    splitter = SentenceSplitter()
    assert splitter.feed("The answer is no. A") == []  # may still be a label, "A1"
    assert splitter.feed("s") == ["The answer is no. "]  # "As" cannot be


def test_a_title_after_an_initialism_opens_a_sentence_as_soon_as_it_is_read() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("I work at the U.S.A. Mr") == []  # "Mr" may still be "Mro..."
    assert splitter.feed(". Smith") == ["I work at the U.S.A. "]
    splitter = SentenceSplitter()
    assert splitter.feed("We landed in the U.S. Mrs") == ["We landed in the U.S. "]  # no word goes on from it
    assert split_sentences("Jekyll vs. Mr. Hyde is a classic.") == ["Jekyll vs. Mr. Hyde is a classic."]


def test_a_stray_parenthesis_keeps_sentences_open_only_so_far() -> None:
    assert split_sentences("Fine (Fig. 2. Left) here. Next.") == ["Fine (Fig. 2. Left) here. ", "Next."]
    text = "So sad :( " + "and more words " * 14 + "at last. Then a new one."
    assert split_sentences(text) == [text[: text.index("Then")], "Then a new one."]
    assert split_sentences("Odd (see\nthis. Then more.") == [
        "Odd (see\nthis. ",
        "Then more.",
    ]  # a line end closes it


def test_faces_and_interval_ends_open_and_close_no_parenthesis() -> None:
    assert split_sentences("Sad :'( It rained. We stayed in.") == ["Sad :'( It rained. ", "We stayed in."]
    assert split_sentences("Fine (I loved it :) really. Truly) here. Next.") == [
        "Fine (I loved it :) really. Truly) here. ",
        "Next.",
    ]  # a smile closes nothing
    assert split_sentences("A (see [1]. Also) here. Next.") == ["A (see [1]. Also) here. ", "Next."]
    assert split_sentences("Take x in (0, 1]. Then y.") == ["Take x in (0, 1]. ", "Then y."]


def test_a_title_before_a_pronoun_ends_a_sentence_once_the_pronoun_is_read() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("He is a Pfc. He") == []  # "He" may be a name: "Dr. He Jiankui"
    assert splitter.feed(" is") == ["He is a Pfc. "]
    splitter = SentenceSplitter()
    assert splitter.feed("Ask Dr. He Jiankui. Then") == ["Ask Dr. He Jiankui. "]
    assert split_sentences("Mx. Theo Park and Dr. Itoh came.") == ["Mx. Theo Park and Dr. Itoh came."]


def test_chinese_quoted_speech_goes_on_with_who_said_it() -> None:
    assert split_sentences("“太好了！”他高兴地说。") == ["“太好了！”他高兴地说。"]
    assert split_sentences("他问：“好吗？”我说好。") == [
        "他问：“好吗？”",
        "我说好。",
    ]  # the speaker came first
    assert split_sentences("「危ない！」誰かが叫んだ。") == ["「危ない！」", "誰かが叫んだ。"]  # Japanese
    splitter = SentenceSplitter()
    assert splitter.feed("“走吧！”他们出发") == []  # a verb of saying may still come
    assert splitter.feed("了。") == ["“走吧！”"]  # the sentence ended without one: a new sentence
    splitter = SentenceSplitter()
    assert splitter.feed("“走吧！”一二三四五六七八九") == []
    assert splitter.feed("十") == ["“走吧！”"]  # ten characters and no verb of saying: a new sentence
