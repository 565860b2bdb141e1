"""Reduce real tokenizers to a ``Vocab``, and load the tokenizer files pacer uses.

Each adapter reads the tokenizer's vocabulary once (O(vocabulary size)) and copies
the rules of that tokenizer's own decoder. Backends import lazily: none of them is
a dependency of pacer's core.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import importlib
import json
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ._cleanup import CLEANUP_SEEN, CleanupMoves, clean_alone

__all__ = ["Vocab", "load_sentencepiece", "load_tekken", "mistral_data_file", "vocab_for", "wants_cleanup"]

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SPM_UNKNOWN_SURFACE = " \u2047 "


@dataclass
class Vocab:
    """What a tokenizer's decoder does, reduced to tables and a few rules.

    ``pieces[i]`` is what id ``i`` contributes: ``bytes`` for byte-stream decoders,
    ``str`` for run decoders, ``None`` where ``i`` is not a valid id.
    ``errors`` is the replacement rule for invalid UTF-8: ``"replace"`` (one
    U+FFFD per maximal invalid subpart, as Python, Rust and tiktoken do) or
    ``"pacer.perbyte"`` (one per byte, as SentencePiece does).
    ``strip_first`` is how the decoder drops a leading space: ``None``; ``"token"``
    (from the first non-empty piece, if that id is in ``strip_ids``); ``"output"``
    (the first character of the whole text, if it is a space); or ``"both"``
    (``str.strip()`` of the whole text: trailing whitespace is held until more text
    follows, and dropped at the end).
    ``byte_runs`` maps byte-fallback ids to their byte: consecutive ones are decoded
    together, all-or-nothing (HF ``ByteFallback``). ``name`` says which backend.

    The per-id tables are kept as tuples whatever sequence they are given as: a tuple
    of strings and bytes is one object the garbage collector stops tracking, where a
    list of a vocabulary's 100k+ entries is walked by every full collection.
    """

    name: str
    pieces: Sequence[Any]
    errors: str = "replace"
    strip_first: str | None = None
    strip_ids: frozenset[int] = frozenset()
    byte_runs: dict[int, int] | None = None
    special_ids: frozenset[int] = field(default_factory=frozenset)
    skipped_ids: frozenset[int] = field(default_factory=frozenset)
    """Ids the decoder drops before it runs (skipped specials): they never end a byte run."""
    run_breakers: frozenset[int] = frozenset()
    """Ids that add no text but end an unfinished character (SentencePiece's control
    tokens): bytes on either side of one never join into one character."""
    first: Sequence[Any] | None = None
    """Byte pieces for the decoder's first token, where it differs (HF ``WordPiece``:
    no space added, continuation prefix kept); ``pieces`` for every later token."""
    last: Sequence[Any] | None = None
    """Byte pieces for the decoder's last token, where it differs (HF ``BPEDecoder``:
    the end-of-word suffix becomes nothing rather than a space); ``pieces`` for every
    earlier one. What a token's two forms do not share is held until the next token."""
    repeats: Sequence[Any] | None = None
    """Per id, the key that makes a token a repeat of the one before it, dropped (HF
    ``CTC`` collapses runs of the same token); ``None``: nothing is dropped."""
    cleanup: bool = False
    """Whether transformers' ``clean_up_tokenization`` runs over the decoded text (a
    chain of replacements such as ``" ." -> "."``, streamed by the Detokenizer)."""

    def __post_init__(self) -> None:
        self.pieces = tuple(self.pieces)
        self.first = None if self.first is None else tuple(self.first)
        self.last = None if self.last is None else tuple(self.last)
        self.repeats = None if self.repeats is None else tuple(self.repeats)

    @functools.cached_property
    def texts(self) -> tuple[str | None, ...]:
        """For byte pieces that are complete UTF-8 on their own, their text; else ``None``."""
        out: list[str | None] = []
        for piece in self.pieces:
            try:
                out.append(piece.decode("utf-8") if isinstance(piece, bytes) else None)
            except UnicodeDecodeError:
                out.append(None)
        return tuple(out)

    @functools.cached_property
    def steady_texts(self) -> dict[int, str]:
        """The non-empty text of each id whose text is fixed once nothing is pending:
        no partial character before it and no byte run it could join or end."""
        if self.byte_runs is None:
            return {i: t for i, t in enumerate(self.texts) if t}
        runs, skipped = self.byte_runs, self.skipped_ids
        return {i: p for i, p in enumerate(self.pieces) if p and i not in runs and i not in skipped}

    @functools.cached_property
    def steady_list(self) -> tuple[str | None, ...]:
        """``steady_texts`` as a tuple indexed by id (``None``: no fixed text), for the C lookup."""
        table: list[str | None] = [None] * len(self.pieces)
        for i, text in self.steady_texts.items():
            table[i] = text
        return tuple(table)

    @functools.cached_property
    def run_list(self) -> tuple[int, ...]:
        """For decoders with byte-fallback runs, what each id is to a run, for the C
        lookup: its byte (0-255), -2 for an id skipped without ending a run, -1 for
        any other; empty for other decoders."""
        if self.byte_runs is None:
            return ()
        runs, skipped = self.byte_runs, self.skipped_ids
        return tuple(runs.get(i, -2 if i in skipped else -1) for i in range(len(self.pieces)))

    @functools.cached_property
    def inert_list(self) -> tuple[str | None, ...]:
        """``steady_list`` after the clean-up (``cleanup``), for the C lookup: each text as
        the clean-up gives it when it holds nothing before and nothing after (``None``
        where the text would leave part of a pattern held, as ``" '"`` does). Most pass
        unchanged (``CLEANUP_SEEN`` finds nothing in them); a lone punctuation mark loses
        its space (``" ,"`` is ``","``) whatever comes next."""
        moves = self.cleanup_moves
        return tuple(
            t if t is None or CLEANUP_SEEN.search(t) is None else clean_alone(t, moves)
            for t in self.steady_list
        )

    @functools.cached_property
    def cleanup_moves(self) -> CleanupMoves:
        """The clean-up's (``cleanup``) moves, remembered for every stream of this vocabulary."""
        return CleanupMoves()

    @functools.cached_property
    def bytewise_list(self) -> tuple[bytes | None, ...]:
        """Each id's bytes, where decoding them incrementally is all the id does (``None``:
        an unknown id, or one that ends an unfinished character), for the C lookup; empty
        for decoders with byte-fallback runs, whose ids are not plain bytes."""
        if self.byte_runs is not None:
            return ()
        breakers = self.run_breakers
        return tuple(None if p is None or (not p and i in breakers) else p for i, p in enumerate(self.pieces))


