"""Timing and table printing shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Best wall time of ``repeat`` calls, in seconds: the least disturbed run."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def best_of_each(cases: dict[str, Callable[[], object]], rounds: int = 5) -> dict[str, float]:
    """Best wall time of each case over ``rounds`` rounds that run every case once, in turn.

    Interleaved, so a slow stretch of a shared machine (seconds long, here) touches
    every case alike instead of landing on one case's repeats and skewing the ratios.
    """
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print a Markdown table; a ``|`` inside a cell is escaped so the columns hold."""
    header = [str(h).replace("|", "\\|") for h in header]
    rows = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n## {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
