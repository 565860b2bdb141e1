"""Serve a paced pipeline over a WebSocket (Starlette), with the reader's controls: stop,
pause, resume, show all and a live rate.

``await serve_websocket(websocket, source, pipeline)`` accepts the connection, runs
``pipeline`` over ``source`` and sends one JSON text message per output chunk::

    {"type": "chunk", "text": "Hello ", "boundary": "word", "arrival": 0.01,
     "emitted": 0.05, "offset": 0}

then ``{"type": "done"}``, or, when a ``Guard`` in the pipeline withheld the rest,
``{"type": "blocked", "reason": ...}`` (never ``done``: the answer is not complete).
The client may send, at any time:

- ``{"type": "stop"}``: the source is closed at once and the reply is
  ``{"type": "stopped", "text": ...}``, exactly the text sent before it (what a
  voice or a chat history should keep);
- ``{"type": "rate", "cps": 80}`` (or ``"wpm": 300``): every ``Pacer`` in the pipeline
  changes pace from its next unit on (and paces again after show all);
- ``{"type": "pause"}``, ``{"type": "resume"}``, ``{"type": "show_all"}``: the text
  waits (the source is still read), goes on (its lag bound counted from the resume),
  or all that was produced goes out at once and the rest as it comes
  (``pacer.Control``).

A control is applied at the pacer's next decision; its reply is the state it asked
for: ``{"type": "rate", "cps": 80.0, "paused": false, "show_all": false}`` (``type``
the action).

A message that is not one of these gets ``{"type": "error", "error": {"message",
"type"}}`` and the stream goes on; a source that fails sends an ``error`` message
after everything before it, then the socket closes (code 1011). A client that
disconnects cancels the source; one that stops reading for ``send_timeout`` seconds
is dropped. Returns the text sent (``pacer._shown.ShownText``); how the stream
ended is recorded by the shared client writer (``pacer._writer``).

Needs the ``server`` extra (Starlette; uvicorn serves WebSockets with ``websockets``
or ``wsproto`` installed).
"""

from __future__ import annotations

from . import _server_extra  # noqa: F401  (first: a plain install's missing package, named with its extra)

# isort: split

import json
import logging
from collections.abc import AsyncIterable, Iterable
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ._args import optional_seconds
from ._control import Control, ControlError, Mailbox
from ._core import Chunk, Pipeline, Stage
from ._errors import error_body, error_object
from ._outcome import Outcome
from ._pacing import Pacer
from ._run import AsyncRun
from ._shown import ShownText
from ._writer import ClientWriter
from .clock import Clock
from .config import SEND_TIMEOUT

__all__ = ["serve_websocket"]

log = logging.getLogger("pacer.websocket")


def _chunk_message(chunk: Chunk) -> str:
    return json.dumps(
        {
            "type": "chunk",
            "text": chunk.text,
            "boundary": chunk.boundary.name.lower(),
            "arrival": chunk.arrival,
            "emitted": chunk.emitted,
            "offset": chunk.offset,
        },
        ensure_ascii=False,
    )


def _error(message: str, kind: str) -> str:
    return json.dumps({"type": "error", **error_object(message, kind)})


