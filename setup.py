"""pacer installs as pure Python; the compiled build is opted into with ``PACER_COMPILE=1``.

``PACER_COMPILE=1 pip install .`` (or ``python -m build``, as release wheels are
built: ``[tool.cibuildwheel]`` in pyproject.toml sets it) compiles the per-token
stages (``COMPILED``) with mypyc from their typed source, about four times as fast
for the whole pipeline, and builds ``pacer._speedups``, the detokenizer's per-token
lookup in C. It records a hash of each compiled source in ``pacer/_build.json``;
at import (``pacer/_build.py``) the compiled modules run only while their sources
are unchanged, so an edit after a compiled editable install is never silently
ignored. Without a C compiler or mypyc a compiled build goes on without them.
"""

from __future__ import annotations

import json
import os
import sys

from setuptools import Extension, setup

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pacer"))
from _build import RECORD, source_digest  # the module alone: pacer's deps may be absent

COMPILED = [
    "pacer/_arrival.py",
    "pacer/_breaks.py",
    "pacer/_chunk.py",
    "pacer/_core.py",
    "pacer/_driver.py",
    "pacer/_eventpacer.py",
    "pacer/_markdown.py",
    "pacer/_marks.py",
    "pacer/_metrics.py",
    "pacer/_pacing.py",
    "pacer/_packets.py",
    "pacer/_punkt.py",
    "pacer/_sentences.py",
    "pacer/_simulate.py",
    "pacer/_text.py",
    "pacer/_units.py",
    "pacer/mux.py",
]


def extensions() -> list[Extension]:
    if os.environ.get("PACER_COMPILE") != "1":
        return []
    found = [Extension("pacer._speedups", ["pacer/_speedups.c"], optional=True)]
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
    record = {os.path.basename(path): source_digest(path) for path in COMPILED}
    with open(os.path.join("pacer", RECORD), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    return found + compiled


setup(ext_modules=extensions())
