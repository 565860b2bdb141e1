"""The README is part of the product: its example runs and its commands are CI's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_python_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tiktoken")
    block = re.search(r"```python\n(.*?)```", README, re.S)
    assert block is not None
    exec(compile(block.group(1), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "中文" in printed
    assert "\ufffd" not in printed


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line for line in README.splitlines() if "pytest" in line and not line.startswith(("`", " "))]
    assert len(commands) == 2, "the source build's command and the compiled build's"
    for step in (s for command in commands for s in command.split("&&")):
        step = step.strip().replace(".venv/bin/", "")
        if step.startswith("python3 -m venv"):
            continue
        step = step.replace("pip install", "pip install -q") if step.startswith("pip") else step
        assert step in ci.replace(".venv/bin/", ""), f"README step {step!r} is not in .ci/run"
