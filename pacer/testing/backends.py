"""Real tokenizers, loaded once from files that mistral-common ships."""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pacer.tokenizers import load_sentencepiece, load_tekken, mistral_data_file


def _transformers() -> Any:
    """transformers, untyped: it exports most names lazily, and its stubs differ by version."""
    return importlib.import_module("transformers")


SPM_FILES = ["tokenizer.model.v1", "mistral_instruct_tokenizer_240323.model.v3"]


@dataclass
class Backend:
    name: str
    tokenizer: Any
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int], bool], str]
    vocab_size: int


@functools.cache
def _hf_from_spm(name: str) -> Any:
    from transformers import LlamaTokenizer

    folder = tempfile.mkdtemp(prefix="pacer-spm-")
    shutil.copy(mistral_data_file(name), os.path.join(folder, "tokenizer.model"))
    return LlamaTokenizer.from_pretrained(folder)


@functools.cache
def _hf_tekken() -> Any:
    from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

    return convert_tekken_tokenizer(str(mistral_data_file("tekken_240911.json")))


#: Text every trained test tokenizer sees besides the Python docs: CJK, emoji, contractions.
_TRAINING_EXTRA = (
    "Streaming 中文 和 日本語のかな 👩‍👩‍👧 🇫🇷 naïve café don't I'm it's we've you're. Wait?! Yes, no."
)


