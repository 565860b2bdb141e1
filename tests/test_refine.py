"""Stop and refine: the request after a stopped answer (``pacer.client.follow_up`` and
``pacer-stream.js``'s ``PacerStream.followUp``), each API's turns exactly, and the whole
loop through a real ``pacer proxy`` process in front of fake upstreams of all three
APIs: the follow-up the upstream receives carries, byte for byte, the text the client
had received."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("httpx")
pytest.importorskip("starlette")

import httpx

from pacer import HeardText
from pacer.client import ResumableStream, follow_up, shown_text
from pacer.formats import Transcript
from pacer.testing import streams as scripts

from .servers import ScriptedUpstream, chromium, cli_proxy, serve, wait_for

CHAT, RESPONSES, MESSAGES = "/v1/chat/completions", "/v1/responses", "/v1/messages"
CORRECTION = "Shorter, please, and name one library. 谢谢"
WEATHER = {"name": "get_weather", "description": "The weather in a city", "parameters": {"type": "object"}}
REQUESTS: dict[str, dict[str, Any]] = {
    CHAT: {
        "model": "m",
        "stream": True,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Why pace a stream?"},
        ],
        "tools": [{"type": "function", "function": WEATHER}],
        "temperature": 0.2,
    },
    RESPONSES: {
        "model": "m",
        "stream": True,
        "instructions": "Be brief.",
        "input": "Why pace a stream?",
        "tools": [{"type": "function", **WEATHER}],
    },
    MESSAGES: {
        "model": "m",
        "stream": True,
        "max_tokens": 512,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Why pace a stream?"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    },
}


def assistant_turn(path: str, body: dict[str, Any]) -> str:
    """The text of the follow-up's assistant turn (the one before the last)."""
    if path == RESPONSES:
        item = body["input"][-2]
        assert item["role"] == "assistant" and item["content"][0]["type"] == "output_text"
        return str(item["content"][0]["text"])
    message = body["messages"][-2]
    assert message["role"] == "assistant"
    return str(message["content"] if path == CHAT else message["content"][0]["text"])


# -- each API's turns, exactly ----------------------------------------------------------------


def test_a_chat_follow_up_is_the_request_plus_the_shown_turn_and_the_correction() -> None:
    request = REQUESTS[CHAT]
    before = copy.deepcopy(request)
    body = follow_up("chat.completions", request, "Pacing keeps ", CORRECTION)
    assert body == {
        **request,
        "messages": [
            *request["messages"],
            {"role": "assistant", "content": "Pacing keeps "},
            {"role": "user", "content": CORRECTION},
        ],
    }
    assert request == before  # the request itself is not changed
    assert follow_up("http://h/gw/v1/chat/completions?x=1", request, "Pacing keeps ", CORRECTION) == body


def test_a_responses_follow_up_has_an_output_text_assistant_item_and_keeps_instructions() -> None:
    request = REQUESTS[RESPONSES]
    body = follow_up(RESPONSES, request, "Pacing keeps ", CORRECTION)
    assert body == {
        **request,
        "input": [
            {"type": "message", "role": "user", "content": "Why pace a stream?"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Pacing keeps ", "annotations": []}],
            },
            {"type": "message", "role": "user", "content": CORRECTION},
        ],
    }
    earlier = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]
    listed = follow_up("responses", {"model": "m", "input": earlier}, "Hello", CORRECTION)
    assert listed["input"][:1] == earlier and len(listed["input"]) == 3
    chained = follow_up("responses", {"model": "m", "previous_response_id": "resp_1"}, "Hello", CORRECTION)
    assert chained["previous_response_id"] == "resp_1" and [i["role"] for i in chained["input"]] == [
        "assistant",
        "user",
    ]


def test_a_messages_follow_up_has_text_blocks_and_keeps_system_and_tools() -> None:
    request = REQUESTS[MESSAGES]
    body = follow_up(MESSAGES, request, "Pacing keeps ", CORRECTION)
    assert body == {
        **request,
        "messages": [
            *request["messages"],
            {"role": "assistant", "content": [{"type": "text", "text": "Pacing keeps "}]},
            {"role": "user", "content": [{"type": "text", "text": CORRECTION}]},
        ],
    }


