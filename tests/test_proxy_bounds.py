"""The proxy under slow and many clients, and at shutdown, met from outside (#38): a real
``pacer proxy`` process against hostile sockets and a SIGTERM.

- slowloris connections (a request head trickled a byte at a time) do not keep
  ``/healthz`` from answering, and are closed after the header timeout;
- past the connection limit a request gets a 503 at once, ``/healthz`` a 200;
- past the per-client stream limit a stream gets a 429, and a resumable stream whose
  client left counts until its generation ends;
- a client that leaves mid-stream is logged with the text it was sent, and a resumable
  stream's generation that outlives it gets a line of its own when it ends;
- on SIGTERM the proxy stops accepting; a stream that ends within the grace ends
  normally, one that outlasts it ends with ``event: error`` (``server_shutdown``) and a
  clean end of body, and a reader of it on another instance (Redis) gets the same ending.

No timing assertions: the deadlines here only keep a broken proxy from hanging the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import threading
import time
from typing import Any

import anyio
import httpx
import pytest

from pacer import Pacer
from pacer.proxy import create_proxy
from pacer.resumable import ResumableStreams
from pacer.sse import SSEDecoder
from pacer.streamlog import MemoryLog

from .servers import Upstream, cli_proxy, serve

SLOWLORIS = 1000


def _open_files(needed: int) -> None:
    """This process's soft limit of open files raised to ``needed`` (its children inherit
    it); a skip, or a failure under CI, when the hard limit is lower."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            message = f"needs {needed} open files, the hard limit (ulimit -Hn) is {hard}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _events(response: httpx.Response) -> list[Any]:
    decoder = SSEDecoder()
    events = []
    for piece in response.iter_bytes():
        events += decoder.feed(piece)
    return events + decoder.flush()