_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple[bool, bool], Vocab]] = weakref.WeakKeyDictionary()


def vocab_for(tokenizer: Any, skip_special_tokens: bool = False) -> Vocab:
    """The ``Vocab`` of a tokenizer object, built once per tokenizer and options.

    Whether it cleans up (``wants_cleanup``) is read on every call: transformers keeps
    that setting in a mutable attribute. Raises ``TypeError`` for objects that are not
    a supported tokenizer.
    """
    if isinstance(tokenizer, Vocab):
        return tokenizer
    cleanup = wants_cleanup(tokenizer)
    try:
        per_tokenizer = _CACHE.setdefault(tokenizer, {})
    except TypeError:  # not weakly referenceable: build every time
        return dataclasses.replace(_build_vocab(tokenizer, skip_special_tokens), cleanup=cleanup)
    vocab = per_tokenizer.get((skip_special_tokens, cleanup))
    if vocab is None:
        # The other cleanup setting's Vocab, if built, differs in that flag alone.
        built = per_tokenizer.get((skip_special_tokens, not cleanup)) or _build_vocab(
            tokenizer, skip_special_tokens
        )
        vocab = built if built.cleanup == cleanup else dataclasses.replace(built, cleanup=cleanup)
        per_tokenizer[(skip_special_tokens, cleanup)] = vocab
    return vocab


def _build_vocab(tokenizer: Any, skip_special_tokens: bool) -> Vocab:
    if isinstance(tokenizer, (bytes, str)):
        raise TypeError("Detokenizer needs a tokenizer object; for byte or text sources use ByteDecoder")
    if hasattr(tokenizer, "decode_single_token_bytes") and hasattr(tokenizer, "n_vocab"):
        return _tiktoken_vocab(tokenizer, skip_special_tokens)
    if hasattr(tokenizer, "id_to_piece") and hasattr(tokenizer, "is_byte"):
        return _sentencepiece_vocab(tokenizer)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return _hf_vocab(backend, skip_special_tokens, type(tokenizer).__name__)
    if hasattr(tokenizer, "convert_ids_to_tokens") and hasattr(tokenizer, "convert_tokens_to_string"):
        return _transformers_slow_vocab(tokenizer, skip_special_tokens)
    if type(tokenizer).__module__.startswith("tokenizers") and hasattr(tokenizer, "to_str"):
        return _hf_vocab(tokenizer, skip_special_tokens, "tokenizers.Tokenizer")
    raise TypeError(
        "Detokenizer supports tokenizers.Tokenizer, transformers fast tokenizers, tiktoken.Encoding "
        f"and sentencepiece.SentencePieceProcessor; got {type(tokenizer).__module__}."
        f"{type(tokenizer).__name__}"
    )


