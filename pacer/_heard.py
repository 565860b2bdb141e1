"""What a listener had heard at time t, from the timeline a text-to-speech engine reports.

An interrupted voice agent should keep in its history only what the user heard, not
everything the model wrote (LiveKit and Pipecat do this inside their own frameworks).
``HeardText`` takes the timeline the TTS engine gives, in either grain:

- ``audio(text, duration)``: a chunk of audio that speaks ``text`` and lasts
  ``duration`` seconds, played after the previous chunk (or from ``start=``);
- ``word(text, start, end)``: word timestamps (ElevenLabs' alignment, Cartesia's or
  Deepgram's word times), ``text`` being the word with the space or punctuation after it.

``at(t)`` is the text heard by time ``t`` (on the clock the timeline uses): every
piece played to its end, and of a chunk cut mid-way, the words its played share of
the characters covers (a word counts once it is all out; a Chinese or Japanese
character is a word). ``"".join`` of every piece is the whole text, so ``at(t) +
unheard(t)`` is always the whole text.

Cost: O(log n) to find the piece playing at ``t`` among n, O(length of the text) to join.
"""

from __future__ import annotations

import bisect
import unicodedata

from ._args import number, seconds

__all__ = ["HeardText"]


def _spaced(char: str) -> bool:
    """A character that belongs to a word of a script written with spaces."""
    if not (char.isalnum() or char in "'’-"):
        return False
    name = unicodedata.name(char, "")
    return not name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL SYLLABLE"))


class HeardText:
    """The timeline of spoken text, and what of it had been heard at any time (module docstring).

    ``start`` is when playback of the first chunk began (default 0).
    """

    def __init__(self, start: float = 0.0) -> None:
        self.start = number(start, "HeardText: start")
        self._texts: list[str] = []
        self._starts: list[float] = []
        self._ends: list[float] = []
        self._chunked: list[bool] = []  # a chunk (cut by characters) or a word (all or nothing)

    @property
    def end(self) -> float:
        """When the last piece ends (``start`` before any)."""
        return self._ends[-1] if self._ends else self.start

    @property
    def text(self) -> str:
        """The whole text of the timeline."""
        return "".join(self._texts)

    def audio(self, text: str, duration: float, *, start: float | None = None) -> None:
        """A chunk of audio speaking ``text`` for ``duration`` seconds, from ``start`` (default:
        when the previous piece ends)."""
        begin = self.end if start is None else number(start, "HeardText.audio: start")
        self._add(text, begin, begin + seconds(duration, "HeardText.audio: duration", zero=True), True)

    def word(self, text: str, start: float, end: float) -> None:
        """A word (with what follows it up to the next word) spoken from ``start`` to ``end``."""
        begin = number(start, "HeardText.word: start")
        if number(end, "HeardText.word: end") < begin:
            raise ValueError(f"HeardText.word: end ({end!r}) is before start ({start!r}) for {text!r}")
        self._add(text, begin, float(end), False)

    def _add(self, text: str, start: float, end: float, chunked: bool) -> None:
        if not isinstance(text, str):
            raise TypeError(f"HeardText: text must be a str, got {type(text).__name__}: {text!r}")
        if self._starts and (start < self._starts[-1] or end < self._ends[-1]):
            raise ValueError(
                f"HeardText: pieces must come in the order they play; {text!r} ({start!r} to {end!r}) "
                f"comes before the previous piece ({self._starts[-1]!r} to {self._ends[-1]!r})"
            )
        self._texts.append(text)
        self._starts.append(start)
        self._ends.append(end)
        self._chunked.append(chunked)

    def at(self, t: float) -> str:
        """The text heard by time ``t``."""
        return self.text[: self.heard_chars(t)]

    def unheard(self, t: float) -> str:
        """The text not yet heard at time ``t`` (what an interruption at ``t`` drops)."""
        return self.text[self.heard_chars(t) :]

    def heard_chars(self, t: float) -> int:
        """How many characters of ``text`` had been heard by time ``t``."""
        t = number(t, "HeardText.at: t")
        done = bisect.bisect_right(self._ends, t)  # the pieces over by t (ends never go down: see _add)
        heard = sum(len(text) for text in self._texts[:done])
        if done < len(self._texts) and self._chunked[done] and self._starts[done] < t:
            text = self._texts[done]
            share = (t - self._starts[done]) / (self._ends[done] - self._starts[done])
            n = int(len(text) * share)
            while 0 < n < len(text) and _spaced(text[n]) and _spaced(text[n - 1]):
                n -= 1  # a word not all out yet
            heard += n
        return heard
