"""A ``model.generate(streamer=...)`` streamer that runs a pacer pipeline.

``generate`` calls ``put(ids)`` for the prompt and then for each new token, and
``end()`` when it stops; it runs in its own thread while the consumer iterates the
streamer (sync) or ``async for``s it (asyncio or trio). Between the two sits a
bounded queue, so a consumer that falls far behind slows ``generate`` down rather
than piling up ids. Swapping ``TextIteratorStreamer`` for ``PacerStreamer`` gives
exact detokenization plus whatever stages follow.

Cost: O(1) per token on top of the pipeline's own work.
"""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.to_thread

from ._core import Pipeline, Stage
from ._detokenize import Detokenizer, as_id_list
from ._run import arun, run

__all__ = ["PacerStreamer"]

_END = object()


class PacerStreamer:
    """Streams what ``generate`` produces through ``Detokenizer(tokenizer) | stages``.

    ``skip_prompt`` drops the ids of the first ``put`` (the prompt); off by default,
    as in transformers' ``TextStreamer`` and ``TextIteratorStreamer``, which it
    replaces. ``timeout`` (seconds, or ``None``) bounds how long the consumer waits
    for the next token before raising ``TimeoutError``. ``max_pending`` is how many
    ``put`` calls may wait for a slow consumer before ``generate`` blocks.
    Iterate it once, in one thread or task.
    """

    def __init__(
        self,
        tokenizer: Any,
        *stages: Stage,
        skip_prompt: bool = False,
        skip_special_tokens: bool = False,
        timeout: float | None = None,
        max_pending: int = 1024,
    ) -> None:
        self.pipeline = Pipeline(Detokenizer(tokenizer, skip_special_tokens=skip_special_tokens), *stages)
        self.skip_prompt = skip_prompt
        self.timeout = timeout
        self._queue: queue.Queue[Any] = queue.Queue(max_pending)
        self._prompt_seen = not skip_prompt

    # -- the side generate calls, from its thread ---------------------------------------

    def put(self, value: Any) -> None:
        """Take the ids ``generate`` produced: shape [n] or [1, n] (batch size 1 only)."""
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) > 1 and shape[0] > 1:
            raise ValueError(f"PacerStreamer supports batch size 1 only, got ids of shape {tuple(shape)}")
        ids = list(as_id_list(value, "PacerStreamer.put"))
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        if ids:
            self._queue.put(ids)

    def end(self) -> None:
        """``generate`` is done: the stream ends once the pipeline has emitted everything."""
        self._queue.put(_END)

    # -- the consumer's side ---------------------------------------------------------------

    def _ids(self) -> Iterator[list[int]]:
        while True:
            try:
                item = self._queue.get(timeout=self.timeout)
            except queue.Empty:
                raise TimeoutError(f"PacerStreamer: no token for {self.timeout} s") from None
            if item is _END:
                return
            yield item

    def __iter__(self) -> Iterator[str]:
        return iter(run(self.pipeline, self._ids()))

    async def _aids(self) -> AsyncIterator[list[int]]:
        ids = self._ids()
        while True:
            item: Any = await anyio.to_thread.run_sync(next, ids, _END)
            if item is _END:
                return
            yield item

    def __aiter__(self) -> AsyncIterator[str]:
        return arun(self.pipeline, self._aids()).__aiter__()
