"""PacerStreamer with a real model.generate: a tiny randomly initialised Llama on CPU."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import pacer
from pacer.testing.backends import get, tiny_llama

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model_and_tokenizer() -> tuple[Any, Any]:
    tok = get("hf-fast-tokenizer.model.v1").tokenizer
    model = tiny_llama(tok)
    return model, tok


def generate(model: Any, tok: Any, streamer: Any) -> tuple[Any, threading.Thread, dict[str, Any]]:
    inputs = tok("Once upon a time, 中文 🤖", return_tensors="pt")
    result: dict[str, Any] = {}

    def work() -> None:
        result["ids"] = model.generate(
            **inputs,
            streamer=streamer,
            max_new_tokens=40,
            do_sample=True,
            top_k=0,
            temperature=1.5,
            pad_token_id=tok.eos_token_id,
        )

    thread = threading.Thread(target=work)
    thread.start()
    return inputs, thread, result


@pytest.mark.parametrize("skip", [False, True])
def test_streamer_output_equals_decode_of_generated_ids(
    model_and_tokenizer: tuple[Any, Any], skip: bool
) -> None:
    model, tok = model_and_tokenizer
    streamer = pacer.PacerStreamer(
        tok, pacer.Packetizer(16, 4), skip_prompt=True, skip_special_tokens=skip, timeout=60
    )
    inputs, thread, result = generate(model, tok, streamer)
    text = "".join(streamer)
    thread.join()
    new_ids = result["ids"][0, inputs["input_ids"].shape[1] :].tolist()
    assert len(new_ids) > 0
    assert text == tok.decode(new_ids, skip_special_tokens=skip)


@pytest.mark.anyio
async def test_async_streamer_output_equals_decode(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tok = model_and_tokenizer
    streamer = pacer.PacerStreamer(tok, skip_prompt=True, timeout=60)
    inputs, thread, result = generate(model, tok, streamer)
    parts = [t async for t in streamer]
    await anyio.to_thread.run_sync(thread.join)
    new_ids = result["ids"][0, inputs["input_ids"].shape[1] :].tolist()
    assert "".join(parts) == tok.decode(new_ids)


def test_streamer_rejects_batches() -> None:
    streamer = pacer.PacerStreamer(get("tiktoken-tekken").tokenizer)
    with pytest.raises(ValueError, match="batch size 1 only"):
        streamer.put(torch.zeros((2, 3), dtype=torch.long))


def test_streamer_keeps_the_prompt_by_default_as_transformers_streamers_do() -> None:
    tok = get("tiktoken-tekken").tokenizer
    prompt, answer = tok.encode("Question? "), tok.encode("Answer.")
    for streamer, expected in (
        (pacer.PacerStreamer(tok), "Question? Answer."),
        (pacer.PacerStreamer(tok, skip_prompt=True), "Answer."),
    ):
        streamer.put(prompt)
        streamer.put(answer)
        streamer.end()
        assert "".join(streamer) == expected


def test_streamer_times_out_when_generate_goes_silent() -> None:
    streamer = pacer.PacerStreamer(get("tiktoken-tekken").tokenizer, skip_prompt=False, timeout=0.05)
    streamer.put([1000])
    with pytest.raises(TimeoutError, match=r"no token for 0\.05 s"):
        list(streamer)
