"""The documentation's examples run: each page's Python blocks are executed in order,
with only the names a page says it assumes (a model, a TTS engine) provided here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
import pytest

import pacer
from pacer.sse import SSEDecoder
from pacer.testing.backends import get, tiny_llama

DOCS = Path(__file__).resolve().parent.parent / "docs"


def run_page(page: str, **names: Any) -> tuple[dict[str, Any], list[str]]:
    """Execute every ```python block of ``page`` in one namespace; return it and what
    the blocks printed (one entry per ``print`` call, ``end`` included)."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, f"{page} has no Python example"
    printed: list[str] = []

    def record(*args: object, sep: str = " ", end: str = "\n", **_: object) -> None:
        printed.append(sep.join(map(str, args)) + end)

    namespace: dict[str, Any] = {"print": record, **names}
    for block in blocks:
        exec(compile(block, str(DOCS / page), "exec"), namespace)
    return namespace, printed


def test_index_example() -> None:
    pytest.importorskip("tiktoken")
    _, printed = run_page("index.md")
    assert "".join(printed) == "Hello there. How are you today?"


def test_tutorial_examples() -> None:
    pytest.importorskip("tiktoken")
    namespace, printed = run_page("tutorial.md")
    lag, smoothness = map(float, printed[0].split())
    assert 0 <= lag <= 0.5 and smoothness >= 0

    async def source() -> Any:
        for word in ["Live ", "text. ", "Second ", "sentence."]:
            yield word

    printed.clear()
    anyio.run(namespace["main"], source())
    assert "".join(printed) == "Live text. Second sentence."


def test_fastapi_how_to_streams_paced_sse(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    from starlette.testclient import TestClient

    from pacer.testing.streams import ANSWERS

    from .servers import ScriptedUpstream, serve

    with serve(ScriptedUpstream().app) as upstream:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{upstream}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        namespace, _ = run_page("how-to/fastapi.md")
        texts = []
        for path in ("/stream", "/answer?q=hi"):  # the first recipe, then AsyncOpenAI's
            decoder = SSEDecoder()
            with TestClient(namespace["app"]) as client, client.stream("GET", path) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                events = [e for part in response.iter_bytes() for e in decoder.feed(part)]
            events += decoder.flush()
            assert events[-1].data == "[DONE]"
            texts.append("".join(e.data for e in events[:-1]))
    assert texts == ["Hello there. How are you?", ANSWERS[0]]
    with TestClient(namespace["app"]) as client, client.websocket_connect("/ws") as ws:
        messages = []
        while not messages or messages[-1]["type"] == "chunk":
            messages.append(ws.receive_json())
    assert messages[-1] == {"type": "done"}
    assert "".join(m["text"] for m in messages[:-1]) == "Hello there. How are you?"


def test_hf_generate_how_to() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tokenizer = get("hf-fast-tokenizer.model.v1").tokenizer
    real = tiny_llama(tokenizer, max_positions=512)

    class Recording:
        """The page's ``model``: generates with the tiny model and keeps the ids."""

        ids: Any = None

        def generate(self, **kwargs: Any) -> Any:
            self.ids = real.generate(**kwargs, do_sample=False)
            return self.ids

    model = Recording()
    inputs = tokenizer("The quick brown fox", return_tensors="pt")
    namespace, printed = run_page("how-to/hf-generate.md", tokenizer=tokenizer, model=model, inputs=inputs)
    namespace["thread"].join()
    prompt = inputs["input_ids"].shape[1]
    expected = tokenizer.decode(model.ids[0, prompt:], skip_special_tokens=True)
    assert expected and "".join(p[:-1] for p in printed) == expected


def test_tts_how_to_gets_whole_sentences() -> None:
    namespace, _ = run_page("how-to/tts.md")
    said: list[tuple[str, bool]] = []

    class TTS:
        async def say(self, text: str, final: bool) -> None:
            said.append((text, final))

    async def tokens() -> Any:
        for piece in ["Yes. ", "Hello ", "there, ", "how ", "are ", "you ", "today? ", "Fine."]:
            yield piece

    anyio.run(namespace["speak"], tokens(), TTS())
    # "Yes." is shorter than min_chars (20): it goes with the next sentence, not alone.
    assert said == [("Yes. Hello there, how are you today? ", True), ("Fine.", True)]
    assert isinstance(namespace["splitter"], pacer.SentenceSplitter)


@pytest.mark.anyio
async def test_proxy_how_to_hub_example_writes_every_byte() -> None:
    namespace, _ = run_page("how-to/operations.md")

    class Transport:
        def __init__(self) -> None:
            self.data = b""

        def write(self, data: bytes) -> None:
            self.data += data

    async def source() -> Any:
        for word in ["Many ", "streams, ", "one ", "timer. "]:
            await anyio.sleep(0.001)
            yield word

    transports = [Transport() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for transport in transports:
            tg.start_soon(namespace["serve"], source(), transport)
    assert [t.data for t in transports] == [b"Many streams, one timer. "] * 3


def test_controls_how_to_pauses_and_resumes_within_the_bound() -> None:
    _, printed = run_page("how-to/controls.md")
    assert printed == ["True 0 True\n"]


def test_the_api_reference_covers_every_public_name_with_its_docstring() -> None:
    reference = (DOCS / "reference.md").read_text(encoding="utf-8")
    for name in pacer.__all__:
        assert f"::: pacer.{name}\n" in reference, f"docs/reference.md lacks pacer.{name}"
        if not pacer.compiled:  # mypyc drops class docstrings; the docs read the source
            assert (getattr(pacer, name).__doc__ or "").strip(), f"pacer.{name} has no docstring"


def test_guard_how_to(tmp_path: Any) -> None:
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    # The page's classifier_path: a tiny BERT classifier built here, weighted to say "safe".
    tokenizer = get("hf-fast-wordpiece").tokenizer
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        id2label={0: "safe", 1: "unsafe"},
        label2id={"safe": 0, "unsafe": 1},
    )
    model = transformers.BertForSequenceClassification(config)
    model.classifier.bias.data[:] = model.classifier.bias.data.new_tensor([10.0, -10.0])
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    namespace, printed = run_page("how-to/guard.md", classifier_path=str(tmp_path))
    assert printed[0] == "Sure. Your key is [redacted]. \n"
    (no_check, no_end), (slow_check, slow_end) = (line.split() for line in printed[1:3])
    assert (no_check, slow_check) == ("0.0", "0.3") and no_end == slow_end
    assert printed[3] == "Fine. \n"  # a pool of its own
    assert printed[4:6] == ["Your key is [redacted].\n", "11\n"]  # the pattern policy

    async def source() -> Any:
        for word in ["A calm ", "answer. ", "Another ", "one."]:
            yield word

    printed.clear()
    anyio.run(namespace["answer"], source())
    assert "".join(printed) == "A calm answer. Another one."


def test_resumable_how_to_serves_resumes_and_truncates_to_what_was_heard() -> None:
    from .servers import serve

    namespace, printed = run_page("how-to/resumable.md")
    assert printed == ["Sure, the flight leaves at nine. Do you want \n"]
    printed.clear()
    with serve(namespace["app"]) as base:
        text = anyio.run(namespace["ask"], base)
    assert text == "Streams that outlive a connection."
    assert printed[0].startswith("True ")


def test_refine_how_to_builds_each_apis_follow_up_and_stops_a_real_stream() -> None:
    from pacer.proxy import create_proxy
    from pacer.testing.streams import ANSWERS

    from .servers import ScriptedUpstream, serve

    namespace, printed = run_page("how-to/refine.md")
    page = (DOCS / "how-to/refine.md").read_text(encoding="utf-8")
    assert len(printed) == 4
    for line in printed:  # the page shows what each example prints, as printed
        assert f"```text\n{line}```" in page, line
    assert "'text': 'Start at the Louvre at nine, then '" in printed[1]
    request = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Why pace?"}]}
    with (
        serve(ScriptedUpstream().app) as upstream,
        serve(create_proxy(upstream, lambda: pacer.Pacer(cps=40))) as base,
    ):
        body = anyio.run(namespace["stop_and_refine"], base, request, "Shorter.")
    assert body["messages"][0] == request["messages"][0] and body["messages"][2] == {
        "role": "user",
        "content": "Shorter.",
    }
    assert 0 < len(body["messages"][1]["content"]) < len(ANSWERS[0])
