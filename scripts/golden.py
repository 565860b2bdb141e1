"""Fingerprint every stage's output on a fixed corpus, to show a refactor changed no byte.

    python scripts/golden.py > before.txt   # on the old code
    python scripts/golden.py > after.txt    # on the new code; then diff the two

Each line is a section and the SHA-256 of everything the stages emitted there: the
texts, boundaries, arrival and emission times of every chunk. The corpus is the
pacing benchmark's quality and sweep traces, the labelled sentence cases (whole, in
seeded random fragments, one character at a time, with budgets and hold timers),
seeded random hard text through every stage and pipeline, and the detokenizer over
the shipped tokenizer files. Nothing here is random between runs.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pacer
from pacer import Pacer, Packetizer, SentenceSplitter, simulate


def _shared(name: str) -> Any:
    """A shared fixture, from ``pacer.testing``."""
    from pacer.testing import backends, cases, strategies

    for module in (cases, strategies, backends):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(name)


def _digest(rows: Iterable[object]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(repr(row).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def _timeline_rows(trace: list[tuple[float, Any]], stage: Any) -> list[object]:
    timeline = simulate(trace, stage)
    return [(c.text, c.arrival, c.emitted, c.boundary.name, c.offset) for c in timeline.emissions]


def _hard_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "ab .,!?\n`#-*1。！「」 é中\t"
    out = []
    for _ in range(count):
        parts = [
            rng.choice(_shared("HARD_PIECES"))
            if rng.random() < 0.5
            else "".join(rng.choices(alphabet, k=rng.randint(0, 8)))
            for _ in range(rng.randint(0, 30))
        ]
        out.append("".join(parts))
    return out


def _fragments(text: str, rng: random.Random, most: int = 6) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, most)
        out.append(text[i : i + n])
        i += n
    return out


def _timed(pieces: list[str], rng: random.Random) -> list[tuple[float, str]]:
    t, out = 0.0, []
    for piece in pieces:
        t += rng.choice((0.0, 0.01, 0.03, 0.2, 0.7))
        out.append((round(t, 3), piece))
    return out


def sections() -> dict[str, Callable[[], list[object]]]:
    from benchmarks.pacing import _traces, sweep_traces

    CASES = _shared("CASES")

    def pacing_quality() -> list[object]:
        makers: dict[str, Callable[[], Any]] = {
            "graphemes": lambda: Pacer(),
            "words": lambda: Pacer(unit="word"),
            "sentences|pacer": lambda: SentenceSplitter(max_hold=0.3) | Pacer(),
            "unit=sentence": lambda: Pacer(unit="sentence"),
            "unit=chunk": lambda: Pacer(unit="chunk"),
            "flush": lambda: Pacer(unit="word", on_end="flush", cps=25, adaptive=False),
        }
        return [
            (name, trace_name, _timeline_rows(trace, make()))
            for trace_name, trace in _traces(False).items()
            for name, make in makers.items()
        ]

    def pacing_sweep() -> list[object]:
        return [
            (text_name, rate, shape, unit, _timeline_rows(trace, Pacer(unit=unit)))
            for text_name, rate, shape, trace in sweep_traces(False)
            for unit in ("grapheme", "word")
        ]

    def sentence_cases() -> list[object]:
        rng = random.Random(7)
        rows: list[object] = []
        options: list[dict[str, Any]] = [
            {},
            {"lang": "en"},
            {"lang": "zh"},
            {"lang": "ja"},
            {"max_chars": 40},
            {"max_chars": 60, "first_max_chars": 12},
        ]
        for lang, topic, units in CASES:
            text = "".join(units)
            for opts in options:
                rows.append((lang, topic, opts, pacer.split_sentences(text, **opts)))
                s = SentenceSplitter(**opts)
                rows.append([s.feed(p) for p in _fragments(text, rng)] + [s.flush()])
                s = SentenceSplitter(**opts)
                rows.append([s.feed(ch) for ch in text] + [s.flush()])
            trace = _timed(_fragments(text, rng), rng)
            rows.append(_timeline_rows(trace, SentenceSplitter(max_hold=0.5, max_chars=50)))
        return rows

    def hard_text() -> list[object]:
        rng = random.Random(11)
        rows: list[object] = []
        makers: dict[str, Callable[[], Any]] = {
            "splitter": lambda: SentenceSplitter(),
            "splitter budget hold": lambda: SentenceSplitter(max_chars=12, max_hold=0.1),
            "pacer graphemes": lambda: Pacer(),
            "pacer words": lambda: Pacer(unit="word"),
            "pacer sentence": lambda: Pacer(unit="sentence", on_end="flush"),
            "packets": lambda: Packetizer(max_bytes=16, min_bytes=4),
            "packets sentence": lambda: Packetizer(max_bytes=64, min_bytes=8, flush_on_sentence=True),
            "all": lambda: SentenceSplitter(max_chars=20, max_hold=0.2) | Pacer() | Packetizer(24, 6),
        }
        for text in _hard_texts(300, 3):
            trace = _timed(_fragments(text, rng, 9), rng)
            for name, make in makers.items():
                rows.append((name, _timeline_rows(trace, make())))
            cancelled = make = makers["all"]()
            out = []
            for t, piece in trace[: len(trace) // 2]:
                out += [c.text for c in cancelled.ingest(piece, t)]
            out += [c.text for c in cancelled.cancel(trace[len(trace) // 2][0] if trace else 0.0)]
            rows.append(("cancel", out))
        return rows

    def detokenize() -> list[object]:
        from pacer.tokenizers import load_sentencepiece, load_tekken, mistral_data_file

        rng = random.Random(5)
        texts = [*_hard_texts(100, 9), *("".join(u) for _, _, u in CASES)]
        tokenizers: list[Any] = [load_tekken()]
        tokenizers += [load_sentencepiece(mistral_data_file(f)) for f in _shared("SPM_FILES")]
        rows: list[object] = []
        for tok in tokenizers:
            for text in texts:
                ids = tok.encode(text)
                d = pacer.Detokenizer(tok)
                out = []
                i = 0
                while i < len(ids):
                    n = rng.randint(1, 3)
                    out.append(d.feed(ids[i : i + n]))
                    i += n
                out.append(d.flush())
                rows.append(out)
        return rows

    return {
        "pacing quality traces": pacing_quality,
        "pacing sweep traces": pacing_sweep,
        "sentence cases": sentence_cases,
        "hard text, every stage": hard_text,
        "detokenizer": detokenize,
    }


def main() -> None:
    print(f"pacer.compiled = {pacer.compiled}")
    for name, make in sections().items():
        rows = make()
        print(f"{name:28s} {len(rows):6d} rows  {_digest(rows)}")


if __name__ == "__main__":
    main()
