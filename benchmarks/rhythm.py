"""Natural rhythm end to end: pauses at sentence ends inside the lag bound, per reader pipeline.

The pipelines, traces and measures are ``pacer.testing.rhythm``'s (the tests assert
the same aims): every pipeline pacer's entry points build for a reader, and
``Pacer()`` alone, on held-out traces on the virtual clock, with chat-ui's smoother
on the same input for the smoothness figure. Then what ``pacer demo`` prints with
its default options.
"""

from __future__ import annotations

import contextlib
import io

from pacer.testing.rhythm import check_readers

from ._table import print_table


def rhythm() -> list[str]:
    """The table; returns the aims missed (empty: all held)."""
    results = check_readers()
    rows = [
        [
            r.trace,
            r.pipeline,
            f"{r.ratio:.2f}",
            f"{r.max_lag:.3f}",
            f"{r.first:.3f}",
            f"{r.cv:.3f}",
            f"{r.reference_cv:.3f}",
            "yes" if r.lossless else "NO",
        ]
        for r in results
    ]
    print_table(
        "Rhythm per reader pipeline on held-out traces (virtual clock; max_lag 0.5 s; aims: pause ratio "
        ">= 1.5 on steady and 10k, max lag <= 0.55 s, first output <= 0.05 s, CV below chat-ui's)",
        ["trace", "pipeline", "pause ratio", "max lag s", "first output s", "CV", "CV chat-ui", "lossless"],
        rows,
    )
    missed = [f"{r.trace}, {r.pipeline}: {what}" for r in results for what in r.failed]
    print("aims:", "all held" if not missed else "missed: " + "; ".join(missed))
    return missed


def demo_line() -> str:
    """The summary line ``pacer demo --instant`` prints with its default options."""
    from pacer.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["demo", "--instant", "--colour", "never"])
    line = out.getvalue().strip().splitlines()[-1]
    print(f"pacer demo (default options): {line}")
    return line


def main(quick: bool = False) -> None:
    rhythm()
    demo_line()
