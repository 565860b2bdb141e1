"""Read a resumable stream from Python: reconnect with ``Last-Event-ID`` after a drop, and stop it.

``ResumableStream`` posts a streaming request to a pacer proxy (or any app serving
``pacer.resumable``), yields its events, and when the connection drops before the
stream's end (``data: [DONE]`` or an ``event: error``) reconnects to ``GET
/v1/streams/{id}`` with the ``Last-Event-ID`` it reached, so the events it yields are
exactly the stream's, each once. It asks for a resumable stream (``X-Pacer-Resumable:
1``) and keeps the stream's token (``X-Pacer-Stream-Token``, ``token``), which it sends
back to resume, cancel and control. A body the server ends cleanly ends the stream too::

    async with httpx.AsyncClient() as http:
        stream = ResumableStream(http, "http://localhost:8100/v1/chat/completions", json=body)
        async for event in stream:
            ...
        # elsewhere, a "stop" button: await stream.cancel() -> {"text": ..., ...}
        # a "pause" button: await stream.control("pause") -> {"paused": True, ...}

``stream.transcript`` (a ``pacer.formats.Transcript`` in the format of the URL's API) is
the text this client received, lane by lane. **Stop and refine**: after a stop,
``stream.follow_up(correction)`` is the next request, with exactly the text shown as the
assistant's partial turn and the reader's correction as the next user turn, in Chat
Completions', Responses' or Anthropic Messages' own shape (``follow_up(api, request,
shown, correction)`` builds it from a cancel's answer, the text, or a voice agent's
``HeardText`` at the time it was interrupted)::

    async for event in stream:
        if reader_pressed_stop:
            await stream.cancel()  # the loop goes on to the cut and the stream's clean end
    body = stream.follow_up("Shorter, and in French.")  # post it to the same URL

Needs httpx (the ``server`` extra).

Cost: O(1) per byte read; one request per reconnect.
"""

from __future__ import annotations

from . import _server_extra  # noqa: F401  (first: a plain install's missing package, named with its extra)

# isort: split

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import httpx

from ._args import seconds, whole
from ._control import Control
from ._refine import Shown, api_of, follow_up, shown_text
from .formats import Transcript
from .resumable import RESUMABLE_HEADER, STREAM_ID_HEADER, STREAM_TOKEN_HEADER
from .sse import ServerSentEvent, SSEDecoder

__all__ = ["ResumableStream", "StreamEnded", "follow_up", "shown_text", "streams_url"]


class StreamEnded(RuntimeError):
    """The stream cannot be read any more: it is unknown or expired, or reconnecting failed
    ``retries`` times in a row."""


def streams_url(url: str, stream_id: str) -> str:
    """The ``/v1/streams/{id}`` URL beside a ``.../v1/...`` request URL (the same base)."""
    base, sep, _ = url.partition("/v1/")
    if not sep:
        raise ValueError(f"streams_url: expected a URL with /v1/ in its path, got {url!r}")
    return f"{base}/v1/streams/{stream_id}"


