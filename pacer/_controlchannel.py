"""A reader's control, carried over Redis to the process that produces the stream, and
the stream's state carried back.

``RedisLog`` keeps one of these. The asker publishes ``{"control", "reply",
"request"}`` (JSON) on ``{prefix}control:{stream id}``; every process hears it through
one pattern subscription (``{prefix}control:*``), and the one whose log holds the
stream's local copy (it produces, or produced, it) answers with the stream's state
(``null``: no longer produced) on ``{prefix}reply:{asker}``, the asker's own channel,
tagged with the request's token. Processes that do not hold the stream stay silent,
so the first answer is the producer's; none within the timeout means the producer is
gone.

Cost: one publish each way per control, and one subscription (one connection) per
process for every stream; an asker holds one waiting slot per control in flight.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

__all__ = ["ControlChannel"]

log = logging.getLogger("pacer.redislog")

#: What answers a control for a stream of this process: the state, or ``None``.
Answer = Callable[[str, Mapping[str, object]], "dict[str, object] | None"]


class _Slot:
    """One control waiting for its answer."""

    __slots__ = ("answered", "state")

    def __init__(self) -> None:
        self.answered = anyio.Event()
        self.state: dict[str, object] | None = None


class ControlChannel:
    """Controls to and answers from the producing process (module docstring).

    ``prefix`` starts the channel names, ``owner`` names this process's reply channel;
    ``holds(stream_id)`` says whether this process produces (or produced) the stream, and
    ``answer(stream_id, control)`` applies a control to it and returns its state.
    """

    def __init__(self, prefix: str, owner: str, holds: Callable[[str], bool], answer: Answer) -> None:
        self.prefix = prefix
        self.owner = owner
        self.holds = holds
        self.answer = answer
        self.redis: Any = None
        self._waiting: dict[str, _Slot] = {}

    async def start(self, redis: Any, tasks: anyio.abc.TaskGroup) -> None:
        """Listen (in ``tasks``) from now on: returns once subscribed, so no control sent
        after it is missed."""
        self.redis = redis
        ready = anyio.Event()
        tasks.start_soon(self._listen, ready)
        with anyio.move_on_after(5):
            await ready.wait()

    async def ask(
        self, stream_id: str, control: Mapping[str, object], timeout: float
    ) -> dict[str, object] | None:
        """Send ``control`` to the stream's producer; its answer, or ``None`` after ``timeout`` s."""
        token = secrets.token_hex(8)
        slot = self._waiting[token] = _Slot()
        message = json.dumps({"control": dict(control), "reply": self.owner, "request": token})
        try:
            await self.redis.publish(f"{self.prefix}control:{stream_id}", message)
            with anyio.move_on_after(timeout):
                await slot.answered.wait()
        finally:
            del self._waiting[token]
        return slot.state

    async def _listen(self, ready: anyio.Event) -> None:
        while True:
            try:
                pubsub = self.redis.pubsub()
                async with pubsub:
                    await pubsub.psubscribe(f"{self.prefix}control:*")
                    await pubsub.subscribe(f"{self.prefix}reply:{self.owner}")
                    ready.set()
                    async for message in pubsub.listen():
                        await self._heard(message)
            except Exception as exc:  # Redis went away: listen again once it is back
                log.warning("pacer: control channel lost (%r); resubscribing", exc)
                await anyio.sleep(0.5)

    async def _heard(self, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind not in ("message", "pmessage"):
            return
        try:
            body = json.loads(message["data"])
            channel = bytes(message["channel"]).decode("utf-8", "replace")
        except (ValueError, TypeError, KeyError):
            log.warning("pacer: a control message that is not JSON was ignored")
            return
        if not isinstance(body, dict):
            return
        if kind == "message":  # an answer to a control this process sent
            slot = self._waiting.get(str(body.get("request")))
            if slot is not None:
                state = body.get("state")
                slot.state = state if isinstance(state, dict) else None
                slot.answered.set()
            return
        stream_id = channel[len(self.prefix) + len("control:") :]
        control, reply = body.get("control"), body.get("reply")
        if not self.holds(stream_id) or not isinstance(control, dict) or not isinstance(reply, str):
            return
        try:
            state = self.answer(stream_id, control)
        except Exception as exc:  # a bad control: the asker checked it; say so, never die here
            log.warning("pacer: control of stream %s failed: %r", stream_id, exc)
            state = None
        answer = json.dumps({"request": body.get("request"), "state": state})
        await self.redis.publish(f"{self.prefix}reply:{reply}", answer)