@functools.cache
def wordpiece() -> Any:
    """A BERT-style WordPiece tokenizer trained here (no file of that family ships in
    a registry package): HF tokenizers' own model, pre-tokenizer and decoder."""
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    trainer = trainers.WordPieceTrainer(
        vocab_size=3000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    tok.train_from_iterator([*topics.values(), _TRAINING_EXTRA] * 2, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


@functools.cache
def bpe_with_suffix(decoder: bool = True) -> Any:
    """A BPE tokenizer with an end-of-word suffix (``</w>``, as GPT-1, CLIP and XLM
    have), trained here, decoded by HF's ``BPEDecoder``; or with no decoder at all,
    when HF joins the tokens with spaces."""
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if decoder:
        tok.decoder = decoders.BPEDecoder(suffix="</w>")
    trainer = trainers.BpeTrainer(
        vocab_size=1500, end_of_word_suffix="</w>", special_tokens=["<unk>", "<s>", "</s>"]
    )
    tok.train_from_iterator([*list(topics.values())[:200], _TRAINING_EXTRA] * 2, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    return tok


@functools.cache
def ctc() -> Any:
    """A character-level CTC tokenizer as speech models (wav2vec2) have: ``|`` between
    words, ``<pad>`` as the blank, decoded by HF's ``CTC`` decoder. Encoding repeats
    some characters and puts blanks between doubled letters, as a CTC model emits."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    chars = sorted(set(_TRAINING_EXTRA.replace(" ", "")) | set("abcdefghijklmnopqrstuvwxyz.,'?!"))
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: k + 3 for k, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace(" ", "|")
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.CTC(pad_token="<pad>", word_delimiter_token="|", cleanup=True)
    tok.add_special_tokens([AddedToken("<pad>", special=True)])
    return tok


def _ctc_encode(tok: Any, text: str) -> list[int]:
    # What a CTC model emits for ``text``: each label possibly repeated, and a blank
    # between two equal labels (else they would collapse into one).
    pad = tok.token_to_id("<pad>")
    out: list[int] = []
    for k, i in enumerate(tok.encode(text).ids):
        if out and out[-1] == i:
            out.append(pad)
        out += [i] * (1 + k % 3)
    return out


def tiny_llama(tok: Any, max_positions: int = 128) -> Any:
    """A randomly initialised one-layer Llama for ``tok`` (seeded): no weights to download."""
    import torch

    transformers = _transformers()
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
    )
    return transformers.LlamaForCausalLM(config).eval()


def _rust_backend(name: str, rust: Any) -> Backend:
    """An HF ``tokenizers.Tokenizer`` used directly (no transformers wrapper)."""
    return Backend(
        name,
        rust,
        lambda s: rust.encode(s).ids,
        lambda ids, skip: rust.decode(ids, skip_special_tokens=skip),
        rust.get_vocab_size(),
    )


def _transformers_backend(name: str, tok: Any, add_special_tokens: bool = True) -> Backend:
    """A transformers tokenizer, fast or slow."""
    return Backend(
        name,
        tok,
        lambda s: tok.encode(s, add_special_tokens=add_special_tokens),
        lambda ids, skip: tok.decode(ids, skip_special_tokens=skip),
        len(tok),
    )


@functools.cache
def backend(name: str) -> Backend:
    if name == "tiktoken-tekken":
        enc = load_tekken()
        special = {enc.encode_single_token(s) for s in enc.special_tokens_set}
        return Backend(
            name,
            enc,
            enc.encode,
            lambda ids, skip: enc.decode([i for i in ids if not (skip and i in special)]),
            enc.n_vocab,
        )
    if name.startswith("sentencepiece-"):
        sp = load_sentencepiece(mistral_data_file(name.removeprefix("sentencepiece-")))
        return Backend(name, sp, sp.encode, lambda ids, skip: sp.decode(ids), sp.get_piece_size())
    if name.startswith("hf-slow-"):
        module = importlib.import_module("transformers.tokenization_utils_sentencepiece")
        slow = module.SentencePieceBackend(vocab_file=str(mistral_data_file(name.removeprefix("hf-slow-"))))
        return _transformers_backend(name, slow)
    if name == "hf-rust-wordpiece":
        return _rust_backend(name, wordpiece())
    if name == "hf-rust-bpe-suffix":
        return _rust_backend(name, bpe_with_suffix())
    if name == "hf-fast-bpe-suffix":
        # transformers ignores clean_up_tokenization_spaces for BPE models (and warns).
        tok = _transformers().PreTrainedTokenizerFast(
            tokenizer_object=bpe_with_suffix(), clean_up_tokenization_spaces=False
        )
        return _transformers_backend(name, tok)
    if name == "hf-rust-no-decoder":
        return _rust_backend(name, bpe_with_suffix(decoder=False))
    if name == "hf-rust-ctc":
        tok = ctc()
        backend = _rust_backend(name, tok)
        backend.encode = lambda s: _ctc_encode(tok, s)
        return backend
    if name == "hf-fast-wordpiece":
        tok = _transformers().BertTokenizerFast(
            tokenizer_object=wordpiece(), clean_up_tokenization_spaces=True
        )
    elif name.startswith("hf-fast-"):
        tok = _hf_from_spm(name.removeprefix("hf-fast-"))
    elif name == "hf-fast-tekken":
        tok = _hf_tekken()
    elif name.startswith("hf-rust-"):
        return _rust_backend(name, _hf_from_spm(name.removeprefix("hf-rust-")).backend_tokenizer)
    else:
        raise KeyError(name)
    return _transformers_backend(name, tok)


@functools.cache
def hf_tekken_backend() -> Backend:
    return _transformers_backend("hf-fast-tekken", _hf_tekken(), add_special_tokens=False)


ALL = [
    "tiktoken-tekken",
    *(f"sentencepiece-{f}" for f in SPM_FILES),
    *(f"hf-fast-{f}" for f in SPM_FILES),
    f"hf-rust-{SPM_FILES[0]}",
    *(f"hf-slow-{f}" for f in SPM_FILES),
    "hf-fast-tekken",
    "hf-rust-wordpiece",
    "hf-fast-wordpiece",
    "hf-rust-bpe-suffix",
    "hf-fast-bpe-suffix",
    "hf-rust-no-decoder",
    "hf-rust-ctc",
]


def get(name: str) -> Backend:
    return hf_tekken_backend() if name == "hf-fast-tekken" else backend(name)