class _Session:
    """One socket's stream: what was shown, how it went, and the client's commands."""

    def __init__(self, websocket: WebSocket, pipeline: Stage, send_timeout: float | None) -> None:
        self.websocket = websocket
        self.send_timeout = send_timeout
        stages = pipeline.stages if isinstance(pipeline, Pipeline) else (pipeline,)
        self.pacers = [s for s in stages if isinstance(s, Pacer)]
        self.shown = ShownText()
        # The outcome, a client leaving, a send that waited too long.
        self.writer = ClientWriter(heartbeat=None, send_timeout=send_timeout)
        self.stopped = False
        self.controls = Mailbox()  # the run's: applied at its pacers' next decision

    async def send(self, text: str) -> bool:
        """Send one message; ``False`` when the client did not take it within
        ``send_timeout`` seconds (the stream is then dropped: ``SEND_TIMEOUT``)."""
        with anyio.move_on_after(self.send_timeout):
            await self.websocket.send_text(text)
            return True
        self.writer.timed_out()
        return False

    async def command(self, raw: str, scope: anyio.CancelScope) -> None:
        """Act on one client message."""
        try:
            message = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep to parse
            why = "nested too deep" if isinstance(exc, RecursionError) else "not JSON"
            await self.send(_error(f"message is {why}: {raw[:80]!r}", "invalid_message"))
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "stop":
            self.stopped = True
            scope.cancel()
        elif kind in ("rate", "pause", "resume", "show_all"):
            await self._control({**message, "action": kind})
        else:
            shown = raw[:80]
            text = (
                'message must be {"type": "stop"}, {"type": "rate", "cps": N}, {"type": "pause"}, '
                f'{{"type": "resume"}} or {{"type": "show_all"}}, got {shown}'
            )
            await self.send(_error(text, "invalid_message"))

    async def _control(self, message: dict[str, Any]) -> None:
        if not self.pacers:
            await self.send(_error("this stream's pipeline has no Pacer to control", "invalid_message"))
            return
        try:
            control = Control.parse({k: message.get(k) for k in ("action", "cps", "wpm")})
        except ControlError as exc:
            await self.send(_error(str(exc), "invalid_message"))
            return
        self.controls.send(control)
        flow = self.controls.flow
        cps = flow.cps if flow.cps is not None else self.pacers[0].rate
        await self.send(json.dumps({"type": control.action.value, "cps": cps, **flow.as_json()}))


async def serve_websocket(
    websocket: WebSocket,
    source: AsyncIterable[Any] | Iterable[Any],
    pipeline: Stage,
    *,
    clock: Clock | None = None,
    send_timeout: float | None = SEND_TIMEOUT,
) -> str:
    """Accept ``websocket`` and stream ``pipeline`` over ``source`` on it (module docstring).

    ``send_timeout``: seconds one message may wait on a client that does not read
    (``None``: no limit); then the stream is dropped and the socket closed (1011)."""
    await websocket.accept()
    session = _Session(websocket, pipeline, optional_seconds(send_timeout, "serve_websocket: send_timeout"))
    run: AsyncRun[Chunk] = AsyncRun(pipeline, source, clock=clock, chunks=True, controls=session.controls)
    failure: BaseException | None = None
    async with anyio.create_task_group() as tg:

        async def listen() -> None:
            try:
                while True:
                    await session.command(await websocket.receive_text(), tg.cancel_scope)
            except (WebSocketDisconnect, KeyError):  # gone (KeyError: a non-text frame after close)
                session.writer.left()
                tg.cancel_scope.cancel()

        tg.start_soon(listen)
        try:
            async for chunk in run:
                with anyio.CancelScope(shield=True):  # a stop never splits "sent" from "counted"
                    if not await session.send(_chunk_message(chunk)):
                        break
                    session.shown.add(chunk.text)
            else:
                blocked = run.pipeline.blocked
                if blocked is None:
                    end, outcome = {"type": "done"}, Outcome.DONE
                else:
                    end, outcome = {"type": "blocked", "reason": str(blocked.reason)}, Outcome.BLOCKED
                if await session.send(json.dumps(end)):
                    session.writer.record(outcome)
        except Exception as exc:  # the source or pipeline failed: say so, after what went before
            session.writer.record(Outcome.ERROR)
            failure = exc
        finally:
            with anyio.CancelScope(shield=True):
                await run.aclose()
        tg.cancel_scope.cancel()
    if websocket.application_state == WebSocketState.CONNECTED:
        with anyio.CancelScope(shield=True):
            await _finish(session, failure)
    session.writer.close()
    return session.shown.text


async def _finish(session: _Session, failure: BaseException | None) -> None:
    """The messages that end the stream (``stopped``, ``error``), then the close."""
    websocket, writer = session.websocket, session.writer
    try:
        if writer.outcome is Outcome.SEND_TIMEOUT:
            with anyio.move_on_after(session.send_timeout):
                await websocket.close(1011)
            return
        if session.stopped:
            await session.send(
                json.dumps({"type": "stopped", "text": session.shown.text}, ensure_ascii=False)
            )
        if failure is not None:
            log.warning("pacer: websocket stream failed: %r", failure)
            await session.send(json.dumps({"type": "error", **error_body(failure)}))
        with anyio.move_on_after(session.send_timeout):
            await websocket.close(1011 if failure is not None else 1000)
    except (WebSocketDisconnect, RuntimeError, OSError):
        writer.write_failed()  # the client left meanwhile
