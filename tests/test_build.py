"""Which build runs: the stages compiled by mypyc (setup.py) or their pure-Python source.

CI runs the whole suite both ways (README): compiled, then with ``PACER_PURE=1``.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

import pacer
from pacer import pacing

NAMES = ["_core", "_text", "metrics", "mux", "pacing", "packets", "punkt", "sentences", "simulate"]
STAGES = [importlib.import_module(f"pacer.{name}") for name in NAMES]


def from_source(module: object) -> bool:
    path = getattr(module, "__file__", None)
    assert isinstance(path, str), module
    return path.endswith(".py")


def test_the_stages_run_compiled_unless_told_not_to() -> None:
    if os.environ.get("PACER_PURE") == "1":
        assert not pacer.compiled
        assert all(map(from_source, STAGES))
    elif pacer.compiled:
        assert not any(map(from_source, STAGES)), "a build compiles all the stages or none"
    elif os.environ.get("CI") == "true":
        pytest.fail("CI must build the compiled stages (mypyc and a C compiler are needed)")
    else:
        pytest.skip("the stages are not compiled here (no C compiler or mypyc at install)")


def test_pacer_pure_makes_a_compiled_install_run_the_source() -> None:
    code = "import pacer, pacer.pacing; print(pacer.compiled, pacer.pacing.__file__)"
    env = {**os.environ, "PACER_PURE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    compiled, path = out.stdout.split()
    assert compiled == "False"
    assert path == pacing.__file__.rsplit(os.sep, 1)[0] + os.sep + "pacing.py"


def test_an_interpreted_stage_declares_timed_in_its_class_body() -> None:
    # A compiled Stage keeps ``timed`` in a slot; the class attribute must still count.
    class Ticker(pacer.Stage):
        timed = True

        def __init__(self) -> None:
            super().__init__()
            self.held: list[pacer.Chunk] = []

        def push(self, chunk: pacer.Chunk, now: float) -> list[pacer.Chunk]:
            self.held.append(chunk)
            return []

        def poll(self, now: float) -> list[pacer.Chunk]:
            out, self.held = self.held, []
            return out

        @property
        def deadline(self) -> float | None:
            return self.held[0].arrival + 1.0 if self.held else None

    assert Ticker().timed and pacer.Pipeline(Ticker()).timed
    timeline = pacer.simulate([(0.0, "a"), (0.5, "b")], Ticker())
    assert [(c.text, c.emitted) for c in timeline.emissions] == [("a", 1.0), ("b", 1.0)]
