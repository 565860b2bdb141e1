"""``pacer serve``: the three-view stream (virtual clock), its HTTP endpoint on a real
uvicorn server, and the page in a real headless Chromium with a screenshot check."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

import anyio
import pytest

pytest.importorskip("starlette")
pytest.importorskip("tiktoken")

import httpx

import pacer
from pacer._playground import create_playground, sentence_view, stream_views
from pacer.sse import ServerSentEvent, SSEDecoder
from pacer.tokenizers import load_tekken

from .servers import chromium, serve, wait_for


@pytest.fixture(scope="module")
def enc() -> Any:
    return load_tekken()


TEXT = "Streaming 中文 is fun. Dr. Patel said so! 👩\u200d👩\u200d👧 waves.\n\n- a list item\n- another one\n"


def collect(frames: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [e for f in frames for e in decoder.feed(f)]
    return events + decoder.flush()


def test_three_views_get_the_same_text_on_the_virtual_clock(enc: Any) -> None:
    ids = enc.encode(TEXT)
    trace = pacer.traces.bursty(ids, per_second=20, seed=3)
    views = {
        "raw": pacer.Pipeline(pacer.Detokenizer(enc)),
        "paced": pacer.Pipeline(pacer.Detokenizer(enc), pacer.Pacer(cps=30, max_lag=0.5)),
        "sentence": pacer.Pipeline(pacer.Detokenizer(enc), pacer.SentenceSplitter(max_hold=0.6)),
    }
    clock = pacer.VirtualClock()

    async def gather() -> list[bytes]:
        return [frame async for frame in stream_views(trace, views, clock=clock)]

    events = collect(anyio.run(gather))
    assert events[-1].data == "[DONE]" and events[-2].event == "end"
    by_view: dict[str, list[dict[str, Any]]] = {"raw": [], "paced": [], "sentence": []}
    for e in events[:-2]:
        by_view[e.event].append(json.loads(e.data))
    for view, chunks in by_view.items():
        assert "".join(c["text"] for c in chunks) == TEXT, view
        times = [c["t"] for c in chunks]
        assert times == sorted(times), f"{view} events out of time order"
    # One raw event per token that completes text: what the model sent, as it sent it.
    detok = pacer.Detokenizer(enc)
    assert [c["text"] for c in by_view["raw"]] == [t for i in ids for t in detok.feed(i)]
    assert max(c["lag"] for c in by_view["paced"]) <= 0.5 + 1e-9
    sentences = [c["text"] for c in by_view["sentence"]]
    assert sentences[:2] == ["Streaming 中文 is fun. ", "Dr. Patel said so! "]
    summary = json.loads(events[-2].data)
    assert summary["raw"]["chars"] == summary["paced"]["chars"] == len(TEXT)
    # The whole replay took the trace's time on the virtual clock: the loop slept.
    assert clock.now() >= trace[-1][0]


def test_stream_endpoint_over_real_http(enc: Any) -> None:
    app = create_playground(enc, TEXT)
    with serve(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        page = client.get("/")
        assert page.status_code == 200 and 'id="paced"' in page.text
        with client.stream("GET", "/stream", params={"tps": 400, "cps": 2000, "unit": "grapheme"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            frames = list(r.iter_bytes())
        events = collect(frames)
        assert events[-1].data == "[DONE]"
        for view in ("raw", "paced", "sentence"):
            assert "".join(json.loads(e.data)["text"] for e in events if e.event == view) == TEXT
        short = client.get("/stream", params={"tokens": 3, "tps": 1000})
        assert "".join(json.loads(e.data)["text"] for e in collect([short.content]) if e.event == "raw") == (
            enc.decode(enc.encode(TEXT)[:3])
        )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"cps": "0"}, "cps must be between 1 and 5000, got 0"),
        ({"tps": "fast"}, "tps must be a number, got 'fast'"),
        ({"unit": "paragraph"}, "unit must be one of grapheme, word, line, sentence, chunk, got 'paragraph'"),
        ({"max_lag": "-1"}, "max_lag must be between"),
    ],
)
def test_bad_query_is_a_400_naming_the_parameter(enc: Any, query: dict[str, str], message: str) -> None:
    from starlette.testclient import TestClient

    with TestClient(create_playground(enc, TEXT)) as client:
        r = client.get("/stream", params=query)
    assert r.status_code == 400
    assert message in r.json()["error"]["message"]


def test_a_bad_query_has_the_error_type_the_proxy_uses(enc: Any) -> None:
    from starlette.testclient import TestClient

    with TestClient(create_playground(enc, TEXT)) as client:
        r = client.get("/stream", params={"cps": "abc"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def wait_done(driver: Any) -> None:
    deadline = time.monotonic() + 60
    while driver.execute_script("return document.body.dataset.state") != "done":
        assert time.monotonic() < deadline, "the page did not finish streaming in 60 s"
        time.sleep(0.1)


def count_children(driver: Any, view: str) -> int:
    return int(driver.execute_script(f"return document.getElementById('{view}').children.length"))


def test_page_in_headless_chromium_fills_three_panes(enc: Any, tmp_path: Any) -> None:
    """The page, in a real browser: all three panes fill with the whole stream's text,
    and a screenshot shows ink in each pane. CI installs Debian's chromium; elsewhere
    the test is skipped when no browser is installed."""
    from PIL import Image

    text = (TEXT * 3).strip() + "\n"
    app = create_playground(enc, text)
    with serve(app) as base:
        driver = chromium()
        try:
            driver.get(f"{base}/?tps=150&cps=600")
            wait_done(driver)
            panes = {}
            for view in ("raw", "paced", "sentence"):
                element = driver.find_element("id", view)
                assert driver.execute_script("return arguments[0].textContent", element) == text, view
                panes[view] = element.rect
            status = driver.find_element("id", "status").text
            assert status.startswith("done"), status
            assert driver.find_element("id", "cps").get_attribute("value") == "600"  # the URL's value
            words = count_children(driver, "paced")
            # The controls restart the stream with new options: by sentence, far fewer chunks.
            driver.execute_script("document.getElementById('unit').value = 'sentence'")
            driver.find_element("id", "start").click()
            wait_done(driver)
            assert driver.execute_script("return document.getElementById('paced').textContent") == text
            assert count_children(driver, "paced") < words / 3
            shot = tmp_path / "playground.png"
            driver.save_screenshot(str(shot))
            if os.environ.get("PACER_SCREENSHOT"):
                shutil.copy(shot, os.environ["PACER_SCREENSHOT"])
            ratio = driver.execute_script("return window.devicePixelRatio") or 1
        finally:
            driver.quit()
    image = Image.open(shot).convert("L")
    for view, rect in panes.items():
        left, top = int(rect["x"] * ratio), int(rect["y"] * ratio)
        pane = image.crop((left, top, left + int(rect["width"] * ratio), top + int(rect["height"] * ratio)))
        ink = sum(pane.histogram()[:128])  # dark pixels: text on the white pane
        assert ink > 500, f"the {view} pane looks empty in the screenshot ({ink} dark pixels)"


def test_the_page_shows_the_library_at_its_best(enc: Any) -> None:
    from pacer._playground import paced_view

    page = (pacer._playground.resources.files("pacer") / "data" / "playground.html").read_text("utf-8")
    assert '<option value="grapheme" selected>' in page  # the library's default unit
    assert 'id="sentence-legend"' in page and "forced cut (hold timer" in page  # forced cuts explained
    paced = paced_view(enc)
    assert isinstance(paced.stages[-1], pacer.Pacer) and paced.stages[-1].unit == "grapheme"
    assert paced.stages[-1].boundaries == "detect"  # pauses without a splitter holding text


def test_the_sentence_pane_never_cuts_inside_a_url_or_a_chinese_sentence_on_a_stall(enc: Any) -> None:
    # The bursty replay stalls up to 1.2 s between bursts; the pane's hold timer is longer
    # than any of its silences, so every cut is a sentence end (was 0.6 s: a cut mid-URL).
    text = "See https://example.com/docs/v2/guide.html for details. 我们明天去北京参观博物馆和长城。Done."
    ids = enc.encode(text)
    for seed in range(6):
        trace = pacer.traces.bursty(ids, per_second=8, burst=(1, 3), seed=seed)
        units = pacer.simulate(trace, sentence_view(enc, 8.0)).emissions
        assert [u.text for u in units] == [
            "See https://example.com/docs/v2/guide.html for details. ",
            "我们明天去北京参观博物馆和长城。",
            "Done.",
        ], seed


def _session_events(response: Any) -> Any:
    decoder = SSEDecoder()
    for data in response.iter_bytes():
        yield from decoder.feed(data)


def test_the_controls_act_on_the_running_streams_paced_pane_over_http(enc: Any) -> None:
    text = (TEXT * 3).strip() + "\n"
    app = create_playground(enc, text)
    with serve(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        params = {"tps": 100, "cps": 5, "max_lag": 10}
        with client.stream("GET", "/stream", params=params) as response:
            events = _session_events(response)
            first = next(events)
            assert first.event == "session"
            session = json.loads(first.data)["id"]
            url = f"/control/{session}"
            assert client.post(url, json={"action": "pause"}).json()["paused"] is True
            assert client.post(url, json={"action": "rewind"}).status_code == 400
            assert client.post(url, content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
            assert client.post("/control/nobody", json={"action": "pause"}).status_code == 404
            got = [first]
            while not (
                got[-1].event == "raw"
                and "".join(json.loads(e.data)["text"] for e in got if e.event == "raw") == text
            ):
                got.append(next(events))  # the model runs to its end while the paced pane waits
            held = "".join(json.loads(e.data)["text"] for e in got if e.event == "paced")
            state = client.post(url, json={"action": "rate", "cps": 400}).json()
            assert state["cps"] == 400.0 and state["paused"] is True
            assert client.post(url, json={"action": "show_all"}).json()["show_all"] is True
            got += list(events)
    paced = "".join(json.loads(e.data)["text"] for e in got if e.event == "paced")
    assert paced == text and len(held) < len(text)  # nothing lost or twice; the pause held some
    assert got[-1].data == "[DONE]"


def test_the_page_pauses_shows_all_and_sets_a_live_rate_in_headless_chromium(enc: Any) -> None:
    text = (TEXT * 3).strip() + "\n"
    app = create_playground(enc, text)
    with serve(app) as base:
        driver = chromium()
        try:
            driver.get(f"{base}/?tps=20&cps=5&max_lag=10")
            wait_for(lambda: driver.execute_script("return document.body.dataset.session"))
            wait_for(lambda: count_children(driver, "paced") > 0)
            driver.find_element("id", "pause").click()
            state = "return document.body.dataset.control || '{}'"
            wait_for(lambda: json.loads(driver.execute_script(state)).get("paused"))
            assert driver.find_element("id", "pause").text == "Resume"
            raw = "return document.getElementById('raw').textContent"
            wait_for(lambda: driver.execute_script(raw) == text)  # the model ran on
            paced = "return document.getElementById('paced').textContent"
            assert len(driver.execute_script(paced)) < len(text)  # the paced pane waited
            driver.execute_script(
                "const r = document.getElementById('live-rate'); r.value = 300;"
                "r.dispatchEvent(new Event('change'));"
            )
            wait_for(
                lambda: (
                    json.loads(driver.execute_script("return document.body.dataset.control"))["cps"] == 300
                )
            )
            driver.find_element("id", "show-all").click()
            wait_done(driver)
            assert driver.execute_script(paced) == text
        finally:
            driver.quit()