def test_a_prefilled_turn_is_continued_and_its_continuation_flags_dropped() -> None:
    # Anthropic: a last assistant message is a prefill; the shown text is its next block.
    prefilled = {
        "model": "m",
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "{"}],
    }
    body = follow_up(MESSAGES, prefilled, '"a": 1', CORRECTION)
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "text", "text": "{"}, {"type": "text", "text": '"a": 1'}]},
        {"role": "user", "content": [{"type": "text", "text": CORRECTION}]},
    ]
    # vLLM's continue_final_message: the shown text extends that message; the follow-up
    # ends with a user turn, so the flags that continue the last turn go.
    continued = {
        "model": "m",
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Once"}],
        "continue_final_message": True,
        "add_generation_prompt": False,
    }
    body = follow_up(CHAT, continued, " upon a time", CORRECTION)
    assert body == {
        "model": "m",
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "Once upon a time"},
            {"role": "user", "content": CORRECTION},
        ],
    }
    # Without the flag, a last assistant message is history: the shown turn comes after it.
    plain = {key: continued[key] for key in ("model", "messages")}
    assert follow_up(CHAT, plain, " upon", CORRECTION)["messages"][2] == {
        "role": "assistant",
        "content": " upon",
    }


def test_the_lane_comes_from_a_cancel_answer_a_transcript_or_what_was_heard() -> None:
    answer = {
        "text": "First lane",
        "choices": [{"index": 0, "text": "First lane"}, {"index": 1, "text": "Second lane"}],
    }
    assert shown_text(answer) == "First lane"
    assert shown_text(answer, choice=1) == "Second lane"
    assert shown_text({"text": "No lanes listed"}) == "No lanes listed"
    transcript = Transcript("chat.completions")
    for event in scripts.frames([e for e in scripts.chat(n=2, tools=False) if e[2] != "[DONE]"][:40]):
        transcript.feed(event[1])
    assert shown_text(transcript, choice=1) == transcript.choices[1]["text"] != ""
    heard = HeardText()
    heard.audio("Pacing keeps reading calm. ", 2.0)
    heard.audio("It also bounds the lag. ", 2.0)
    assert shown_text(heard, at=3.0) == heard.at(3.0) == "Pacing keeps reading calm. It also "
    body = follow_up(CHAT, REQUESTS[CHAT], heard, CORRECTION, at=3.0)
    assert body["messages"][-2] == {"role": "assistant", "content": "Pacing keeps reading calm. It also "}


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("completions", {}, "x", "y"), {}, ValueError, "Completions API has no turns"),
        (("/v1/embeddings", {}, "x", "y"), {}, ValueError, "api must be one of chat.completions, responses"),
        ((None, {}, "x", "y"), {}, TypeError, "api must be a str"),
        ((CHAT, [], "x", "y"), {}, TypeError, "request must be the original request's JSON object"),
        ((CHAT, {"model": "m"}, "x", "y"), {}, ValueError, "needs a 'messages' list, got None"),
        ((RESPONSES, {"input": 3}, "x", "y"), {}, ValueError, "needs a 'input' list, got 3"),
        ((CHAT, {"messages": []}, "", "y"), {}, ValueError, "no text was shown"),
        ((CHAT, {"messages": []}, " \n", "y"), {}, ValueError, "no text was shown"),
        ((CHAT, {"messages": []}, {"outcome": "done"}, "y"), {}, ValueError, "shown has no 'text'"),
        ((CHAT, {"messages": []}, {"text": "x"}, "y"), {"choice": 2}, ValueError, "one lane's text"),
        (
            (CHAT, {"messages": []}, {"choices": [{"index": 0, "text": "x"}]}, "y"),
            {"choice": 1},
            ValueError,
            "lanes shown are: 0",
        ),
        ((CHAT, {"messages": []}, "x", "y"), {"choice": -1}, ValueError, "choice must be >= 0"),
        ((CHAT, {"messages": []}, "x", "y"), {"choice": True}, TypeError, "choice must be an int"),
        ((CHAT, {"messages": []}, 42, "y"), {}, TypeError, "shown must be the text (str), a cancel's JSON"),
        ((CHAT, {"messages": []}, "x", "y"), {"at": 1.0}, TypeError, "at= is for a HeardText"),
        ((CHAT, {"messages": []}, HeardText(), "y"), {}, TypeError, "a HeardText needs at="),
        ((CHAT, {"messages": []}, "x", "  "), {}, ValueError, "correction is blank"),
        ((CHAT, {"messages": []}, "x", None), {}, TypeError, "correction must be a str"),
    ],
)
def test_bad_input_says_what_was_wrong(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match="follow_up: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        follow_up(*args, **kwargs)


def test_nothing_heard_yet_is_no_text_shown() -> None:
    heard = HeardText(start=5.0)
    heard.audio("Too late. ", 1.0)
    with pytest.raises(ValueError, match="no text was shown"):
        follow_up(MESSAGES, REQUESTS[MESSAGES], heard, CORRECTION, at=5.0)


# -- through a real pacer proxy process, against the fake upstreams of all three APIs ------------


@pytest.fixture(scope="module")
def proxied() -> Iterator[tuple[ScriptedUpstream, str]]:
    """A ``pacer proxy`` process (40 characters/s) in front of the scripted upstreams,
    which also serve the browser test's page (through the proxy: one origin)."""
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    from pacer.resumable import javascript

    upstream = ScriptedUpstream(speed=4.0)

    async def page(request: Any) -> Response:
        return HTMLResponse(_BROWSER_PAGE)

    async def script(request: Any) -> Response:
        return Response(javascript(), media_type="text/javascript")

    upstream.app.router.routes += [Route("/page", page), Route("/pacer-stream.js", script)]
    with serve(upstream.app) as url, cli_proxy("--upstream", url, "--cps", "40") as (proxy, _):
        yield upstream, proxy


def received_request(upstream: ScriptedUpstream, path: str, correction: str) -> dict[str, Any]:
    """The request the upstream received on ``path`` whose last turn is ``correction``."""
    deadline = time.monotonic() + 10
    while True:
        for seen_path, body in reversed(upstream.requests):
            if seen_path == path and last_turn(path, body) == correction:
                return dict(body)
        assert time.monotonic() < deadline, f"the upstream never received the follow-up on {path}"
        time.sleep(0.01)


def last_turn(path: str, body: dict[str, Any]) -> Any:
    """The text of a request's last user turn (``None`` if it has none of the follow-up's shape)."""
    turns = body.get("input" if path == RESPONSES else "messages")
    if not isinstance(turns, list) or not turns:
        return None
    content = turns[-1].get("content")
    return content[0].get("text") if isinstance(content, list) else content


async def stop_and_refine(
    proxy: str, path: str, request: dict[str, Any], correction: str, choice: int = 0
) -> tuple[ResumableStream, dict[str, Any], dict[str, Any]]:
    """Stream ``request``, stop it once lane ``choice`` shows some text, read the stream to
    its end, build the follow-up and post it through the proxy."""
    async with httpx.AsyncClient(timeout=30) as http:
        stream = ResumableStream(http, proxy + path, json=request)
        answer: dict[str, Any] = {}
        async for _ in stream:
            lanes = {c["index"]: c["text"] for c in stream.transcript.choices}
            if not answer and lanes.get(choice):
                answer = await stream.cancel()
        body = stream.follow_up(correction, choice=choice)
        async with http.stream("POST", proxy + path, json=body) as response:
            assert response.status_code == 200, await response.aread()
    return stream, answer, body


@pytest.mark.parametrize("path", [CHAT, RESPONSES, MESSAGES])
def test_the_follow_up_carries_byte_for_byte_what_the_client_received(
    proxied: tuple[ScriptedUpstream, str], path: str
) -> None:
    upstream, proxy = proxied
    correction = f"{CORRECTION} ({path})"
    stream, answer, body = anyio.run(stop_and_refine, proxy, path, REQUESTS[path], correction)
    received = stream.transcript.text
    assert answer["outcome"] == "cancelled" and answer["text"] == received
    assert 0 < len(received) < len(scripts.ANSWERS[0])  # stopped part-way
    assert body == follow_up(path, REQUESTS[path], answer, correction)  # the client's record = the cancel's
    seen = received_request(upstream, path, correction)
    assert assistant_turn(path, seen).encode("utf-8") == received.encode("utf-8")
    assert seen == body  # the system prompt, tools and every other field kept
    key = "input" if path == RESPONSES else "messages"
    assert {k: v for k, v in seen.items() if k != key} == {
        k: v for k, v in REQUESTS[path].items() if k != key
    }


def test_the_follow_up_continues_the_lane_the_reader_picked(proxied: tuple[ScriptedUpstream, str]) -> None:
    upstream, proxy = proxied
    request = {**REQUESTS[CHAT], "n": 2}
    correction = CORRECTION + " (the second choice)"
    stream, answer, body = anyio.run(stop_and_refine, proxy, CHAT, request, correction, 1)
    second = stream.transcript.choices[1]["text"]
    assert second and answer["choices"][1]["text"] == second != stream.transcript.text
    seen = received_request(upstream, CHAT, correction)
    assert assistant_turn(CHAT, seen).encode("utf-8") == second.encode("utf-8")
    assert seen["n"] == 2 and seen == body


def test_a_voice_follow_up_carries_what_had_been_heard(proxied: tuple[ScriptedUpstream, str]) -> None:
    """A voice agent speaks what it receives (here 1 s of audio per 20 characters) and is
    interrupted at 1.5 s: the follow-up carries what had been heard by then, and no more."""
    upstream, proxy = proxied
    correction = CORRECTION + " (heard)"

    async def main() -> tuple[HeardText, str]:
        heard = HeardText()
        async with httpx.AsyncClient(timeout=30) as http:
            stream = ResumableStream(http, proxy + MESSAGES, json=REQUESTS[MESSAGES])
            spoken = 0
            async for _ in stream:
                text = stream.transcript.text
                if len(text) > spoken:
                    heard.audio(text[spoken:], (len(text) - spoken) / 20)
                    spoken = len(text)
                if heard.end >= 3.0 and stream.stream_id and not stream.done:
                    await stream.cancel()
            body = stream.follow_up(correction, heard, at=1.5)
            async with http.stream("POST", proxy + MESSAGES, json=body) as response:
                assert response.status_code == 200
        return heard, stream.transcript.text

    heard, received = anyio.run(main)
    said = heard.at(1.5)
    assert 0 < len(said) < len(received) and received.startswith(said)
    seen = received_request(upstream, MESSAGES, correction)
    assert assistant_turn(MESSAGES, seen).encode("utf-8") == said.encode("utf-8")


def test_a_follow_up_needs_the_requests_json_object() -> None:
    async def main() -> None:
        async with httpx.AsyncClient() as http:
            stream = ResumableStream(http, "http://127.0.0.1:9/v1/chat/completions", json=[1, 2])
            with pytest.raises(TypeError, match="follow_up: the request's json is not an object"):
                stream.follow_up(CORRECTION, "shown")

    anyio.run(main)


# -- the browser client: the same helper in pacer-stream.js, in headless Chromium ----------------

_BROWSER_PAGE = """<!doctype html><meta charset="utf-8"><body><script src="/pacer-stream.js"></script>
<script>
"use strict";
// The same cases as Python's: each answer or error of PacerStream.followUp.
function cases(list) {
  return list.map(([api, request, shown, correction, options]) => {
    try { return {body: PacerStream.followUp(api, request, shown, correction, options)}; }
    catch (error) { return {error: error.message}; }
  });
}
// Stop each stream at its first text, refine it, post the follow-up through the proxy.
async function refine(path, request, correction) {
  let stop = null;
  const stream = new PacerStream(path, request, {onText: () => { if (!stop) stop = stream.cancel(); }});
  const end = await stream.done;
  const answer = await stop;
  const body = stream.followUp(correction);
  const response = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(body)});
  await response.body.cancel();
  return {received: stream.received, answer, body, status: response.status, outcome: end.outcome};
}
</script>"""

CASES: list[tuple[Any, ...]] = [
    (CHAT, REQUESTS[CHAT], "Pacing keeps ", CORRECTION, {}),
    ("responses", REQUESTS[RESPONSES], "Pacing keeps ", CORRECTION, {}),
    ("http://h/v1/messages", REQUESTS[MESSAGES], "Pacing keeps ", CORRECTION, {}),
    (
        CHAT,
        REQUESTS[CHAT],
        {"text": "a", "choices": [{"index": 0, "text": "a"}, {"index": 1, "text": "b"}]},
        "c",
        {"choice": 1},
    ),
    ("responses", {"model": "m", "previous_response_id": "r"}, "Hello", CORRECTION, {}),
    (
        MESSAGES,
        {"model": "m", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "{"}]},
        "x",
        "y",
        {},
    ),
    (
        CHAT,
        {
            "messages": [{"role": "assistant", "content": "Once"}],
            "continue_final_message": True,
            "add_generation_prompt": False,
        },
        " upon",
        "y",
        {},
    ),
    ("completions", {}, "x", "y", {}),
    ("/v1/embeddings", {}, "x", "y", {}),
    (CHAT, {"model": "m"}, "x", "y", {}),
    (CHAT, {"messages": []}, " \n", "y", {}),
    (CHAT, {"messages": []}, {"outcome": "done"}, "y", {}),
    (CHAT, {"messages": []}, {"choices": [{"index": 0, "text": "x"}]}, "y", {"choice": 1}),
    (CHAT, {"messages": []}, "x", "  ", {}),
]


