"""Sentence boundaries: pacer streaming vs pySBD, sentencex and nltk Punkt offline.

All run on pacer's labelled set (``tests/sentence_cases.py``). pacer is fed in
random fragments of 1-6 characters (the output does not depend on the split; the
tests prove it); the references get each whole text at once, their best case.
nltk Punkt runs with the parameters pacer ships (nltk's own cannot be downloaded
here). A boundary is the offset where a sentence's first non-space character
starts, so references that strip whitespace score the same as those that keep it.

Latency is measured feeding one character at a time: characters fed after a
sentence's last non-space character until the splitter emitted it.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from pacer import SentenceSplitter, split_sentences

from ._table import builds, print_table

Splitter = Callable[[str, str], list[str]]
LANGS = ("en", "zh", "ja", "md")


def _cases() -> tuple[list[tuple[str, str, list[str]]], list[tuple[str, str, list[str]]]]:
    from pacer.testing.cases import CASES, HELDOUT

    return CASES, HELDOUT


def _batches() -> dict[str, list[tuple[str, str, list[str]]]]:
    """The held-out batches, each written before the rule changes it checks."""
    from pacer.testing.cases import HELDOUT_FIRST, HELDOUT_SECOND, HELDOUT_THIRD

    return {"first": HELDOUT_FIRST, "second (#21)": HELDOUT_SECOND, "third (#39)": HELDOUT_THIRD}


def _starts(text: str, sentences: list[str]) -> set[int]:
    """Offsets where each sentence after the first begins (first non-space character)."""
    starts: set[int] = set()
    cursor = 0
    for sentence in sentences:
        core = sentence.strip()
        if not core:
            continue
        at = text.find(core, cursor)
        if at < 0:  # a reference that rewrote the text: align on the first 8 characters
            at = text.find(core[:8], cursor)
        if at < 0:
            continue
        starts.add(at)
        cursor = at + len(core)
    starts.discard(min(starts, default=0))
    return starts


def _pacer_streamed(rng: random.Random) -> Splitter:
    def split(text: str, lang: str) -> list[str]:
        splitter = SentenceSplitter()
        out: list[str] = []
        i = 0
        while i < len(text):
            k = rng.randint(1, 6)
            out += splitter.feed(text[i : i + k])
            i += k
        return out + splitter.flush()

    return split


def _references() -> dict[str, Splitter]:
    refs: dict[str, Splitter] = {}
    try:
        import pysbd

        segmenters: dict[str, pysbd.Segmenter] = {}

        def pysbd_split(text: str, lang: str) -> list[str]:
            code = {"md": "en"}.get(lang, lang)
            if code not in segmenters:
                segmenters[code] = pysbd.Segmenter(language=code, clean=False)
            return [str(s) for s in segmenters[code].segment(text)]

        refs["pySBD"] = pysbd_split
    except ImportError:
        pass
    try:
        import sentencex

        def sentencex_split(text: str, lang: str) -> list[str]:
            return list(sentencex.segment({"md": "en"}.get(lang, lang), text))

        refs["sentencex"] = sentencex_split
    except ImportError:
        pass
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    from pacer._punkt import english_punkt

    punkt = PunktSentenceTokenizer(english_punkt().to_nltk())
    refs["nltk Punkt"] = lambda text, lang: punkt.tokenize(text)
    return refs


def _score(
    split: Splitter, cases: list[tuple[str, str, list[str]]]
) -> dict[str, tuple[float, float, float, float]]:
    """Per language and overall: precision, recall, F1, exact-case accuracy."""
    tallies: dict[str, list[int]] = {lang: [0, 0, 0, 0, 0] for lang in (*LANGS, "all")}
    for lang, _, units in cases:
        text = "".join(units)
        gold = _starts(text, units)
        got = _starts(text, split(text, lang))
        for key in (lang, "all"):
            t = tallies[key]
            t[0] += len(gold & got)
            t[1] += len(got - gold)
            t[2] += len(gold - got)
            t[3] += gold == got
            t[4] += 1
    scores = {}
    for key, (tp, fp, fn, exact, n) in tallies.items():
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        scores[key] = (p, r, f1, exact / n if n else 0.0)
    return scores


def _latencies(cases: list[tuple[str, str, list[str]]]) -> list[int]:
    out: list[int] = []
    for _, _, units in cases:
        text = "".join(units)
        ends = set()
        pos = 0
        for unit in units[:-1]:
            ends.add(pos + len(unit.rstrip()))
            pos += len(unit)
        splitter = SentenceSplitter()
        emitted = 0
        for fed, ch in enumerate(text, 1):
            for piece in splitter.feed(ch):
                emitted += len(piece)
                end = emitted - (len(piece) - len(piece.rstrip()))
                if end in ends:
                    out.append(fed - end)
    return out


def _throughput(text: str, fragment: int) -> float:
    """MB/s of UTF-8 text through a streaming splitter fed ``fragment`` characters at a time."""
    pieces = [text[i : i + fragment] for i in range(0, len(text), fragment)]
    best = float("inf")
    for _ in range(3):
        splitter = SentenceSplitter()
        feed = splitter.feed
        t0 = time.perf_counter()
        for piece in pieces:
            feed(piece)
        splitter.flush()
        best = min(best, time.perf_counter() - t0)
    return len(text.encode()) / best / 1e6


def main(quick: bool = False) -> None:
    cases, heldout = _cases()
    rng = random.Random(7)
    systems: dict[str, Splitter] = {"pacer (streamed 1-6)": _pacer_streamed(rng)}
    systems.update(_references())
    for title, subset in (
        ("pacer's labelled set", cases),
        ("the held-out set (written after the rules, never tuned on)", heldout),
    ):
        scores = {name: _score(split, subset) for name, split in systems.items()}
        counts = {lang: sum(1 for c in subset if c[0] == lang) for lang in LANGS}
        header = ["splitter", *(f"F1 {lang} ({counts[lang]})" for lang in LANGS)]
        header += ["F1 all", "P all", "R all", "exact"]
        rows = []
        for name, s in scores.items():
            rows.append(
                [
                    name,
                    *(f"{s[lang][2]:.3f}" for lang in LANGS),
                    f"{s['all'][2]:.3f}",
                    f"{s['all'][0]:.3f}",
                    f"{s['all'][1]:.3f}",
                    f"{s['all'][3]:.3f}",
                ]
            )
        print_table(f"Sentence boundaries on {title} ({len(subset)} cases)", header, rows)

    pacer_split = _pacer_streamed(random.Random(7))
    rows = []
    for name, batch in _batches().items():
        s = _score(pacer_split, batch)
        counts = {lang: sum(1 for c in batch if c[0] == lang) for lang in LANGS}
        rows.append(
            [
                name,
                *(f"{s[lang][2]:.3f} ({counts[lang]})" if counts[lang] else "-" for lang in LANGS),
                f"{s['all'][2]:.3f} ({len(batch)})",
            ]
        )
    print_table(
        "pacer on each held-out batch: F1 (cases)",
        ["batch", *(f"F1 {lang}" for lang in LANGS), "F1 all"],
        rows,
    )
    kinds: dict[str, list[int]] = {}
    for lang, topic, units in _batches()["third (#39)"]:
        tally = kinds.setdefault(topic, [0, 0])
        tally[0] += pacer_split("".join(units), lang) == units
        tally[1] += 1
    print_table(
        "pacer on the third held-out batch, by kind: cases split exactly as labelled",
        ["kind", "exact"],
        [[kind, f"{ok} of {n}"] for kind, (ok, n) in kinds.items()],
    )

    lat = sorted(_latencies(cases))
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
    print(
        f"\nLatency fed one character at a time, characters after a sentence's last non-space "
        f"character: median {statistics.median(lat):.0f}, p95 {p95}, max {lat[-1]} "
        f"(n={len(lat)}; targets: median <= 2, p95 <= 4)"
    )

    measured = builds("sentences", "throughputs", quick)
    rows = [[name, *(f"{result[name]:.2f}" for _, result in measured)] for name in measured[0][1]]
    print_table(
        "Segmentation throughput, MB/s of mixed text (aim: >= 2 MB/s at every fragment size)",
        ["splitter", *(f"MB/s, {build}" for build, _ in measured)],
        rows,
    )


def throughputs(quick: bool = False) -> dict[str, float]:
    """MB/s of pacer streamed at each fragment size and whole, and of each offline
    reference per case, in this process's build."""
    cases, _ = _cases()
    corpus = "".join("".join(units) + ("\n\n" if lang == "md" else " ") for lang, _, units in cases)
    text = corpus * (20 if quick else 200)
    size = len(text.encode()) / 1e6
    out: dict[str, float] = {}
    for fragment in (1, 4, 64, 4096):
        out[f"pacer streamed, {fragment}-character fragments ({size:.1f} MB)"] = _throughput(text, fragment)
    best = float("inf")
    for _ in range(3):  # the best of three: one run moves with the machine's noise
        t0 = time.perf_counter()
        split_sentences(text)
        best = min(best, time.perf_counter() - t0)
    out["pacer split_sentences (whole text)"] = size / best
    for name, split in _references().items():
        t0 = time.perf_counter()
        for lang, _, units in cases:
            split("".join(units), lang)
        per_case = time.perf_counter() - t0
        out[f"{name} (offline, per case)"] = len(corpus.encode()) / per_case / 1e6
    return out
