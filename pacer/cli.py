"""The ``pacer`` command: ``pacer demo`` replays a real model-like stream in the terminal;
``pacer proxy`` runs the OpenAI-compatible pacing proxy; ``pacer serve`` shows one
stream three ways on a local web page."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from ._pacing import CPS, MAX_LAG
from .config import Option, ServerConfig, options, with_options, without_credentials

if TYPE_CHECKING:
    from ._core import Pipeline

__all__ = ["main"]

_COLOURS = ["\x1b[36m", "\x1b[33m"]  # cyan, yellow: alternate per packet
_DIM, _RESET = "\x1b[2m", "\x1b[0m"


def _demo_text() -> str:
    return (resources.files("pacer") / "data" / "demo.md").read_text(encoding="utf-8")


def _tokenizer(name: str) -> tuple[Any, list[int]]:
    from .tokenizers import load_sentencepiece, load_tekken

    text = _demo_text()
    if name == "tekken":
        enc = load_tekken()
        return enc, enc.encode(text)
    sp = load_sentencepiece()
    return sp, sp.encode(text)


def _replay(trace: Sequence[tuple[float, Any]], speed: float) -> Iterator[Any]:
    """Yield each item of the trace at its time (scaled by ``speed``), like a live model."""
    start = time.monotonic()
    for t, item in trace:
        delay = start + t / speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield item


def _use_colour(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never":
        return False
    return sys.stdout.isatty() and os.environ.get("NO_COLOR") is None and os.environ.get("TERM") != "dumb"


def paced_pipeline(tokenizer: Any, cps: float = CPS, max_lag: float = MAX_LAG) -> Pipeline:
    """The demo's paced pipeline: tokens to text, then a ``Pacer`` that finds sentence
    and clause ends itself, so nothing waits for a sentence to finish and the lag bound
    counts from the token's arrival."""
    from ._core import Pipeline
    from ._detokenize import Detokenizer
    from ._pacing import Pacer

    return Pipeline(Detokenizer(tokenizer), Pacer(cps=cps, max_lag=max_lag))


def demo(args: argparse.Namespace) -> int:
    import pacer

    try:
        tokenizer, ids = _tokenizer(args.tokenizer)
    except ModuleNotFoundError as exc:
        hint = "" if "pip install" in str(exc) else ". Install the demo extra: pip install 'pacer-llm[demo]'"
        print(f"pacer demo: {exc}{hint}", file=sys.stderr)
        return 2
    trace = pacer.traces.bursty(ids, per_second=args.tokens_per_second, seed=args.seed)
    if args.mode == "paced":
        pipe = paced_pipeline(tokenizer, args.cps, args.max_lag)
    else:
        pipe = pacer.Detokenizer(tokenizer) | pacer.Packetizer(
            args.max_bytes, args.min_bytes, max_delay=args.max_delay
        )
    colour = _use_colour(args.colour)
    out = sys.stdout
    total = len(trace)
    if args.instant:
        chunks = pacer.simulate(trace, pipe).emissions
        shade = _Shade(args.mode)
        for chunk in chunks:
            out.write(_paint(chunk.text, shade(chunk), colour))
    else:
        chunks = list(_stream(pacer, pipe, trace, args.speed, colour, out, args.mode))
    m = pipe.metrics
    out.write("\n" if not chunks or not chunks[-1].text.endswith("\n") else "")
    what = (
        f"{m.chunks_out} chunks paced at >= {args.cps:g} chars/s"
        if args.mode == "paced"
        else f"{m.chunks_out} packets of <= {args.max_bytes} bytes"
    )
    summary = (
        f"{total} tokens ({args.tokenizer}) -> {what}, {m.bytes_out} bytes; "
        f"first output after {m.time_to_first_output or 0:.3f} s; "
        f"lag p50 {m.lag(50) or 0:.3f} s, p99 {m.lag(99) or 0:.3f} s"
    )
    out.write((_DIM + summary + _RESET if colour else summary) + "\n")
    return 0


