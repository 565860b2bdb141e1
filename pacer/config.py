"""The servers' configuration: every option's default, its check and its help, once.

Frozen dataclasses, composed: ``PacingConfig`` (how the proxy's default pipeline paces),
``StreamConfig`` (how a paced stream is written to its client), ``ProxyTimeouts`` (how
long the proxy waits on its upstream), ``ContinuationConfig`` (how each API's streams go
on when their upstream fails mid-answer), ``UpstreamsConfig`` (failover and health over
several upstreams), ``ProxyConfig`` (all of the proxy, given to
``pacer.proxy.create_proxy``) and ``ServerConfig`` (a proxy process: upstreams, address,
workers, logs; given to ``pacer.proxy.serve``). A bad value fails at construction, a
``TypeError`` or ``ValueError`` naming the class and the option.

Each field's metadata holds its help and its check, so the command line is generated
from the fields (``options`` walks them): ``pacer proxy --max-lag`` and
``PACER_MAX_LAG`` are the field ``PacingConfig.max_lag``, with its default, help and
check. The same walk turns a configuration into plain JSON values and back
(``to_values``, ``with_options``), which is how ``serve`` hands it to worker processes.

Cost: building a configuration checks each field once; nothing here is on a stream's path.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ._args import number, whole
from ._checks import PER_STREAM, WORKERS
from ._logs import FORMATS, LEVELS
from ._pacing import CLAUSE_PAUSE, CPS, MAX_LAG, SENTENCE_PAUSE, UNITS

if TYPE_CHECKING:
    from ._core import Stage

#: The served pacer's tick (``PacingConfig.tick``, ``--tick``): 10 ms, finer than a
#: 60 Hz display's frame, so that no frame misses text due in it, and fine enough that a
#: sentence end's pause stands out from the steps between words (the rhythm aims:
#: ``pacer.testing.rhythm``; a whole frame's tick, 1/60 s, blurs them). Against
#: ``Pacer``'s own 5 ms (a voice, or one in-process stream) it halves a server's
#: wake-ups and events per stream.
TICK: Final = 0.01

__all__ = [
    "CONNECTION_LIMIT",
    "CONTINUATION",
    "GC_THRESHOLD",
    "HEADER_TIMEOUT",
    "HEARTBEAT",
    "MAX_LINE",
    "MAX_PAUSE",
    "ORPHAN_TIMEOUT",
    "RESUME",
    "RETENTION",
    "SEND_TIMEOUT",
    "SHUTDOWN_GRACE",
    "STREAMS_PER_CLIENT",
    "TICK",
    "PATTERN",
    "ContinuationConfig",
    "Option",
    "PacingConfig",
    "ProxyConfig",
    "ProxyTimeouts",
    "ServerConfig",
    "StreamConfig",
    "UpstreamsConfig",
    "check_upstream",
    "options",
    "to_values",
    "with_options",
]

#: The proxy's gen-0 garbage collection threshold once started (``ProxyConfig.gc_threshold``).
GC_THRESHOLD: Final = 50_000
#: Seconds of silence before a paced stream sends a keep-alive comment.
HEARTBEAT: Final = 15.0
#: Seconds a client may leave one write unread before its stream is dropped.
SEND_TIMEOUT: Final = 30.0
#: The longest SSE line the proxy reads from its upstream, in bytes.
MAX_LINE: Final = 1 << 20
#: Seconds a resumable stream goes on generating with no client reading it.
ORPHAN_TIMEOUT: Final = 10.0
#: Seconds a reader may keep a stream paused before its generation stops.
MAX_PAUSE: Final = 300.0
#: Seconds a stream log keeps a stream's events after its last one.
RETENTION: Final = 600.0
#: Seconds a client connection has to send a complete request head.
HEADER_TIMEOUT: Final = 10.0
#: Client connections one proxy process keeps open.
CONNECTION_LIMIT: Final = 2048
#: Streams one client may have open at once.
STREAMS_PER_CLIENT: Final = 128
#: Seconds running streams may go on after SIGTERM.
SHUTDOWN_GRACE: Final = 30.0
#: How a ``--unit`` value names a pattern: a unit ends after each match of the rest.
PATTERN: Final = "re:"

#: A check: the rule a value breaks (``"must be > 0"``), or ``None``; a value of the wrong
#: type is a ``TypeError`` naming ``where``.
Check = Callable[[Any, str], "str | None"]


def _above(least: float, *, strict: bool = False, integer: bool = False, suffix: str = "") -> Check:
    """A number (an int where ``integer``) > ``least`` where ``strict``, else >= it."""

    def check(value: Any, where: str) -> str | None:
        n = whole(value, where) if integer else number(value, where)
        return (
            None
            if (n > least if strict else n >= least)
            else f"must be {'>' if strict else '>='} {least:g}{suffix}"
        )

    return check


def _port(value: Any, where: str) -> str | None:
    """A TCP port: 0 (any free one) to 65535."""
    return None if 0 <= whole(value, where) <= 65535 else "must be a TCP port, 0 to 65535"


def _optional_seconds(value: Any, where: str) -> str | None:
    if value is None:
        return None
    return None if number(value, where) > 0 else "must be > 0 seconds or None"


def _one_of(names: tuple[str, ...]) -> Check:
    def check(value: Any, where: str) -> str | None:
        if not isinstance(value, str):
            raise TypeError(f"{where} must be a str, got {type(value).__name__}: {value!r}")
        return None if value in names else "must be " + ", ".join(repr(n) for n in names)

    return check


def _unit(value: Any, where: str) -> str | None:
    if isinstance(value, re.Pattern):
        return None
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a str or a pattern, got {type(value).__name__}: {value!r}")
    if value in UNITS:
        return None
    if value.startswith(PATTERN):
        try:
            re.compile(value[len(PATTERN) :])
        except re.error as exc:
            return f"must be a valid pattern after {PATTERN} ({exc})"
        return None
    return "must be " + ", ".join(repr(n) for n in UNITS) + f" or {PATTERN}PATTERN"


def _spec(value: Any, where: str) -> str | None:
    if value is None or callable(value):
        return None
    module, _, name = str(value).partition(":")
    return None if module and name else "must be MODULE:FUNCTION"


def _redis(value: Any, where: str) -> str | None:
    if value is None or str(value).startswith(("redis://", "rediss://", "unix://")):
        return None
    return "must be a redis://HOST:PORT/DB URL"


def without_credentials(url: str) -> str:
    """``url`` as it may be shown (errors, logs, metrics): any user and password in it
    replaced by ``***``, so no secret in a URL reaches anyone who reads them."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


