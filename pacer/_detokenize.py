"""Token ids to text, byte-exact against the tokenizer's one-shot decode.

Each backend is reduced once, at construction, to a ``Vocab``: a table from id to
the bytes (or text) that id contributes, plus the few rules its decoder applies
that are not plain concatenation (which replacement a bad byte gets, the leading
space of the first token, byte-fallback runs). Feeding ids is then a table lookup
and an incremental UTF-8 decode: O(1) work per token, never a re-decode of a
window. Most tokens take a shorter path still: while nothing is pending (no partial
character, byte run or start rule), a token's text is fixed, so it is one lookup in
a table of whole-character texts built once per vocabulary. Held: at most 3 bytes
of an unfinished character, or, for decoders with byte-fallback runs (HF
``ByteFallback``), the current run of byte tokens, because one bad byte anywhere
in such a run turns the whole run into U+FFFD.

Decoders that are not a plain concatenation stay exact with constant work per token:
HF ``WordPiece`` works token by token (a token after the first loses its ``##`` or
gains a space, then a fixed cleanup runs on that token alone), so it becomes two
tables, one for the first token and one for the rest (so does a tokenizer with no
decoder, whose tokens HF joins with spaces); HF ``BPEDecoder`` turns an end-of-word
suffix into a space except in the last token, so the part of a token's text that
depends on whether it is last waits for the next token (one token's ending held);
HF ``CTC`` counts a run of the same token once (one token remembered); transformers'
``clean_up_tokenization`` is a chain of ``str.replace`` calls on the whole text,
streamed as a chain of replacers each holding fewer characters than its pattern; what
the chain holds is one of a few states, and what a text gives in a state is worked out
once per vocabulary and remembered (a bounded number of texts a state), so a token
the clean-up holds, or one after it, is a dict lookup too.

A genuine U+FFFD in the text is just three bytes like any other: it never stalls.
"""

from __future__ import annotations

import codecs
import enum
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, TypeVar, cast

from ._cleanup import Cleanup
from ._core import Chunk, Stage, closed_error
from .tokenizers import Vocab, vocab_for

_speedups: Any
try:
    from . import _speedups
except ImportError:  # built without a C compiler: the pure-Python path gives the same results
    _speedups = None

#: Whether new Detokenizers use the C lookup when it is built (tests turn it off to
#: check that both paths agree).
_SPEEDUPS = True

__all__ = ["ByteDecoder", "Detokenizer"]

REPLACEMENT = "\ufffd"