class ResumableStream:
    """The events of one resumable stream, across reconnects (see the module docstring).

    ``http`` is the ``httpx.AsyncClient`` to use; ``url``, ``json`` and ``headers`` the
    streaming request. Up to ``retries`` reconnects in a row (default 5) are tried,
    ``backoff`` seconds apart, doubled each time (default 0.2). ``stream_id`` and
    ``last_event_id`` say where it stands; ``reconnects`` counts them; ``transcript``
    holds the text of every event yielded (``Transcript``: ``text``, ``choices``).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        retries: int = 5,
        backoff: float = 0.2,
    ) -> None:
        self.http = http
        self.url = url
        self.json = json
        self.headers = dict(headers or {})
        self.retries = whole(retries, "ResumableStream: retries")
        self.backoff = seconds(backoff, "ResumableStream: backoff", zero=True)
        self.stream_id: str | None = None
        self.token: str | None = None  # the stream's capability token (X-Pacer-Stream-Token)
        self.last_event_id: str | None = None
        self.reconnects = 0
        self.done = False
        self.transcript = Transcript(api_of(url) or "text")  # what this client received

    async def __aiter__(self) -> AsyncIterator[ServerSentEvent]:
        failures = 0
        while not self.done:
            try:
                async for event in self._connection():
                    failures = 0
                    yield event
                if self.done:
                    return
            except httpx.TransportError:
                pass  # dropped: reconnect below
            if self.stream_id is None:
                raise StreamEnded(f"the request to {self.url} dropped before the stream had an id")
            failures += 1
            if failures > self.retries:
                raise StreamEnded(f"stream {self.stream_id}: {self.retries} reconnects in a row failed")
            await anyio.sleep(self.backoff * 2 ** (failures - 1))
            self.reconnects += 1

    async def _connection(self) -> AsyncIterator[ServerSentEvent]:
        """One connection's events: the first request's, or a resume's."""
        if self.stream_id is None:
            headers = {RESUMABLE_HEADER: "1", **self.headers}
            request = self.http.build_request("POST", self.url, json=self.json, headers=headers)
        else:
            headers = self._owner_headers()
            if self.last_event_id is not None:
                headers["Last-Event-ID"] = self.last_event_id
            request = self.http.build_request("GET", streams_url(self.url, self.stream_id), headers=headers)
        response = await self.http.send(request, stream=True)
        try:
            if response.status_code != 200:
                body = (await response.aread()).decode("utf-8", "replace")
                if self.stream_id is None or response.status_code < 500:
                    raise StreamEnded(
                        f"{request.method} {request.url} answered {response.status_code}: {body}"
                    )
                raise httpx.RemoteProtocolError(f"{response.status_code}: {body}")  # try again
            if self.stream_id is None:
                self.stream_id = response.headers.get(STREAM_ID_HEADER)
                self.token = response.headers.get(STREAM_TOKEN_HEADER)
            decoder = SSEDecoder()
            async for data in response.aiter_bytes():
                for event in decoder.feed(data):
                    if event.id:
                        self.last_event_id = event.id
                    self.transcript.read(event)
                    if event.data.strip() == "[DONE]" or event.event == "error":
                        self.done = True
                    yield event
                    if self.done:
                        return
            self.done = True  # the server ended the body cleanly: the stream is over
        finally:
            await response.aclose()

    def _owner_headers(self) -> dict[str, str]:
        """A resume's or a cancel's headers: the request's, and the stream's token."""
        headers = dict(self.headers)
        if self.token is not None:
            headers[STREAM_TOKEN_HEADER] = self.token
        return headers

    async def cancel(self) -> dict[str, Any]:
        """Stop the stream's generation; what its readers received (``text``, ``last_event_id``, ...)."""
        if self.stream_id is None:
            raise StreamEnded("the stream has no id yet: nothing to cancel")
        response = await self.http.post(
            streams_url(self.url, self.stream_id) + "/cancel", json={}, headers=self._owner_headers()
        )
        if response.status_code != 200:
            raise StreamEnded(
                f"cancel of stream {self.stream_id} answered {response.status_code}: {response.text}"
            )
        answer: dict[str, Any] = json.loads(response.content)
        return answer

    def follow_up(
        self, correction: str, shown: Shown | None = None, *, choice: int = 0, at: float | None = None
    ) -> dict[str, Any]:
        """The request that refines this one after a stop (``follow_up``): the request's JSON
        with ``shown`` (default: ``transcript``, what this client received; or the JSON
        ``cancel`` returned, the text, a ``HeardText`` with ``at``) as the assistant's
        partial turn of lane ``choice``, then ``correction`` as the next user turn. Post it
        to the same URL."""
        if not isinstance(self.json, Mapping):
            raise TypeError(f"ResumableStream.follow_up: the request's json is not an object: {self.json!r}")
        return follow_up(
            self.url, self.json, self.transcript if shown is None else shown, correction, choice=choice, at=at
        )

    async def control(self, action: str, cps: float | None = None) -> dict[str, Any]:
        """A reader's control on the running stream, wherever it is produced: ``"pause"``,
        ``"resume"``, ``"show_all"``, ``"rate"`` (with ``cps``, characters per second) or
        ``"stop"`` (``cancel``'s answer); applied at its pacer's next decision. Returns the
        stream's state (``{"id", "live", "paused", "show_all", "cps", "shown_chars"}``).
        A bad control is a ``pacer.ControlError`` (a ``ValueError``) before any request."""
        if self.stream_id is None:
            raise StreamEnded("the stream has no id yet: nothing to control")
        body = {"action": "stop"} if action == "stop" and cps is None else Control(action, cps).as_json()
        response = await self.http.post(
            streams_url(self.url, self.stream_id) + "/control", json=body, headers=self._owner_headers()
        )
        if response.status_code != 200:
            raise StreamEnded(
                f"control of stream {self.stream_id} answered {response.status_code}: {response.text}"
            )
        answer: dict[str, Any] = json.loads(response.content)
        return answer