def check_upstream(upstream: object, where: str) -> None:
    """A ``ValueError`` naming ``where`` unless ``upstream`` is an http(s) URL with a host."""
    rule = _upstream(upstream, where)
    if rule is not None:
        raise ValueError(f"{where} {rule}")


def upstream_list(value: str) -> tuple[str, ...]:
    """``--upstream``'s and ``PACER_UPSTREAM``'s value: one or more upstreams separated by
    commas or whitespace, each ``URL`` or ``NAME=URL`` (a comma inside a URL is ``%2C``)."""
    return tuple(part for part in re.split(r"[,\s]+", value) if part)


def _upstreams(value: Any, where: str) -> str | None:
    """One or more upstreams (``URL`` or ``NAME=URL``), each an http(s) URL, names distinct."""
    from .upstreams import parse_upstream

    if not value:
        return "must name at least one upstream URL"
    names = []
    for given in value:
        if not isinstance(given, str):
            raise TypeError(f"{where} must be URLs (str), got {type(given).__name__}: {given!r}")
        name, url = parse_upstream(given)
        rule = _upstream(url, where)
        if rule is not None:
            return rule
        names.append(name)
    named = [n for n in names if n is not None]
    if len(set(named)) != len(named):
        return f"must give each upstream a different NAME=, got {named}"
    return None


def _upstream(value: Any, where: str) -> str | None:
    """An http(s) URL with a host and no query or fragment."""
    import httpx

    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
        return (
            "must be an http(s) URL with a host, such as http://localhost:8000 "
            f"or http://localhost:8000/v1, got {value!r}"
        )
    return None


#: How the proxy chooses among healthy upstreams (``UpstreamsConfig.balance``).
BALANCE: Final = ("round_robin", "least_streams")

#: When a paced stream outlives its client (``ProxyConfig.resume``).
RESUME: Final = ("request", "always", "never")


def origins(value: str) -> tuple[str, ...]:
    """``--cors-origin``'s value: comma-separated origins (``https://app.example``)."""
    return tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())


def _probe_path(value: Any, where: str) -> str | None:
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a str, got {type(value).__name__}: {value!r}")
    if not value.startswith("/") or any(c in value for c in "?# \t\r\n") or ".." in value.split("/"):
        return "must be a path such as /v1/models or /health (no query, no .. segment)"
    return None


def _origins_rule(value: Any, where: str) -> str | None:
    for origin in value:
        if not isinstance(origin, str):
            raise TypeError(f"{where} must be origins (str), got {type(origin).__name__}: {origin!r}")
        scheme, sep, host = origin.partition("://")
        if origin != "*" and not (sep and scheme in ("http", "https") and host and "/" not in host):
            return f"must be origins such as https://app.example (scheme, host, port) or *, got {origin!r}"
    return None