def wants_cleanup(tokenizer: Any) -> bool:
    """Whether a transformers tokenizer's ``decode`` applies ``clean_up_tokenization``.

    Read when each Detokenizer is made (the setting is a mutable attribute). Copies
    transformers' rule that BPE models skip it unless forced.
    """
    if not getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return False
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    if type(tokenizer).clean_up_tokenization is not PreTrainedTokenizerBase.clean_up_tokenization:
        raise NotImplementedError(
            f"Detokenizer: {type(tokenizer).__name__} overrides clean_up_tokenization; "
            "set clean_up_tokenization_spaces=False to stream it"
        )
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and type(backend.model).__name__ == "BPE":
        return bool(
            getattr(
                tokenizer, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False
            )
        )
    return True


# -- tiktoken ------------------------------------------------------------------------------


def _tiktoken_vocab(enc: Any, skip_special_tokens: bool) -> Vocab:
    special = {enc.encode_single_token(name) for name in enc.special_tokens_set}
    pieces: list[bytes | None] = []
    for i in range(enc.n_vocab):
        if i in special and skip_special_tokens:
            pieces.append(b"")
            continue
        try:
            pieces.append(enc.decode_single_token_bytes(i))
        except KeyError:
            pieces.append(None)  # a hole in the id space
    return Vocab(f"tiktoken:{enc.name}", pieces, special_ids=frozenset(special))


# -- sentencepiece -------------------------------------------------------------------------


def _sentencepiece_vocab(sp: Any) -> Vocab:
    pieces: list[bytes] = []
    strip_ids: set[int] = set()
    controls: set[int] = set()
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        if sp.is_control(i):
            pieces.append(b"")
            controls.add(i)
        elif sp.is_unknown(i):
            pieces.append(_SPM_UNKNOWN_SURFACE.encode())
        elif sp.is_byte(i):
            pieces.append(bytes([int(piece[3:5], 16)]))
        else:
            pieces.append(piece.replace("\u2581", " ").encode())
            strip_ids.add(i)
    return Vocab(
        "sentencepiece",
        pieces,
        errors="pacer.perbyte",
        strip_first="token",
        strip_ids=frozenset(strip_ids),
        run_breakers=frozenset(controls),  # SentencePiece decodes each byte run on its own
    )


# -- Hugging Face tokenizers ---------------------------------------------------------------


def _byte_level_decoder() -> dict[str, int]:
    # GPT-2's printable stand-ins for the 256 byte values.
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def _hf_tokens(tok: Any, skip_special_tokens: bool) -> tuple[list[str | None], set[int]]:
    vocab = tok.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1 if vocab else 0
    tokens: list[str | None] = [None] * size
    for token, i in vocab.items():
        tokens[i] = token
    special: set[int] = set()
    for i, added in tok.get_added_tokens_decoder().items():
        if i >= len(tokens):
            tokens.extend([None] * (i + 1 - len(tokens)))
        tokens[i] = added.content
        if added.special:
            special.add(i)
    return tokens, special


@dataclass
class _HFDecoder:
    """What every HF decoder reduction reads: the tokens by id and the decoder's steps."""

    name: str
    tokens: list[str | None]
    special: set[int]
    skip: set[int]  # the specials skipped, when ``skip_special_tokens``
    steps: list[Any]  # the decoder's configuration, one dict per step

    def per_token(self, make: Callable[[str], bytes]) -> list[bytes | None]:
        """``make(token)`` per id: ``None`` where no token has the id, ``b""`` for a skipped one."""
        skip = self.skip
        return [None if t is None else b"" if i in skip else make(t) for i, t in enumerate(self.tokens)]


def _hf_vocab(tok: Any, skip_special_tokens: bool, name: str) -> Vocab:
    config = json.loads(tok.to_str()).get("decoder")
    tokens, special = _hf_tokens(tok, skip_special_tokens)
    steps = config.get("decoders", []) if config and config["type"] == "Sequence" else [config]
    kinds = tuple(s["type"] if s else None for s in steps)
    build = _HF_DECODERS.get(kinds)
    if build is None:
        raise NotImplementedError(f"Detokenizer: the HF decoder {list(kinds)} is not supported yet")
    decoder = _HFDecoder(name, tokens, special, special if skip_special_tokens else set(), steps)
    return build(decoder)


