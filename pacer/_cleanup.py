"""transformers' ``clean_up_tokenization`` over a stream of texts, exact and bounded.

transformers applies ten ``str.replace`` calls, in order, to the whole decoded text.
Streamed, each replacement holds fewer characters than its pattern; what the chain
holds is one of a few states, and what a text gives in a state (a move) is worked out
once per vocabulary and remembered, so a text seen before in that state costs one dict
lookup (in Python, or in the detokenizer's C lookup, which reads ``CleanupMoves.moves``).

Cost: per text, O(len(text)) the first time a state meets it, then O(1); memory at most
``MOVES_KEPT`` remembered texts of at most ``MOVE_CHARS`` characters per state.
Used by ``pacer.tokenizers`` (a vocabulary's moves) and ``pacer._detokenize`` (a stream's
state); imports neither.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Final

__all__ = [
    "CLEANUP_REPLACEMENTS",
    "CLEANUP_SEEN",
    "Cleanup",
    "CleanupMoves",
    "CleanupState",
    "Replace",
    "clean_alone",
]

#: transformers' clean_up_tokenization: applied in this order, each over the whole text.
CLEANUP_REPLACEMENTS = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)  # fmt: skip

#: Where the clean-up could change a text or hold part of it: a pattern in it, or the
#: start of one at its end. A text it does not find passes the clean-up unchanged.
CLEANUP_SEEN = re.compile(
    "|".join(re.escape(p) for p, _ in CLEANUP_REPLACEMENTS)
    + "|(?:"
    + "|".join(sorted({re.escape(p[:k]) for p, _ in CLEANUP_REPLACEMENTS for k in range(1, len(p))}))
    + r")\Z"
)


class Replace:
    """``str.replace(pattern, replacement)`` over a stream: exact, holding < len(pattern) chars.
    Stateless: the caller keeps what it holds, so one instance serves every stream."""

    __slots__ = ("pattern", "replacement")

    def __init__(self, pattern: str, replacement: str) -> None:
        if len(pattern) < 2:
            raise ValueError(f"Replace: a pattern of two characters or more, got {pattern!r}")
        self.pattern, self.replacement = pattern, replacement

    def passes(self, held: str, text: str) -> bool:
        """Whether ``text`` after ``held`` passes as it is and leaves nothing held."""
        pattern = self.pattern
        return not held and pattern[:2] not in text and text[-1:] != pattern[0]

    def feed(self, held: str, text: str) -> tuple[str, str]:
        """What ``text`` after ``held`` gives, and what is held after it."""
        buf = held + text
        pattern = self.pattern
        if self.passes("", buf):
            return buf, ""  # neither the pattern nor a start of it (each begins with those two)
        if pattern in buf:
            out: list[str] = []
            i = 0
            while (j := buf.find(pattern, i)) >= 0:  # leftmost, non-overlapping, like str.replace
                out.append(buf[i:j])
                out.append(self.replacement)
                i = j + len(pattern)
            out.append(buf[i:])
            head, buf = "".join(out[:-1]), out[-1]
        else:
            head = ""
        # Hold the longest tail that could still begin the pattern.
        for keep in range(min(len(pattern) - 1, len(buf)), 0, -1):
            if buf.endswith(pattern[:keep]):
                return head + buf[:-keep], buf[-keep:]
        return head + buf, ""


#: How many texts a clean-up state remembers the move of, and how long a text it
#: remembers may be (tokens' texts are short; a feed of many ids is one long text): bound
#: the memory a stream of texts the table does not hold could take.
MOVES_KEPT: Final = 1 << 14
MOVE_CHARS: Final = 32


class CleanupMoves:
    """transformers' ``clean_up_tokenization`` as a state machine over a stream of texts.

    A state is what each replacement of the chain holds (state 0: nothing); a move is
    what a text gives in a state, and the next state. A move is found by running the
    chain once and then remembered, one set a vocabulary (``Vocab.cleanup_moves``), so
    a text seen before in that state costs one dict lookup, in Python or in the C
    lookup, which reads ``moves``. Few states are reachable (each holds a start of a
    pattern), and each remembers at most ``kept`` texts (``MOVES_KEPT``).
    """

    def __init__(self, kept: int = MOVES_KEPT) -> None:
        self.kept = kept  # how many texts a state remembers
        self.steps = tuple(Replace(p, r) for p, r in CLEANUP_REPLACEMENTS)
        self.states: list[tuple[str, ...]] = [("",) * len(self.steps)]
        self._numbers = {self.states[0]: 0}
        self.moves: list[dict[str, tuple[str, int]]] = [{}]
        self._lock = threading.Lock()

    def move(self, state: int, text: str) -> tuple[str, int]:
        """What ``text`` gives in ``state``, and the state after it."""
        if state == 0 and CLEANUP_SEEN.search(text) is None:
            return text, 0  # no pattern in it and no start of one at its end: most texts
        moves = self.moves[state]
        found = moves.get(text)
        if found is None:
            found = self._run(state, text)
            if len(moves) < self.kept and len(text) <= MOVE_CHARS:
                moves[text] = found
        return found

    def _run(self, state: int, text: str) -> tuple[str, int]:
        helds: list[str] = []
        for step, held in zip(self.steps, self.states[state], strict=True):
            if step.passes(held, text):  # most steps, most texts: skip the call
                helds.append("")
            else:
                text, held = step.feed(held, text)
                helds.append(held)
        return text, self._number(tuple(helds))

    def _number(self, helds: tuple[str, ...]) -> int:
        number = self._numbers.get(helds)
        if number is None:
            with self._lock:  # streams of one vocabulary may run on several threads
                number = self._numbers.get(helds)
                if number is None:
                    self.states.append(helds)
                    self.moves.append({})
                    number = self._numbers[helds] = len(self.states) - 1
        return number

    def flush(self, state: int) -> str:
        """What ``state`` holds, as the end of the text gives it."""
        text = ""
        for step, held in zip(self.steps, self.states[state], strict=True):
            out, rest = step.feed(held, text)
            text = out + rest
        return text


class CleanupState:
    """A stream's clean-up state alone (the detokenizer keeps it with its pending bytes)."""

    __slots__ = ("clean",)

    def __init__(self) -> None:
        self.clean = 0


class Cleanup:
    """One stream's clean-up: its state lives in ``holder.clean`` (where the C lookup
    reads and moves it too); the moves are the vocabulary's."""

    def __init__(self, moves: CleanupMoves | None = None, holder: Any = None) -> None:
        self.moves = CleanupMoves() if moves is None else moves
        self.holder = CleanupState() if holder is None else holder

    @property
    def holding(self) -> bool:
        """Whether some replacement holds the start of its pattern."""
        return self.holder.clean != 0

    def feed(self, text: str) -> str:
        holder = self.holder
        text, holder.clean = self.moves.move(holder.clean, text)
        return text

    def flush(self) -> str:
        holder = self.holder
        text, holder.clean = self.moves.flush(holder.clean), 0
        return text


def clean_alone(text: str, moves: CleanupMoves) -> str | None:
    """What the clean-up gives for ``text`` when it holds nothing before it, or ``None`` when
    it would then hold part of a pattern (what follows decides) or give nothing."""
    out, state = moves.move(0, text)
    return None if state or not out else out
