"""The paced pipeline over a WebSocket, read by the ``websockets`` client: chunks with their
metadata, stop (with exactly the text sent), live rate changes, errors, disconnects."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from pacer import Guard, Pacer
from pacer.websocket import serve_websocket

from .servers import serve

websockets_sync = pytest.importorskip("websockets.sync.client")
pytestmark = pytest.mark.timeout(60)

WORDS = [f"word{i} " for i in range(40)]


class App:
    """``/ws?source=slow|fail``: a source that yields a word every 20 ms (or fails after five)."""

    def __init__(self) -> None:
        self.closed: list[float] = []
        self.app = Starlette(routes=[WebSocketRoute("/ws", self.endpoint)])

    async def endpoint(self, websocket: WebSocket) -> None:
        kind = websocket.query_params.get("source", "slow")

        async def source() -> AsyncIterator[str]:
            try:
                for i, word in enumerate(WORDS):
                    if kind == "fail" and i == 5:
                        raise RuntimeError("model crashed")
                    await anyio.sleep(0.02)
                    yield word
            finally:
                self.closed.append(time.monotonic())

        pacer = Pacer(cps=float(websocket.query_params.get("cps", 400)))
        if kind == "guarded":  # an output check that blocks the sentence naming word7
            guard = Guard(lambda text: "word7" not in text, max_chars=30)
            await serve_websocket(websocket, source(), guard | pacer)
            return
        await serve_websocket(websocket, source(), pacer)


@pytest.fixture(scope="module")
def app() -> Iterator[tuple[App, str]]:
    server = App()
    with serve(server.app) as url:
        yield server, url.replace("http://", "ws://")


def _messages(ws: Any) -> Iterator[dict[str, Any]]:
    while True:
        try:
            yield json.loads(ws.recv(timeout=20))
        except Exception as exc:  # closed
            if type(exc).__name__.startswith("ConnectionClosed"):
                return
            raise


def test_every_chunk_arrives_with_its_metadata_then_done(app: tuple[App, str]) -> None:
    _, url = app
    with websockets_sync.connect(f"{url}/ws") as ws:
        messages = list(_messages(ws))
        code = ws.close_code
    chunks = [m for m in messages if m["type"] == "chunk"]
    assert messages[-1] == {"type": "done"} and code == 1000
    assert "".join(c["text"] for c in chunks) == "".join(WORDS)
    offset = 0
    for c in chunks:
        assert c["offset"] == offset and c["emitted"] >= c["arrival"]
        assert c["boundary"] in ("none", "word", "clause", "sentence", "forced")
        offset += len(c["text"].encode())


def test_a_blocked_stream_ends_blocked_never_done_and_never_shows_the_blocked_text(
    app: tuple[App, str],
) -> None:
    _, url = app
    with websockets_sync.connect(f"{url}/ws?source=guarded") as ws:
        messages = list(_messages(ws))
    text = "".join(m["text"] for m in messages if m["type"] == "chunk")
    assert "word7" not in text and "".join(WORDS).startswith(text)
    assert all(m["type"] != "done" for m in messages)
    assert messages[-1]["type"] == "blocked" and messages[-1]["reason"]


def test_stop_closes_the_source_and_returns_exactly_the_text_sent(app: tuple[App, str]) -> None:
    server, url = app
    before = len(server.closed)
    with websockets_sync.connect(f"{url}/ws?cps=100") as ws:
        got = [json.loads(ws.recv(timeout=20)) for _ in range(3)]
        ws.send(json.dumps({"type": "stop"}))
        rest = list(_messages(ws))
        code = ws.close_code
    chunks = got + [m for m in rest if m["type"] == "chunk"]  # any sent before the stop arrived
    stopped = [m for m in rest if m["type"] == "stopped"]
    assert stopped == [{"type": "stopped", "text": "".join(c["text"] for c in chunks)}]
    assert rest[-1]["type"] == "stopped" and code == 1000
    assert 0 < len(stopped[0]["text"]) < len("".join(WORDS))
    assert len(server.closed) == before + 1  # the source was closed


def test_rate_changes_live_and_bad_messages_get_clear_errors(app: tuple[App, str]) -> None:
    _, url = app
    with websockets_sync.connect(f"{url}/ws?cps=50") as ws:
        ws.send(json.dumps({"type": "rate", "cps": 5000}))
        ws.send(json.dumps({"type": "rate", "cps": -1}))
        ws.send("not json")
        ws.send(json.dumps({"type": "rewind"}))
        messages = list(_messages(ws))
    others = [m for m in messages if m["type"] not in ("chunk", "done")]
    assert others[0] == {"type": "rate", "cps": 5000.0, "paused": False, "show_all": False}
    assert [m["type"] for m in others[1:]] == ["error"] * 3
    assert "rate must be a positive finite number" in others[1]["error"]["message"]
    assert "message is not JSON" in others[2]["error"]["message"]
    assert 'must be {"type": "stop"}, {"type": "rate", "cps": N}' in others[3]["error"]["message"]
    assert messages[-1] == {"type": "done"}
    assert "".join(m["text"] for m in messages if m["type"] == "chunk") == "".join(WORDS)


def test_a_deeply_nested_message_gets_an_error_reply_and_the_stream_goes_on(app: tuple[App, str]) -> None:
    _, url = app
    with websockets_sync.connect(f"{url}/ws") as ws:
        ws.send("[" * 100_000 + "]" * 100_000)
        messages = list(_messages(ws))
    errors = [m for m in messages if m["type"] == "error"]
    assert errors and errors[0]["error"]["type"] == "invalid_message"
    assert "nested too deep" in errors[0]["error"]["message"]
    assert messages[-1] == {"type": "done"}
    assert "".join(m["text"] for m in messages if m["type"] == "chunk") == "".join(WORDS)


def test_a_failing_source_sends_an_error_after_what_came_before(app: tuple[App, str]) -> None:
    _, url = app
    with websockets_sync.connect(f"{url}/ws?source=fail") as ws:
        messages = list(_messages(ws))
        code = ws.close_code
    assert "".join(m["text"] for m in messages if m["type"] == "chunk") == "".join(WORDS[:5])
    assert messages[-1] == {"type": "error", "error": {"message": "model crashed", "type": "RuntimeError"}}
    assert code == 1011


def test_a_client_that_leaves_cancels_the_source(app: tuple[App, str]) -> None:
    server, url = app
    before = len(server.closed)
    with websockets_sync.connect(f"{url}/ws?cps=20") as ws:
        ws.recv(timeout=20)
    deadline = time.monotonic() + 10
    while len(server.closed) == before:
        assert time.monotonic() < deadline, "the source was not closed after the client left"
        time.sleep(0.01)


def test_pacer_rate_set_live_changes_the_pace_from_the_next_unit() -> None:
    def emitted_in_two_seconds(speed_up: bool) -> int:
        pacer = Pacer(cps=10, max_lag=100)
        out = "".join(pacer.feed("x" * 200, 0.0))
        now = 0.0
        while now < 2.0:
            now += 0.01
            if speed_up and abs(now - 1.0) < 1e-9:
                pacer.rate = 100
            if (d := pacer.deadline) is not None and d <= now:
                out += "".join(c.text for c in pacer.poll(now))
        return len(out)

    assert emitted_in_two_seconds(True) > 2 * emitted_in_two_seconds(False)
    with pytest.raises(ValueError, match="Pacer: rate must be a positive finite number"):
        Pacer().rate = 0
    with pytest.raises(TypeError, match="Pacer: rate must be a number, got str"):
        Pacer().rate = "fast"


@pytest.mark.parametrize("action", ["resume", "show_all"])
def test_pause_holds_the_text_while_the_source_runs_and_resume_or_show_all_sends_the_rest(
    app: tuple[App, str], action: str
) -> None:
    server, url = app
    before = len(server.closed)
    with websockets_sync.connect(f"{url}/ws?cps=20") as ws:
        messages = [json.loads(ws.recv(timeout=20))]
        ws.send(json.dumps({"type": "pause"}))
        while messages[-1]["type"] != "pause":
            messages.append(json.loads(ws.recv(timeout=20)))
        assert messages[-1] == {"type": "pause", "cps": 20.0, "paused": True, "show_all": False}
        deadline = time.monotonic() + 10
        while len(server.closed) == before:  # the source runs to its end while the text waits
            assert time.monotonic() < deadline, "the source did not run on during the pause"
            time.sleep(0.01)
        ws.send(json.dumps({"type": action}))
        messages += list(_messages(ws))
    replies = [i for i, m in enumerate(messages) if m["type"] == action]
    assert len(replies) == 1 and messages[replies[0]]["paused"] is False
    assert messages[replies[0]]["show_all"] is (action == "show_all")
    held = "".join(m["text"] for m in messages[: replies[0]] if m["type"] == "chunk")
    text = "".join(m["text"] for m in messages if m["type"] == "chunk")
    assert text == "".join(WORDS) and len(held) < len(text)  # nothing lost or repeated; some waited
    assert messages[-1] == {"type": "done"}