def python_case(
    api: str, request: Any, shown: Any, correction: str, options: dict[str, Any]
) -> dict[str, Any]:
    try:
        return {"body": follow_up(api, request, shown, correction, **options)}
    except (TypeError, ValueError) as exc:
        return {"error": str(exc)}


def test_the_browser_helper_builds_the_same_follow_ups_and_refines_through_the_proxy(
    proxied: tuple[ScriptedUpstream, str],
) -> None:
    upstream, proxy = proxied
    driver = chromium()
    try:
        driver.get(f"{proxy}/page")  # the page and the script come through the proxy: one origin
        js = driver.execute_script("return cases(arguments[0])", [list(case) for case in CASES])
        runs = {}
        corrections = {path: f"{CORRECTION} (browser {path})" for path in (CHAT, RESPONSES, MESSAGES)}
        for path, correction in corrections.items():
            runs[path] = driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "refine(...[...arguments].slice(0, 3)).then(done, (e) => done({error: String(e)}));",
                path,
                REQUESTS[path],
                correction,
            )
            runs[path]["seen"] = received_request(upstream, path, correction)
    finally:
        driver.quit()
    for case, answer in zip(CASES, js, strict=True):
        expected = python_case(*case)
        if "error" in expected:  # the same mistake, said in the same words
            assert "error" in answer, case
            assert first_words(answer["error"]) == first_words(expected["error"]), (answer, expected)
        else:
            assert answer == expected, case
    for path, run in runs.items():
        assert "error" not in run, run
        assert run["status"] == 200
        assert run["outcome"] == ("done" if path == CHAT else "closed")  # [DONE], or the body's clean end
        assert run["answer"]["outcome"] == "cancelled" and run["received"] == run["answer"]["text"]
        assert 0 < len(run["received"]) < len(scripts.ANSWERS[0])
        assert assistant_turn(path, run["seen"]).encode("utf-8") == run["received"].encode("utf-8")
        assert run["seen"] == run["body"] == follow_up(path, REQUESTS[path], run["answer"], corrections[path])


