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

from ._logs import FORMATS, LEVELS

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


def paced_pipeline(tokenizer: Any, cps: float = 40.0, max_lag: float = 0.5) -> Pipeline:
    """The demo's paced pipeline: tokens to text, then a ``Pacer`` that finds sentence
    and clause ends itself, so nothing waits for a sentence to finish and the lag bound
    counts from the token's arrival."""
    from ._core import Pipeline
    from .detokenize import Detokenizer
    from .pacing import Pacer

    return Pipeline(Detokenizer(tokenizer), Pacer(cps=cps, max_lag=max_lag))


def demo(args: argparse.Namespace) -> int:
    import pacer

    try:
        tokenizer, ids = _tokenizer(args.tokenizer)
    except ModuleNotFoundError as exc:
        print(f"pacer demo: {exc}. Install the demo extra: pip install 'pacer-llm[demo]'", file=sys.stderr)
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
    d.add_argument(
        "--tokenizer",
        choices=["tekken", "sentencepiece"],
        default="tekken",
        help="tekken: byte-level BPE via tiktoken; sentencepiece: the v1 .model (default: tekken)",
    )
    d.add_argument(
        "--tokens-per-second", type=float, default=60.0, help="average arrival rate of tokens (default: 60)"
    )
    d.add_argument(
        "--speed", type=float, default=1.0, help="replay speed factor, 2 = twice as fast (default: 1)"
    )
    d.add_argument("--seed", type=int, default=0, help="seed of the bursty timing (default: 0)")
    d.add_argument(
        "--mode",
        choices=["paced", "packets"],
        default="paced",
        help=(
            "paced: a steady rhythm with pauses at sentence and clause ends, colour per sentence; "
            "packets: byte-bounded packets as a network would get them, colour per packet (default: paced)"
        ),
    )
    d.add_argument(
        "--cps",
        type=float,
        default=40.0,
        help="paced mode: natural reading rate in characters per second, as Pacer's (default: 40)",
    )
    d.add_argument(
        "--max-lag",
        type=float,
        default=0.5,
        help="paced mode: most seconds any text waits behind the model (default: 0.5)",
    )
    d.add_argument("--max-bytes", type=int, default=64, help="largest packet, in UTF-8 bytes (default: 64)")
    d.add_argument(
        "--min-bytes",
        type=int,
        default=16,
        help="smallest packet while text keeps coming, in UTF-8 bytes (default: 16)",
    )
    d.add_argument(
        "--max-delay",
        type=float,
        default=0.05,
        help="seconds of silence after which a short packet goes out anyway (default: 0.05)",
    )
    d.add_argument("--instant", action="store_true", help="simulate on a virtual clock: no waiting")
    d.add_argument(
        "--colour",
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="alternate packet colours (default: auto, when the output is a terminal)",
    )
    x = sub.add_parser(
        "proxy",
        help="run a pacing proxy in front of an OpenAI- or Anthropic-compatible server",
        description=(
            "Streaming requests to /v1/chat/completions, /v1/completions, /v1/responses and "
            "/v1/messages are forwarded to the upstream (vLLM, llama.cpp, Ollama, LiteLLM, "
            "OpenAI, Anthropic) and their text re-paced in the API's own event format; "
            "everything else passes through untouched. Needs the 'server' extra."
        ),
    )
    x.add_argument(
        "--upstream",
        help="base URL of the upstream server, with or without /v1: http://127.0.0.1:8000/v1",
    )
    x.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    x.add_argument("--port", type=int, default=8100, help="port to listen on (default: 8100)")
    x.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving the port, for a host with several cores (default: 1)",
    )
    x.add_argument(
        "--cps", type=float, default=60.0, help="pacing rate in characters per second (default: 60)"
    )
    x.add_argument(
        "--unit",
        choices=["grapheme", "word"],
        default="grapheme",
        help=(
            "grapheme: the evenest flow; word: a word per event, at a slow pace about a fifth "
            "of the events (default: grapheme)"
        ),
    )
    x.add_argument(
        "--max-lag",
        type=float,
        default=0.5,
        help="longest a character waits in the pacer, in seconds (default: 0.5)",
    )
    x.add_argument(
        "--sentence-pause", type=float, default=0.2, help="seconds of pause after a sentence (default: 0.2)"
    )
    x.add_argument(
        "--clause-pause", type=float, default=0.08, help="seconds of pause after a clause (default: 0.08)"
    )
    x.add_argument(
        "--max-bytes",
        type=int,
        default=0,
        help="cut the paced text into packets of at most this many UTF-8 bytes (default: 0, no packets)",
    )
    x.add_argument(
        "--heartbeat",
        type=float,
        default=15.0,
        help="seconds of silence before a keep-alive comment (default: 15; 0: none)",
    )
    x.add_argument(
        "--send-timeout",
        type=float,
        default=30.0,
        help="seconds a client may leave a write unread before it is dropped (default: 30; 0: no limit)",
    )
    for name, default, what in (
        ("connect", 10.0, "seconds to wait to connect to the upstream"),
        ("first-byte", 600.0, "seconds to wait for the upstream's response headers"),
        ("idle", 300.0, "seconds the upstream may send nothing once it has answered"),
        ("total", 3600.0, "seconds one whole upstream exchange may take"),
    ):
        x.add_argument(
            f"--{name}-timeout",
            type=float,
            default=default,
            help=f"{what} (default: {default:g}; 0: no limit)",
        )
    x.add_argument(
        "--max-body",
        type=int,
        default=32 << 20,
        help="largest request body in bytes; larger ones get a 413 (default: 33554432, 32 MiB)",
    )
    x.add_argument(
        "--max-line",
        type=int,
        default=1 << 20,
        help="longest SSE line the upstream may send, in bytes (default: 1048576)",
    )
    x.add_argument(
        "--guard",
        metavar="MODULE:FUNCTION",
        help="check every paced sentence with this function (sync or async, given the text; "
        "True passes, False blocks, a str replaces) before it is sent; a blocked one ends the "
        'stream with finish_reason "content_filter"',
    )
    x.add_argument(
        "--no-compress",
        action="store_true",
        help="never compress paced streams (default: gzip, deflate, br or zstd when the client "
        "asks, each event flushed on its own)",
    )
    x.add_argument(
        "--redis",
        metavar="redis://HOST:PORT/DB",
        help="keep resumable streams in this Redis (Redis Streams), so that every proxy sharing it "
        "serves /v1/streams/{id} for every stream (default: in this process's memory)",
    )
    x.add_argument(
        "--orphan-timeout",
        type=float,
        default=10.0,
        help="seconds a paced stream keeps generating with no client reading it, for one to resume "
        "(default: 10; 0: stop when the last reader leaves)",
    )
    x.add_argument(
        "--retention",
        type=float,
        default=600.0,
        help="seconds a stream's events are kept after its last one, for resuming (default: 600)",
    )
    x.add_argument(
        "--no-resume",
        action="store_true",
        help="no resumable streams: no stream ids, no /v1/streams/{id}, and a client that leaves "
        "stops its generation at once",
    )
    x.add_argument("--log-level", choices=list(LEVELS), default="info", help="log level (default: info)")
    x.add_argument(
        "--log-format",
        choices=list(FORMATS),
        default="plain",
        help="plain lines, or JSON lines (one a stream end, with its figures) (default: plain)",
    )
    x.epilog = (
        "Every option can also be set by an environment variable: PACER_ and the option's name in "
        "capitals, dashes as underscores (PACER_UPSTREAM, PACER_CPS, PACER_MAX_LAG, PACER_NO_COMPRESS=1, "
        "...); a flag on the command line wins."
    )
    _environment_defaults(x)
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