class _Slowloris:
    """``count`` connections, each trickling a request head a byte at a time (``trickle``)."""

    HEAD = b"GET /v1/models HTTP/1.1\r\nHost: pacer\r\n"

    def __init__(self, port: int, count: int) -> None:
        self.open: dict[socket.socket, int] = {}
        self.answers: list[bytes] = []
        for _ in range(count):
            conn = socket.create_connection(("127.0.0.1", port), timeout=30)
            conn.sendall(self.HEAD[:1])
            conn.setblocking(False)
            self.open[conn] = 1

    def trickle(self) -> None:
        """One more byte on each open connection (a header line after another, for ever);
        what the proxy sent first is read, so that a byte written after its close (which
        resets the connection) loses no answer."""
        for conn, sent in list(self.open.items()):
            if self._take(conn):
                continue
            text = self.HEAD + b"X-Slow: %d\r\n" % (sent // 12) * (sent // 12)
            with contextlib.suppress(BlockingIOError):
                try:
                    conn.send(text[sent : sent + 1] or b"X")
                except OSError:  # closed by the proxy under our write
                    self._closed(conn, b"")
                    continue
                self.open[conn] = sent + 1

    def collect(self, timeout: float) -> None:
        """Record the connections the proxy closed (what each got before the end). (A poll,
        not ``select.select``: after the rest of a test session this process's descriptors
        pass 1,024, which ``select`` cannot watch.)"""
        poll = select.poll()
        by_fd = {conn.fileno(): conn for conn in self.open}
        for fd in by_fd:
            poll.register(fd, select.POLLIN)
        for fd, _ in poll.poll(timeout * 1000):
            self._take(by_fd[fd])

    def _take(self, conn: socket.socket) -> bool:
        """Whether the proxy closed ``conn`` (then recorded, with what it sent before)."""
        try:
            received = conn.recv(65536)
        except BlockingIOError:
            return False  # open, nothing sent
        except OSError:  # reset
            received = b""
        if received:  # an answer: read it to its end
            conn.settimeout(30)
            with contextlib.suppress(OSError):
                while piece := conn.recv(65536):
                    received += piece
        self._closed(conn, received)
        return True

    def _closed(self, conn: socket.socket, received: bytes) -> None:
        del self.open[conn]
        self.answers.append(received)
        conn.close()

    def close(self) -> None:
        for conn in self.open:
            conn.close()


def test_healthz_answers_while_a_thousand_slowloris_connections_are_open_and_they_are_closed() -> None:
    _open_files(2 * SLOWLORIS + 256)
    with (
        serve(Upstream().app) as upstream,
        cli_proxy("--upstream", upstream, "--header-timeout", "8") as (url, process),
    ):
        slow = _Slowloris(_port(url), SLOWLORIS)
        try:
            slow.trickle()
            health = httpx.get(f"{url}/healthz", timeout=60)
            assert health.status_code == 200 and health.json() == {"status": "ok"}
            slow.collect(0)
            assert len(slow.open) == SLOWLORIS, "the header timeout passed before the check: nothing proved"
            deadline = time.monotonic() + 120  # far past the header timeout
            while slow.open and time.monotonic() < deadline:
                slow.trickle()
                slow.collect(0.5)
            assert not slow.open, f"{len(slow.open)} slowloris connections are still open"
        finally:
            slow.close()
        assert process.poll() is None
    answered = [a for a in slow.answers if a]
    assert answered and all(a.startswith(b"HTTP/1.1 408 ") for a in answered)
    assert json.loads(answered[0].partition(b"\r\n\r\n")[2])["error"]["type"] == "request_timeout"


def test_past_the_connection_limit_a_request_gets_a_503_at_once_and_healthz_still_answers() -> None:
    with (
        serve(Upstream().app) as upstream,
        cli_proxy("--upstream", upstream, "--connection-limit", "20", "--header-timeout", "60") as (url, _),
    ):
        slow = _Slowloris(_port(url), 20)
        try:
            refused = httpx.get(f"{url}/v1/models", timeout=30)
            health = httpx.get(f"{url}/healthz", timeout=30)
        finally:
            slow.close()
        assert refused.status_code == 503 and refused.headers["connection"] == "close"
        assert refused.json()["error"]["type"] == "overloaded"
        assert health.status_code == 200 and health.headers["connection"] == "close"
        deadline = time.monotonic() + 30
        while (again := httpx.get(f"{url}/v1/models", timeout=30)).status_code == 503:
            assert time.monotonic() < deadline, "the limit held after the connections closed"
            time.sleep(0.05)
        assert again.status_code == 200


def test_a_kept_alive_connection_has_the_header_timeout_for_its_next_request_too() -> None:
    with (
        serve(Upstream().app) as upstream,
        cli_proxy("--upstream", upstream, "--header-timeout", "1") as (url, _),
        socket.create_connection(("127.0.0.1", _port(url)), timeout=30) as conn,
    ):
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: pacer\r\n\r\n")
        received = b""
        while not received.endswith(b'{"status":"ok"}'):
            received += conn.recv(65536)
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next head, never finished
        while piece := conn.recv(65536):
            received += piece
    first, _, rest = received.partition(b'{"status":"ok"}')
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 408 ")


def test_past_the_per_client_stream_limit_a_stream_gets_a_429_in_the_api_error_format() -> None:
    alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}
    body = {"model": "slow", "stream": True}
    with (
        serve(Upstream().app) as upstream,
        serve(create_proxy(upstream, lambda: Pacer(cps=3000), streams_per_client=2)) as url,
        httpx.Client(timeout=30) as client,
        contextlib.ExitStack() as held,
    ):
        route = f"{url}/v1/chat/completions"
        for _ in range(2):
            assert (
                held.enter_context(client.stream("POST", route, json=body, headers=alice)).status_code == 200
            )
        third = client.post(route, json=body, headers=alice)
        with client.stream("POST", route, json=body, headers=bob) as other:
            assert other.status_code == 200
        assert third.status_code == 429 and third.headers["retry-after"] == "1"
        assert third.json()["error"]["type"] == "rate_limited"
        held.close()  # alice's streams end: her limit is free again
        deadline = time.monotonic() + 30
        while True:
            with client.stream("POST", route, json=body, headers=alice) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the streams that ended still count"
            time.sleep(0.05)


