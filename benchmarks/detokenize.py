"""Detokenization cost per token: pacer vs the streaming decoders people use.

References, measured in the same run on the same ids:
- one-shot ``decode`` of the whole sequence (not streaming at all);
- HF tokenizers ``DecodeStream`` (Rust, incremental);
- TGI's prefix/read-offset algorithm: re-decode a short window per token;
- the floor of feeding one id at a time from Python: the same loop around a dict
  lookup, no decoding at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from pacer import Detokenizer
from pacer.tokenizers import load_tekken, mistral_data_file

from ._table import best_of, best_of_each, builds, print_table

ENGLISH = (
    "The quick brown fox jumps over the lazy dog while the model streams its answer, token by token, "
    "to a reader who wants calm and readable text rather than bursts and stalls. "
)
CHINESE = "流式输出需要稳定的节奏。模型一次吐出很多字，然后停顿，读者很难跟上。"
JAPANESE = (
    "ストリーミング出力には落ち着いたリズムが必要です。モデルは一度に多くの文字を送り、それから止まります。"
)
EMOJI = "👩\u200d👩\u200d👧 🇫🇷 👍🏽 🤖 ✨ "
CODE = "def stream(tokens):\n    for text in run(pipeline, tokens):\n        print(text, end='')\n"


def _hf_fast(name: str) -> Any:
    from transformers import LlamaTokenizer

    folder = tempfile.mkdtemp(prefix="pacer-bench-")
    shutil.copy(mistral_data_file(name), os.path.join(folder, "tokenizer.model"))
    return LlamaTokenizer.from_pretrained(folder)


def _tgi(decode: Any, ids: list[int]) -> str:
    # text-generation-inference's decode_token: decode [prefix:read] and [prefix:], emit the difference.
    out, prefix, read = [], 0, 0
    for k in range(1, len(ids) + 1):
        prefix_text = decode(ids[prefix:read])
        new_text = decode(ids[prefix:k])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            out.append(new_text[len(prefix_text) :])
            prefix, read = read, k
    return "".join(out)


def _pacer(tokenizer: Any, ids: list[int]) -> str:
    d = Detokenizer(tokenizer)
    parts = [t for i in ids for t in d.feed(i)]
    return "".join(parts + d.flush())


def _pacer_at_once(tokenizer: Any, ids: list[int]) -> str:
    d = Detokenizer(tokenizer)
    return "".join(d.feed(ids) + d.flush())


FLOOR = "floor: the same loop, one dict lookup a token"


def _floor(ids: list[int]) -> str:
    # What any decoder fed one id at a time from Python pays before decoding anything:
    # the loop of ``_pacer`` around one C call a token that returns a one-item list.
    lookup = {i: ["x"] for i in ids}.__getitem__
    return "".join([t for i in ids for t in lookup(i)])


def _decode_stream(rust: Any, ids: list[int]) -> str:
    from tokenizers.decoders import DecodeStream

    stream = DecodeStream(skip_special_tokens=False)
    parts = [stream.step(rust, i) for i in ids]
    return "".join(p for p in parts if p)


def _hf_tekken() -> Any:
    from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

    return convert_tekken_tokenizer(str(mistral_data_file("tekken_240911.json")))


def _hf_wordpiece() -> Any:
    """The WordPiece tokenizer the tests train (no such file ships in a registry package),
    as a transformers ``BertTokenizerFast``."""
    from transformers import BertTokenizerFast

    from pacer.testing.backends import wordpiece

    return BertTokenizerFast(tokenizer_object=wordpiece(), clean_up_tokenization_spaces=True)


def measure(quick: bool = False) -> list[list[Any]]:
    """``[text, tokenizer, decoder, us/token, DecodeStream's us/token]`` for every case, in
    this process's build."""
    reps = 2 if quick else 20
    rows: list[list[Any]] = []
    enc = load_tekken()
    families = {
        "tekken BPE": (enc, _hf_tekken()),
        "v3 SentencePiece": (None, _hf_fast("mistral_instruct_tokenizer_240323.model.v3")),
        "WordPiece (BERT-style)": (None, _hf_wordpiece()),
    }
    corpora = {"English": ENGLISH, "Chinese": CHINESE, "Japanese": JAPANESE, "emoji": EMOJI, "code": CODE}
    for label, text in corpora.items():
        text = text * reps
        for family, (tiktoken_enc, fast) in families.items():
            rust = fast.backend_tokenizer
            ids = fast.encode(text, add_special_tokens=False)
            cases: dict[str, Any] = {
                "pacer Detokenizer (HF fast)": lambda ids=ids, fast=fast: _pacer(fast, ids),
                "pacer, all ids in one feed (HF fast)": lambda ids=ids, fast=fast: _pacer_at_once(fast, ids),
                FLOOR: lambda ids=ids: _floor(ids),
                "HF DecodeStream": lambda ids=ids, rust=rust: _decode_stream(rust, ids),
                "TGI prefix/offset (HF)": lambda ids=ids, rust=rust: _tgi(rust.decode, ids),
                "one-shot decode (HF)": lambda ids=ids, rust=rust: rust.decode(ids),
            }
            assert _pacer(fast, ids) == _pacer_at_once(fast, ids) == fast.decode(ids)
            if tiktoken_enc is not None:
                t_ids = tiktoken_enc.encode(text)
                assert (
                    _pacer(tiktoken_enc, t_ids)
                    == _pacer_at_once(tiktoken_enc, t_ids)
                    == tiktoken_enc.decode(t_ids)
                )
                cases["pacer Detokenizer (tiktoken)"] = lambda t_ids=t_ids, e=tiktoken_enc: _pacer(e, t_ids)
                cases["pacer, all ids in one feed (tiktoken)"] = lambda t_ids=t_ids, e=tiktoken_enc: (
                    _pacer_at_once(e, t_ids)
                )
                cases["one-shot decode (tiktoken)"] = lambda t_ids=t_ids, e=tiktoken_enc: e.decode(t_ids)
            times = {name: t / len(ids) * 1e6 for name, t in best_of_each(cases, 5).items()}
            rows += [[label, family, name, us, times["HF DecodeStream"]] for name, us in times.items()]
    return rows


def main(quick: bool = False) -> None:
    measured = builds("detokenize", "measure", quick)
    header = ["text", "tokenizer", "decoder"]
    for build, _ in measured:
        header += [f"us/token, {build}", f"vs DecodeStream, {build}"]
    rows = []
    for i, (text, family, name, _, _) in enumerate(measured[0][1]):
        row = [text, family, name]
        for _, result in measured:
            us, ref = result[i][3], result[i][4]
            row += [f"{us:.3f}", f"{ref / us:.1f}x"]
        rows.append(row)
    print_table(
        "Detokenization, us/token, one token per feed unless the row says otherwise; "
        "speed vs HF DecodeStream on the same tokenizer",
        header,
        rows,
    )
    print_table(
        "Detokenization against the tokenizer's own one-shot decode of the same ids, "
        f"time per token as a multiple of it (aim: <= 1.5x), {measured[0][0]} build",
        ["text", "tokenizer", "decoder", "one id a feed", "all ids in one feed", "floor of one id a feed"],
        _against_one_shot(measured[0][1]),
    )


def _against_one_shot(result: list[list[Any]]) -> list[list[str]]:
    us = {(text, family, name): t for text, family, name, t, _ in result}
    rows = []
    for text, family, name, _, _ in result:
        if not name.startswith("one-shot decode"):
            continue
        source = name.removeprefix("one-shot decode ")  # "(HF)" or "(tiktoken)"
        tokenizer = "(HF fast)" if source == "(HF)" else source  # what pacer's rows call it
        one_shot = us[text, family, name]
        at_once = us[text, family, f"pacer, all ids in one feed {tokenizer}"]
        per_id = us[text, family, f"pacer Detokenizer {tokenizer}"]
        rows.append(
            [
                text,
                family,
                f"pacer {source}",
                f"{per_id / one_shot:.2f}x",
                f"{at_once / one_shot:.2f}x",
                f"{us[text, family, FLOOR] / one_shot:.2f}x",
            ]
        )
    return rows


def _paragraph_ids(fast: Any, n: int) -> list[int]:
    words = ENGLISH.replace(".", ",").split()
    ids: list[int] = []
    k = 0
    while len(ids) < n:  # one paragraph: no newline anywhere
        chunk = " ".join(words[(k + j) % len(words)] for j in range(400))
        ids += fast.encode(" " + chunk, add_special_tokens=False)
        k += 7
    return ids[:n]


def _per_token_at(depth: int, window: int, ids: list[int], make: Any) -> float:
    """Seconds per token for tokens [depth - window, depth), state already at depth - window."""
    step = make(ids[: depth - window])
    tail = ids[depth - window : depth]
    return best_of(lambda: step(tail), 1) / window


def depth(quick: bool = False) -> None:
    import torch
    from tokenizers.decoders import DecodeStream
    from transformers import TextIteratorStreamer

    fast = _hf_fast("mistral_instruct_tokenizer_240323.model.v3")
    rust = fast.backend_tokenizer
    deep = 4_000 if quick else 20_000
    ids = _paragraph_ids(fast, deep)
    window = 200

    def pacer_at(prefix: list[int]) -> Any:
        d = Detokenizer(fast)
        for i in prefix:
            d.feed(i)
        return lambda tail: [d.feed(i) for i in tail]

    def stream_at(prefix: list[int]) -> Any:
        s = DecodeStream(skip_special_tokens=False)
        for i in prefix:
            s.step(rust, i)
        return lambda tail: [s.step(rust, i) for i in tail]

    def tis_at(prefix: list[int]) -> Any:
        # The state TextIteratorStreamer reaches after `prefix` with no newline in it.
        s = TextIteratorStreamer(fast)
        s.token_cache = list(prefix)
        s.print_len = len(fast.decode(prefix))
        tensors = [torch.tensor([i]) for i in ids]
        return lambda tail: [s.put(tensors[0].new_tensor([i])) for i in tail]

    rows = []
    for name, make in [
        ("pacer Detokenizer", pacer_at),
        ("HF DecodeStream", stream_at),
        ("transformers TextIteratorStreamer", tis_at),
    ]:
        shallow_us = _per_token_at(1_000, window, ids, make) * 1e6
        deep_us = _per_token_at(deep, window, ids, make) * 1e6
        rows.append([name, f"{shallow_us:.2f}", f"{deep_us:.2f}", f"{deep_us / shallow_us:.2f}"])
    print_table(
        "Detokenization cost by depth in one paragraph (v3 SPM, HF fast), us/token",
        ["decoder", "at 1k tokens", f"at {deep // 1000}k tokens", "deep / shallow"],
        rows,
    )
