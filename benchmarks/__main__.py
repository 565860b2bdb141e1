"""Run every benchmark and print one table each: ``python -m benchmarks``.

Each table measures pacer and its references in the same run, so the figures to
quote are the ratios. ``--quick`` runs smaller sizes (CI uses it to prove the
benchmarks still run; its numbers are not the ones to quote).
"""

from __future__ import annotations

import argparse
import sys

from . import (
    _table,
    continuation,
    detokenize,
    guard,
    live,
    overhead,
    pacing,
    proxy_load,
    resume,
    rhythm,
    sentences,
    wire,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the benchmarks run")
    parser.add_argument(
        "only",
        nargs="*",
        help="benchmarks to run (default: all): overhead, detokenize, sentences, pacing, rhythm, live, "
        "wire, guard, proxy, resume, continuation",
    )
    parser.add_argument(
        "--against",
        metavar="DIR",
        help="another checkout of pacer, built as wanted: the tables that compare builds measure it too",
    )
    args = parser.parse_args(argv)
    _table.AGAINST = args.against
    chosen = set(args.only) or {
        "overhead",
        "detokenize",
        "sentences",
        "pacing",
        "rhythm",
        "live",
        "wire",
        "guard",
        "proxy",
        "resume",
        "continuation",
    }
    if "overhead" in chosen:
        overhead.main(quick=args.quick)
    if "detokenize" in chosen:
        detokenize.main(quick=args.quick)
        detokenize.depth(quick=args.quick)
    if "sentences" in chosen:
        sentences.main(quick=args.quick)
    if "pacing" in chosen:
        pacing.main(quick=args.quick)
    if "rhythm" in chosen:
        rhythm.main(quick=args.quick)
    if "live" in chosen:
        live.main(quick=args.quick)
    if "wire" in chosen:
        wire.main(quick=args.quick)
    if "guard" in chosen:
        guard.main(quick=args.quick)
    if "proxy" in chosen:
        proxy_load.main(quick=args.quick)
    if "resume" in chosen:
        resume.main(quick=args.quick)
    if "continuation" in chosen:
        continuation.main(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