def _read_in_thread(
    method: str, url: str, found: dict[str, Any], **kwargs: Any
) -> tuple[threading.Thread, threading.Event]:
    """Read a stream in a thread into ``found`` (``headers``, ``events``, ``error``);
    the event is set once its first event has arrived."""
    first = threading.Event()

    def read() -> None:
        decoder = SSEDecoder()
        found["events"] = []
        try:
            with httpx.stream(method, url, timeout=60, **kwargs) as response:
                found["headers"] = response.headers
                for piece in response.iter_bytes():
                    found["events"] += decoder.feed(piece)
                    if found["events"]:
                        first.set()
        except httpx.HTTPError as exc:
            found["error"] = exc
        first.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, first


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_on_sigterm_a_stream_that_ends_within_the_grace_ends_normally_and_no_connection_is_accepted() -> None:
    with (
        serve(Upstream().app) as upstream,
        cli_proxy("--upstream", upstream, "--shutdown-grace", "60", "--cps", "3000") as (url, process),
    ):
        found: dict[str, Any] = {}
        thread, first = _read_in_thread(
            "POST", f"{url}/v1/chat/completions", found, json={"model": "slow", "stream": True}
        )
        assert first.wait(30)
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not _refused(_port(url)):
            assert time.monotonic() < deadline, "the proxy still accepts connections after SIGTERM"
            time.sleep(0.05)
        draining = process.poll() is None and thread.is_alive()
        thread.join(60)
        process.wait(60)
    assert draining, "the stream ended before the proxy stopped accepting: nothing proved"
    assert "error" not in found
    events = found["events"]
    assert events[-1].data == "[DONE]" and not [e for e in events if e.event == "error"]


def test_on_sigterm_a_stream_that_outlasts_the_grace_ends_with_the_api_error_event_then_the_body_ends() -> (
    None
):
    with (
        serve(Upstream().app) as upstream,
        cli_proxy("--upstream", upstream, "--shutdown-grace", "0.5") as (url, process),
    ):
        found: dict[str, Any] = {}
        thread, first = _read_in_thread(
            "POST", f"{url}/v1/chat/completions", found, json={"model": "slow", "stream": True}
        )
        assert first.wait(30)
        process.send_signal(signal.SIGTERM)
        thread.join(60)
        process.wait(60)
    assert "error" not in found, f"the stream was cut without an end: {found.get('error')!r}"
    last = found["events"][-1]
    assert last.event == "error" and json.loads(last.data)["error"]["type"] == "server_shutdown"
    assert not [e for e in found["events"] if e.data == "[DONE]"]


def test_on_sigterm_a_reader_on_another_instance_gets_the_clear_ending(redis: Any) -> None:
    with (
        serve(Upstream().app) as upstream,
        cli_proxy("--upstream", upstream, "--redis", redis.url, "--shutdown-grace", "0.5") as (a, process_a),
        cli_proxy("--upstream", upstream, "--redis", redis.url) as (b, _),
    ):
        made: dict[str, Any] = {}
        headers = {"Authorization": "Bearer alice", "X-Pacer-Resumable": "1"}
        body = {"model": "slow", "stream": True}
        maker, first = _read_in_thread("POST", f"{a}/v1/chat/completions", made, json=body, headers=headers)
        assert first.wait(30)
        stream_id = made["headers"]["x-pacer-stream-id"]
        resumed: dict[str, Any] = {}
        reader, read_first = _read_in_thread(
            "GET", f"{b}/v1/streams/{stream_id}", resumed, headers={"Authorization": "Bearer alice"}
        )
        assert read_first.wait(30)
        process_a.send_signal(signal.SIGTERM)
        maker.join(60)
        reader.join(60)
        process_a.wait(60)
        assert not reader.is_alive(), "the reader on the other instance hangs"
    for found in (made, resumed):
        assert "error" not in found
        last = found["events"][-1]
        assert last.event == "error" and json.loads(last.data)["error"]["type"] == "server_shutdown"


