"""The reader's controls over HTTP (``POST /v1/streams/{id}/control``), through real proxies:
pause while the upstream runs on, show all, rate, stop, the errors; owned as cancel is;
from another proxy process over a real Redis; a pause past ``max_pause`` ends the stream."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from pacer import Pacer
from pacer._control import ControlError
from pacer.client import ResumableStream, StreamEnded
from pacer.proxy import create_proxy
from pacer.sse import ServerSentEvent, SSEDecoder

from .hostile import content_of
from .servers import TEXT, RedisServer, Upstream, cli_proxy, serve, wait_for

OWNER = {"Authorization": "Bearer owner-key"}
ASKS = {"X-Pacer-Resumable": "1", **OWNER}
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[Upstream, str]]:
    upstream = Upstream()
    with serve(upstream.app) as url:
        yield upstream, url


@pytest.fixture(scope="module")
def proxy(fake: tuple[Upstream, str]) -> Iterator[str]:
    # A slow pace that does not follow the source, with a long lag bound: the text waits
    # in the pacer for seconds.
    pace = lambda: Pacer(cps=10, max_lag=8.0, adaptive=False)  # noqa: E731
    app = create_proxy(fake[1], pace, orphan_timeout=30, max_pause=1.0)
    with serve(app) as url:
        yield url


def _events(response: httpx.Response) -> Iterator[ServerSentEvent]:
    decoder = SSEDecoder()
    for data in response.iter_bytes():
        yield from decoder.feed(data)


@contextlib.contextmanager
def _stream(
    proxy: str, user: str, model: str = "normal", headers: dict[str, str] | None = None
) -> Iterator[tuple[str, Iterator[ServerSentEvent]]]:
    body = {"model": model, "messages": [], "stream": True, "user": user}
    asks = {**ASKS, **headers} if headers is not None else ASKS
    with httpx.stream(
        "POST", f"{proxy}/v1/chat/completions", json=body, headers=asks, timeout=30
    ) as response:
        assert response.status_code == 200
        yield response.headers["x-pacer-stream-id"], _events(response)


def _control(proxy: str, stream_id: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{proxy}/v1/streams/{stream_id}/control", json=body, headers=headers or OWNER, timeout=10
    )


def _paused_then(
    proxy: str, upstream: Upstream, user: str, action: dict[str, Any], control_at: str, model: str = "normal"
) -> None:
    """Pause a stream at ``proxy`` from ``control_at``, let the upstream finish, then send
    ``action``: the upstream ran on during the pause, the text waited, and the stream is
    whole, every event once, in order."""
    with _stream(proxy, user, model) as (stream_id, events):
        head = [next(events)]
        paused = _control(control_at, stream_id, {"action": "pause"})
        assert paused.status_code == 200, paused.text
        state = paused.json()
        assert state["id"] == stream_id and state["live"] is True and state["paused"] is True
        wait_for(lambda: user in upstream.completed)
        answer = _control(control_at, stream_id, action)
        assert answer.status_code == 200 and answer.json()["paused"] is False
        assert answer.json()["shown_chars"] < len(TEXT)  # the text waited in the pacer
        rest = list(events)
    whole = head + rest
    assert [e.id for e in whole] == [str(i) for i in range(1, len(whole) + 1)]
    assert content_of(whole) == TEXT and whole[-1].data == "[DONE]"


def test_pause_holds_the_text_while_the_upstream_runs_on_and_show_all_sends_the_rest(
    proxy: str, fake: tuple[Upstream, str]
) -> None:
    _paused_then(proxy, fake[0], "pause-show-all", {"action": "show_all"}, proxy)


def test_resume_and_a_rate_in_words_per_minute_go_on_with_nothing_lost(
    proxy: str, fake: tuple[Upstream, str]
) -> None:
    _paused_then(proxy, fake[0], "pause-resume", {"action": "resume"}, proxy)
    # A rate holds from the next decision: at 500 characters a second the text runs out at once.
    with _stream(proxy, "rate-wpm") as (stream_id, events):
        head = [next(events)]
        state = _control(proxy, stream_id, {"action": "rate", "wpm": 6000}).json()
        assert state["cps"] == 500.0 and state["paused"] is False and state["show_all"] is False
        whole = head + list(events)
    assert content_of(whole) == TEXT


def test_bad_controls_get_clear_errors_and_stop_is_the_cancel(proxy: str) -> None:
    with _stream(proxy, "bad-controls") as (stream_id, events):
        next(events)
        assert (
            _control(proxy, stream_id, {"action": "pause"}).json()["paused"] is True
        )  # it waits for the stop
        url = f"{proxy}/v1/streams/{stream_id}/control"
        cases = [
            (
                {"action": "rewind"},
                400,
                "action must be one of pause, resume, show_all, rate, got 'rewind' (or \"stop\")",
            ),
            ({"action": "rate"}, 400, 'action "rate" needs "cps"'),
            ({"action": "rate", "cps": 0}, 400, "cps: rate must be a positive finite number"),
            ([], 400, "control request body must be a JSON object"),
            ({"cps": "fast"}, 400, 'the "action" field is missing; it must be one of pause, resume'),
            ({"action": "rate", "cps": 10**400}, 400, "a number a float can hold"),  # was a 500
        ]
        for body, status, message in cases:
            answer = httpx.post(url, json=body, headers=OWNER)
            assert answer.status_code == status and message in answer.json()["error"]["message"], answer.text
        form = httpx.post(url, content=b"action=pause", headers={**OWNER, "Content-Type": "text/plain"})
        assert form.status_code == 415
        stopped = _control(proxy, stream_id, {"action": "stop"})
        assert stopped.status_code == 200 and stopped.json()["outcome"] == "cancelled"
        shown = stopped.json()["text"]
        rest = list(events)
    assert TEXT.startswith(shown) and content_of(rest) in shown
    after = _control(proxy, stream_id, {"action": "pause"})
    assert after.status_code == 200 and after.json()["live"] is False


def test_a_pause_longer_than_max_pause_ends_the_stream_as_an_orphan(proxy: str) -> None:
    with _stream(proxy, "long-pause") as (stream_id, events):
        next(events)
        assert _control(proxy, stream_id, {"action": "pause"}).json()["paused"] is True
        rest = list(events)  # ends after max_pause (1 s here)
    assert rest[-1].event == "error" and "paused for more than 1.0 s" in rest[-1].data


# -- across processes: two proxies sharing a real Redis ---------------------------------------


@pytest.fixture(scope="module")
def pair(fake: tuple[Upstream, str], redis: RedisServer) -> Iterator[tuple[str, str]]:
    args = ("--upstream", f"{fake[1]}/v1", "--cps", "10", "--max-lag", "8", "--redis", redis.url)
    with cli_proxy(*args) as (a, _), cli_proxy(*args) as (b, _):
        yield a, b


@pytest.mark.parametrize("action", ["show_all", "resume"])
def test_a_control_sent_to_the_other_process_reaches_the_producer(
    pair: tuple[str, str], fake: tuple[Upstream, str], action: str
) -> None:
    a, b = pair
    # The upstream stalls for a second after its first words: the pause has that long to
    # arrive before all of the text could have gone out (the pacer follows the source).
    _paused_then(a, fake[0], f"across-{action}", {"action": action}, b, model="stall")


def test_the_other_process_answers_for_an_ended_stream_and_refuses_another_owner(
    pair: tuple[str, str], fake: tuple[Upstream, str]
) -> None:
    a, b = pair
    with _stream(a, "across-ended") as (stream_id, events):
        next(events)
        assert _control(b, stream_id, {"action": "show_all"}).json()["show_all"] is True
        list(events)
    mallory = {"Authorization": "Bearer mallory-key"}
    assert _control(b, stream_id, {"action": "pause"}, mallory).status_code == 404
    wait_for(lambda: _control(b, stream_id, {"action": "pause"}).json()["live"] is False)


# -- the clients: pacer.client and pacer-stream.js (in a real Chromium) -------------------------


def test_the_python_clients_control_pauses_and_shows_all(proxy: str, fake: tuple[Upstream, str]) -> None:
    async def main() -> tuple[list[ServerSentEvent], list[dict[str, Any]]]:
        async with httpx.AsyncClient(timeout=30) as http:
            body = {"model": "normal", "messages": [], "stream": True, "user": "python-client"}
            stream = ResumableStream(http, f"{proxy}/v1/chat/completions", json=body)
            with pytest.raises(StreamEnded, match="no id yet"):
                await stream.control("pause")
            events: list[ServerSentEvent] = []
            states: list[dict[str, Any]] = []
            async for event in stream:
                events.append(event)
                if len(events) == 1:
                    states.append(await stream.control("pause"))  # with the stream's token only
                    with pytest.raises(ControlError, match='needs "cps"'):
                        await stream.control("rate")
                    while "python-client" not in fake[0].completed:
                        await anyio.sleep(0.01)
                    states.append(await stream.control("show_all"))
        return events, states

    events, states = anyio.run(main)
    assert states[0]["paused"] is True and states[1]["show_all"] is True and states[1]["paused"] is False
    assert content_of(events) == TEXT and events[-1].data == "[DONE]"


_PAGE = """<!doctype html><meta charset="utf-8"><body><script>%s</script><script>
let text = "", states = [], asked = false;
const stream = new PacerStream("/v1/chat/completions",
  {model: "normal", messages: [], stream: true, user: "browser-controls"},
  {onText: async (t) => {
     text += t;
     if (asked) return;
     asked = true;
     states.push(await stream.control("pause"));
     document.body.dataset.paused = "1";
   }});