def addresses(value: str) -> tuple[str, ...]:
    """``--forwarded-allow-ips``'s value: comma-separated addresses or networks."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _addresses(value: Any, where: str) -> str | None:
    import ipaddress

    for address in value:
        if not isinstance(address, str):
            raise TypeError(f"{where} must be addresses (str), got {type(address).__name__}: {address!r}")
        if address == "*" or address.startswith("unix:"):
            continue
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            return f"must be IP addresses or networks (10.0.0.1, 10.0.0.0/8), unix:PATH or *, got {address!r}"
    return None


def about(
    help: str,
    *,
    check: Check | None = None,
    flag: str | None = None,
    kind: Callable[[str], Any] | None = None,
    none: str | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    shown: str | None = None,
    repeat: bool = False,
) -> dict[str, Any]:
    """A field's metadata: its help and check. ``flag``: the command-line name when it is not
    the field's; ``kind``: how a command-line string becomes the value (default: the
    default's type); ``none``: what ``0`` on the command line means (``None`` here);
    ``shown``: the default as the help states it; ``repeat``: the flag may be given
    several times, each adding to a tuple."""
    meta = {"help": help, "check": check, "flag": flag, "kind": kind, "none": none}
    return meta | {"choices": choices, "metavar": metavar, "shown": shown, "repeat": repeat}


def _as_tuple(config: Any, name: str, parse: Callable[[str], tuple[str, ...]]) -> None:
    """The repeatable field ``name`` of the frozen ``config`` made a tuple: a str given is
    ``parse``d (comma-separated), any other iterable listed."""
    given = getattr(config, name)
    if given is not None and not isinstance(given, tuple):
        object.__setattr__(config, name, parse(given) if isinstance(given, str) else tuple(given))


def _header_name(value: Any, where: str) -> str | None:
    """A header name: letters, digits and dashes."""
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a header name (str), got {type(value).__name__}")
    if not value or not all(c.isascii() and (c.isalnum() or c == "-") for c in value):
        return "must be a header name (letters, digits, -)"
    return None


def _check_fields(config: Any) -> None:
    """Run each field's check; one ``ValueError`` names every bad field."""
    where = type(config).__name__
    problems = []
    for f in dataclasses.fields(config):
        check = f.metadata.get("check")
        value = getattr(config, f.name)
        if value is None and (f.default is None or f.metadata.get("none")):
            continue  # an optional value left out
        expected = _NESTED.get(f.name, bool if isinstance(f.default, bool) else None)
        if expected is not None and not isinstance(value, expected):
            raise TypeError(
                f"{where}: {f.name} must be a {expected.__name__}, got {type(value).__name__}: {value!r}"
            )
        rule = check(value, f"{where}: {f.name}") if check is not None else None
        if rule is not None:
            problems.append(f"{where}: {f.name} {rule}" + ("" if ", got" in rule else f", got {value!r}"))
    if problems:
        raise ValueError("; ".join(problems))


@dataclass(frozen=True, kw_only=True)
class PacingConfig:
    """How the proxy's default pipeline paces each stream: a ``Pacer`` with these options
    (its defaults), then packets of at most ``max_bytes`` (``None``: no packets)."""

    cps: float = field(
        default=CPS, metadata=about("pacing rate in characters per second", check=_above(0, strict=True))
    )
    unit: str | re.Pattern[str] = field(
        default="grapheme",
        metadata=about(
            "what the pacer sends at a time: grapheme (the evenest flow), word (a word per event, "
            "about a fifth of the events), line, sentence, chunk (as the upstream sent it), or "
            f"{PATTERN}PATTERN (a unit ends after each match of the regular expression)",
            check=_unit,
            kind=str,
        ),
    )
    max_lag: float = field(
        default=MAX_LAG,
        metadata=about(
            "longest a character waits in the pacer, in seconds",
            check=_above(0, strict=True, suffix=" seconds"),
        ),
    )
    sentence_pause: float = field(
        default=SENTENCE_PAUSE,
        metadata=about("seconds of pause after a sentence", check=_above(0, suffix=" seconds")),
    )
    clause_pause: float = field(
        default=CLAUSE_PAUSE,
        metadata=about("seconds of pause after a clause", check=_above(0, suffix=" seconds")),
    )
    max_bytes: int | None = field(
        default=None,
        metadata=about(
            "cut the paced text into packets of at most this many UTF-8 bytes",
            check=_above(1, integer=True, suffix=" (bytes)"),
            kind=int,
            none="no packets",
        ),
    )
    tick: float = field(
        default=TICK,
        metadata=about(
            "seconds within which the units due go out in one event-loop wake-up (in the proxy, "
            "every stream's: its one timer wakes on multiples of it); the default is finer than a "
            "display's frame: a shorter tick costs the proxy more wake-ups and events per stream, "
            "a longer one blurs the pauses at sentence ends (a pause shorter than it is none)",
            check=_above(0, suffix=" seconds"),
        ),
    )

    def __post_init__(self) -> None:
        _check_fields(self)

    def pipeline(self) -> Callable[[], Stage]:
        """What makes each stream's pipeline: the ``Pacer``, then the ``Packetizer`` if any."""
        from ._pacing import Pacer
        from ._packets import Packetizer

        unit: Any = self.unit
        if isinstance(unit, str) and unit.startswith(PATTERN):
            unit = re.compile(unit[len(PATTERN) :])
        cps, max_lag, max_bytes, tick = self.cps, self.max_lag, self.max_bytes, self.tick
        pauses = (self.sentence_pause, self.clause_pause)

        def make() -> Stage:
            sentence, clause = pauses
            stage: Stage = Pacer(
                cps, unit=unit, max_lag=max_lag, sentence_pause=sentence, clause_pause=clause, tick=tick
            )
            if max_bytes is not None:
                stage = stage | Packetizer(max_bytes=max_bytes, min_bytes=1)
            return stage

        make()  # a bad option fails here, not in every stream
        return make


