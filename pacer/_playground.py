"""``pacer serve``: a local page that shows one model stream three ways, side by side.

The page (``pacer/data/playground.html``) opens one Server-Sent Events stream from
``GET /stream`` and fills three panes as events arrive: the raw tokens as the model
produced them, the paced text (``Detokenizer | Pacer``), and sentences as the
sentence splitter commits them (``Detokenizer | SentenceSplitter``). Rate, unit and
the model's speed are controls on the page, passed as query parameters.

The three pipelines are driven by one loop over the same replayed token stream: each
token is ingested by all three at its arrival time, and the loop sleeps until the next
arrival or the earliest pipeline deadline. That is the sans-I/O design at work: no
task per pipeline, one clock. Cost: O(1) per token and per emitted chunk, plus the
stages' own.

Each event is ``event: raw|paced|sentence`` with JSON data ``{"text", "t", "lag",
"boundary"}`` (``t`` seconds since the stream started), then ``event: end`` with the
stream's metrics, then ``data: [DONE]``. Needs the ``server`` and ``demo`` extras.

Stop and refine: the page's Stop button closes the stream, and Send posts the request
that would refine the question (``PacerStream.followUp`` of ``pacer-stream.js``, served at
``/pacer-stream.js``): a Chat Completions body whose assistant turn is exactly the paced
text shown, then the reader's correction. ``POST /refine`` stands in for the model: it
answers with the two turns the request carried (``refine_routes``).

The reader's controls act on the paced pane of a running stream: its first event,
``event: session``, names it (``{"id"}``), and ``POST /control/{id}`` with
``{"action": "pause" | "resume" | "show_all" | "rate", "cps": N}`` (JSON, as the
stream routes take it) is applied at the paced pipeline's next decision; the answer
is its state (``{"id", "paused", "show_all", "cps", "shown_chars"}``). The page has
pause/resume and show-all buttons and a rate slider.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from . import traces
from ._control import Control, ControlError, Mailbox
from ._core import Chunk, Pipeline
from ._detokenize import Detokenizer
from ._driver import Driver, Need
from ._errors import INVALID_REQUEST, NOT_FOUND
from ._pacing import CPS, MAX_LAG, UNITS, Pacer
from ._run import Waiter
from ._sentences import SentenceSplitter
from .clock import Clock, MonotonicClock
from .config import HEARTBEAT
from .resumable import javascript
from .server import EventStreamResponse, json_error
from .sse import DONE, encode
from .streamroutes import control_body

__all__ = ["create_playground", "paced_view", "refine_routes", "sentence_view", "stream_views"]

_UNITS = UNITS
# Query parameter: (type, default, lowest, highest).
_LIMITS: dict[str, tuple[type, float, float, float]] = {
    "cps": (float, CPS, 1.0, 5000.0),
    "tps": (float, 30.0, 1.0, 5000.0),
    "max_lag": (float, MAX_LAG, 0.05, 10.0),
    "seed": (int, 0, 0, 2**31),
    "tokens": (int, 0, 0, 1_000_000),
}


def _page() -> str:
    return (resources.files("pacer") / "data" / "playground.html").read_text(encoding="utf-8")


def _frame(view: str, chunk: Chunk, start: float) -> bytes:
    emitted = chunk.emitted if chunk.emitted is not None else chunk.arrival
    body = {
        "text": chunk.text,
        "t": round(emitted - start, 4),
        "lag": round(emitted - chunk.arrival, 4),
        "boundary": chunk.boundary.name.lower(),
    }
    return encode(json.dumps(body, ensure_ascii=False), event=view)


async def stream_views(
    trace: Sequence[tuple[float, Any]],
    views: dict[str, Pipeline],
    *,
    clock: Clock | None = None,
    controls: Mapping[str, Mailbox] | None = None,
) -> AsyncIterator[bytes]:
    """Replay ``trace`` (seconds, token id) into every pipeline of ``views`` at once and
    yield one SSE frame per output chunk, named after its view; then ``event: end`` with
    each view's metrics and ``data: [DONE]``. Every view gets the same items at the
    same times, so their texts differ only in when and how they are cut. One loop
    around a driver (``pacer._driver.Driver``) per view. ``controls``: a view's
    ``Mailbox`` by name, whose controls apply at the loop's next turn (a control cuts
    its sleep short; a view paused after the trace's end keeps the stream open)."""
    clock = clock or MonotonicClock()
    start = clock.now()
    drivers = [(name, Driver(pipe)) for name, pipe in views.items()]
    boxes = dict(controls or {})
    waiter = Waiter()
    for box in boxes.values():
        box.waker = waiter.set
    i, n = 0, len(trace)
    while True:
        now = clock.now()
        for frame in _controlled(drivers, boxes, now, start):
            yield frame
        while i < n and start + trace[i][0] <= now:
            item = trace[i][1]
            for name, driver in drivers:
                for chunk in driver.item(item, now):
                    yield _frame(name, chunk, start)
            i += 1
        for name, driver in drivers:
            if i == n and driver.reading:
                for chunk in driver.end(now):
                    yield _frame(name, chunk, start)
        frames, wake = _wake_due(drivers, now, start, start + trace[i][0] if i < n else None)
        for frame in frames:
            yield frame
        if not await _rest(clock, waiter if boxes else None, wake, drivers, now):
            break
    yield encode(json.dumps(_summary(views)), event="end")
    yield DONE