def test_leaving_resumable_streams_ends_each_stream_produced_here_with_a_shutdown_error() -> None:
    async def endless() -> Any:
        while True:
            yield b"data: more\n\n"
            await anyio.sleep(0.01)

    async def main() -> list[Any]:
        log = MemoryLog()
        streams = ResumableStreams(log)
        async with streams:
            stream_id = await streams.start(endless(), fmt="text")
            await anyio.sleep(0.05)
        entries = await log.read(stream_id, 0, 0)
        assert entries is not None
        return entries

    entries = anyio.run(main)
    assert entries[-1].end == "shutdown"
    error = SSEDecoder().feed(entries[-2].frame)[-1]
    assert error.event == "error" and json.loads(error.data)["error"]["type"] == "server_shutdown"


def test_the_stream_end_line_carries_the_stream_id(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="pacer.proxy")
    with (
        serve(Upstream().app) as upstream,
        serve(create_proxy(upstream, lambda: Pacer(cps=3000))) as url,
    ):
        response = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "stream": True}, timeout=30)
    ended = [r for r in caplog.records if r.getMessage().startswith("pacer proxy: stream ended")]
    assert ended, "no stream-end line"
    stream_id = response.headers["x-pacer-stream-id"]
    assert ended[-1].stream["stream_id"] == stream_id  # type: ignore[attr-defined]
    assert f"stream_id={stream_id}" in ended[-1].getMessage()


@pytest.mark.parametrize(
    ("trusted", "seen"), [((), "127.0.0.1"), (("--forwarded-allow-ips", "127.0.0.1"), "203.0.113.9")]
)
def test_x_forwarded_for_is_believed_only_from_the_configured_addresses(
    trusted: tuple[str, ...], seen: str
) -> None:
    with (
        serve(Upstream().app) as upstream,
        cli_proxy("--upstream", upstream, *trusted) as (url, process),
    ):
        assert (
            httpx.get(f"{url}/healthz", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=30).status_code
            == 200
        )
    assert f"{seen}:" in next(line for line in process.log.splitlines() if '"GET /healthz' in line)


def _text_of(data: str) -> str:
    """The text of a chat completion chunk's first choice ("" for any other event)."""
    chunk = json.loads(data) if data.startswith("{") else {}
    choices = chunk.get("choices") or [{}]
    return str(choices[0].get("delta", {}).get("content") or "")


def _leave_after_first_text(client: httpx.Client, route: str, headers: dict[str, str]) -> str:
    """Start a slow stream, read until its first text, leave; the stream's id."""
    decoder = SSEDecoder()
    with client.stream("POST", route, json={"model": "slow", "stream": True}, headers=headers) as response:
        assert response.status_code == 200
        for piece in response.iter_bytes():
            events = decoder.feed(piece)
            if any(_text_of(e.data) for e in events):
                break
        return response.headers["x-pacer-stream-id"]


def _ended_streams(client: httpx.Client, url: str, outcome: str) -> float:
    """How many paced streams ended with ``outcome``, by the proxy's ``/metrics``."""
    name = f'pacer_streams_total{{outcome="{outcome}"}} '
    lines = client.get(f"{url}/metrics").text.splitlines()
    return next((float(line[len(name) :]) for line in lines if line.startswith(name)), 0.0)


