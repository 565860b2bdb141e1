"""Which build runs: the pure-Python source (an install from source) or the stages
compiled by mypyc (opted into with ``PACER_COMPILE=1``, as release wheels are).

CI runs the whole suite both ways (README): first as installed from source, then
after a compiled editable install with ``PACER_COMPILE=1`` in the environment.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pacer
from pacer import _build
from pacer import _pacing as pacing

ROOT = Path(__file__).resolve().parent.parent
NAMES = [
    "_arrival",
    "_breaks",
    "_chunk",
    "_core",
    "_driver",
    "_eventpacer",
    "_markdown",
    "_marks",
    "_metrics",
    "_pacing",
    "_packets",
    "_punkt",
    "_sentences",
    "_simulate",
    "_text",
    "_units",
    "mux",
]
STAGES = [importlib.import_module(f"pacer.{name}") for name in NAMES]


def from_source(module: object) -> bool:
    path = getattr(module, "__file__", None)
    assert isinstance(path, str), module
    return path.endswith(".py")


def test_the_stages_run_compiled_only_when_built_so() -> None:
    if os.environ.get("PACER_PURE") == "1":
        assert not pacer.compiled
        assert all(map(from_source, STAGES))
    elif os.environ.get("PACER_COMPILE") == "1":  # CI's second run: a compiled build must be there
        assert pacer.compiled, "PACER_COMPILE=1: the stages must be compiled (mypyc and a C compiler)"
        assert not any(map(from_source, STAGES)), "a build compiles all the stages or none"
    else:
        assert pacer.compiled == (not any(map(from_source, STAGES))), "all the stages or none"


def test_setup_compiles_exactly_the_modules_the_build_check_knows() -> None:
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    listed = re.findall(r'"pacer/(\w+)\.py"', setup)
    assert sorted(listed) == sorted(NAMES)


def test_pacer_pure_makes_a_compiled_install_run_the_source() -> None:
    code = "import pacer, pacer._pacing; print(pacer.compiled, pacer._pacing.__file__)"
    env = {**os.environ, "PACER_PURE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    compiled, path = out.stdout.split()
    assert compiled == "False"
    assert path == pacing.__file__.rsplit(os.sep, 1)[0] + os.sep + "_pacing.py"


def _package_copy(tmp_path: Path) -> Path:
    """A copy of pacer's source in ``tmp_path``/pacer, with a built module faked beside it."""
    folder = tmp_path / "pacer"
    shutil.copytree(ROOT / "pacer", folder, ignore=shutil.ignore_patterns("*.so", "*.pyd", "_build.json"))
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (folder / f"_core{suffix}").write_bytes(b"not a real extension: importing it would fail")
    (folder / f"_speedups{suffix}").write_bytes(b"nor this one")
    return folder


def test_a_compiled_module_older_than_its_source_is_never_run(tmp_path: Path) -> None:
    folder = _package_copy(tmp_path)
    assert "missing" in (_build.stale_reason(str(folder)) or "")
    record = {f"{name}.py": _build.source_digest(str(folder / f"{name}.py")) for name in NAMES}
    (folder / _build.RECORD).write_text(json.dumps(record), encoding="utf-8")
    with open(folder / "_pacing.py", "a", encoding="utf-8") as f:
        f.write("# an edit after the build\n")
    assert _build.stale_reason(str(folder)) == "_pacing.py changed after they were compiled"
    # Imported, the package warns and runs its source, the C helper included.
    code = "import pacer, pacer._detokenize as d; print(pacer.compiled, d._speedups)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("PACER_PURE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "None"]
    assert "RuntimeWarning: pacer: not running the compiled modules" in out.stderr
    assert "_pacing.py changed after they were compiled" in out.stderr


def test_pacer_pure_runs_the_source_without_a_warning_and_without_the_c_helper(tmp_path: Path) -> None:
    _package_copy(tmp_path)
    code = "import pacer, pacer._detokenize as d; print(pacer.compiled, d._speedups)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PACER_PURE": "1"}
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "None"]