def _per_byte_replace(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return REPLACEMENT * (exc.end - exc.start), exc.end


codecs.register_error("pacer.perbyte", _per_byte_replace)


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _c_lookup_first(chunk: type | None = None) -> Callable[[_Method], _Method]:
    """Put the C lookup (``pacer._speedups.FeedMethod``, where built) in front of a
    ``Detokenizer`` method: it answers while the table alone decides a token's text and
    calls the method otherwise, with the same results. ``chunk`` makes its outputs
    ``Chunk``s (for ``ingest``). Without the C helper the method stands as written."""

    def wrap(method: _Method) -> _Method:
        if _speedups is None:
            return method
        return cast(_Method, _speedups.FeedMethod(method, "_lookup_state", chunk))

    return wrap


class _Mode(enum.Enum):
    """Which quick path the next id may take; ``Detokenizer._settle`` alone decides it."""

    STEADY = "the table entry is the text"
    LOOKUP = "the table entry, then the whole-text steps"
    BYTEWISE = "one incremental UTF-8 decode of the id's bytes"
    CHECKED = "the checked path, which owns every rule and error"


_STEADY: Final = _Mode.STEADY
_LOOKUP: Final = _Mode.LOOKUP
_BYTEWISE: Final = _Mode.BYTEWISE
_CHECKED: Final = _Mode.CHECKED


class Detokenizer(Stage):
    """Token ids in, text out: ``"".join`` of everything equals the one-shot decode.

    ``tokenizer`` is an HF ``tokenizers.Tokenizer``, a transformers tokenizer, a
    tiktoken ``Encoding``, a ``sentencepiece.SentencePieceProcessor``, or a ready
    ``Vocab``. ``skip_special_tokens`` drops special tokens as the tokenizer's own
    ``decode(..., skip_special_tokens=True)`` does (tiktoken: its special tokens).
    ``feed`` takes one id or a sequence of ids (list, tuple, numpy array, torch
    tensor of shape [n] or [1, n]).
    """

    # A slot, not a dict entry: the C ``feed`` reads it at a fixed offset. Where ``Stage``
    # is compiled (setup.py) it has no dict or weak references to inherit: add them.
    __slots__ = (
        ("_lookup_state",) if "__dict__" in vars(Stage) else ("__dict__", "__weakref__", "_lookup_state")
    )

    def __init__(self, tokenizer: Any, *, skip_special_tokens: bool = False) -> None:
        super().__init__()
        self.vocab = vocab_for(tokenizer, skip_special_tokens)
        self.skip_special_tokens = skip_special_tokens
        self._table = self.vocab.steady_texts  # id -> its text, where that text is fixed
        self._count = 0  # ids taken so far by the Python paths, for error messages
        # Until the first non-empty piece, the decoder may treat it specially.
        self._at_start = self.vocab.strip_first == "token" or self.vocab.first is not None
        # Decoders that look at the token before or after (BPEDecoder, CTC) go token by token.
        chain = self.vocab.last is not None or self.vocab.repeats is not None
        self._neighbours = _Neighbours(self.vocab) if chain else None
        self._mode = _CHECKED
        # What the C ``feed`` (when built) reads: the same tables, the mode, and the bytes of
        # an unfinished character (which it shares with the Python paths through ``_utf8``).
        self._lookup_state: Any = None
        if _speedups is not None and _SPEEDUPS:
            vocab = self.vocab
            inert, moves = (vocab.inert_list, vocab.cleanup_moves.moves) if vocab.cleanup else ((), [])
            self._lookup_state = _speedups.TableState(
                vocab.steady_list, vocab.bytewise_list, vocab.errors, vocab.run_list, inert, moves
            )
        holder = self._lookup_state or _Pending()  # the pending bytes and the clean-up's state
        self._utf8 = _Utf8(self.vocab.errors, holder)
        cleanup = Cleanup(self.vocab.cleanup_moves, holder) if self.vocab.cleanup else None
        self._steps = _TextSteps(self.vocab.strip_first, cleanup)
        self._settle()

    def __repr__(self) -> str:
        return f"Detokenizer({self.vocab.name})"

    @_c_lookup_first()
    def feed(self, item: Any, now: float | None = None) -> list[str]:
        """Take one id or a sequence of ids; return the text they complete."""
        if self._lookup_state is not None:
            self._settle()  # the C path may have taken ids since (and left part of a character)
        if type(item) is int and now is None:
            if self._mode is _STEADY:
                text = self._table.get(item)
                if text is not None:  # the common case: a table lookup, nothing else to do
                    self._count += 1
                    return [text]
            text = self._one(item)
            if text is not None:
                return [text] if text else []
        return super().feed(item, now)

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        raise TypeError("Detokenizer takes token ids, not text: put it first in the pipeline")

    @_c_lookup_first(Chunk)
    def ingest(self, item: object, now: float) -> list[Chunk]:
        if self._lookup_state is not None:
            self._settle()
        if type(item) is int:
            text = self._one(item)
            if text is not None:
                return [Chunk(text, now)] if text else []
        if isinstance(item, Chunk):
            return self.push(item, now)
        if self.input_ended:
            raise closed_error(self)
        ids = as_id_list(item, "Detokenizer")
        if self._lookup_state is None or not self._lookup_state.known(ids):
            self._check(ids)
        if self._at_start and self._lookup_state is not None:
            # The start rule is the first showing id's: the ids after it may take the C path.
            cut = next((k + 1 for k, i in enumerate(ids) if self.vocab.pieces[i]), len(ids))
            text = self._take(ids[:cut])
            if cut < len(ids):
                rest = ids[cut:]
                text += (
                    self._take(rest) if self._at_start else "".join([c.text for c in self.ingest(rest, now)])
                )
        else:
            text = self._take(ids)
        return [Chunk(text, now)] if text else []

    def _take(self, ids: Sequence[int]) -> str:
        """The text checked ``ids`` give, by the Python paths: one decode, or, through the
        clean-up with the C lookup built, id by id, so that the C lookup finds each id's
        move remembered next time."""
        if self._mode is _LOOKUP and self._steps.cleanup is not None and self._lookup_state is not None:
            texts: list[str] = []
            for k, i in enumerate(ids):
                text = self._one(i)
                if text is None:  # an id the quick paths do not take: the rest at once
                    texts.append(self._take_at_once(ids[k:]))
                    break
                texts.append(text)
            return "".join(texts)
        return self._take_at_once(ids)

    def _take_at_once(self, ids: Sequence[int]) -> str:
        self._count += len(ids)
        text = self._convert(ids)
        self._settle()
        return text

    def _settle(self) -> None:
        """Decide the mode from the state: the one place that does."""
        vocab = self.vocab
        if self.input_ended or self._at_start or self._neighbours is not None:
            mode = _CHECKED
        elif self._utf8.partial:  # part of a character, or a byte-fallback run
            mode = _BYTEWISE if vocab.byte_runs is None else _CHECKED
        else:
            mode = _LOOKUP if self._steps.active else _STEADY
        self._mode = mode
        if self._lookup_state is not None:
            self._lookup_state.mode = self._c_mode()

    def _c_mode(self) -> int:
        """The C lookup's mode: 2, the table while no character is unfinished, else the id's
        bytes; 3, the table and byte-fallback runs; 4, the table's texts through the
        clean-up's remembered moves; 0, none (every rule is the Python path's)."""
        vocab, steps = self.vocab, self._steps
        if self.input_ended or self._at_start or self._neighbours is not None:
            return 0
        if not steps.active:
            return 2 if vocab.byte_runs is None else 3
        if steps.strip_both or steps.first_space or steps.cleanup is None:
            return 0
        return 4 if vocab.byte_runs is None and not self._utf8.partial else 0

    def _taken(self) -> int:
        """How many ids the stream has taken so far."""
        return self._count + (self._lookup_state.count if self._lookup_state is not None else 0)

    def _one(self, item: int) -> str | None:
        """The text one valid id completes, by a quick path; ``None``: take the checked one."""
        mode = self._mode
        if mode is _CHECKED:
            return None
        if mode is not _BYTEWISE:
            text = self._table.get(item)
            if text is not None:
                self._count += 1
                if mode is _LOOKUP:
                    text = self._steps.apply(text)
                    self._settle()  # a first-space rule ends with the first text
                return text
        pieces = self.vocab.pieces
        if self.vocab.byte_runs is None and 0 <= item < len(pieces):
            piece = pieces[item]
            if piece is not None:
                self._count += 1
                if not piece and item in self.vocab.run_breakers:
                    text = self._utf8.end(b"")  # resolves an unfinished character
                else:
                    text = self._utf8.decode(piece)
                if self._steps.active:
                    text = self._steps.apply(text)
                self._settle()
                return text
        return None

    def finish(self, now: float) -> list[Chunk]:
        self.end_input()  # more ids are an error, and nothing takes a quick path
        self._settle()
        text = self._end()
        return [Chunk(text, now)] if text else []

    # -- decoding ----------------------------------------------------------------------

    def _check(self, ids: Sequence[int]) -> None:
        pieces = self.vocab.pieces
        size = len(pieces)
        for position, i in enumerate(ids):
            if type(i) is not int and (isinstance(i, bool) or not hasattr(i, "__index__")):
                raise TypeError(
                    f"Detokenizer: token id at position {position} must be an int, "
                    f"got {type(i).__name__} {i!r}"
                )
            if not 0 <= i < size or pieces[i] is None:
                raise ValueError(
                    f"Detokenizer: token id {i} at position {position} of this feed "
                    f"(token {self._taken() + position} of the stream) is not in the vocabulary "
                    f"of {self.vocab.name} (ids 0..{size - 1})"
                )

    def _convert(self, ids: Sequence[int]) -> str:
        if self.vocab.byte_runs is not None:
            text = self._convert_runs(ids)
        elif self._neighbours is not None:
            text = self._utf8.decode(self._neighbours.join(ids))
        elif self._at_start:
            text = self._convert_start(ids)
        else:
            text = self._decode_ids(ids)
        return self._steps.apply(text) if self._steps.active else text

    def _decode_ids(self, ids: Sequence[int]) -> str:
        pieces, breakers, utf8 = self.vocab.pieces, self.vocab.run_breakers, self._utf8
        if len(ids) == 1 and ids[0] not in breakers:
            return utf8.decode(pieces[ids[0]])
        if not breakers or breakers.isdisjoint(ids):
            return utf8.decode(b"".join([pieces[i] for i in ids]))
        out: list[str] = []
        run: list[bytes] = []
        for i in ids:
            if i in breakers:
                out.append(utf8.decode(b"".join(run)))
                out.append(utf8.end(b""))  # resolves an unfinished character
                run.clear()
            else:
                run.append(pieces[i])
        out.append(utf8.decode(b"".join(run)))
        return "".join(out)

    def _convert_start(self, ids: Sequence[int]) -> str:
        # Until the first non-empty piece, the decoder may drop its leading space.
        vocab = self.vocab
        for k, i in enumerate(ids):
            piece = vocab.pieces[i]
            if not piece:
                continue
            self._at_start = False
            if vocab.first is not None:
                piece = vocab.first[i]
            elif i in vocab.strip_ids and piece[:1] == b" ":
                piece = piece[1:]
            return self._utf8.decode(piece) + self._decode_ids(ids[k + 1 :])
        return ""

    def _convert_runs(self, ids: Sequence[int]) -> str:
        pieces, runs, skipped = self.vocab.pieces, self.vocab.byte_runs, self.vocab.skipped_ids
        assert runs is not None
        holder = self._utf8.holder  # the pending run lives where the C lookup finds it too
        run = bytearray(holder.pending)
        out: list[str] = []
        for i in ids:
            byte = runs.get(i)
            if byte is not None:
                run.append(byte)
                continue
            if i in skipped:
                continue
            if run:
                out.append(_run_text(run))
                run.clear()
            out.append(pieces[i])
        holder.pending = bytes(run)
        return "".join(out)

    def _end(self) -> str:
        if self.vocab.byte_runs is not None:
            holder = self._utf8.holder
            text, holder.pending = _run_text(holder.pending), b""
        elif self._neighbours is not None:
            text = self._utf8.end(self._neighbours.end())  # the last token's own ending
        else:
            text = self._utf8.end(b"")
        return self._steps.end(text)


def _run_text(run: bytes | bytearray) -> str:
    """A byte-fallback run's text: its UTF-8, or one U+FFFD a byte if any of it is invalid."""
    try:
        return run.decode("utf-8")
    except UnicodeDecodeError:
        return REPLACEMENT * len(run)


class _Pending:
    """Where ``_Utf8`` keeps the bytes of an unfinished character (with the C lookup: its state)."""

    __slots__ = ("clean", "pending")

    def __init__(self) -> None:
        self.pending = b""
        self.clean = 0  # the clean-up's state (``pacer._cleanup.CleanupMoves``)


class _Utf8:
    """An incremental UTF-8 decode that says whether it holds part of a character: what
    ``codecs``' incremental decoder does, with the held bytes in ``holder.pending``, where
    the C lookup reads and writes them too."""

    def __init__(self, errors: str, holder: Any) -> None:
        self.errors = errors
        self.holder = holder

    @property
    def partial(self) -> bool:
        return bool(self.holder.pending)

    def decode(self, data: bytes) -> str:
        holder = self.holder
        if holder.pending:
            data = holder.pending + data
        text, used = codecs.utf_8_decode(data, self.errors, False)
        holder.pending = data[used:]
        return text

    def end(self, data: bytes) -> str:
        """Decode the last ``data``, resolving an unfinished character as the end of a stream does."""
        holder = self.holder
        if holder.pending:
            data = holder.pending + data
            holder.pending = b""
        return codecs.utf_8_decode(data, self.errors, True)[0]


class _Neighbours:
    """Decoders that look at the neighbouring token: HF ``BPEDecoder`` (a token's ending
    depends on whether it is the last) and ``CTC`` (a repeat of the token before is dropped)."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self.held_mid = self.held_last = b""  # a token's ending, in its not-last and last forms
        self.previous: Any = None  # the repeat key of the last token taken

    def join(self, ids: Sequence[int]) -> bytes:
        """The bytes ``ids`` settle, holding back what depends on the next token."""
        vocab = self.vocab
        pieces, last, repeats, skipped = vocab.pieces, vocab.last, vocab.repeats, vocab.skipped_ids
        out = bytearray()
        for i in ids:
            if i in skipped:
                continue  # dropped before the decoder runs: not part of the chain
            if repeats is not None:
                if repeats[i] == self.previous:
                    continue
                self.previous = repeats[i]
            piece = pieces[i]
            if last is None:
                out += piece
                continue
            # The previous token was not the last after all; this one may be.
            out += self.held_mid
            shared = _shared_prefix(piece, last[i])
            out += piece[:shared]
            self.held_mid, self.held_last = piece[shared:], last[i][shared:]
        return bytes(out)

    def end(self) -> bytes:
        """The last token's own ending."""
        held = self.held_last
        self.held_mid = self.held_last = b""
        return held


class _TextSteps:
    """The decoder's whole-text steps, applied as the text streams: a strip of leading
    (and for ``"both"`` trailing) whitespace, then transformers' clean-up."""

    def __init__(self, strip_first: str | None, cleanup: Cleanup | None) -> None:
        self.strip_both = strip_first == "both"
        self.first_space = strip_first == "output"  # the next text may lose its space
        self.cleanup = cleanup
        self.active = self.first_space or self.strip_both or self.cleanup is not None
        self.leading = True  # nothing but whitespace shown so far ("both")
        self.held_space = ""  # trailing whitespace, shown only if more text follows ("both")

    def apply(self, text: str) -> str:
        if self.strip_both:
            # Python's str.strip() of the whole text: drop leading whitespace, hold trailing.
            if self.leading:
                text = text.lstrip()
                if not text:
                    return ""
                self.leading = False
            text = self.held_space + text
            body = text.rstrip()
            self.held_space = text[len(body) :]
            text = body
        elif self.first_space and text:
            self.first_space = False
            self.active = self.cleanup is not None
            if text[0] == " ":
                text = text[1:]
        if self.cleanup is not None:
            text = self.cleanup.feed(text)
        return text

    def end(self, text: str) -> str:
        """The last text, and what the steps still hold."""
        text = self.apply(text) if self.active else text
        return text + self.cleanup.flush() if self.cleanup is not None else text


def _shared_prefix(a: bytes, b: bytes) -> int:
    """How many leading bytes ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


class ByteDecoder(Stage):
    """Raw UTF-8 byte chunks in, text out, for sources that already carry bytes.

    ``"".join`` of everything equals ``data.decode("utf-8", errors)`` of all the bytes
    at once, however they were split; ``errors`` is ``"replace"`` (default) or
    ``"strict"``, which raises ``UnicodeDecodeError`` at the first bad byte. ``str``
    items pass through unchanged, after any pending bytes are resolved as the end of
    a byte stream would resolve them. Held: at most 3 bytes of an unfinished character.
    """

    def __init__(self, errors: str = "replace") -> None:
        super().__init__()
        if errors not in ("replace", "strict"):
            raise ValueError(f"ByteDecoder: errors must be 'replace' or 'strict', got {errors!r}")
        self.errors = errors
        self._utf8 = _Utf8(errors, _Pending())

    def __repr__(self) -> str:
        return f"ByteDecoder(errors={self.errors!r})"

    def ingest(self, item: object, now: float) -> list[Chunk]:
        if self.input_ended:
            raise closed_error(self)
        if isinstance(item, (bytes, bytearray, memoryview)):
            text = self._utf8.decode(bytes(item))
        elif isinstance(item, (str, Chunk)):
            text = self._utf8.end(b"") + (item if isinstance(item, str) else item.text)
        else:
            raise TypeError(f"ByteDecoder takes bytes or str, got {type(item).__name__}")
        return [Chunk(text, now)] if text else []

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        return self.ingest(chunk, now)

    def finish(self, now: float) -> list[Chunk]:
        self.end_input()
        text = self._utf8.end(b"")
        return [Chunk(text, now)] if text else []


def as_id_list(ids: object, where: str) -> Sequence[int]:
    """Normalise one id or a sequence of ids (list, tuple, numpy, torch [n] or [1, n])."""
    if isinstance(ids, bool):
        raise TypeError(f"{where}: token ids must be integers, got bool {ids!r}")
    if isinstance(ids, int):
        return (ids,)
    tolist = getattr(ids, "tolist", None)
    if tolist is not None:
        shape = getattr(ids, "shape", None)
        if shape is not None and len(shape) == 2 and shape[0] == 1:
            ids = tolist()[0]
        elif shape is not None and len(shape) > 1:
            raise ValueError(f"{where}: token ids must have shape [n] or [1, n], got {tuple(shape)}")
        else:
            ids = tolist()
        if isinstance(ids, int):
            return (ids,)
    if isinstance(ids, (str, bytes, bytearray)) or not isinstance(ids, Iterable):
        raise TypeError(f"{where}: expected an int or a sequence of ints, got {type(ids).__name__}")
    return ids if isinstance(ids, (list, tuple)) else list(ids)  # type: ignore[arg-type]
