"""English Punkt parameters shipped with pacer, loaded from JSON (never pickle).

``nltk.download`` cannot be reached by many users, so ``pacer/data/punkt_en.json``
is built by ``scripts/build_punkt.py`` from nltk's ``PunktTrainer`` on text every
Python install carries, plus a curated abbreviation list (titles and ranks, reference
labels, legal citations, addresses, states, units), written for pacer after two public
references: the U.S. Government Publishing Office *Style Manual* (2016), chapter 9
"Abbreviations and Letter Symbols", and Cornell LII's *Introduction to Basic Legal
Citation*. ``PunktModel`` holds the
parts of it that Punkt's decisions read; ``to_nltk`` hands the same parameters to
nltk's own ``PunktSentenceTokenizer``.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import regex

if TYPE_CHECKING:
    from nltk.tokenize.punkt import PunktParameters

__all__ = ["ORTHO_LC", "ORTHO_MID_UC", "ORTHO_UC", "PunktModel", "english_punkt", "period_ends_sentence"]

# Orthographic context flags, in the bit layout nltk's trainer writes.
ORTHO_BEG_UC: Final = 1 << 1
ORTHO_MID_UC: Final = 1 << 2
ORTHO_UNK_UC: Final = 1 << 3
ORTHO_BEG_LC: Final = 1 << 4
ORTHO_MID_LC: Final = 1 << 5
ORTHO_UNK_LC: Final = 1 << 6
ORTHO_UC: Final = ORTHO_BEG_UC | ORTHO_MID_UC | ORTHO_UNK_UC
ORTHO_LC: Final = ORTHO_BEG_LC | ORTHO_MID_LC | ORTHO_UNK_LC


@dataclass(frozen=True)
class PunktModel:
    """What Punkt knows about a language: abbreviations, collocations, starters, word casing."""

    abbreviations: frozenset[str]
    """Lower-case tokens without their final period (``"dr"``, ``"e.g"``)."""
    titles: frozenset[str]
    """Abbreviations that precede a name and so never end a sentence (``"mr"``, ``"dr"``)."""
    numeric_only: frozenset[str]
    """Abbreviations only before a number (``"no"`` in "No. 7"); elsewhere ordinary words."""
    collocations: frozenset[tuple[str, str]]
    """Pairs (token before the period, next token) that Punkt learned never to split."""
    sentence_starters: frozenset[str]
    """Lower-case words that often start a sentence after an abbreviation."""
    ortho_context: Mapping[str, int]
    """Lower-case word -> flags of where it was seen capitalised or lower case."""
    announcing: frozenset[str] = frozenset()
    """Abbreviations that announce what follows (``"cf"``, ``"vs"``): after them only a
    common sentence opener ends a sentence, never the orthographic heuristic."""
    honorifics: frozenset[str] = frozenset()
    """Titles that open a new sentence after another abbreviation or an initial
    (``"mr"``, ``"dr"``: "I work at the U.S.A. Mr. Smith is here." is two sentences),
    unlike a rank that a qualifier may precede ("Former U.S. Sen. Hollis")."""

    after_number_prefixes: frozenset[str] = field(init=False, repr=False, compare=False)
    """Every prefix of a word that, after a number and a period, keeps the sentence
    going (a collocation, or a word seen capitalised only mid-sentence). A next word
    that starts otherwise ends the sentence, so no need to wait for the rest of it.
    Worked out once, here: it is read at every number followed by a period."""

    whole_honorifics: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The abbreviated honorifics of three letters or more that no word the model knows
    goes on from (``"mrs"``, not ``"prof"``, which may become "Profile", nor a spelled-out
    ``"sir"``, which may become "Sirius"): after an abbreviation a word that starts with
    one ends the sentence as soon as that start is read."""

    def __post_init__(self) -> None:
        words = {b for a, b in self.collocations if a == "##number##"}
        words.update(w for w, c in self.ortho_context.items() if c & ORTHO_MID_UC and not c & ORTHO_LC)
        prefixes = frozenset(w[:k] for w in words for k in range(1, len(w) + 1))
        object.__setattr__(self, "after_number_prefixes", prefixes)
        known = sorted({*self.ortho_context, *self.abbreviations, *self.sentence_starters})
        whole: list[str] = []
        for h in sorted(self.honorifics):
            after = bisect.bisect_right(known, h)  # the words that start with h come right after it
            if (
                len(h) >= 3
                and h in self.abbreviations
                and (after == len(known) or not known[after].startswith(h))
            ):
                whole.append(h)
        object.__setattr__(self, "whole_honorifics", tuple(whole))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PunktModel:
        """Build a model from the JSON object ``scripts/build_punkt.py`` writes."""
        try:
            return cls(
                abbreviations=frozenset(data["abbrev_types"]),
                titles=frozenset(data.get("titles", ())),
                numeric_only=frozenset(data.get("numeric_only", ())),
                announcing=frozenset(data.get("announcing", ())),
                honorifics=frozenset(data.get("honorifics", ())),
                collocations=frozenset((a, b) for a, b in data["collocations"]),
                sentence_starters=frozenset(data["sent_starters"]),
                ortho_context=dict(data["ortho_context"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a pacer Punkt parameter file: {exc!r}") from exc

    @classmethod
    def load(cls, path: str | Path) -> PunktModel:
        """Load a parameter file written by ``scripts/build_punkt.py``."""
        with open(path, encoding="utf-8") as f:
            return cls.from_json(json.load(f))

    def to_nltk(self) -> PunktParameters:
        """The same parameters as nltk's ``PunktParameters``, for ``PunktSentenceTokenizer``.

        Needs nltk, which pacer itself does not: ``pip install 'pacer-llm[punkt]'``.
        """
        try:
            from nltk.tokenize.punkt import PunktParameters
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "PunktModel.to_nltk needs nltk: pip install 'pacer-llm[punkt]'", name="nltk"
            ) from None

        params = PunktParameters()
        params.abbrev_types = set(self.abbreviations)
        params.collocations = set(self.collocations)
        params.sent_starters = set(self.sentence_starters)
        for word, flags in self.ortho_context.items():
            params.add_ortho_context(word, flags)
        return params


@functools.cache
def english_punkt() -> PunktModel:
    """The English parameters shipped in the package (loaded once)."""
    text = resources.files("pacer").joinpath("data/punkt_en.json").read_text(encoding="utf-8")
    return PunktModel.from_json(json.loads(text))


# -- the period verdict -------------------------------------------------------------------

LOOKAHEAD: Final = 40  # longest next word the verdict waits for, longest word before a period it reads
_LAST_WORD: Final = re.compile(r"\S+\Z")  # searched up to a period: the word the period ends
_NUMBER: Final = re.compile(r"-?[.,]?\d[\d,.\-]*")
_NUMBER_START: Final = frozenset("-.,0123456789")
_DOTTED: Final = regex.compile(r"(?:\p{L}\.)+\p{L}")
_WORD_CHARS: Final = re.compile(r"[\w'’\-]*")
# A label after a numbering word ("Fig. S1", "Vol. IV"; one that starts with a digit is
# a number), and what a word must start as to still become one.
_LABEL: Final = re.compile(r"[A-Z]{1,2}\d[\w\-]*|[IVXLCDM]{2,}")
_LABEL_START: Final = re.compile(r"[A-Z]{1,2}(?:\d[\w\-]*)?|[IVXLCDM]+")
_OPENERS: Final = "([{\"'“‘*_`"
# Subject pronouns: a name follows a title, these never do ("He is a Pfc. He is brave.").
_PRONOUNS: Final = frozenset(("he", "she", "it", "we", "they", "you"))
_PRONOUN_STARTS: Final = frozenset(p[:k] for p in _PRONOUNS for k in range(1, len(p) + 1))
NUMBER: Final = "##number##"  # the type Punkt gives every number


def period_ends_sentence(
    punkt: PunktModel, buf: str, i: int, m: int, eof: bool, unit_start: int
) -> bool | None:
    """Whether the single period at ``buf[i]`` ends a sentence; ``None``: the next word must be read.

    The period is followed by space and, at ``m``, a character that is not lower case;
    ``unit_start`` is where the sentence the period may end began; ``eof``: the text
    ends with ``buf``. Punkt's decision: after an abbreviation, an initial or a number,
    what the next word is (a collocation, a common sentence opener, or its orthographic
    context) decides; titles never end a sentence, other words always do.
    """
    last = _LAST_WORD.search(buf, max(0, i - LOOKAHEAD), i)
    w = last.start() if last is not None else i
    word = buf[w:i].lstrip(_OPENERS)
    if not word:
        return True
    typ = word.lower()
    nxt = buf[m]
    if word[0] in _NUMBER_START and _NUMBER.fullmatch(word):
        if _list_label(word, buf[unit_start:w]):
            return False
        typ = NUMBER
    if typ in punkt.numeric_only and not nxt.isdigit():
        # "Fig. S1", "Vol. IV": numbered; "The answer is no. Ask again": an ordinary word.
        label = _label(buf, m, eof)
        if label is None or label:
            return None if label is None else False
        is_abbrev = False
    else:
        is_abbrev = typ in punkt.abbreviations or ("." in word and _DOTTED.fullmatch(word) is not None)
    return _after_word(punkt, buf, m, eof, word, typ, is_abbrev)


def _after_word(
    punkt: PunktModel, buf: str, m: int, eof: bool, word: str, typ: str, is_abbrev: bool
) -> bool | None:
    """The verdict once the word before the period is known: a title ends a sentence only
    before a pronoun, a plain word always does; after an abbreviation, an initial or a
    number the next word (at ``m``) decides."""
    if typ in punkt.titles:
        return _pronoun(buf, m, eof)
    is_initial = len(word) == 1 and word.isalpha() and word != "I"
    if not (is_abbrev or is_initial or typ == NUMBER):
        return True
    orthographic = typ not in punkt.announcing and (not is_initial or "." in word)
    nxt = buf[m]
    if nxt.isdigit():
        return typ == NUMBER and not is_abbrev
    if not nxt.isalpha() or not nxt.isupper():
        return True  # a symbol, or a letter of a script without case (你, 안)
    return _next_word_verdict(punkt, buf, m, eof, typ, is_abbrev or is_initial, orthographic)


def _pronoun(buf: str, m: int, eof: bool) -> bool | None:
    """Whether a subject pronoun starts a clause at ``m`` (after a title: "He is a Pfc. He
    is brave.", "Mx. They're here"); ``None``: it may still. A pronoun's word followed by a
    capital is a name ("Dr. He Jiankui"), so the word after it must be lower case."""
    e = min(_WORD_CHARS.match(buf, m).end(), m + LOOKAHEAD)  # type: ignore[union-attr]
    word = buf[m:e].lower()
    base = _contracted(word)
    apostrophe = len(base) < len(word)
    open_word = e == len(buf) and not eof
    if base not in _PRONOUNS:
        return None if open_word and word in _PRONOUN_STARTS else False
    if apostrophe:
        return True  # "He's", "They'll"
    if open_word:
        return None
    after = e
    while after < len(buf) and buf[after].isspace() and after - e < LOOKAHEAD:
        after += 1
    if after == len(buf):
        return None if not eof and after - e < LOOKAHEAD else False
    return after > e and buf[after].islower()


def _contracted(word: str) -> str:
    """The word before a contraction or a possessive ("it" for "it's", "they" for "they’re")."""
    return word.replace("’", "'").partition("'")[0]


def _label(buf: str, m: int, eof: bool) -> bool | None:
    """Whether the word at ``m`` is a label such as ``S1`` or ``IV``; ``None``: it may still become one."""
    e = min(_WORD_CHARS.match(buf, m).end(), m + LOOKAHEAD)  # type: ignore[union-attr]
    word = buf[m:e]  # at most LOOKAHEAD characters, streamed or whole
    if e == len(buf) and not eof and e - m < LOOKAHEAD:
        return None if _LABEL_START.fullmatch(word) else False
    return _LABEL.fullmatch(word) is not None


def _list_label(word: str, before: str) -> bool:
    """A short number that opens its sentence or follows a colon is a list label."""
    return len(word) <= 2 and word.isdigit() and (not before.strip() or before.rstrip().endswith(":"))


def _next_word_verdict(
    punkt: PunktModel, buf: str, m: int, eof: bool, typ: str, short: bool, orthographic: bool
) -> bool | None:
    """After an abbreviation or initial (``short``) or a number, the capitalised word at ``m`` decides."""
    e = _WORD_CHARS.match(buf, m + 1).end()  # type: ignore[union-attr]
    if e == len(buf) and not eof and e - m < LOOKAHEAD:
        # After a number only a few words keep the sentence going: decide as soon as
        # the next word cannot be one of them, whatever the rest of it is.
        start = buf[m:e]
        if not short and start.isascii() and start.lower() not in punkt.after_number_prefixes:
            return True
        if short and typ not in punkt.announcing and start.lower().startswith(punkt.whole_honorifics):
            return True  # "the U.S. Mrs": whatever follows, the sentence ended
        return None
    next_typ = buf[m:e].lower()
    if (typ, next_typ) in punkt.collocations:
        return False
    ctx = punkt.ortho_context.get(next_typ, 0)
    if short:
        # After an abbreviation or an initial a name or a noun is far more likely than
        # a new sentence ("Dr. Patel", "E. B. White"): only a common sentence opener
        # ends it, or, after an abbreviation that is not a lone initial ("etc.",
        # "p.m."), Punkt's orthographic heuristic: a word seen lower case inside
        # sentences, and never capitalised there.
        if next_typ in punkt.sentence_starters or _contracted(next_typ) in punkt.sentence_starters:
            return True  # "The", and "It's", "Everyone's"
        if typ not in punkt.announcing and (
            next_typ in punkt.honorifics or next_typ.startswith(punkt.whole_honorifics)
        ):
            return True  # "the U.S.A. Mr. Smith", but "Jekyll vs. Mr. Hyde"
        return orthographic and bool(ctx & ORTHO_LC) and not ctx & ORTHO_MID_UC
    return not (ctx & ORTHO_MID_UC and not ctx & ORTHO_LC)