@dataclass(frozen=True, kw_only=True)
class StreamConfig:
    """How a paced stream is written to its client."""

    heartbeat: float | None = field(
        default=HEARTBEAT,
        metadata=about(
            "seconds of silence before a keep-alive comment", check=_optional_seconds, none="none"
        ),
    )
    send_timeout: float | None = field(
        default=SEND_TIMEOUT,
        metadata=about(
            "seconds a client may leave a write unread before it is dropped",
            check=_optional_seconds,
            none="no limit",
        ),
    )
    compress: bool = field(
        default=True,
        metadata=about(
            "never compress paced streams (default: gzip, deflate, br or zstd when the client asks, "
            "each event flushed on its own)",
            flag="no-compress",
        ),
    )

    def __post_init__(self) -> None:
        _check_fields(self)


def _wait(what: str, name: str) -> dict[str, Any]:
    return about(what, check=_optional_seconds, flag=f"{name}-timeout", none="no limit")


@dataclass(frozen=True)
class ProxyTimeouts:
    """How long the proxy waits on the upstream, in seconds (``None``: no limit).

    ``connect``: to open a connection. ``first_byte``: from sending the request to the
    response headers (for a non-streaming completion that is the whole generation).
    ``idle``: the longest the upstream may send nothing once it has answered. ``total``:
    the whole exchange, headers to last byte.
    """

    connect: float | None = field(
        default=10.0, metadata=_wait("seconds to wait to connect to the upstream", "connect")
    )
    first_byte: float | None = field(
        default=600.0, metadata=_wait("seconds to wait for the upstream's response headers", "first-byte")
    )
    idle: float | None = field(
        default=300.0, metadata=_wait("seconds the upstream may send nothing once it has answered", "idle")
    )
    total: float | None = field(
        default=3600.0, metadata=_wait("seconds one whole upstream exchange may take", "total")
    )

    def __post_init__(self) -> None:
        _check_fields(self)


#: How a route goes on when its upstream fails mid-answer (``ContinuationConfig``).
CONTINUATION: Final = ("continue", "regenerate", "error")


def _policy(api: str, default: str, choices: tuple[str, ...] = CONTINUATION) -> Any:
    return field(
        default=default,
        metadata=about(
            f"what a {api} stream does when its upstream fails mid-answer: "
            + ", ".join(
                {
                    "continue": "continue (ask again with the text produced, to go on from it)",
                    "regenerate": "regenerate (ask again as the client asked; splice only if the new "
                    "answer begins with exactly the text produced)",
                    "error": "error (end with the error)",
                }[c]
                for c in choices
            ),
            check=_one_of(choices),
            choices=choices,
        ),
    )


