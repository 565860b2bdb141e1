"""Build ``pacer/data/punkt_en.json``: English Punkt parameters that ship with pacer.

``nltk.download`` is out of reach for many users (and for our CI), so pacer ships its
own parameters. They come from two sources, both available offline:

* nltk's ``PunktTrainer`` run over English prose that every CPython install carries:
  the reference topics in ``pydoc_data`` and the docstrings of the standard library.
  This gives abbreviations seen in the wild, collocations, frequent sentence starters
  and each word's orthographic context (capitalised or lower case, at a sentence
  start or inside a sentence), which Punkt's heuristics read.
* A curated list of English abbreviations (titles, months, units, Latin, corporate
  suffixes, reference labels, military ranks, legal citations, addresses) that
  technical prose under-represents. Curated by hand for pacer; the kinds and spellings
  follow two public references: the U.S. Government Publishing Office *Style Manual*
  (2016), chapter 9 "Abbreviations and Letter Symbols" (titles, ranks, addresses,
  states, reference labels), and Cornell LII's *Introduction to Basic Legal Citation*
  (court, reporter and rule abbreviations such as "Fed. R. Civ. P.", "Cir.", "Supp.").
* Two short word lists that the Python documentation has too few of for Punkt to
  learn their casing: honorifics spelled out in full ("Sir", "Dame", "Lady", after
  Wikipedia's "English honorifics") and the indefinite pronouns ("Everyone",
  "Nobody", after Wikipedia's "Indefinite pronoun"), which open sentences.

The file is JSON (no pickle). Run: ``python scripts/build_punkt.py``; the output
depends on the Python version whose stdlib is read (3.11 for the committed file).
"""

from __future__ import annotations

import ast
import json
import pydoc_data.topics
import sys
import sysconfig
from pathlib import Path

from nltk.tokenize.punkt import PunktTrainer

OUT = Path(__file__).resolve().parent.parent / "pacer" / "data" / "punkt_en.json"

#: Titles that precede a name: never the end of a sentence.
TITLES = [
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "rev",
    "hon",
    "st",
    "gen",
    "col",
    "lt",
    "capt",
    "cmdr",
    "sgt",
    "maj",
    "adm",
    "gov",
    "sen",
    "rep",
    "pres",
    "supt",
    "insp",
    "messrs",
    "mme",
    "mlle",
    "mx",
    "fr",
    "sts",
    "msgr",
    "asst",
    "assoc",
    "det",
    "pfc",
    "pvt",
    "cpl",
    "spc",
    "cdr",
    "ens",
    "amb",
    "atty",
]

#: Titles that open a new sentence after another abbreviation or an initial: no
#: qualifier comes before them ("the U.S.A. Mr. Smith" is two sentences), unlike a
#: rank or office ("Former U.S. Sen. Hollis" is one).
HONORIFICS = ["mr", "mrs", "ms", "mx", "messrs", "mme", "mlle", "dr", "prof"]

#: Honorifics spelled out in full, from the common titles in Wikipedia's "English
#: honorifics" article: like the abbreviated ones they open a new sentence after an
#: abbreviation or an initial ("We left the E.U. Sir John was sad."). Not "Lord", which
#: also names offices that a qualifier may precede ("the U.K. Lord Chancellor").
SPELLED_HONORIFICS = ["sir", "dame", "lady"]


#: Abbreviations only before a number: elsewhere they are ordinary words ("say no.").
NUMERIC_ONLY = [
    "no",
    "nos",
    "fig",
    "figs",
    "p",
    "pp",
    "vol",
    "vols",
    "ch",
    "chap",
    "sec",
    "secs",
    "eq",
    "eqs",
    "art",
    "para",
    "paras",
    "pt",
    "pts",
    "ser",
    "apt",
    "apts",
    "tbl",
    "ex",
    "app",
    "ref",
    "refs",
]


#: Abbreviations that announce what follows ("cf. Table 2", "vs. Chicago"): a capital
#: after them is a name or a noun far more often than a new sentence, so Punkt's
#: orthographic heuristic does not end a sentence there (a common opener still does).
ANNOUNCING = [
    "cf",
    "vs",
    "viz",
    "e.g",
    "i.e",
    "ie",
    "approx",
    "ca",
    "circa",
    "incl",
    "excl",
    "esp",
    "al",
    "a.k.a",
    "ed",
    "eds",
    "trans",
    "repr",
]


