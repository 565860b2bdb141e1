"""Import pacer's modules from their ``.py`` source even where a compiled build sits beside them."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class SourceFinder:
    """A meta path finder for ``pacer.*`` that prefers ``name.py`` in the package folder."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not name.startswith("pacer.") or name.count(".") != 1:
            return None
        source = os.path.join(self.folder, name.partition(".")[2] + ".py")
        if not os.path.exists(source):
            return None  # a C extension with no source (_speedups), or a subpackage
        return importlib.util.spec_from_file_location(name, source)
