"""English Punkt parameters shipped with pacer, loaded from JSON (never pickle).

``nltk.download`` cannot be reached by many users, so ``pacer/data/punkt_en.json``
is built by ``scripts/build_punkt.py`` from nltk's ``PunktTrainer`` on text every
Python install carries, plus a curated abbreviation list. ``PunktModel`` holds the
parts of it that Punkt's decisions read; ``to_nltk`` hands the same parameters to
nltk's own ``PunktSentenceTokenizer``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from nltk.tokenize.punkt import PunktParameters

__all__ = ["ORTHO_LC", "ORTHO_MID_UC", "ORTHO_UC", "PunktModel", "english_punkt"]

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

    @functools.cached_property
    def after_number_prefixes(self) -> frozenset[str]:
        """Every prefix of a word that, after a number and a period, keeps the sentence
        going (a collocation, or a word seen capitalised only mid-sentence). A next word
        that starts otherwise ends the sentence, so no need to wait for the rest of it."""
        words = {b for a, b in self.collocations if a == "##number##"}
        words.update(w for w, c in self.ortho_context.items() if c & ORTHO_MID_UC and not c & ORTHO_LC)
        return frozenset(w[:k] for w in words for k in range(1, len(w) + 1))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PunktModel:
        """Build a model from the JSON object ``scripts/build_punkt.py`` writes."""
        try:
            return cls(
                abbreviations=frozenset(data["abbrev_types"]),
                titles=frozenset(data.get("titles", ())),
                numeric_only=frozenset(data.get("numeric_only", ())),
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
        """The same parameters as nltk's ``PunktParameters``, for ``PunktSentenceTokenizer``."""
        from nltk.tokenize.punkt import PunktParameters

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