@dataclass(frozen=True, kw_only=True)
class ContinuationConfig:
    """How each API's paced streams go on after their upstream failed mid-answer (a cut,
    an idle timeout, an error event, an end before the end event): continued from
    exactly the text produced (the partial answer as the final assistant message with
    ``continue_final_message``, as a prefill, appended to the prompt), regenerated and
    spliced only where the new answer begins with that text, or ended with the error.
    OpenAI's hosted Chat Completions cannot continue (``regenerate`` or ``error``
    there); the Responses API neither."""

    continue_chat: str = _policy("chat completions", "continue")
    continue_completions: str = _policy("completions", "continue")
    continue_messages: str = _policy("Anthropic messages", "continue")
    continue_responses: str = _policy("responses", "error", ("regenerate", "error"))
    continue_attempts: int = field(
        default=3,
        metadata=about(
            "continuation requests one stream may send (its retry budget; failed ones count)",
            check=_above(1, integer=True),
        ),
    )

    def __post_init__(self) -> None:
        _check_fields(self)

    def policy(self, api: str) -> str:
        """The policy of the format named ``api`` (``pacer.formats``' transcript names)."""
        return {
            "chat.completions": self.continue_chat,
            "completions": self.continue_completions,
            "messages": self.continue_messages,
            "responses": self.continue_responses,
        }.get(api, "error")


@dataclass(frozen=True, kw_only=True)
class UpstreamsConfig:
    """How the proxy spreads requests over several upstreams and keeps away from the
    failing ones (``pacer.upstreams``, ``pacer.failover``).

    A request whose upstream fails before the first byte (no connection, a 5xx, a 429, no
    response headers within the first-byte timeout) goes to the next upstream, up to
    ``retries`` more; a 4xx other than 429 is the client's, answered as it came. Each
    upstream has a circuit breaker: ``breaker_failures`` failures in a row (an
    unreachable upstream at once) take it out of rotation for ``breaker_backoff``
    seconds, doubled each time it fails again, up to ``breaker_max_backoff``; a 429 for
    its ``Retry-After``. Every ``probe_interval`` seconds each upstream in rotation, and
    each whose backoff has passed, is asked ``GET probe_path`` (any status below 500 is
    an answer): a failure counts as one, an answer closes the breaker.
    """

    retries: int = field(
        default=2,
        metadata=about(
            "further upstreams a request may go to when its upstream fails before the first byte "
            "(connect error, 5xx, 429, first-byte timeout; never another 4xx)",
            check=_above(0, integer=True),
        ),
    )
    balance: str = field(
        default="round_robin",
        metadata=about(
            "how a request's upstream is chosen among the healthy ones: in turn (round_robin) or the "
            "one with the fewest open requests (least_streams)",
            check=_one_of(BALANCE),
            choices=BALANCE,
        ),
    )
    probe_interval: float | None = field(
        default=5.0,
        metadata=about(
            "seconds between active health probes of each upstream (with several)",
            check=_optional_seconds,
            none="no probes: a request is the trial of an upstream whose backoff has passed",
        ),
    )
    probe_path: str = field(
        default="/v1/models",
        metadata=about(
            "what the health probe asks each upstream for (GET, under its base URL; any status below 500 "
            "is healthy): /v1/models, or /health for vLLM",
            check=_probe_path,
        ),
    )
    breaker_failures: int = field(
        default=3,
        metadata=about(
            "failures in a row that take an upstream out of rotation (one when it cannot be reached)",
            check=_above(1, integer=True),
        ),
    )
    breaker_backoff: float = field(
        default=1.0,
        metadata=about(
            "seconds an upstream first stays out of rotation, doubled each time it fails again",
            check=_above(0, strict=True, suffix=" seconds"),
        ),
    )
    breaker_max_backoff: float = field(
        default=60.0,
        metadata=about(
            "most seconds an upstream stays out of rotation before it is tried again",
            check=_above(0, strict=True, suffix=" seconds"),
        ),
    )

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.breaker_max_backoff < self.breaker_backoff:
            raise ValueError(
                "UpstreamsConfig: breaker_max_backoff must be >= breaker_backoff, "
                f"got {self.breaker_max_backoff} < {self.breaker_backoff}"
            )


