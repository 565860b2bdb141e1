"""A real language model for tests: tiny, random, built offline, and exactly repeatable.

``TinyModel`` is a ``transformers`` ``LlamaForCausalLM`` of two layers (hidden size 48,
about 60 000 parameters), randomly initialised from a fixed seed, decoded greedily
in float64. Its continuation of a context is a function of that context alone: two
processes, or one process asked twice, give the same answer byte for byte, and an
answer cut anywhere and given back as a prefill continues with exactly its rest.

That last promise needs the tokenizer to be **character-level**. With a subword
tokenizer, the text of a partial answer re-encodes to other ids than the ones that
produced it (``" wor"`` + ``"ld"`` is one token, ``"world"``, when re-encoded), so a
real server continuing a prefill may pick another path; with one id per code point,
``encode(answer[:k])`` is always the first ``k`` ids of the answer. The vocabulary is
printable ASCII, a newline, a few letters of other scripts and two emoji, each a
single code point (``CHARACTERS``), plus the special ids: BOS, EOS, one marker per
role, the end of a message, and ``<unk>`` for a prompt character outside it.

The chat template works on ids, never on text, so no message text can forge a marker::

    <s> <|system|> text <|end|> <|user|> text <|end|> <|assistant|> text <|end|> ...

A generation prompt is ``<|assistant|>``; continuing the final message leaves its
``<|end|>`` off, as vLLM's ``continue_final_message`` does.

A random model writes noise, so decoding is steered by a small grammar over the text
of the open message (``_Grammar``): capitalised sentences of 3 to 12 pronounceable
words of up to 9 letters, commas, ``.!?`` and an occasional emoji word. Within what
the grammar allows, the model's logits plus English letter frequencies choose. The
grammar reads only the context, never a count of tokens generated, so it keeps the
continuation promise; it ends the answer (EOS) at the first sentence end past
``answer_chars`` characters of the message. Lanes (``n`` choices) differ in their first
character only (``TinyModel.generate``), so each lane continues as itself too.

Cost: one forward pass of one token per generated token (a key-value cache), and a
scan of at most the current sentence (about 120 characters) for the grammar.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ANSWER_CHARS",
    "CHARACTERS",
    "CharTokenizer",
    "Finish",
    "Generation",
    "Message",
    "Special",
    "TinyModel",
]

#: The length (characters) past which an answer ends at its next sentence end, by default.
ANSWER_CHARS = 160

#: Every character the tokenizer has an id for; the model writes only some of them.
CHARACTERS = (
    "\n"
    + "".join(chr(c) for c in range(32, 127))
    + "éèàçñüöß"  # Latin letters of two UTF-8 bytes
    + "中文字"  # three bytes
    + "🙂🚀"  # four bytes, one code point each
)


class Special(enum.IntEnum):
    """The ids that are not characters; character ids follow them, in ``CHARACTERS`` order."""

    BOS = 0
    EOS = 1
    SYSTEM = 2
    USER = 3
    ASSISTANT = 4
    END = 5
    UNKNOWN = 6


_ROLES = {"system": Special.SYSTEM, "user": Special.USER, "assistant": Special.ASSISTANT}


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message: ``role`` is ``system``, ``user`` or ``assistant``."""

    role: str
    content: str


class CharTokenizer:
    """One id per character of ``CHARACTERS``: encoding is unique and prefix-stable, so
    ``encode(a + b) == encode(a) + encode(b)`` for any texts ``a`` and ``b``."""

    def __init__(self) -> None:
        self._ids = {c: i + len(Special) for i, c in enumerate(CHARACTERS)}
        self.vocab_size = len(Special) + len(CHARACTERS)

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``, one per code point (``Special.UNKNOWN`` outside the vocabulary)."""
        return [self._ids.get(c, Special.UNKNOWN) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``; special ids are left out."""
        first = len(Special)
        return "".join(CHARACTERS[i - first] for i in ids if i >= first)

    def chat(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
    ) -> list[int]:
        """The context for ``messages``, as ``apply_chat_template`` builds it: messages
        closed, then a generation prompt (``<|assistant|>``); or, with
        ``continue_final_message``, the final message left open to be continued."""
        if add_generation_prompt and continue_final_message:
            raise ValueError("continue_final_message and add_generation_prompt exclude each other")
        ids = [int(Special.BOS)]
        for i, message in enumerate(messages):
            if message.role not in _ROLES:
                raise ValueError(f"unknown role {message.role!r}: expected one of {sorted(_ROLES)}")
            ids += [_ROLES[message.role], *self.encode(message.content)]
            if not (continue_final_message and i == len(messages) - 1):
                ids.append(Special.END)
        if add_generation_prompt:
            ids.append(Special.ASSISTANT)
        return ids

    def completion(self, prompt: str) -> list[int]:
        """The context for a completion of ``prompt``: BOS and its characters, open."""
        return [int(Special.BOS), *self.encode(prompt)]

    def open_text(self, ids: Sequence[int]) -> str | None:
        """The text of the message ``ids`` end in (after a BOS or a role marker), or
        ``None`` when it is closed: then only EOS follows."""
        for i in range(len(ids) - 1, -1, -1):
            if ids[i] < len(Special):
                if ids[i] in (Special.BOS, Special.SYSTEM, Special.USER, Special.ASSISTANT):
                    return self.decode(ids[i + 1 :])
                if ids[i] != Special.UNKNOWN:
                    return None
        return None


