"""Timing and table printing shared by the benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any


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


AGAINST: str | None = None
"""Another checkout of pacer (``python -m benchmarks --against DIR``) whose build
``builds`` measures too, in the same run: the before of a before-and-after."""


def builds(module: str, function: str, quick: bool) -> list[tuple[str, Any]]:
    """``benchmarks.<module>.<function>(quick)`` in this process's build, then, where that is
    the compiled one, in the pure-Python build (``PACER_PURE=1``, a child process), and in
    the ``AGAINST`` checkout's build where one is given: one ``(build name, result)`` each,
    so one run of the command shows them side by side. The result must be JSON (the child
    prints it)."""
    import importlib

    import pacer

    here = getattr(importlib.import_module(f"benchmarks.{module}"), function)(quick)
    out = [("compiled" if pacer.compiled else "pure Python", here)]
    call = f"import json, benchmarks.{module} as b; print(json.dumps(b.{function}({quick})))"
    if pacer.compiled:
        out.append(("pure Python", _child(call, {"PACER_PURE": "1"})))
    if AGAINST is not None:
        # The other checkout's own benchmark function (its private modules differ from
        # this one's); a function whose workload changed between the two is not comparable.
        rev = subprocess.run(
            ["git", "-C", AGAINST, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        out.append((f"checkout {rev.stdout.strip() or AGAINST}", _child(call, {}, cwd=AGAINST)))
    return out


def _child(code: str, env: dict[str, str], cwd: str | None = None) -> Any:
    """The JSON a child Python process running ``code`` prints last."""
    command = [sys.executable, "-c", code]
    child = subprocess.run(
        command, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, check=True
    )
    return json.loads(child.stdout.strip().splitlines()[-1])