class _Shade:
    """Colour index per chunk: alternate per sentence when paced, per packet otherwise."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.k = 0

    def __call__(self, chunk: Any) -> int:
        from ._core import Boundary

        k = self.k
        if self.mode != "paced" or chunk.boundary >= Boundary.SENTENCE:
            self.k += 1
        return k


def _paint(text: str, k: int, colour: bool) -> str:
    return _COLOURS[k % 2] + text + _RESET if colour else text


def _stream(
    pacer: Any, pipe: Any, trace: Any, speed: float, colour: bool, out: Any, mode: str
) -> Iterator[Any]:
    total = len(trace)
    shade = _Shade(mode)
    for chunk in pacer.run(pipe, _replay(trace, speed), chunks=True):
        out.write(_paint(chunk.text, shade(chunk), colour))
        if colour:  # progress in the terminal title: visible without disturbing the text
            out.write(f"\x1b]0;pacer demo: {pipe.metrics.items_in}/{total} tokens\x07")
        out.flush()
        yield chunk


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="pacer", description="Composable stream middleware for LLM output.")
    parser.add_argument("--version", action="version", version=f"pacer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser(
        "demo",
        help="replay a bursty model stream through a pipeline to the terminal",
        description=(
            "Tokenize a text shipped with pacer with a real tokenizer (from mistral-common), replay the "
            "ids with bursty, model-like timing, and print what the pipeline emits as it emits it."
        ),
    )
    for flags, settings in _DEMO:
        d.add_argument(*flags, **settings)
    x = sub.add_parser(
        "proxy",
        help="run a pacing proxy in front of an OpenAI- or Anthropic-compatible server",
        description=(
            "Streaming requests to /v1/chat/completions, /v1/completions, /v1/responses and "
            "/v1/messages are forwarded to the upstream (vLLM, llama.cpp, Ollama, LiteLLM, "
            "OpenAI, Anthropic) and their text re-paced in the API's own event format; "
            "everything else passes through untouched. Needs the 'server' extra."
        ),
        epilog=(
            "Every option can also be set by an environment variable: PACER_ and the option's name in "
            "capitals, dashes as underscores (PACER_UPSTREAM, PACER_CPS, PACER_MAX_LAG, "
            "PACER_NO_COMPRESS=1, ...); a flag on the command line wins."
        ),
    )
    _add_options(x, ServerConfig)
    x.set_defaults(usage=x)  # a bad proxy option is answered with the proxy's usage
    v = sub.add_parser(
        "serve",
        help="open a local web page that shows one model stream three ways side by side",
        description=(
            "Serve a page with three panes fed by one Server-Sent Events stream from pacer: the raw "
            "tokens as a model sends them, the paced text, and sentences as they are committed. Rate, "
            "unit and model speed are controls on the page. Needs the 'server' and 'demo' extras."
        ),
    )
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    v.add_argument("--port", type=int, default=8200, help="port to listen on (default: 8200)")
    return parser


#: ``pacer demo``'s options: (flags, ``add_argument``'s keywords).
_DEMO: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (
        ("--tokenizer",),
        {
            "choices": ["tekken", "sentencepiece"],
            "default": "tekken",
            "help": "tekken: byte-level BPE via tiktoken; sentencepiece: the v1 .model (default: tekken)",
        },
    ),
    (
        ("--tokens-per-second",),
        {"type": float, "default": 60.0, "help": "average arrival rate of tokens (default: 60)"},
    ),
    (
        ("--speed",),
        {"type": float, "default": 1.0, "help": "replay speed factor, 2 = twice as fast (default: 1)"},
    ),
    (("--seed",), {"type": int, "default": 0, "help": "seed of the bursty timing (default: 0)"}),
    (
        ("--mode",),
        {
            "choices": ["paced", "packets"],
            "default": "paced",
            "help": "paced: a steady rhythm with pauses at sentence and clause ends, colour per sentence; "
            "packets: byte-bounded packets as a network would get them, colour per packet (default: paced)",
        },
    ),
    (
        ("--cps",),
        {
            "type": float,
            "default": CPS,
            "help": "paced mode: natural reading rate in characters per second, as Pacer's "
            f"(default: {CPS:g})",
        },
    ),
    (
        ("--max-lag",),
        {
            "type": float,
            "default": MAX_LAG,
            "help": f"paced mode: most seconds any text waits behind the model (default: {MAX_LAG:g})",
        },
    ),
    (("--max-bytes",), {"type": int, "default": 64, "help": "largest packet, in UTF-8 bytes (default: 64)"}),
    (
        ("--min-bytes",),
        {
            "type": int,
            "default": 16,
            "help": "smallest packet while text keeps coming, in UTF-8 bytes (default: 16)",
        },
    ),
    (
        ("--max-delay",),
        {
            "type": float,
            "default": 0.05,
            "help": "seconds of silence after which a short packet goes out anyway (default: 0.05)",
        },
    ),
    (("--instant",), {"action": "store_true", "help": "simulate on a virtual clock: no waiting"}),
    (
        ("--colour", "--color"),
        {
            "choices": ["auto", "always", "never"],
            "default": "auto",
            "help": "alternate packet colours (default: auto, when the output is a terminal)",
        },
    ),
]


class _Repeated(argparse.Action):
    """A repeatable flag: each adds its values to the list, and the first replaces the
    default (what the environment variable gave), as any flag on the command line wins."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        given = f"given_{self.dest}"
        items = list(getattr(namespace, self.dest) or ()) if getattr(namespace, given, False) else []
        setattr(namespace, given, True)
        setattr(namespace, self.dest, [*items, *values])


