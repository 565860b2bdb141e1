"""Which build of pacer's stages runs: the compiled one (mypyc, opted into) or the source.

An install from source is pure Python. ``PACER_COMPILE=1`` at build time (setup.py)
compiles the per-token stages and records, in ``_build.json``, a SHA-256 of each
source it compiled. At import the compiled modules run only if every recorded
source is unchanged: an edit after a compiled editable install runs the edited
source (with a warning saying so), never the stale binary. ``PACER_PURE=1`` at run
time makes a compiled install run its source too, the C helper included.

Cost: at import, where compiled modules are present, one read and hash of the
compiled sources (about 200 KB).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from types import ModuleType

RECORD = "_build.json"


def _compiled_present(folder: str) -> bool:
    """Whether any compiled module (mypyc's or the C helper) sits in ``folder``."""
    return any(name.endswith(tuple(EXTENSION_SUFFIXES)) for name in os.listdir(folder))


def source_digest(path: str) -> str:
    """The SHA-256 (hex) of a source file, as setup.py records it for each compiled module."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def stale_reason(folder: str) -> str | None:
    """Why the compiled modules in ``folder`` must not run (``None``: they may).

    They may run only when every source they were compiled from is unchanged since
    the build, and the shared library they need is there.
    """
    try:
        with open(os.path.join(folder, RECORD), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return f"{RECORD} (what they were compiled from) is missing or unreadable"
    if not isinstance(record, dict) or not record:
        return f"{RECORD} lists no compiled sources"
    for name, digest in sorted(record.items()):
        path = os.path.join(folder, name)
        if not os.path.exists(path) or source_digest(path) != digest:
            return f"{name} changed after they were compiled"
    if importlib.util.find_spec("pacer__mypyc") is None:
        return "the shared library they need (pacer__mypyc) is missing"
    return None


def choose(folder: str) -> bool:
    """Decide, once at import, whether the source runs; install the finder that makes it so."""
    if not _compiled_present(folder):
        return True  # a pure install: nothing to choose
    if os.environ.get("PACER_PURE") != "1":  # PACER_PURE=1: the source, as asked, without a warning
        reason = stale_reason(folder)
        if reason is None:
            return False
        warnings.warn(
            f"pacer: not running the compiled modules in {folder}: {reason}; running the source "
            "instead. Rebuild them (PACER_COMPILE=1 pip install -e .) or delete the .so files.",
            RuntimeWarning,
            stacklevel=3,
        )
    sys.meta_path.insert(0, SourceFinder(folder))
    return True


class SourceFinder:
    """A meta path finder for ``pacer.*`` that imports ``name.py`` from the package folder,
    and no compiled module without a source (the C helper): the source build is all source."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not name.startswith("pacer.") or name.count(".") != 1:
            return None
        stem = name.partition(".")[2]
        source = os.path.join(self.folder, stem + ".py")
        if os.path.exists(source):
            return importlib.util.spec_from_file_location(name, source)
        if any(os.path.exists(os.path.join(self.folder, stem + s)) for s in EXTENSION_SUFFIXES):
            raise ImportError(f"{name} is compiled only, and pacer runs from source", name=name)
        return None  # a subpackage or a data file