def test_install_hints_name_this_distribution_not_the_unrelated_pacer() -> None:
    # "pacer" on the package index is another project: every hint must say pacer-llm.
    project = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'name = "pacer-llm"' in project
    wrong = re.compile(r"pip install(?:\s+-[\w-]+)*\s+['\"]?pacer(?![\w-])")
    texts = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "pacer").rglob("*.py")]
    for path in texts:
        found = wrong.search(path.read_text(encoding="utf-8"))
        assert found is None, f"{path}: {found.group(0)!r}"
    assert wrong.search("pip install 'pacer[demo]'") and wrong.search("pip install -U pacer")
    assert not wrong.search("pip install 'pacer-llm[demo]'") and not wrong.search("pip install -e . && pacer")


def test_help_shows_the_docstrings_of_a_source_install() -> None:
    if pacer.compiled:
        pytest.skip("mypyc drops class docstrings: an install from source (the default) keeps them")
    for name in ("Detokenizer", "SentenceSplitter", "Pacer", "Packetizer", "Pipeline", "Stage"):
        doc = getattr(pacer, name).__doc__
        assert doc and "mypyc" not in doc, name


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


def test_pacer_runs_without_nltk_and_says_which_extra_brings_it() -> None:
    code = (
        "import sys; sys.modules['nltk'] = None  # as if nltk were not installed\n"
        "import pacer; print(pacer.split_sentences('Dr. Patel is in. He left at 5 p.m. Then rain.'))\n"
        "from pacer._punkt import english_punkt; english_punkt().to_nltk()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "['Dr. Patel is in. ', 'He left at 5 p.m. ', 'Then rain.']"
    assert out.returncode != 0
    assert "ModuleNotFoundError: PunktModel.to_nltk needs nltk: pip install 'pacer-llm[punkt]'" in out.stderr


@pytest.mark.parametrize(
    ("module", "call", "extra"),
    [("tiktoken", "load_tekken", "demo"), ("sentencepiece", "load_sentencepiece", "hf")],
)
def test_a_tokenizer_loader_without_its_package_says_which_extra_brings_it(
    module: str, call: str, extra: str
) -> None:
    code = (
        f"import sys; sys.modules[{module!r}] = None  # as if {module} were not installed\n"
        f"from pacer.tokenizers import {call}; {call}()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0
    expected = f"{call} needs {module}, which is not installed: pip install 'pacer-llm[{extra}]'"
    assert expected in out.stderr, out.stderr


@pytest.mark.parametrize("absent", ["starlette", "httpx"])
def test_the_server_side_on_a_plain_install_says_which_extra_brings_it(absent: str) -> None:
    """Each public module of the server side, and ``pacer proxy``, on an install without
    the server extra: an error that names the package and ``pacer-llm[server]`` (the
    distribution, never ``pacer``), not a bare ``ModuleNotFoundError`` from deep inside."""
    blocked = f"import sys; sys.modules[{absent!r}] = None  # as if {absent} were not installed\n"
    expected = f"need {absent}, which the plain install lacks: pip install 'pacer-llm[server]'"
    for module in ("proxy", "server", "websocket", "streamroutes", "client", "failover"):
        out = subprocess.run(
            [sys.executable, "-c", f"{blocked}import pacer.{module}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert out.returncode != 0, module
        assert (
            out.stderr.strip().splitlines()[-1]
            == f"ModuleNotFoundError: pacer's servers, proxy and client {expected}"
        )
    code = (
        f"{blocked}from pacer.cli import main; sys.exit(main(['proxy', '--upstream', 'http://127.0.0.1:9']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"pacer proxy: pacer's servers, proxy and client {expected}"
    assert "import pacer\n" not in out.stderr and "install pacer " not in out.stderr