async def _rest(
    clock: Clock, waiter: Waiter | None, wake: float | None, drivers: list[tuple[str, Driver]], now: float
) -> bool:
    """Sleep until ``wake`` (a control cuts it short); with nothing to wake for, wait for a
    control while a view is paused after the end. ``False``: the stream is over."""
    if wake is None:
        if waiter is None or not any(driver.next(now) is Need.WAIT for _, driver in drivers):
            return False
        await waiter.wait()  # only a control goes on
    elif waiter is None:
        await clock.asleep_until(wake)
    else:
        await waiter.sleep_until(clock, wake)
    return True


def _controlled(
    drivers: list[tuple[str, Driver]], boxes: Mapping[str, Mailbox], now: float, start: float
) -> list[bytes]:
    """The controls sent to the views since the last turn, applied: the frames they release."""
    frames: list[bytes] = []
    for name, driver in drivers:
        box = boxes.get(name)
        for control in box.take() if box is not None else []:
            frames += [_frame(name, chunk, start) for chunk in driver.control(control, now)]
    return frames


def _wake_due(
    drivers: list[tuple[str, Driver]], now: float, start: float, wake: float | None
) -> tuple[list[bytes], float | None]:
    """Wake every view due by ``now``: its frames, and the earliest of ``wake`` and when
    the views must be woken next."""
    frames: list[bytes] = []
    for name, driver in drivers:
        if driver.next(now) is Need.DONE or (until := driver.until) is None:
            continue
        if until <= now:
            frames += [_frame(name, chunk, start) for chunk in driver.wake(now)]
            if driver.next(now) is Need.DONE or (until := driver.until) is None:
                continue
        if wake is None or until < wake:
            wake = until
    return frames, wake


def _summary(views: dict[str, Pipeline]) -> dict[str, dict[str, float | int]]:
    """Each view's numbers, for the ``end`` event."""
    return {
        name: {
            "chunks": pipe.metrics.chunks_out,
            "chars": pipe.metrics.chars_out,
            "lag_p99": round(pipe.metrics.lag(99) or 0.0, 4),
            "stalls": pipe.metrics.stalls,
        }
        for name, pipe in views.items()
    }


def _parse(request: Request) -> dict[str, Any]:
    """The stream's options from the query string, each checked; ValueError says which."""
    options: dict[str, Any] = {}
    for name, (kind, default, low, high) in _LIMITS.items():
        raw = request.query_params.get(name)
        try:
            value = kind(raw) if raw is not None else kind(default)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"{name} must be between {low:g} and {high:g}, got {raw}")
        options[name] = value
    unit = request.query_params.get("unit", "grapheme")
    if unit not in _UNITS:
        raise ValueError(f"unit must be one of {', '.join(_UNITS)}, got {unit!r}")
    options["unit"] = unit
    return options


def paced_view(
    tokenizer: Any, cps: float = CPS, unit: str = "grapheme", max_lag: float = MAX_LAG
) -> Pipeline:
    """The paced pane: a ``Pacer`` that finds sentence and clause ends itself (no
    splitter holding text before it), so its lag bound counts from each token's arrival."""
    return Pipeline(Detokenizer(tokenizer), Pacer(cps=cps, unit=unit, max_lag=max_lag))  # type: ignore[arg-type]


def sentence_view(tokenizer: Any, tps: float) -> Pipeline:
    """The sentence pane: each sentence as soon as the text after it proves it.

    Its hold timer is longer than any silence of the replayed stream (a burst of up
    to 12 tokens at 1.5 times their average gap, then a stall of up to 1.2 s), so
    every cut is the splitter's decision, never a timeout inside a URL or a Chinese
    sentence; the timer is there for a model that truly stalls.
    """
    return Pipeline(Detokenizer(tokenizer), SentenceSplitter(max_hold=18.0 / tps + 1.5))