@dataclass(frozen=True, kw_only=True)
class ProxyConfig:
    """Everything ``create_proxy`` builds a proxy from but its upstream.

    ``pipeline`` makes each stream's pipeline (default: ``pacing.pipeline()``). With
    ``guard`` (a check as ``pacer.Guard`` takes, or the ``MODULE:FUNCTION`` that names
    one) every paced sentence is checked before it is sent, on a ``pacer.CheckPool`` of
    ``check_workers`` threads, at most ``checks_per_stream`` at once per stream. Unless ``resume`` is
    ``"never"`` every paced stream is kept in a stream log (in this process, or in
    ``redis``) for ``retention`` seconds after its last event; those ``resume`` names go
    on with no client reading them for ``orphan_timeout`` seconds. ``cors_origin``: the
    browser origins allowed to call the proxy (``"*"``: any).
    """

    pacing: PacingConfig = field(default_factory=PacingConfig)
    pipeline: Callable[[], Stage] | None = field(default=None, metadata={"option": False})
    stream: StreamConfig = field(default_factory=StreamConfig)
    timeouts: ProxyTimeouts = field(default_factory=ProxyTimeouts)
    continuation: ContinuationConfig = field(default_factory=ContinuationConfig)
    upstreams: UpstreamsConfig = field(default_factory=UpstreamsConfig)
    max_body: int = field(
        default=32 << 20,
        metadata=about(
            "largest request body in bytes; larger ones get a 413",
            check=_above(0, integer=True, suffix=" (bytes)"),
            shown="33554432, 32 MiB",
        ),
    )
    max_line: int = field(
        default=MAX_LINE,
        metadata=about(
            "longest SSE line the upstream may send, in bytes", check=_above(0, strict=True, integer=True)
        ),
    )
    guard: str | Callable[..., Any] | None = field(
        default=None,
        metadata=about(
            "check every paced sentence with this function (sync or async, given the text; True passes, "
            "False blocks, a str replaces) before it is sent; a blocked one ends the stream with "
            'finish_reason "content_filter"',
            check=_spec,
            kind=str,
            metavar="MODULE:FUNCTION",
        ),
    )
    check_workers: int = field(
        default=WORKERS,
        metadata=about(
            "guard checks run at once, on worker threads of their own (an async check waits in its "
            "event loop); streams with checks waiting take turns, and a check's timeout runs from "
            "when it starts",
            check=_above(1, integer=True),
        ),
    )
    checks_per_stream: int = field(
        default=PER_STREAM,
        metadata=about(
            "guard checks one stream may have running at once; the rest wait their turn",
            check=_above(1, integer=True),
        ),
    )
    redis: str | None = field(
        default=None,
        metadata=about(
            "keep resumable streams in this Redis (Redis Streams), so that every proxy sharing it serves "
            "/v1/streams/{id} for every stream (default: in this process's memory)",
            check=_redis,
            kind=str,
            metavar="redis://HOST:PORT/DB",
        ),
    )
    orphan_timeout: float = field(
        default=ORPHAN_TIMEOUT,
        metadata=about(
            "seconds a paced stream keeps generating with no client reading it, for one to resume "
            "(0: stop when the last reader leaves)",
            check=_above(0, suffix=" seconds"),
        ),
    )
    max_pause: float = field(
        default=MAX_PAUSE,
        metadata=about(
            "seconds a reader may keep a paused stream paused (POST /v1/streams/{id}/control); then its "
            "generation stops, as an orphaned stream's does",
            check=_above(0, strict=True, suffix=" seconds"),
        ),
    )
    remember_pace: float | None = field(
        default=None,
        metadata=about(
            "remember the last rate each user set (POST /v1/streams/{id}/control) for this many seconds, "
            "in the stream log's store, and start their next streams at it unless the request sends "
            "X-Pacer-Rate (a user: user-header's value, or else a keyed hash of their credential)",
            check=_above(0, strict=True, suffix=" seconds"),
            none="off",
            kind=float,
        ),
    )
    user_header: str | None = field(
        default=None,
        metadata=about(
            "the request header that names the user, set by a gateway you trust, for remember-pace "
            "(default: the user is their Authorization or x-api-key credential)",
            check=_header_name,
            kind=str,
            metavar="HEADER",
        ),
    )
    retention: float = field(
        default=RETENTION,
        metadata=about(
            "seconds a stream's events are kept after its last one, for resuming",
            check=_above(0, strict=True, suffix=" seconds"),
        ),
    )
    resume: str = field(
        default="request",
        metadata=about(
            "which paced streams keep generating after their client leaves, for up to orphan-timeout "
            "seconds, to be resumed: those whose request sent X-Pacer-Resumable: 1 (request; the others "
            "stop at once), every one (always), or none (never: no stream log, no stream ids, no "
            "/v1/streams/{id})",
            check=_one_of(RESUME),
            choices=RESUME,
        ),
    )
    replays_per_stream: int = field(
        default=10,
        metadata=about(
            "resumes and cancels one stream may have a minute; more get a 429 (0: no limit)",
            check=_above(0, integer=True),
        ),
    )
    replays_per_client: int = field(
        default=60,
        metadata=about(
            "resumes and cancels one client (its Authorization or x-api-key value, or else its address) "
            "may ask for a minute; more get a 429 (0: no limit)",
            check=_above(0, integer=True),
        ),
    )
    gc_threshold: int = field(
        default=GC_THRESHOLD,
        metadata=about(
            "once the proxy has started, freeze what start-up made (gc.freeze: never scanned again) and "
            "collect the youngest generation every this many allocations (Python's default is 700: at "
            "hundreds of streams its collections take a sixth of the CPU and hold every stream back); "
            "0 leaves the collector as it is",
            check=_above(0, integer=True),
        ),
    )
    streams_per_client: int = field(
        default=STREAMS_PER_CLIENT,
        metadata=about(
            "streams one client (its Authorization or x-api-key value, or else its address) may have "
            "open at once: requests to the completion routes, streaming or not, and stream resumes; a "
            "stream whose client left counts until its generation ends; more get a 429 (0: no limit). "
            "A service that sends all its users' requests with one key needs a higher value",
            check=_above(0, integer=True),
        ),
    )
    cors_origin: tuple[str, ...] | None = field(
        default=None,
        metadata=about(
            "browser origins allowed to call the proxy (CORS: preflights answered here, "
            "Access-Control-Allow-Origin on responses), repeatable or comma-separated, * for any "
            "(default: none)",
            check=_origins_rule,
            kind=origins,
            metavar="ORIGIN",
            repeat=True,
        ),
    )

    def __post_init__(self) -> None:
        _as_tuple(self, "cors_origin", origins)
        _check_fields(self)
        if self.redis is not None and self.resume == "never":
            raise ValueError("ProxyConfig: redis is for resumable streams; drop it or resume='never'")

    def pipeline_factory(self) -> Callable[[], Stage]:
        """What makes each stream's pipeline: ``pipeline``, or else ``pacing``'s."""
        return self.pipeline if self.pipeline is not None else self.pacing.pipeline()


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """A proxy process (``pacer proxy``): its upstream, address, processes, client
    connections (header timeout, limit, trusted forwarders), shutdown grace and logs."""

    upstream: tuple[str, ...] = field(
        metadata=about(
            "base URL of an upstream server, with or without /v1: http://127.0.0.1:8000/v1; repeatable, "
            "or several separated by commas or spaces, each URL or NAME=URL (the name metrics and logs "
            "show; default: its index from 0)",
            check=_upstreams,
            kind=upstream_list,
            metavar="URL",
            repeat=True,
        )
    )
    host: str = field(default="127.0.0.1", metadata=about("address to listen on"))
    port: int = field(default=8100, metadata=about("port to listen on", check=_port))
    workers: int = field(
        default=1,
        metadata=about(
            "processes serving the port, for a host with several cores", check=_above(1, integer=True)
        ),
    )
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    header_timeout: float = field(
        default=HEADER_TIMEOUT,
        metadata=about(
            "seconds a client connection has to send its whole request head (and, kept alive, the "
            "next one); then it is closed, with a 408 if it had begun one",
            check=_above(0, strict=True, suffix=" seconds"),
        ),
    )
    connection_limit: int = field(
        default=CONNECTION_LIMIT,
        metadata=about(
            "client connections one process keeps open; a request on a connection past it gets a 503 "
            "at once (GET /healthz is still answered) and the connection is closed",
            check=_above(1, integer=True),
        ),
    )
    forwarded_allow_ips: tuple[str, ...] | None = field(
        default=None,
        metadata=about(
            "addresses of the reverse proxies in front whose X-Forwarded-For and X-Forwarded-Proto are "
            "believed (the client's address then comes from them: per-client limits, logs), "
            "repeatable or comma-separated, * for any (default: none; the peer's address is the client's)",
            check=_addresses,
            kind=addresses,
            metavar="ADDRESS",
            repeat=True,
        ),
    )
    shutdown_grace: float = field(
        default=SHUTDOWN_GRACE,
        metadata=about(
            "seconds running streams may go on after SIGTERM (no new connection is accepted "
            "meanwhile); then each ends with the API's error event (type server_shutdown) and the "
            "process exits",
            check=_above(0, suffix=" seconds"),
        ),
    )
    log_level: str = field(default="info", metadata=about("log level", check=_one_of(LEVELS), choices=LEVELS))
    log_format: str = field(
        default="plain",
        metadata=about(
            "plain lines, or JSON lines (one a stream end, with its figures)",
            check=_one_of(FORMATS),
            choices=FORMATS,
        ),
    )

    def __post_init__(self) -> None:
        if isinstance(self.upstream, str):
            object.__setattr__(self, "upstream", upstream_list(self.upstream))
        elif isinstance(self.upstream, list):
            object.__setattr__(self, "upstream", tuple(self.upstream))
        _as_tuple(self, "forwarded_allow_ips", addresses)
        _check_fields(self)
        proxy = self.proxy
        if self.workers > 1 and proxy.resume != "never" and proxy.redis is None:
            raise ValueError(
                "ServerConfig: workers > 1 with resumable streams needs redis: the in-memory stream log "
                "lives in one process, so a resume or cancel that lands on another worker would find "
                "nothing (404). Give --redis redis://HOST:PORT/DB, or --resume never"
            )


