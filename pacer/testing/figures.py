"""Keep a notebook's key figure for the documentation.

``keep(fig, name)`` saves ``fig`` as ``name`` in the folder ``PACER_FIGURES`` names,
when it names one (the test that executes the notebooks sets it to ``docs/figures``,
so the docs build embeds figures the notebooks just drew, never stale ones); in
Jupyter the figure shows inline as any other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["keep"]


def keep(fig: Any, name: str) -> Path | None:
    """Save ``fig`` (a matplotlib figure) as ``name`` under ``$PACER_FIGURES``, if set."""
    folder = os.environ.get("PACER_FIGURES")
    if not folder:
        return None
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
