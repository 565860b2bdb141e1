"""One configuration: every option of ``pacer.config`` is a ``pacer proxy`` flag and a
``PACER_*`` variable generated from its field, checked once, with the library's defaults;
the docs' tables of options are the generated ones."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

import pacer
from pacer.cli import _parser, main, proxy_settings
from pacer.config import (
    HEARTBEAT,
    PacingConfig,
    ProxyConfig,
    ProxyTimeouts,
    ServerConfig,
    StreamConfig,
    options,
    to_values,
    with_options,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _leaves(cls: type[Any]) -> set[str]:
    """Every leaf field of a configuration class, found without ``pacer.config.options``."""
    names: set[str] = set()
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            names |= _leaves(type(default))
        elif f.name != "pipeline":  # a function: code only
            names.add(f.name)
    return names


def _proxy_parser() -> argparse.ArgumentParser:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["proxy"]  # type: ignore[no-any-return]


def _config(argv: list[str]) -> ServerConfig:
    args = _parser().parse_args(["proxy", "--upstream", "http://127.0.0.1:9/v1", *argv])
    return with_options(ServerConfig, {"upstream": args.upstream, **proxy_settings(args)})  # type: ignore[no-any-return]


def test_every_field_is_a_flag_and_a_variable() -> None:
    found = list(options(ServerConfig))
    assert {o.field.name for o in found} == _leaves(ServerConfig)
    flags = {s for a in _proxy_parser()._actions for s in a.option_strings if s.startswith("--")}
    assert {o.flag for o in found} == flags - {"--help"}
    for o in found:
        assert o.variable == "PACER_" + o.flag[2:].upper().replace("-", "_")
        assert o.field.metadata["help"], f"{o.flag} has no help"


def test_the_command_line_defaults_are_the_fields_defaults() -> None:
    assert _config([]) == ServerConfig(upstream="http://127.0.0.1:9/v1")


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("PACER_MAX_LAG", "-1", "PACER_MAX_LAG='-1' is not a valid --max-lag: must be > 0 seconds"),
        (
            "PACER_MAX_BYTES",
            "-5",
            "PACER_MAX_BYTES='-5' is not a valid --max-bytes: must be >= 0 (0: no packets)",
        ),
        ("PACER_WORKERS", "two", "PACER_WORKERS='two' is not a valid --workers"),
        ("PACER_UNIT", "re:(", "PACER_UNIT='re:(' is not a valid --unit: must be a valid pattern"),
        ("PACER_REDIS", "http://h", "PACER_REDIS='http://h' is not a valid --redis: must be a redis://"),
    ],
)
def test_a_bad_environment_variable_is_a_usage_error_naming_it(
    variable: str, raw: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(SystemExit) as exit_:
        main(["proxy", "--upstream", "http://127.0.0.1:9"])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_environment_variables_are_parsed_into_the_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"PACER_HEARTBEAT": "0", "PACER_IDLE_TIMEOUT": "7", "PACER_RESUME": "never"}.items():
        monkeypatch.setenv(name, value)
    proxy = _config([]).proxy
    assert proxy.stream.heartbeat is None and proxy.timeouts.idle == 7.0 and proxy.resume == "never"
    assert _config(["--heartbeat", "3"]).proxy.stream.heartbeat == 3.0  # a flag wins


def test_the_proxy_and_the_library_pace_alike_by_default() -> None:
    made = ProxyConfig().pipeline_factory()()
    library = pacer.Pacer()
    assert isinstance(made, pacer.Pacer)
    for name in ("rate", "unit", "max_lag", "sentence_pause", "clause_pause"):
        assert getattr(made, name) == getattr(library, name), name
    assert _config([]).proxy.pacing.cps == library.rate == 40.0
    assert _parser().parse_args(["demo"]).cps == library.rate


def _paced(config: ServerConfig, text: str) -> list[str]:
    stage = config.proxy.pipeline_factory()()
    return [c.text for c in pacer.simulate([(0.0, text)], stage).emissions]


def test_unit_line_reaches_the_pipeline() -> None:
    config = _config(["--unit", "line"])
    assert config.proxy.pacing.unit == "line"
    assert _paced(config, "one\ntwo\nthree") == ["one\n", "two\n", "three"]


def test_a_pattern_unit_reaches_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACER_UNIT", "re:;")
    config = _config([])
    assert _paced(config, "a;bb;c") == ["a;", "bb;", "c"]
    assert isinstance(config.proxy.pipeline_factory()(), pacer.Pacer)


def test_a_configuration_goes_to_worker_processes_as_plain_values() -> None:
    config = ServerConfig(
        upstream="http://h:1/v1",
        workers=3,
        proxy=ProxyConfig(
            pacing=PacingConfig(unit=re.compile(r"\.\s*"), max_bytes=64),
            stream=StreamConfig(heartbeat=None, compress=False),
            timeouts=ProxyTimeouts(idle=5),
            redis="redis://h:6379/0",
        ),
    )
    import json

    values = json.loads(json.dumps(to_values(config)))
    back = with_options(ServerConfig, values)
    assert back.proxy.pacing.unit == r"re:\.\s*"
    assert (
        dataclasses.replace(back, proxy=dataclasses.replace(back.proxy, pacing=config.proxy.pacing)) == config
    )


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: PacingConfig(cps=0), ValueError, "PacingConfig: cps must be > 0, got 0"),
        (lambda: PacingConfig(cps="fast"), TypeError, "PacingConfig: cps must be a number"),
        (lambda: PacingConfig(unit="letter"), ValueError, "PacingConfig: unit must be 'grapheme'"),
        (
            lambda: StreamConfig(heartbeat=0),
            ValueError,
            "StreamConfig: heartbeat must be > 0 seconds or None",
        ),
        (lambda: ProxyTimeouts(total=-1), ValueError, "ProxyTimeouts: total must be > 0 seconds or None"),
        (lambda: ProxyConfig(max_body=1.5), TypeError, "ProxyConfig: max_body must be an int"),
        (lambda: ProxyConfig(pacing={"cps": 1}), TypeError, "ProxyConfig: pacing must be a PacingConfig"),
        (lambda: StreamConfig(compress="no"), TypeError, "StreamConfig: compress must be a bool"),
        (lambda: ProxyConfig(redis="redis://h", resume="never"), ValueError, "redis is for resumable"),
        (
            lambda: ServerConfig(upstream="h:8000"),
            ValueError,
            "ServerConfig: upstream must be an http(s) URL",
        ),
        (lambda: with_options(ProxyConfig, {"speed": 2}), TypeError, "unknown options ['speed']"),
    ],
)
def test_a_bad_value_fails_at_construction_naming_the_option(build: Any, error: type, message: str) -> None:
    with pytest.raises(error) as raised:
        build()
    assert message in str(raised.value)


def test_each_shared_default_is_the_configurations() -> None:
    import inspect

    from pacer.server import EventStreamResponse

    assert inspect.signature(EventStreamResponse).parameters["heartbeat"].default == HEARTBEAT
    assert StreamConfig().heartbeat == HEARTBEAT


def _table(*classes: type[Any]) -> str:
    rows = ["| flag | variable | default | field | what it sets |", "|---|---|---|---|---|"]
    for cls in classes:
        for o in options(cls):
            field = f"`{o.owner.__name__}.{o.field.name}`"
            if o.field.metadata.get("none"):  # the flag's 0 is the field's None
                field += f" (`None`: {o.field.metadata['none']})"
            default = o.default_text() or "-"
            rows.append(f"| `{o.flag}` | `{o.variable}` | {default} | {field} | {o.field.metadata['help']} |")
    return "\n".join(rows)


@pytest.mark.parametrize("page", ["how-to/operations.md", "how-to/options.md"])
def test_the_docs_tables_of_options_are_the_generated_ones(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    tables = re.findall(r"<!-- options: ([\w ]+) -->\n(.*?)\n<!-- /options -->", text, re.S)
    assert tables, f"{page} has no generated table of options"
    import pacer.config

    for names, table in tables:
        assert table == _table(*(getattr(pacer.config, name) for name in names.split())), (
            f"{page}: regenerate the table of {names} (tests/test_config.py's _table)"
        )


def test_cors_origins_are_repeatable_or_comma_separated_and_checked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _config([]).proxy.cors_origin is None  # no browser origin is allowed by default
    given = [
        "--cors-origin",
        "https://a.example, https://b.example/",
        "--cors-origin",
        "http://c.example:8080",
    ]
    assert _config(given).proxy.cors_origin == (
        "https://a.example",
        "https://b.example",
        "http://c.example:8080",
    )
    monkeypatch.setenv("PACER_CORS_ORIGIN", "https://a.example,*")
    assert _config([]).proxy.cors_origin == ("https://a.example", "*")
    config = ProxyConfig(cors_origin=["https://a.example"])  # type: ignore[arg-type]
    assert with_options(ProxyConfig, to_values(config)).cors_origin == ("https://a.example",)
    monkeypatch.delenv("PACER_CORS_ORIGIN")
    with pytest.raises(SystemExit):
        main(["proxy", "--upstream", "http://127.0.0.1:9", "--cors-origin", "https://a.example/app"])
    assert "--cors-origin must be origins such as https://app.example" in capsys.readouterr().err


def test_resume_takes_request_always_or_never_and_workers_follow_it() -> None:
    assert _config([]).proxy.resume == "request"
    assert _config(["--resume", "always"]).proxy.resume == "always"
    with pytest.raises(ValueError, match="workers > 1 with resumable streams needs redis"):
        ServerConfig(upstream="http://h", workers=2)
    assert ServerConfig(upstream="http://h", workers=2, proxy=ProxyConfig(resume="never")).workers == 2
    with pytest.raises(ValueError, match="ProxyConfig: resume must be 'request', 'always', 'never'"):
        ProxyConfig(resume="sometimes")


@pytest.mark.parametrize("threshold", [12_345, 0])
def test_the_proxy_collects_less_while_it_serves_and_gives_the_collector_back_after(threshold: int) -> None:
    import gc

    from starlette.testclient import TestClient

    from pacer.proxy import create_proxy

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    app = create_proxy("http://127.0.0.1:9", gc_threshold=threshold)
    with TestClient(app):
        if threshold:
            assert gc.get_threshold() == (threshold, *before[1:])
            assert gc.get_freeze_count() > frozen  # what start-up made is out of every collection
        else:
            assert gc.get_threshold() == before
            assert gc.get_freeze_count() == frozen
    assert gc.get_threshold() == before  # the process's collector as it was once the proxy stops


def test_forwarded_allow_ips_are_repeatable_or_comma_separated_and_checked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _config([]).forwarded_allow_ips is None  # nobody's X-Forwarded-For is believed by default
    given = ["--forwarded-allow-ips", "10.0.0.1, 10.1.0.0/16", "--forwarded-allow-ips", "unix:/run/lb.sock"]
    assert _config(given).forwarded_allow_ips == ("10.0.0.1", "10.1.0.0/16", "unix:/run/lb.sock")
    monkeypatch.setenv("PACER_FORWARDED_ALLOW_IPS", "::1,*")
    assert _config([]).forwarded_allow_ips == ("::1", "*")
    monkeypatch.delenv("PACER_FORWARDED_ALLOW_IPS")
    with pytest.raises(SystemExit):
        main(["proxy", "--upstream", "http://127.0.0.1:9", "--forwarded-allow-ips", "lb.example"])
    assert "--forwarded-allow-ips must be IP addresses or networks" in capsys.readouterr().err


def test_a_port_past_65535_is_refused_not_wrapped() -> None:
    """``--port 70000`` was accepted, and the socket listened on 70000 - 65536 = 4464."""
    import pytest

    from pacer.config import ServerConfig

    for bad in (70000, 65536, -1):
        with pytest.raises(ValueError, match="ServerConfig: port must be a TCP port, 0 to 65535, got "):
            ServerConfig(upstream="http://127.0.0.1:9", port=bad)
    assert ServerConfig(upstream="http://127.0.0.1:9", port=65535).port == 65535