def test_a_resumable_stream_whose_client_left_counts_towards_its_client_limit_until_its_generation_ends() -> (
    None
):
    alice = {"Authorization": "Bearer alice"}
    resumable = {**alice, "X-Pacer-Resumable": "1"}
    args = ("--cps", "20", "--streams-per-client", "2", "--orphan-timeout", "3")
    with (
        serve(Upstream().app) as upstream,
        cli_proxy("--upstream", upstream, *args) as (url, _),
        httpx.Client(timeout=30) as client,
    ):
        route = f"{url}/v1/chat/completions"
        for _ in range(2):
            _leave_after_first_text(client, route, resumable)
        deadline = time.monotonic() + 30
        while _ended_streams(client, url, "disconnect") < 2:  # both connections are over
            assert time.monotonic() < deadline, "the proxy did not see the clients leave"
            time.sleep(0.05)
        with client.stream("POST", route, json={"model": "slow", "stream": True}, headers=resumable) as third:
            assert third.status_code == 429, "a stream whose client left no longer counts"
        deadline = time.monotonic() + 60  # far past the orphan timeout
        while True:  # the orphaned generations end: the limit is free again
            with client.stream("POST", route, json={"model": "slow", "stream": True}, headers=alice) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the generations that ended still count"
            time.sleep(0.05)


def _wait_for_line(caplog: pytest.LogCaptureFixture, start: str, stream_id: str) -> Any:
    deadline = time.monotonic() + 60
    while True:
        for record in list(caplog.records):
            if record.getMessage().startswith(start) and record.stream["stream_id"] == stream_id:
                return record.stream
        assert time.monotonic() < deadline, f"no {start!r} line for {stream_id}"
        time.sleep(0.05)


@pytest.mark.parametrize("resumable", [False, True], ids=["plain", "resumable"])
def test_a_client_that_leaves_mid_stream_is_logged_with_the_text_it_was_sent(
    caplog: pytest.LogCaptureFixture, resumable: bool
) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="pacer.proxy")
    headers = {"Authorization": "Bearer alice"} | ({"X-Pacer-Resumable": "1"} if resumable else {})
    with (
        serve(Upstream().app) as upstream,
        serve(create_proxy(upstream, lambda: Pacer(cps=50), orphan_timeout=1)) as url,
        httpx.Client(timeout=30) as client,
    ):
        stream_id = _leave_after_first_text(client, f"{url}/v1/chat/completions", headers)
        left = _wait_for_line(caplog, "pacer proxy: stream ended", stream_id)
        assert left["outcome"] == "disconnect"
        assert left["chars"] > 0 and left["first_output_s"] is not None and left["lag_p99_s"] is not None
        if resumable:  # its generation goes on, then ends with no reader: a line of its own
            ended = _wait_for_line(caplog, "pacer proxy: generation ended", stream_id)
            assert ended["outcome"] == "orphaned" and ended["readers"] == 0
            assert ended["chars"] >= left["chars"] and ended["first_output_s"] == left["first_output_s"]
    if not resumable:  # its generation stopped with its connection: the one line says it
        lines = [r.getMessage() for r in caplog.records]
        assert not [line for line in lines if line.startswith("pacer proxy: generation ended")]


@pytest.mark.parametrize("resumable", ["0", "1"], ids=["plain", "resumable"])
def test_a_client_that_sends_its_next_request_as_its_stream_ends_finds_its_place_free(resumable: str) -> None:
    # Found from outside: with one stream per client, a client that read a stream to its
    # end and sent its next request at once on the same connection got a 429 about one
    # time in four (plain) or two (resumable): the place was let go only once the ended
    # response's task had wound down, after the next request was counted.
    with (
        serve(Upstream().app) as upstream,
        cli_proxy("--upstream", upstream, "--cps", "5000", "--streams-per-client", "1") as (url, _),
        httpx.Client(timeout=30) as client,
    ):
        body = {"model": "normal", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        statuses = [
            client.post(
                f"{url}/v1/chat/completions", json=body, headers={"X-Pacer-Resumable": resumable}
            ).status_code
            for _ in range(20)
        ]
    assert statuses == [200] * 20