class Finish(enum.Enum):
    """Why a generation ended, named as the OpenAI APIs' ``finish_reason``."""

    STOP = "stop"  # the model wrote EOS
    LENGTH = "length"  # max_tokens, or the context is full


_LOWER = "abcdefghijklmnopqrstuvwxyzé"
_LETTERS = _LOWER + _LOWER.upper()
_CAPITALS = "ABCDEFGHIJKLMNOPRSTUVW"  # sentence openers
_VOWELS = frozenset("aeiouyé")
_SENTENCE_ENDS = ".!?"
_EMOJI = "🙂🚀"
# English letter frequencies (%), as a bias on the model's logits: text that looks like text.
_FREQUENCIES = {
    **dict(zip("etaoinshrd", (12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3), strict=True)),
    **dict(zip("lcumwfgypb", (4.0, 2.8, 2.8, 2.4, 2.4, 2.2, 2.0, 2.0, 1.9, 1.5), strict=True)),
    **dict(zip("vkjxqzé", (1.0, 0.8, 0.2, 0.2, 0.1, 0.1, 0.3), strict=True)),
}


class _Grammar:
    """Which characters may come next, from the text of the open message only: it never
    counts tokens generated, so a prefilled answer is steered as the original was."""

    min_words = 3  # per sentence
    max_words = 12
    max_word = 9  # letters

    def __init__(self, tokenizer: CharTokenizer, answer_chars: int) -> None:
        self.answer_chars = answer_chars
        ids = tokenizer.encode
        self.lower = ids(_LOWER)
        self.vowels = ids("".join(c for c in _LOWER if c in _VOWELS))
        self.consonants = ids("".join(c for c in _LOWER if c not in _VOWELS))
        self.capitals = ids(_CAPITALS)
        self.space, self.comma = ids(" ")[0], ids(",")[0]
        self.ends = ids(_SENTENCE_ENDS)
        self.emoji = ids(_EMOJI)
        self.bias = {ids(c)[0]: math.log(_FREQUENCIES.get(c.lower(), 1.0) / 100) for c in _LOWER + _CAPITALS}
        for i in (*self.ends, *self.emoji):
            self.bias[i] = -4.0
        self.bias[self.comma] = -3.0
        self.bias[self.ends[0]] = -1.5  # mostly full stops
        self.bias[self.space] = math.log(0.18)  # as often as in English text

    def allowed(self, text: str | None) -> list[int]:
        """The ids that may follow the open message ``text`` (``None``: a closed one)."""
        if text is None:
            return [Special.EOS]
        last = text[-1:]
        if last in ("", "\n"):
            return self.capitals
        if last in _SENTENCE_ENDS:
            return [Special.EOS] if len(text) >= self.answer_chars else [self.space]
        # the sentence so far: a scan back to its start, bounded by max_words
        sentence = text[max(text.rfind(c) for c in _SENTENCE_ENDS) + 1 :].lstrip()
        if last == " " and not sentence:
            return self.capitals
        if last in (",", *_EMOJI):
            return [self.space]
        if last == " ":
            return [*self.lower, *self.emoji]
        if not last.isalpha():
            return [self.space, *self.lower]
        return self._in_word(text, words=sentence.count(" ") + 1)

    def _in_word(self, text: str, words: int) -> list[int]:
        """After a letter: more letters, or the word's end once it has two."""
        word = len(text) - len(text.rstrip(_LETTERS))
        ends = self.ends if words >= self.min_words else [self.space]
        if word >= self.max_word or (words >= self.max_words and word >= 2):
            return ends
        letters = self._pronounceable(text[-2:])
        if word < 2:
            return letters
        return [*letters, self.space, self.comma, *(self.ends if words >= self.min_words else [])]

    def _pronounceable(self, tail: str) -> list[int]:
        """No three vowels or three consonants in a row."""
        kinds = [c.lower() in _VOWELS for c in tail if c.isalpha()]
        if len(kinds) == 2 and kinds[0] == kinds[1]:
            return self.consonants if kinds[0] else self.vowels
        return self.lower