# -- the fields as options: the command line, environment variables, JSON values ------------


@dataclass(frozen=True)
class Option:
    """One leaf field of a configuration, as a command-line option: ``path`` is the field
    names from the top configuration down, ``name`` the flag without its dashes,
    ``owner`` the class that declares the field."""

    path: tuple[str, ...]
    field: dataclasses.Field[Any]
    name: str
    owner: type[Any]

    @property
    def flag(self) -> str:
        return "--" + self.name

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def variable(self) -> str:
        """The environment variable that sets it: ``PACER_`` and the flag in capitals."""
        return "PACER_" + self.dest.upper()

    @property
    def switch(self) -> bool:
        """A ``--no-...`` flag: given, it turns the (true) default off."""
        return self.field.default is True

    @property
    def required(self) -> bool:
        return self.field.default is dataclasses.MISSING

    def meta(self, key: str) -> Any:
        return self.field.metadata.get(key)

    @property
    def kind(self) -> Callable[[str], Any]:
        """How a command-line string becomes the value: ``float("2.5")``."""
        return self.meta("kind") or type(self.field.default)  # type: ignore[no-any-return]

    def value(self, given: Any) -> Any:
        """The field's value for what the command line gave: ``0`` is ``None`` where
        ``none`` says so; a ``--no-...`` switch given is ``False``."""
        if self.switch:
            return not given
        return None if self.meta("none") and given == 0 else given

    def problem(self, value: Any) -> str | None:
        """The rule ``value`` (the field's) breaks, or ``None``."""
        check = self.meta("check")
        try:
            rule = check(value, self.flag) if check is not None and value is not None else None
        except TypeError as exc:
            return str(exc)
        if rule is not None and self.meta("none"):
            return f"must be >= 0 (0: {self.meta('none')})"
        return rule

    def default_text(self) -> str:
        """The default as the command line states it (``""``: none to state)."""
        default = self.field.default
        if self.switch:
            return "off"
        if self.required or (default is None and not self.meta("none")):
            return ""
        shown = self.meta("shown") or (0 if default is None else default)
        shown = f"{shown:g}" if isinstance(shown, float) else str(shown)
        return shown + (f"; 0: {self.meta('none')}" if self.meta("none") else "")

    def help(self) -> str:
        """The help text, with the default where there is one to state."""
        default = self.default_text()
        return str(self.meta("help")) + (f" (default: {default})" if default and not self.switch else "")


