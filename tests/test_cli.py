"""The pacer command: demo output is the shipped text, exactly, plus a summary; proxy options."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

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


def _proxy_cli(*argv: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """``pacer proxy ARGV`` in a fresh process (``prelude`` runs first), as a user runs it."""
    code = f"{prelude}\nimport sys; from pacer.cli import main; sys.exit(main(['proxy', *sys.argv[1:]]))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PACER_")}
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60, env=env
    )


def test_a_missing_upstream_is_the_proxy_commands_usage_error() -> None:
    out = _proxy_cli()
    assert out.returncode == 2
    assert out.stderr.startswith("usage: pacer proxy ")
    assert (
        out.stderr.strip().splitlines()[-1]
        == "pacer proxy: error: --upstream (or PACER_UPSTREAM) is required"
    )


def test_redis_down_is_a_one_line_usage_error_without_its_password() -> None:
    with socket.socket() as probe:  # a free port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = _proxy_cli("--upstream", "http://127.0.0.1:9", "--redis", f"redis://:hunter2pw@127.0.0.1:{port}/0")
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"pacer proxy: error: --redis: cannot reach redis://***@127.0.0.1:{port}/0: ")
    assert "hunter2pw" not in out.stderr + out.stdout and "Traceback" not in out.stderr


def test_redis_without_its_package_says_which_extra_brings_it() -> None:
    out = _proxy_cli(
        "--upstream", "http://127.0.0.1:9", "--redis", "redis://127.0.0.1:6379/0",
        prelude="import sys; sys.modules['redis'] = None  # as if redis were not installed",
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "pacer proxy: error: --redis needs the redis package: pip install 'pacer-llm[redis]'"
    )
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://***@host:6379/0"),
        ("redis://user:pw@host/0", "redis://***@host/0"),
        ("https://key@api.example/v1?x=1", "https://***@api.example/v1?x=1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("not a url", "not a url"),
    ],
)
def test_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    from pacer.config import without_credentials

    assert without_credentials(url) == shown


def test_several_workers_with_the_in_memory_stream_log_is_a_usage_error() -> None:
    """Each worker would hold its own streams: a resume or cancel landing on another
    worker would get a 404 (about half of them with two workers)."""
    out = _proxy_cli("--upstream", "http://127.0.0.1:9", "--workers", "2")
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("pacer proxy: error: ServerConfig: workers > 1 with resumable streams needs redis")
    assert "--resume never" in last and "Traceback" not in out.stderr