class TinyModel:
    """A tiny random ``LlamaForCausalLM`` and its ``CharTokenizer``: greedy, so the answer
    is a function of the context; the same ``seed`` gives the same model in any process.

    ``answer_chars``: the length (characters) past which the model ends its message at
    the next sentence end. ``max_context``: the most ids a context and its answer hold.
    """

    name = "pacer-tiny"

    def __init__(self, seed: int = 0, answer_chars: int = ANSWER_CHARS, max_context: int = 2048) -> None:
        import importlib

        import torch

        # untyped: transformers exports most names lazily, and its stubs differ by version
        transformers: Any = importlib.import_module("transformers")
        self.tokenizer = CharTokenizer()
        self.max_context = max_context
        self._grammar = _Grammar(self.tokenizer, answer_chars)
        config = transformers.LlamaConfig(
            vocab_size=self.tokenizer.vocab_size,
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=max_context,
            initializer_range=0.5,  # logits that vary by a few units, so the model chooses
            bos_token_id=Special.BOS,
            eos_token_id=Special.EOS,
            tie_word_embeddings=False,
            attn_implementation="eager",
        )
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            # float64: a prefill and the step-by-step pass that wrote the same text round
            # differently; in double precision the difference never changes an argmax.
            self.model = transformers.LlamaForCausalLM(config).to(torch.float64).eval()
        finally:
            torch.random.set_rng_state(generator_state)
        self._bias = torch.full((self.tokenizer.vocab_size,), -math.inf, dtype=torch.float64)
        for i, value in self._grammar.bias.items():
            self._bias[i] = value

    @property
    def parameters(self) -> int:
        """The model's parameter count."""
        return sum(p.numel() for p in self.model.parameters())  # type: ignore[no-any-return]

    def generate(self, context: Sequence[int], max_tokens: int | None = None, lane: int = 0) -> Generation:
        """A greedy generation after ``context`` (ids), of at most ``max_tokens`` tokens.

        ``lane`` (one choice of ``n``): lane ``i`` opens an empty message with the
        model's ``i``-th best character, then goes on greedily. So the lanes differ, and
        a lane's text, once it has a character, continues as that lane; lane 0 is the
        plain greedy answer."""
        return Generation(self, context, max_tokens, lane)

    def _choose(self, logits: Any, text: str | None, lane: int) -> int:
        allowed = self._grammar.allowed(text)
        if len(allowed) == 1:
            return int(allowed[0])
        scores = logits[allowed] + self._bias[allowed]
        if lane and text == "":
            return int(allowed[int(scores.argsort(descending=True)[lane % len(allowed)])])
        return int(allowed[int(scores.argmax())])


class Generation:
    """One greedy answer, a token at a time: ``step()`` computes the next id (``None`` once
    finished, with ``finish`` saying why). Iterating yields the ids; ``text`` so far."""

    def __init__(
        self, model: TinyModel, context: Sequence[int], max_tokens: int | None, lane: int = 0
    ) -> None:
        if not context:
            raise ValueError("a context holds at least one id (BOS)")
        self.model = model
        self.lane = lane
        self.context = list(context)
        self.max_tokens = max_tokens
        self.ids: list[int] = []
        self.finish: Finish | None = None
        self._open = model.tokenizer.open_text(self.context)
        self._cache: Any = None
        self._pending = self.context  # ids not yet through the model

    @property
    def text(self) -> str:
        """The text generated so far."""
        return self.model.tokenizer.decode(self.ids)

    def step(self) -> int | None:
        """The next id, or ``None`` when the answer is finished (``finish`` says why)."""
        if self.finish is not None:
            return None
        if self.max_tokens is not None and len(self.ids) >= self.max_tokens:
            self.finish = Finish.LENGTH
            return None
        if len(self.context) + len(self.ids) >= self.model.max_context:
            self.finish = Finish.LENGTH
            return None
        import torch

        with torch.inference_mode():
            out = self.model.model(input_ids=torch.tensor([self._pending]), cache=self._cache, use_cache=True)
        self._cache = out.cache
        token = self.model._choose(out.logits[0, -1], self._open, self.lane)
        if token == Special.EOS:
            self.finish = Finish.STOP
            return None
        self.ids.append(token)
        self._pending = [token]
        if self._open is not None:
            self._open += self.model.tokenizer.decode([token])
        return token

    def __iter__(self) -> Iterator[int]:
        while (token := self.step()) is not None:
            yield token

    def run(self) -> str:
        """Generate to the end; the whole answer's text."""
        for _ in self:
            pass
        return self.text