def _hf_byte_level(d: _HFDecoder) -> Vocab:
    byte_of = _byte_level_decoder()

    def level_bytes(token: str) -> bytes:
        if all(c in byte_of for c in token):
            return bytes(byte_of[c] for c in token)
        return token.encode()

    return Vocab(f"{d.name}:ByteLevel", d.per_token(level_bytes), special_ids=frozenset(d.special))


def _hf_byte_fallback(d: _HFDecoder) -> Vocab:
    """SentencePiece as HF runs it: Replace, ByteFallback, Fuse, Strip."""
    replace, strip = d.steps[0], d.steps[-1]
    if (
        replace["pattern"].get("String") is None
        or strip.get("content") != " "
        or strip.get("stop", 0) != 0
        or strip.get("start", 0) > 1
    ):
        raise NotImplementedError(f"Detokenizer: unsupported decoder settings {d.steps}")
    old, new = replace["pattern"]["String"], replace["content"]
    runs: dict[int, int] = {}
    pieces: list[Any] = []
    for i, token in enumerate(d.tokens):
        if token is None:
            pieces.append(None)
            continue
        if i in d.skip:
            pieces.append("")
            continue
        m = _BYTE_PIECE.fullmatch(token)
        if m is not None:
            runs[i] = int(m.group(1), 16)
        pieces.append(token.replace(old, new))
    return Vocab(
        f"{d.name}:ByteFallback",
        pieces,
        strip_first="output" if strip.get("start", 0) == 1 else None,
        byte_runs=runs,
        special_ids=frozenset(d.special),
        skipped_ids=frozenset(d.skip),
    )


def _hf_metaspace(d: _HFDecoder) -> Vocab:
    meta = d.steps[0]
    repl = meta.get("replacement", "\u2581")
    prepend = meta.get("prepend_scheme", "always" if meta.get("add_prefix_space", True) else "never")
    return Vocab(
        f"{d.name}:Metaspace",
        d.per_token(lambda t: t.replace(repl, " ").encode()),
        strip_first="token" if prepend != "never" else None,
        strip_ids=frozenset(range(len(d.tokens))),
        special_ids=frozenset(d.special),
    )


def _hf_wordpiece(d: _HFDecoder) -> Vocab:
    # HF's WordPiece decoder works token by token: a token after the first loses its
    # continuation prefix or gains a space, then (``cleanup``) a fixed list of
    # replacements runs on that token alone. So each id has one piece for the first
    # position and one for every later position: two tables, O(1) per token.
    prefix, cleanup = d.steps[0].get("prefix", "##"), d.steps[0].get("cleanup", True)

    def clean(text: str) -> bytes:
        return (_wordpiece_cleanup(text) if cleanup else text).encode()

    def later(token: str) -> bytes:
        return clean(token[len(prefix) :] if prefix and token.startswith(prefix) else " " + token)

    return Vocab(
        f"{d.name}:WordPiece", d.per_token(later), first=d.per_token(clean), special_ids=frozenset(d.special)
    )


def _hf_no_decoder(d: _HFDecoder) -> Vocab:
    # No decoder: HF joins the tokens with single spaces.
    return Vocab(
        f"{d.name}:no decoder",
        d.per_token(lambda t: b" " + t.encode() if t else b""),
        first=d.per_token(str.encode),
        special_ids=frozenset(d.special),
    )


def _hf_bpe_decoder(d: _HFDecoder) -> Vocab:
    # Every end-of-word suffix becomes a space, except in the last token, where it
    # becomes nothing: a token's differing ending waits for the next token.
    suffix = d.steps[0].get("suffix", "</w>")
    return Vocab(
        f"{d.name}:BPEDecoder",
        d.per_token(lambda t: t.replace(suffix, " ").encode()),
        last=d.per_token(lambda t: t.replace(suffix, "").encode()),
        special_ids=frozenset(d.special),
        skipped_ids=frozenset(d.skip),
    )


def _hf_ctc(d: _HFDecoder) -> Vocab:
    # A run of the same token counts once; then the pad token is removed and, with
    # ``cleanup``, WordPiece's cleanup runs and the word delimiter becomes a space.
    step = d.steps[0]
    pad, delimiter = step.get("pad_token", "<pad>"), step.get("word_delimiter_token", "|")
    cleanup = step.get("cleanup", True)

    def ctc_piece(token: str) -> bytes:
        text = token.replace(pad, "")
        if cleanup:
            text = _wordpiece_cleanup(text).replace(delimiter, " ")
        return text.encode()

    return Vocab(
        f"{d.name}:CTC",
        d.per_token(ctc_piece),
        repeats=list(d.tokens),
        special_ids=frozenset(d.special),
        skipped_ids=frozenset(d.skip),
    )