def create_playground(
    tokenizer: Any | None = None, text: str | None = None, *, heartbeat: float = HEARTBEAT
) -> Starlette:
    """The ``pacer serve`` app: ``GET /`` is the page, ``GET /stream`` its event stream,
    and the page's stop-and-refine routes (``refine_routes``).

    ``tokenizer`` defaults to mistral-common's tekken file loaded as a tiktoken
    ``Encoding`` and ``text`` to the demo text shipped in the package; the stream
    replays that text's tokens with bursty, model-like timing (``traces.bursty``).
    """
    if tokenizer is None:
        from .tokenizers import load_tekken

        tokenizer = load_tekken()
    if text is None:
        text = (resources.files("pacer") / "data" / "demo.md").read_text(encoding="utf-8")
    ids: list[int] = list(tokenizer.encode(text))
    page = _page()
    sessions: dict[str, Mailbox] = {}  # running streams' paced panes, by session id

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def stream(request: Request) -> Response:
        try:
            o = _parse(request)
        except ValueError as exc:
            return json_error(400, str(exc), INVALID_REQUEST)
        chosen = ids[: o["tokens"]] if o["tokens"] else ids
        trace = traces.bursty(chosen, per_second=o["tps"], seed=o["seed"])
        views = {
            "raw": Pipeline(Detokenizer(tokenizer)),
            "paced": paced_view(tokenizer, o["cps"], o["unit"], o["max_lag"]),
            "sentence": sentence_view(tokenizer, o["tps"]),
        }
        return EventStreamResponse(_session(sessions, trace, views), heartbeat=heartbeat)

    async def control(request: Request) -> Response:
        body = await control_body(request)
        if isinstance(body, Response):
            return body
        try:
            parsed = Control.parse(body)
        except ControlError as exc:
            return json_error(400, str(exc), INVALID_REQUEST)
        session = request.path_params["session"]
        box = sessions.get(session)
        if box is None:
            return json_error(404, f"no running stream {session!r}", NOT_FOUND)
        box.send(parsed)
        return JSONResponse({"id": session, **box.state()})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/stream", stream),
            Route("/control/{session}", control, methods=["POST"]),
            *refine_routes(),
        ]
    )


async def _session(
    sessions: dict[str, Mailbox], trace: Sequence[tuple[float, Any]], views: dict[str, Pipeline]
) -> AsyncIterator[bytes]:
    """The stream of one page, named by its first event (``session``) while it runs, so that
    ``POST /control/{id}`` reaches its paced pane."""
    session = secrets.token_hex(8)
    box = sessions[session] = Mailbox()
    pacer = views["paced"].stages[-1]
    metrics = views["paced"].metrics
    box.report = lambda: {"cps": getattr(pacer, "rate", None), "shown_chars": metrics.chars_out}
    try:
        yield encode(json.dumps({"id": session}), event="session")
        async for frame in stream_views(trace, views, controls={"paced": box}):
            yield frame
    finally:
        del sessions[session]


def refine_routes() -> list[Route]:
    """``POST /refine``, where the page sends its follow-up request after a stop (a Chat
    Completions body ending with the assistant's shown turn and the reader's correction),
    answered with ``{"shown", "correction", "request"}``: what the next request carried.
    ``GET /pacer-stream.js`` is the browser client whose ``PacerStream.followUp`` built it."""

    async def refine(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            shown, correction = _refined_turns(body)
        except ValueError as exc:
            return json_error(400, f"refine: {exc}", INVALID_REQUEST)
        return JSONResponse({"shown": shown, "correction": correction, "request": body})

    async def script(request: Request) -> Response:
        return Response(javascript(), media_type="text/javascript")

    return [Route("/refine", refine, methods=["POST"]), Route("/pacer-stream.js", script)]


def _refined_turns(body: Any) -> tuple[str, str]:
    """The shown text and the correction that end a Chat Completions follow-up."""
    messages = body.get("messages") if isinstance(body, dict) else None
    turns = messages[-2:] if isinstance(messages, list) else []
    roles = [turn.get("role") if isinstance(turn, dict) else None for turn in turns]
    contents = [turn.get("content") if isinstance(turn, dict) else None for turn in turns]
    shown, correction = contents if len(contents) == 2 else (None, None)
    if roles != ["assistant", "user"] or not isinstance(shown, str) or not isinstance(correction, str):
        raise ValueError(
            "the request must end with the assistant's shown turn and the reader's correction "
            "(Chat Completions messages with string content)"
        )
    return shown, correction


def serve(host: str = "127.0.0.1", port: int = 8200) -> None:  # pragma: no cover - runs a server
    """Run the playground with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_playground(), host=host, port=port, log_level="warning")