def first_words(error: str) -> list[str]:
    """An error's first three words after the helper's name."""
    return error.split(": ", 1)[1].split()[:3]


# -- the playground: stop, type a correction, send ------------------------------------------------


def test_the_playground_refine_route_answers_what_the_request_carried_or_why_not() -> None:
    pytest.importorskip("tiktoken")
    from starlette.testclient import TestClient

    from pacer._playground import create_playground
    from pacer.tokenizers import load_tekken

    body = follow_up(CHAT, REQUESTS[CHAT], "Pacing keeps ", CORRECTION)
    with TestClient(create_playground(load_tekken(), "One. Two.")) as client:
        answer = client.post("/refine", json=body)
        assert answer.status_code == 200
        assert answer.json() == {"shown": "Pacing keeps ", "correction": CORRECTION, "request": body}
        assert "PacerStream.followUp" in client.get("/pacer-stream.js").text
        for bad in (REQUESTS[CHAT], {"messages": "no"}, [1], {"messages": [{"role": "user", "content": 3}]}):
            refused = client.post("/refine", json=bad)
            assert refused.status_code == 400
            assert "refine: the request must end with the assistant's shown turn" in refused.text
        assert client.post("/refine", content=b"{not json").status_code == 400


def test_the_playground_stops_and_sends_a_follow_up_carrying_the_paced_text_shown() -> None:
    pytest.importorskip("tiktoken")
    from pacer._playground import create_playground
    from pacer.tokenizers import load_tekken

    text = "Streams need a pacer. " * 40
    driver = chromium()
    try:
        with serve(create_playground(load_tekken(), text)) as base:
            driver.get(f"{base}/?tps=40&cps=40")
            length = "return document.getElementById('paced').textContent.length"
            wait_for(lambda: driver.execute_script(length) >= 30)
            driver.find_element("id", "stop").click()
            shown = driver.execute_script("return document.getElementById('paced').textContent")
            driver.find_element("id", "correction").send_keys(CORRECTION)
            driver.find_element("id", "send").click()
            refined = json.loads(
                wait_for(lambda: driver.execute_script("return document.body.dataset.refined"))
            )
            status = driver.find_element("id", "status").text
            after = driver.execute_script("return document.getElementById('paced').textContent")
            out = driver.find_element("id", "refined").text
    finally:
        driver.quit()
    assert 30 <= len(shown) < len(text) and after == shown  # stopped: nothing more came
    assert status == f"stopped: {len(shown)} characters shown"
    assert refined["shown"].encode("utf-8") == shown.encode("utf-8") and refined["correction"] == CORRECTION
    question = {
        "model": "playground",
        "stream": True,
        "messages": [{"role": "user", "content": "Why do streams need a pacer?"}],
    }
    assert refined["request"] == follow_up(CHAT, question, shown, CORRECTION)
    assert out.startswith(f"The next request carries the {len(shown)} characters shown")