def _add_options(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """A flag for each field of the configuration ``cls`` (``pacer.config.options``), with
    its help; its default is ``PACER_<NAME>`` where that is set, else the field's. A
    variable the option would refuse is an error naming the variable."""
    for option in options(cls):
        raw = os.environ.get(option.variable)
        try:
            default = _default(option, raw)
        except (TypeError, ValueError) as exc:
            rule = f": {exc}" if str(exc) != raw else ""
            parser.error(f"{option.variable}={raw!r} is not a valid {option.flag}{rule}")
        if option.switch:
            parser.add_argument(option.flag, action="store_true", default=default, help=option.help())
            continue
        choices = option.meta("choices")
        if option.meta("repeat"):  # each flag adds to the list; the flags replace the variable's
            parser.add_argument(
                option.flag,
                action=_Repeated,
                type=option.kind,
                default=default,
                metavar=option.meta("metavar"),
                help=option.help(),
            )
            continue
        parser.add_argument(
            option.flag,
            type=option.kind,
            default=default,
            choices=list(choices) if choices else None,
            metavar=option.meta("metavar"),
            help=option.help(),
        )


def _default(option: Option, raw: str | None) -> Any:
    """The command line's default for ``option``: ``raw`` (an environment variable's
    value), checked, or else the field's default (``0`` for a ``None`` meaning none)."""
    if raw is None:
        default = option.field.default
        if option.switch:
            return False
        if default is None and option.meta("none"):
            return 0
        return None if option.required else default
    if option.switch:
        word = raw.strip().lower()
        if word not in _SWITCH:
            raise ValueError(raw)
        return _SWITCH[word]
    value = option.kind(raw)
    choices = option.meta("choices")
    if choices is not None and value not in choices:
        raise ValueError(raw)
    rule = option.problem(option.value(value))
    if rule is not None:
        raise ValueError(rule)
    return list(value) if option.meta("repeat") else value


_SWITCH = {"1": True, "true": True, "yes": True, "on": True}
_SWITCH |= {"0": False, "false": False, "no": False, "off": False}


def proxy_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``pacer.config.ServerConfig`` (by name, but ``upstream``) that the
    parsed options of ``pacer proxy`` give."""
    values = {o.field.name: o.value(getattr(args, o.dest)) for o in options(ServerConfig)}
    del values["upstream"]
    return values


def _proxy_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the proxy's options, one message per bad flag."""
    problems = []
    for option in options(ServerConfig):
        value = option.value(getattr(args, option.dest))
        if value is None and option.required:
            problems.append(f"{option.flag} (or {option.variable}) is required")
            continue
        rule = option.problem(value)
        if rule is not None:
            problems.append(f"{option.flag} {rule}")
    return problems


def _redis_problem(url: str) -> str | None:
    """Why the proxy cannot keep its streams in the Redis at ``url`` (None: it can), said
    without the URL's credentials."""
    try:
        import redis
    except ModuleNotFoundError:
        return "--redis needs the redis package: pip install 'pacer-llm[redis]'"
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3) as client:
            client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"--redis: cannot reach {without_credentials(url)}: {type(exc).__name__}: {exc}"
    return None


def _proxy(args: argparse.Namespace) -> int:
    usage: argparse.ArgumentParser = args.usage
    try:  # before the options: checking an upstream URL needs httpx already
        from .proxy import serve
    except ModuleNotFoundError as exc:
        print(f"pacer proxy: {exc}", file=sys.stderr)
        return 2
    problems = _proxy_problems(args)
    if problems:
        usage.error("; ".join(problems))
    try:
        config = with_options(ServerConfig, {"upstream": args.upstream, **proxy_settings(args)})
    except ValueError as exc:  # settings that are each fine but not together
        usage.error(str(exc))
    if config.proxy.redis is not None and (problem := _redis_problem(config.proxy.redis)) is not None:
        usage.error(problem)
    try:
        serve(config)
    except ValueError as exc:  # a guard that cannot be loaded, redis without resumable streams
        usage.error(str(exc))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        if not args.speed > 0 or not args.tokens_per_second > 0:
            parser.error("--speed and --tokens-per-second must be > 0")
        if not args.cps > 0 or not args.max_lag > 0:
            parser.error("--cps and --max-lag must be > 0")
        return demo(args)
    if args.command == "proxy":
        return _proxy(args)
    if args.command == "serve":
        try:
            from ._playground import serve as serve_page
        except ModuleNotFoundError as exc:
            hint = "Install the extras: pip install 'pacer-llm[server,demo]'"
            print(f"pacer serve: {exc}. {hint}", file=sys.stderr)
            return 2
        print(f"pacer: open http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
        serve_page(args.host, args.port)
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