window.showAll = async () => {
  document.body.dataset.shown = JSON.stringify(await stream.control("show_all"));
};
stream.done.then(
  (end) => { document.body.dataset.result = JSON.stringify({text, states, end}); },
  (error) => { document.body.dataset.result = JSON.stringify({error: String(error)}); });
</script>"""


def test_the_browser_clients_control_pauses_and_shows_all(proxy: str, fake: tuple[Upstream, str]) -> None:
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from pacer.resumable import javascript

    from .servers import chromium

    upstream, _ = fake

    async def page(request: Any) -> HTMLResponse:
        return HTMLResponse(_PAGE % javascript())

    if not any(getattr(r, "path", "") == "/controls-page" for r in upstream.app.routes):
        upstream.app.router.routes.append(Route("/controls-page", page))
    driver = chromium()
    try:
        driver.get(f"{proxy}/controls-page")  # through the proxy: the same origin as its streams
        wait_for(lambda: driver.execute_script("return document.body.dataset.paused"))
        wait_for(lambda: "browser-controls" in upstream.completed)
        driver.execute_script("window.showAll()")
        wait_for(lambda: driver.execute_script("return document.body.dataset.result"))
        wait_for(lambda: driver.execute_script("return document.body.dataset.shown"))
        result = json.loads(driver.execute_script("return document.body.dataset.result"))
        shown = json.loads(driver.execute_script("return document.body.dataset.shown"))
    finally:
        driver.quit()
    assert "error" not in result, result
    assert result["end"]["outcome"] == "done" and result["text"] == TEXT
    (paused,) = result["states"]
    assert paused["paused"] is True and paused["live"] is True
    assert shown["show_all"] is True and shown["shown_chars"] < len(TEXT)


# -- a pace remembered per user (--remember-pace) --------------------------------------------


def _rate_of_new_stream(proxy: str, user: str, headers: dict[str, str], model: str = "normal") -> float:
    """The rate a new stream by ``headers`` starts at (read back through a pause)."""
    with _stream(proxy, user, model, headers) as (stream_id, events):
        next(events)
        state = _control(proxy, stream_id, {"action": "pause"}, headers).json()
        _control(proxy, stream_id, {"action": "show_all"}, headers)
        list(events)
    assert state["paused"] is True
    return float(state["cps"])


def _set_rate(
    proxy: str, user: str, headers: dict[str, str], cps: float, control_at: str, model: str = "normal"
) -> None:
    with _stream(proxy, user, model, headers) as (stream_id, events):
        next(events)
        assert _control(control_at, stream_id, {"action": "rate", "cps": cps}, headers).json()["cps"] == cps
        list(events)


def test_a_users_last_rate_starts_their_next_streams_unless_the_request_sets_one(
    fake: tuple[Upstream, str],
) -> None:
    pace = lambda: Pacer(cps=10, max_lag=8.0, adaptive=False)  # noqa: E731
    alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}
    with serve(create_proxy(fake[1], pace, remember_pace=60.0)) as proxy:
        _set_rate(proxy, "pace-1", alice, 123.0, proxy)
        assert _rate_of_new_stream(proxy, "pace-2", alice) == 123.0
        assert _rate_of_new_stream(proxy, "pace-3", bob) == 10.0  # another user: the pacer's own
        assert _rate_of_new_stream(proxy, "pace-4", {**alice, "X-Pacer-Rate": "50"}) == 50.0
        body = {"model": "normal", "messages": [], "stream": True}
        bad = httpx.post(f"{proxy}/v1/chat/completions", json=body, headers={**ASKS, "X-Pacer-Rate": "fast"})
        assert bad.status_code == 400 and "X-Pacer-Rate: must be a rate" in bad.json()["error"]["message"]
    with serve(create_proxy(fake[1], pace)) as proxy:  # off by default
        _set_rate(proxy, "pace-5", alice, 123.0, proxy)
        assert _rate_of_new_stream(proxy, "pace-6", alice) == 10.0


def test_a_remembered_pace_is_shared_by_the_processes_of_one_redis_and_follows_a_trusted_user_header(
    fake: tuple[Upstream, str], redis: RedisServer
) -> None:
    args = ("--upstream", f"{fake[1]}/v1", "--cps", "10", "--max-lag", "8", "--redis", redis.url)
    extra = ("--remember-pace", "60", "--user-header", "X-User")
    with cli_proxy(*args, *extra) as (a, _), cli_proxy(*args, *extra) as (b, _):
        carol = {"Authorization": "Bearer carol-laptop", "X-User": "carol"}
        # The upstream stalls a second after its first words: the controls come while it is live.
        _set_rate(a, "redis-pace-1", carol, 77.0, b, "stall")  # set through the other process
        phone = {"Authorization": "Bearer carol-phone", "X-User": "carol"}  # another key, the same user
        assert _rate_of_new_stream(b, "redis-pace-2", phone, "stall") == 77.0
        dave = {"Authorization": "Bearer carol-laptop", "X-User": "dave"}
        assert _rate_of_new_stream(b, "redis-pace-3", dave, "stall") == 10.0