def _environment_defaults(parser: argparse.ArgumentParser) -> None:
    """Take each option's default from ``PACER_<OPTION>`` where that is set; a value the
    option would refuse is an error naming the variable."""
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        variable = "PACER_" + action.dest.upper()
        raw = os.environ.get(variable)
        if raw is None:
            continue
        try:
            value = _from_environment(action, raw)
        except (TypeError, ValueError):
            parser.error(f"{variable}={raw!r} is not a valid {action.option_strings[0]}")
        action.default = value


def _from_environment(action: argparse.Action, raw: str) -> Any:
    if isinstance(action, argparse._StoreTrueAction):
        word = raw.strip().lower()
        if word not in _SWITCH:
            raise ValueError(raw)
        return _SWITCH[word]
    value = action.type(raw) if callable(action.type) else raw
    if action.choices is not None and value not in action.choices:
        raise ValueError(raw)
    return value


_SWITCH = {"1": True, "true": True, "yes": True, "on": True}
_SWITCH |= {"0": False, "false": False, "no": False, "off": False}


def _proxy_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the proxy's options, one message per bad flag."""
    checks = [
        (args.upstream is not None, "--upstream (or PACER_UPSTREAM) is required"),
        (args.cps > 0, "--cps must be > 0"),
        (args.max_lag > 0, "--max-lag must be > 0 seconds"),
        (
            args.sentence_pause >= 0 and args.clause_pause >= 0,
            "--sentence-pause and --clause-pause must be >= 0",
        ),
        (args.max_bytes >= 0, "--max-bytes must be >= 0 (0: no packets)"),
        (
            args.heartbeat >= 0 and args.send_timeout >= 0,
            "--heartbeat and --send-timeout must be >= 0 (0: none)",
        ),
        (args.workers >= 1, "--workers must be >= 1"),
        (args.max_body >= 0, "--max-body must be >= 0"),
        (args.max_line > 0, "--max-line must be > 0"),
        (args.orphan_timeout >= 0, "--orphan-timeout must be >= 0 seconds"),
        (args.retention > 0, "--retention must be > 0 seconds"),
        (
            args.redis is None or args.redis.startswith(("redis://", "rediss://", "unix://")),
            "--redis must be a redis://HOST:PORT/DB URL",
        ),
        (not (args.no_resume and args.redis), "--redis is for resumable streams; drop it or --no-resume"),
    ]
    waits = [args.connect_timeout, args.first_byte_timeout, args.idle_timeout, args.total_timeout]
    checks.append((all(wait >= 0 for wait in waits), "timeouts must be >= 0 seconds (0: no limit)"))
    return [message for ok, message in checks if not ok]


