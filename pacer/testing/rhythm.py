"""How the reader pipelines' rhythm is judged, shared by the tests and ``benchmarks/rhythm.py``.

The reader pipelines are the ones pacer's own entry points build (``pacer demo``, the
proxy's default, ``pacer serve``'s paced pane, the FastAPI recipe in the docs) and
``Pacer()`` alone. The held-out traces replay the held-out sentence cases and the
demo text (which the pacing constants were not tuned on) in seven shapes. Measured
per trace and pipeline: the pause ratio (mean gap where a sentence ends over the
mean gap where another word ends), the longest lag after the first second, the
delay of the first output, the smoothness (``flowing_cv``) against chat-ui's
smoother on the same input, and whether the output is the input.

Needs the ``demo`` extra (mistral-common's tekken tokenizer, via tiktoken).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pacer import Detokenizer, Pacer, Stage, simulate, split_sentences, traces
from pacer._simulate import Timeline
from pacer.testing.references import AdaptiveChars

__all__ = ["Result", "check_readers", "flowing_cv", "pause_ratio"]

_WIDE = "\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef"  # CJK punctuation, kana, ideographs, full-width forms
#: A token of text as a model sends it: a word with its space; CJK two characters at a time.
TOKEN = re.compile(rf"[{_WIDE}]{{1,2}}\s*|[^\s{_WIDE}]+\s*|\s+")


def flowing_cv(timeline: Timeline) -> float:
    """CV of characters per 100 ms (lower is smoother), over windows between the first and
    last emission that are not inside a source stall (no arrival within the last 0.6 s)."""
    bins = timeline.chars_per_window(0.1)
    if len(bins) < 3:
        return 0.0
    t0 = timeline.emissions[0].emitted or 0.0
    arrival_times = [t for t, _ in timeline.arrivals]
    active = []
    j = 0
    for k, b in enumerate(bins[:-1]):
        end = t0 + (k + 1) * 0.1
        while j < len(arrival_times) and arrival_times[j] <= end:
            j += 1
        last = arrival_times[j - 1] if j else -1.0
        if end - last <= 0.6 or k == 0:
            active.append(b)
    if len(active) < 2 or not statistics.mean(active):
        return 0.0
    return statistics.pstdev(active) / statistics.mean(active)


MAX_LAG = 0.5


def _texts() -> dict[str, str]:
    from importlib import resources

    from pacer.testing.cases import HELDOUT_FIRST as HELDOUT

    demo = (resources.files("pacer") / "data" / "demo.md").read_text(encoding="utf-8")
    english = "".join("".join(units) + "\n\n" for lang, _, units in HELDOUT if lang in ("en", "md"))
    chinese = "".join("".join(units) for lang, _, units in HELDOUT if lang == "zh")
    long = ""
    while len(long) < 10_000:
        long += english + demo + "\n\n"
    return {"en": english + demo, "zh": chinese, "long": long[:10_000]}


def _shapes() -> dict[str, tuple[str, Callable[[list[Any]], list[tuple[float, Any]]]]]:
    """Trace name: (text, how its tokens arrive)."""
    return {
        "steady 35 tok/s": ("en", lambda items: traces.steady(items, 35)),
        "bursty 45 tok/s": ("en", lambda items: traces.bursty(items, per_second=45, seed=21)),
        "dump (all at once)": ("en", lambda items: traces.dump(items[:350])),
        "stall 3.5 s": ("en", lambda items: traces.stalled(items, 30, after=len(items) // 2, pause=3.5)),
        "10k-character answer": ("long", lambda items: traces.jittery(items, 40, spread=0.5, seed=22)),
        "Chinese 25 tok/s": ("zh", lambda items: traces.steady(items, 25)),
        "jittery 35 tok/s": ("en", lambda items: traces.jittery(items, 35, spread=1.0, seed=23)),
    }


def _readers(tokenizer: Any) -> dict[str, tuple[bool, Callable[[], Stage]]]:
    """Pipeline name: (whether it takes token ids, how to build it), as the entry points build them."""
    from pacer.cli import paced_pipeline

    readers: dict[str, tuple[bool, Callable[[], Stage]]] = {
        "Pacer()": (False, lambda: Pacer()),
        "pacer demo": (True, lambda: paced_pipeline(tokenizer)),
    }
    with contextlib.suppress(ModuleNotFoundError):  # the server extra
        from pacer._playground import paced_view
        from pacer.config import ProxyConfig

        readers["proxy default"] = (False, ProxyConfig().pipeline_factory())
        readers["serve paced pane"] = (True, lambda: paced_view(tokenizer))
    # docs/how-to/fastapi.md: PacedEventSource(tokens(), pacer.Pacer(cps=40), heartbeat=15)
    readers["FastAPI recipe"] = (False, lambda: Pacer(cps=40))
    return readers


def _sentence_ends(text: str) -> set[int]:
    """Offsets where a sentence ends, before and after the whitespace that follows it."""
    ends: set[int] = set()
    at = 0
    for unit in split_sentences(text):
        at += len(unit)
        ends.add(at)
        ends.add(at - (len(unit) - len(unit.rstrip())))
    return ends


_CJK = re.compile(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]")


def _word_end(before: str, after: str) -> bool:
    """Whether a word ends between two characters: at a space's edge, or next to a CJK
    character (each is a word)."""
    if before.isspace() != after.isspace():
        return True
    return not before.isspace() and bool(_CJK.match(before) or _CJK.match(after))


def pause_ratio(timeline: Timeline, text: str) -> float:
    """Mean gap after emissions that end a sentence over the mean gap after those that end
    another word (NaN when either is missing)."""
    ends = _sentence_ends(text)
    sentence: list[float] = []
    word: list[float] = []
    at = 0
    emissions = timeline.emissions
    for chunk, after in itertools.pairwise(emissions):
        at += len(chunk.text)
        assert chunk.emitted is not None and after.emitted is not None
        gap = after.emitted - chunk.emitted
        if at in ends:
            sentence.append(gap)
        elif at < len(text) and _word_end(text[at - 1], text[at]):
            word.append(gap)
    if not sentence or not word or not statistics.mean(word):
        return float("nan")
    return statistics.mean(sentence) / statistics.mean(word)


def measure(trace: list[tuple[float, Any]], stage: Stage, text: str) -> dict[str, Any]:
    timeline = simulate(trace, stage)
    late = [c.emitted - c.arrival for c in timeline.emissions if c.emitted is not None and c.arrival >= 1.0]
    first_text = trace[0][0]
    first = timeline.emissions[0].emitted if timeline.emissions else None
    return {
        "ratio": pause_ratio(timeline, text),
        "max_lag": max(late, default=0.0),
        "first": (first or 0.0) - first_text,
        "cv": flowing_cv(timeline),
        "lossless": timeline.text == text,
    }


@dataclass
class Result:
    """One pipeline on one trace."""

    trace: str
    pipeline: str
    ratio: float
    max_lag: float
    first: float
    cv: float
    reference_cv: float
    lossless: bool
    failed: list[str]


def check_readers() -> list[Result]:
    """Every reader pipeline on every held-out trace, with the aims each missed:
    max lag <= max_lag + 50 ms, first output <= 50 ms after the first text, CV below
    chat-ui's, lossless, and a pause ratio >= 1.5 on the steady and 10k traces."""
    from pacer.tokenizers import load_tekken

    tokenizer = load_tekken()
    texts = _texts()
    readers = _readers(tokenizer)
    results = []
    for trace_name, (text_key, shape) in _shapes().items():
        tokens = TOKEN.findall(texts[text_key])
        text_trace = shape(tokens)
        text = "".join(t for _, t in text_trace)
        id_trace = shape(tokenizer.encode(text))  # the same arrival shape, for pipelines of ids
        id_text = tokenizer.decode([i for _, i in id_trace])
        theirs = {
            False: flowing_cv(simulate(text_trace, AdaptiveChars())),
            True: flowing_cv(simulate(id_trace, Detokenizer(tokenizer) | AdaptiveChars())),
        }
        for name, (ids, make) in readers.items():
            got = measure(id_trace if ids else text_trace, make(), id_text if ids else text)
            checks = {
                "lag": got["max_lag"] <= MAX_LAG + 0.05,
                "first output": got["first"] <= 0.05,
                "CV": got["cv"] < theirs[ids],
                "lossless": got["lossless"],
            }
            if trace_name.startswith(("steady", "10k")):
                checks["pause ratio"] = got["ratio"] >= 1.5
            failed = [what for what, ok in checks.items() if not ok]
            results.append(
                Result(
                    trace_name,
                    name,
                    got["ratio"],
                    got["max_lag"],
                    got["first"],
                    got["cv"],
                    theirs[ids],
                    got["lossless"],
                    failed,
                )
            )
    return results
