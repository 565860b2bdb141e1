"""The pacer command: demo output is the shipped text, exactly, plus a summary; proxy options."""

from __future__ import annotations

import re

import pytest

from pacer.cli import _demo_text, main


@pytest.mark.parametrize("mode", ["paced", "packets"])
def test_demo_instant_prints_the_text_exactly(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--instant", "--colour", "never", "--mode", mode]) == 0
    out = capsys.readouterr().out
    text = _demo_text()
    assert out.startswith(text)
    summary = out[len(text) :].strip()
    assert summary.startswith("245 tokens (tekken) -> ")
    assert ("paced at >= 40 chars/s" in summary) == (mode == "paced")


def test_demo_lag_from_the_pipelines_input_stays_within_the_bound(capsys: pytest.CaptureFixture[str]) -> None:
    # Default options (max_lag 0.5 s), virtual clock: the demo paces with the Pacer alone,
    # which finds sentence ends itself; nothing waits for a sentence to finish (p99 was 1.39 s).
    main(["demo", "--instant", "--colour", "never"])
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    found = re.search(r"lag p50 ([0-9.]+) s, p99 ([0-9.]+) s", summary)
    assert found is not None, summary
    assert float(found.group(2)) <= 0.5 + 1e-3
    assert "first output after 0.000 s" in summary


def test_demo_colours_alternate_per_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    main(["demo", "--instant", "--colour", "always"])
    out = capsys.readouterr().out
    assert "\x1b[36m" in out and "\x1b[33m" in out


@pytest.mark.parametrize(
    "argv", [["demo", "--cps", "0"], ["demo", "--speed", "-1"], ["proxy", "--upstream", "x", "--cps", "0"]]
)
def test_bad_options_exit_with_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "must be > 0" in capsys.readouterr().err


def test_help_explains_each_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = capsys.readouterr().out
    for option in (
        "--tokenizer",
        "--tokens-per-second",
        "--speed",
        "--mode",
        "--cps",
        "--max-lag",
        "--instant",
    ):
        assert option in help_text