def proxy_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``pacer.proxy.serve`` that the parsed options give."""
    from .proxy import ProxyTimeouts

    waits = [args.connect_timeout, args.first_byte_timeout, args.idle_timeout, args.total_timeout]
    connect, first_byte, idle, total = (wait or None for wait in waits)
    return {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "cps": args.cps,
        "unit": args.unit,
        "max_lag": args.max_lag,
        "sentence_pause": args.sentence_pause,
        "clause_pause": args.clause_pause,
        "max_bytes": args.max_bytes or None,
        "heartbeat": args.heartbeat or None,
        "send_timeout": args.send_timeout or None,
        "timeouts": ProxyTimeouts(connect=connect, first_byte=first_byte, idle=idle, total=total),
        "max_body": args.max_body,
        "max_line": args.max_line,
        "compress": not args.no_compress,
        "guard": args.guard,
        "resumable": not args.no_resume,
        "redis": args.redis,
        "orphan_timeout": args.orphan_timeout,
        "retention": args.retention,
    }


def _proxy(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    problems = _proxy_problems(args)
    if problems:
        parser.error("; ".join(problems))
    try:
        from .proxy import serve
    except ModuleNotFoundError as exc:
        print(f"pacer proxy: {exc}. Install the extra: pip install 'pacer-llm[server]'", file=sys.stderr)
        return 2
    try:
        serve(args.upstream, **proxy_settings(args))
    except ValueError as exc:  # a malformed upstream URL, above all
        parser.error(str(exc))
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
        return _proxy(parser, args)
    if args.command == "serve":
        try:
            from .playground import serve as serve_page
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