# The decoders reduced to a Vocab, by their steps' types (None: no decoder).
_HF_DECODERS: dict[tuple[str | None, ...], Callable[[_HFDecoder], Vocab]] = {
    ("ByteLevel",): _hf_byte_level,
    ("Replace", "ByteFallback", "Fuse", "Strip"): _hf_byte_fallback,
    ("Metaspace",): _hf_metaspace,
    ("WordPiece",): _hf_wordpiece,
    (None,): _hf_no_decoder,
    ("BPEDecoder",): _hf_bpe_decoder,
    ("CTC",): _hf_ctc,
}


def _wordpiece_cleanup(text: str) -> str:
    for old, new in _WORDPIECE_CLEANUP:
        text = text.replace(old, new)
    return text


# The replacements of HF's WordPiece ``cleanup``, in its order.
_WORDPIECE_CLEANUP = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" do not", " don't"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


# -- transformers slow (Python) tokenizers ---------------------------------------------------


def _transformers_slow_vocab(tok: Any, skip_special_tokens: bool) -> Vocab:
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    name = type(tok).__name__
    if type(tok).convert_tokens_to_string is not SentencePieceBackend.convert_tokens_to_string:
        raise NotImplementedError(
            f"Detokenizer: {name}.convert_tokens_to_string is custom; pacer reproduces only "
            "SentencePieceBackend's (join, '\u2581' to space, strip)"
        )
    special = set(tok.all_special_ids)
    pieces: list[str] = []
    for i in range(len(tok)):
        token = tok.convert_ids_to_tokens(i)
        pieces.append("" if skip_special_tokens and i in special else token.replace("\u2581", " "))
    # Tokens are joined as text (byte pieces stay literal "<0xNN>"), then the whole is strip()ped.
    return Vocab(
        f"{name}:slow",
        pieces,
        strip_first="both",
        byte_runs={},
        special_ids=frozenset(special),
        skipped_ids=frozenset(special if skip_special_tokens else ()),
    )


# -- files shipped by registry packages ----------------------------------------------------


def mistral_data_file(name: str) -> Path:
    """Path of a tokenizer file that the ``mistral-common`` package ships."""
    try:
        root = resources.files("mistral_common") / "data" / name
    except ModuleNotFoundError:
        raise ModuleNotFoundError("this needs mistral-common: pip install 'pacer-llm[demo]'") from None
    path = Path(str(root))
    if not path.is_file():
        raise FileNotFoundError(f"mistral-common ships no data file {name!r} (looked at {path})")
    return path


def _requires(module: str, extra: str, user: str) -> Any:
    """Import ``module`` for ``user``, or say which extra of pacer-llm brings it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        message = f"{user} needs {module}, which is not installed: pip install 'pacer-llm[{extra}]'"
        raise ModuleNotFoundError(message, name=module) from None


def load_tekken(path: str | Path | None = None) -> Any:
    """A ``tiktoken.Encoding`` for a Mistral ``tekken.json`` byte-level BPE file.

    Ids are the file's BPE ranks; its special tokens follow the last rank. Default
    file: ``tekken_240911.json`` from mistral-common.
    """
    tiktoken = _requires("tiktoken", "demo", "load_tekken")
    path = Path(path) if path is not None else mistral_data_file("tekken_240911.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    config = data["config"]
    n_special = int(config.get("default_num_special_tokens", 0))
    n_ranks = int(config.get("default_vocab_size", len(data["vocab"]) + n_special)) - n_special
    ranks = {
        base64.b64decode(entry["token_bytes"]): rank for rank, entry in enumerate(data["vocab"][:n_ranks])
    }
    names = [s["token_str"] for s in data.get("special_tokens", [])]
    names += [f"<SPECIAL_{k}>" for k in range(len(names), n_special)]
    return tiktoken.Encoding(
        name=path.stem,
        pat_str=config["pattern"],
        mergeable_ranks=ranks,
        special_tokens={name: len(ranks) + k for k, name in enumerate(names)},
    )


def load_sentencepiece(path: str | Path | None = None) -> Any:
    """A ``sentencepiece.SentencePieceProcessor`` for a ``.model`` file (default: mistral-common's v1)."""
    sentencepiece = _requires("sentencepiece", "hf", "load_sentencepiece")
    path = Path(path) if path is not None else mistral_data_file("tokenizer.model.v1")
    return sentencepiece.SentencePieceProcessor(model_file=str(path))