def options(cls: type[Any], path: tuple[str, ...] = ()) -> Iterator[Option]:
    """Every leaf field of the configuration class ``cls``, depth first, as an ``Option``."""
    for f in dataclasses.fields(cls):
        if f.metadata.get("option") is False:
            continue
        if f.name in _NESTED:
            yield from options(_NESTED[f.name], (*path, f.name))
            continue
        yield Option((*path, f.name), f, f.metadata.get("flag") or f.name.replace("_", "-"), cls)


_NESTED: dict[str, type[Any]] = {
    "pacing": PacingConfig,
    "stream": StreamConfig,
    "timeouts": ProxyTimeouts,
    "continuation": ContinuationConfig,
    "upstreams": UpstreamsConfig,
    "proxy": ProxyConfig,
}


def with_options(base: Any, values: Mapping[str, Any]) -> Any:
    """``base`` (a configuration, or its class for the defaults) with ``values`` set: each
    key is a field's name at any depth (``cps``, ``connect``, ``timeouts``); an unknown
    key is a ``TypeError``."""
    cls = base if isinstance(base, type) else type(base)
    left = dict(values)
    built = _with(cls, None if isinstance(base, type) else base, left)
    if left:
        raise TypeError(f"{cls.__name__}: unknown options {sorted(left)}")
    return built


def _with(cls: type[Any], current: Any, left: dict[str, Any]) -> Any:
    given: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in left:
            given[f.name] = left.pop(f.name)
        elif f.name in _NESTED:
            given[f.name] = _with(_NESTED[f.name], getattr(current, f.name, None), left)
    return cls(**given) if current is None else dataclasses.replace(current, **given)


def to_values(config: Any) -> dict[str, Any]:
    """A configuration's leaf values by field name, as plain JSON values (a pattern unit
    as ``re:PATTERN``); ``with_options(type(config), values)`` gives it back."""
    values: dict[str, Any] = {}
    for o in options(type(config)):
        value = config
        for name in o.path:
            value = getattr(value, name)
        if isinstance(value, re.Pattern):
            value = PATTERN + value.pattern
        values[o.field.name] = value
    return values
