"""Native builds, both optional: pacer runs the same source as pure Python without them.

* ``pacer._speedups``: Detokenizer.feed's and .ingest's table lookup, hand-written C.
* The per-token stages (``COMPILED``) compiled by mypyc from their typed source: the
  whole pipeline about four times as fast. ``PACER_PURE=1`` at build time skips this; at run time it makes an
  installed build import the source instead (``pacer/__init__.py``), which is how the
  tests check that both give the same results.

Without a C compiler (or without mypyc) the build goes on without them.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

COMPILED = [
    "pacer/_core.py",
    "pacer/_text.py",
    "pacer/metrics.py",
    "pacer/mux.py",
    "pacer/pacing.py",
    "pacer/packets.py",
    "pacer/punkt.py",
    "pacer/sentences.py",
    "pacer/simulate.py",
]


def extensions() -> list[Extension]:
    found = [Extension("pacer._speedups", ["pacer/_speedups.c"], optional=True)]
    if os.environ.get("PACER_PURE") == "1":
        return found
    try:
        from mypyc.build import mypycify
    except ImportError:
        return found
    # The stages need no third-party types: without site-packages mypy reads only
    # pacer's source (seconds, where a venv with torch in it costs minutes).
    options = ["--no-site-packages", "--ignore-missing-imports"]
    compiled = mypycify([*options, *COMPILED], opt_level="3", group_name="pacer")
    for ext in compiled:
        ext.optional = True
    return found + compiled


setup(ext_modules=extensions())