#: Abbreviations typed lower case without their final period; internal periods kept.
CURATED = [
    *TITLES,
    *NUMERIC_ONLY,
    *ANNOUNCING,
    "sr",
    "jr",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "mon",
    "tue",
    "tues",
    "wed",
    "thu",
    "thur",
    "thurs",
    "fri",
    "sat",
    "sun",
    "etc",
    "e.g",
    "i.e",
    "cf",
    "vs",
    "viz",
    "al",
    "approx",
    "ca",
    "circa",
    "est",
    "esp",
    "incl",
    "excl",
    "min",
    "max",
    "avg",
    "dept",
    "div",
    "govt",
    "univ",
    "assn",
    "natl",
    "intl",
    "ed",
    "eds",
    "trans",
    "repr",
    "inc",
    "ltd",
    "co",
    "corp",
    "bros",
    "plc",
    "llc",
    "l.p",
    "a.m",
    "p.m",
    "u.s",
    "u.k",
    "u.n",
    "e.u",
    "d.c",
    "u.s.a",
    "ph.d",
    "m.d",
    "b.a",
    "m.a",
    "b.sc",
    "m.sc",
    "d.phil",
    "mt",
    "ft",
    "ave",
    "blvd",
    "rd",
    "hwy",
    "oz",
    "lb",
    "lbs",
    "kg",
    "km",
    "cm",
    "mm",
    "sq",
    "yd",
    "yds",
    "hr",
    "hrs",
    "mins",
    "dec",
    "ltd",
    # references and documents
    "supp",
    "suppl",
    "appx",
    "ibid",
    # legal citations: rules, courts, reporters
    "fed",
    "civ",
    "crim",
    "evid",
    "bankr",
    "cir",
    "ct",
    "cts",
    "dist",
    "stat",
    "reg",
    "regs",
    "u.s.c",
    "c.f.r",
    "l.ed",
    "s.ct",
    "f.supp",
    # addresses and places
    "ste",
    "rm",
    "bldg",
    "flr",
    "sq",
    "pkwy",
    "hts",
    "twp",
    # U.S. states as the GPO Style Manual abbreviates them (the unambiguous ones)
    "ala",
    "ariz",
    "calif",
    "colo",
    "conn",
    "fla",
    "ga",
    "kan",
    "ky",
    "md",
    "mich",
    "minn",
    "mont",
    "neb",
    "nev",
    "okla",
    "tenn",
    "tex",
    "wis",
    "wyo",
    # measures and misc.
    "tsp",
    "tbsp",
    "qt",
    "mfg",
    "mgr",
]

#: Learned "abbreviations" that are ordinary words in this corpus (Punkt's length
#: penalty lets a few slip through on technical prose); learned entries are also
#: limited to short or dotted tokens below.
NOT_ABBREVIATIONS = {"tie", "dos", "ulp", "msd"}


#: Words that commonly open an English sentence; after an abbreviation or an initial,
#: only these (capitalised) make pacer end the sentence.
STARTERS = [
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "it",
    "its",
    "he",
    "she",
    "we",
    "they",
    "i",
    "you",
    "there",
    "then",
    "but",
    "and",
    "so",
    "yet",
    "however",
    "in",
    "on",
    "at",
    "for",
    "if",
    "when",
    "while",
    "after",
    "before",
    "although",
    "because",
    "our",
    "my",
    "his",
    "her",
    "their",
    "your",
    "what",
    "why",
    "how",
    "where",
    "who",
    "which",
    "yes",
    "no",
    "not",
    "now",
    "here",
    "all",
    "some",
    "many",
    "most",
    "each",
    "every",
    "one",
    "two",
    "three",
    "meanwhile",
    "still",
]

#: English indefinite pronouns as Wikipedia's "Indefinite pronoun" article lists them
#: (the compounds of every-, some-, any- and no- with -one, -body and -thing, and the
#: free-standing ones that are not in STARTERS): they open sentences and never name
#: anyone, yet the Python documentation Punkt learns from has too few of them to give
#: their casing, so "It was 5 p.m. Everyone left." stayed one sentence.
INDEFINITE_PRONOUNS = [
    "everyone",
    "everybody",
    "everything",
    "someone",
    "somebody",
    "something",
    "anyone",
    "anybody",
    "anything",
    "nobody",
    "nothing",
    "none",
    "neither",
    "either",
    "both",
    "few",
    "several",
    "another",
]


def stdlib_docstrings() -> list[str]:
    texts: list[str] = []
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    texts.append(doc)
    return texts


def main() -> None:
    corpus = "\n\n".join([*pydoc_data.topics.topics.values(), *stdlib_docstrings()])
    trainer = PunktTrainer()
    trainer.INCLUDE_ALL_COLLOCS = False
    trainer.train(corpus, finalize=True)
    params = trainer.get_params()
    counts = trainer._type_fdist
    learned = {w for w in params.abbrev_types if ("." in w or len(w) <= 3) and w not in NOT_ABBREVIATIONS}
    abbrevs = sorted(learned | set(CURATED))
    ortho = {
        word: flags
        for word, flags in sorted(params.ortho_context.items())
        if counts[word] + counts[word + "."] >= 2 and word.isascii()
    }
    data = {
        "source": (
            f"nltk {__import__('nltk').__version__} PunktTrainer on pydoc_data and stdlib docstrings "
            f"of Python {sys.version_info.major}.{sys.version_info.minor} ({len(corpus)} characters), "
            "plus a curated abbreviation list; built by scripts/build_punkt.py"
        ),
        "abbrev_types": abbrevs,
        "titles": sorted(set(TITLES)),
        "honorifics": sorted(HONORIFICS + SPELLED_HONORIFICS),
        "numeric_only": sorted(NUMERIC_ONLY),
        "announcing": sorted(ANNOUNCING),
        "collocations": sorted([a, b] for a, b in params.collocations),
        "sent_starters": sorted(set(params.sent_starters) | set(STARTERS) | set(INDEFINITE_PRONOUNS)),
        "ortho_context": ortho,
    }
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=0, sort_keys=False) + "\n", encoding="utf-8")
    print(
        f"wrote {OUT}: {len(abbrevs)} abbreviations "
        f"({len(learned)} of {len(params.abbrev_types)} learned kept), "
        f"{len(data['collocations'])} collocations, {len(data['sent_starters'])} sentence starters, "
        f"{len(ortho)} words of orthographic context, {OUT.stat().st_size // 1024} KiB"
    )


if __name__ == "__main__":
    main()
