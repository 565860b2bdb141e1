"""Pace a bursty text stream into a steady rhythm with a hard bound on added lag.

Text is cut into units (graphemes, words, sentences or the input chunks as they
are) and each unit is given a due time:

    due = min(max(ready, entered), entered + max_lag)

``ready`` is when the previous unit has been on screen long enough: its cost (in
characters) over the current rate, plus a pause after a sentence or clause end.
``entered + max_lag`` is the hard bound (``entered``: when the unit reached the
pacer; a sentence splitter upstream holds text until its sentence is complete, and
that wait is the splitter's, bounded by its own ``max_hold``): a unit never waits longer than
``max_lag``, so a display never falls behind the model, and a unit never goes out
before it arrived. The rate is the largest of the configured rate, the arrival
rate (a decayed estimate over about a second, read over the time since the
first arrival, or the first after a pause of more than 1.5 s, until a second
has passed) plus the backlog over four ``max_lag`` (when ``adaptive``), and the
rate that empties the current backlog before its newest unit hits the bound; so
pauses are borrowed back from the backlog by speaking a little faster after them,
and a slow source is never stalled: a unit that arrives after ``ready`` goes out
at once.

The queue holds one entry per arrival, not one object per unit: a release works
out how many of an entry's units are due in O(1) for ASCII graphemes (the units
are its characters) and in O(units) for words and other graphemes, and units due
together go out as one chunk of graphemes or one chunk per word.

Cost: O(1) per arrival and per release for scheduling, plus O(units released) for
words and non-ASCII graphemes; splitting input into units is linear in the text.
Memory is the backlog, which the lag bound keeps to about ``max_lag`` seconds of
input.
"""

from __future__ import annotations

import math
import re
from typing import Final, Literal, SupportsFloat

import regex
from mypy_extensions import mypyc_attr

from ._args import number, one_of, seconds
from ._core import Boundary, Chunk, Stage
from .sentences import SentenceSplitter

__all__ = ["Pacer"]

Unit = Literal["grapheme", "word", "sentence", "chunk"]
OnEnd = Literal["drain", "flush"]

# Module constants are Final: a compiled build (setup.py) inlines or keeps them in C
# statics instead of looking them up in the module's dict on every use.
_CJK: Final = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
# A word: a run of non-space, non-CJK characters with the space after it; one CJK
# character with the punctuation and space after it; or a run of space.
_WORD: Final = regex.compile(rf"[^\s{_CJK}]+\s*|[{_CJK}][\p{{M}}\p{{P}}\p{{S}}\s]*|\s+")
_GRAPHEME: Final = regex.compile(r"\X")
# The same pieces as _WORD on ASCII text (where regex's \s is [\t\n\v\f\r ]), found by
# the standard library's engine, which is several times cheaper per call on short text.
_ASCII_WORD: Final = re.compile(r"\S+\s*|\s+", re.ASCII)
_ARRIVAL_WINDOW: Final = 1.0  # seconds over which the arrival rate is estimated
# Until a few windows have passed, the estimate is read over the time since the first
# arrival (whose text counts as backlog, not rate), but over at least this long, so two
# chunks close together do not read as a huge rate.
_MIN_SPAN: Final = 0.05
# A silence longer than this is a pause (a tool call, a queue), not a slower source: the
# estimate, decayed towards nothing meanwhile, starts again from the next arrival, as at
# the start of the stream. Shorter silences are part of a bursty source's rhythm.
_PAUSE: Final = 1.5 * _ARRIVAL_WINDOW
_SETTLED: Final = 5 * _ARRIVAL_WINDOW  # from here on the estimate needs no correction (< 1%)
_CATCH_UP: Final = 4.0  # a backlog is worked off in about this many max_lags
_TAIL_WAIT: Final = 0.1  # a last grapheme that only a rare mark could extend waits this long for more text
_COALESCE: Final = 0.005  # units due this close together go out in one wake-up
_STALE: Final = object()  # the cached deadline needs recomputing
_SENTENCE: Final = Boundary.SENTENCE
_CLAUSE: Final = Boundary.CLAUSE
_COMPILED: Final = not __file__.endswith(".py")


@mypyc_attr(allow_interpreted_subclasses=True)
class Pacer(Stage):
    """Steady, natural output: ``Pacer(cps=40)`` or ``Pacer(wpm=300, unit="word")``.

    ``cps`` (characters per second) or ``wpm`` (words per minute, a word being five
    characters) is the natural rate; ``adaptive`` lets it follow a faster source.
    ``max_lag`` (seconds) bounds how long any text waits. ``sentence_pause`` and
    ``clause_pause`` (seconds) follow units that end a sentence or a clause, as
    marked by a ``SentenceSplitter`` upstream (``unit="sentence"`` runs one inside).
    ``on_end="drain"`` keeps the pace after the source ends (still within
    ``max_lag``); ``"flush"`` sends the rest at once. ``cancel`` returns everything
    not yet shown, at once.

    The default ``unit="grapheme"`` gives the evenest flow of characters (a typing
    effect); graphemes due at the same moment go out as one chunk. The last grapheme
    so far waits for more text that could extend it (an emoji sequence cut between
    tokens): up to ``max_lag``, or 0.1 s for ASCII, CJK and kana, which only a rare
    combining mark could extend. ``"word"`` never shows part of a word and sends a
    chunk per word; it wakes its driver about a fifth as often (a word is about five
    characters), which is what carries 10,000 streams on one core, but whole words of
    uneven length make the flow of characters lumpier. ``"sentence"`` sends whole sentences
    (for speech), ``"chunk"`` the input chunks as they are.
    """

    timed = True

    def __init__(
        self,
        cps: SupportsFloat | None = None,
        *,
        wpm: SupportsFloat | None = None,
        unit: Unit = "grapheme",
        adaptive: bool = True,
        max_lag: SupportsFloat = 0.5,
        sentence_pause: SupportsFloat = 0.2,
        clause_pause: SupportsFloat = 0.08,
        on_end: OnEnd = "drain",
    ) -> None:
        super().__init__()
        if cps is not None and wpm is not None:
            raise ValueError("Pacer: give cps or wpm, not both")
        name, given = ("cps", cps) if wpm is None else ("wpm", wpm)
        rate = 40.0 if given is None else number(given, f"Pacer: {name}")
        if not 0 < rate < math.inf:
            raise ValueError(f"Pacer: {name} must be a positive finite number, got {given!r}")
        if wpm is not None:
            rate = rate * 5 / 60  # a word is five characters
        one_of(unit, "Pacer: unit", ("grapheme", "word", "sentence", "chunk"))
        one_of(on_end, "Pacer: on_end", ("drain", "flush"))
        self.rate = rate
        self.unit: Unit = unit
        self.adaptive = adaptive
        self.max_lag = seconds(max_lag, "Pacer: max_lag")
        self.sentence_pause = seconds(sentence_pause, "Pacer: sentence_pause", zero=True)
        self.clause_pause = seconds(clause_pause, "Pacer: clause_pause", zero=True)
        self.on_end: OnEnd = on_end
        self._splitter = SentenceSplitter() if unit == "sentence" else None
        # The queue, in entries: the units of one arrival, as a Chunk holding their text,
        # arrival and the boundary after the last of them; the pieces (None where each
        # character is a unit); and when they reached the pacer. Plain lists, which a
        # compiled build indexes natively; compacted as the head moves. ``_sent``: units
        # of the head entry already sent. One entry per arrival, not one object per unit,
        # so a grapheme costs no more than a word to queue.
        self._chunks: list[Chunk] = []
        self._pieces: list[list[str] | None] = []
        self._entered: list[float] = []
        self._head = 0
        self._sent = 0
        self._queued_cost = 0
        self._newest_cost = 0  # the newest unit's cost: it is not backlog, it just came
        # The last unit sent: when it was due, its cost and the pause after it. The next
        # unit's ready time is derived from them with the rate *now*, so a backlog that
        # builds up meanwhile shortens the wait at once.
        self._last_due = -math.inf
        self._last_cost = 0
        self._last_pause = 0.0
        self._seen = 0.0  # the latest time the pacer was told
        self._tail = ""  # an incomplete word or grapheme held for more text
        self._tail_arrival = 0.0
        self._tail_entered = 0.0
        self._arrival_rate = 0.0
        self._last_arrival = -math.inf
        self._first_arrival = math.nan
        self._decayed_at = math.nan  # the arrival rate decayed to this time is _decayed
        self._decayed = 0.0
        self._deadline: float | object | None = _STALE
        self._head_rate = 0.0  # the rate _head_due last reckoned with

    def __repr__(self) -> str:
        return f"Pacer(cps={self.rate:g}, unit={self.unit!r}, max_lag={self.max_lag:g})"

    # -- stage protocol ---------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        # Computed once per state change: drivers and pipelines ask several times
        # between two calls, and every mutator ends in _release, which clears it.
        deadline = self._deadline
        if deadline is _STALE:
            deadline = self._deadline = self._compute_deadline()
        return deadline  # type: ignore[return-value]

    def _compute_deadline(self) -> float | None:
        if self._head < len(self._chunks):
            return self._head_due(self._seen)
        if self._tail:
            if self.unit == "grapheme" and _settled(self._tail):
                return self._tail_turn(self._seen)
            return self._tail_entered + self.max_lag
        return None

    def _tail_turn(self, now: float) -> float:
        """When the held last grapheme would go out if it were queued (the queue is empty)."""
        tail, newest = self._tail, self._newest_cost
        self._flush_tail(Boundary.NONE)
        due = self._head_due(now)
        self._chunks.pop()  # back to being held: more text may still join it
        self._pieces.pop()
        self._entered.pop()
        self._queued_cost -= len(tail)
        self._tail, self._newest_cost = tail, newest
        wait = self._tail_entered + min(_TAIL_WAIT, self.max_lag)
        return due if due > wait else wait

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        text = chunk.text
        if not text:
            return []
        self._seen = now
        self._note_arrival(len(text), now)
        if self._splitter is not None:
            for sentence in self._splitter.push(chunk, now):
                self._enqueue(sentence, [sentence.text], now)
        elif self.unit == "chunk":
            self._enqueue(chunk, [text], now)
        else:
            self._split(chunk, now)
        return self._release(now)

    def poll(self, now: float) -> list[Chunk]:
        self._seen = now
        if self._tail and now >= self._tail_entered + self.max_lag:
            self._flush_tail(Boundary.NONE)
        return self._release(now)

    def _flush_tail(self, boundary: Boundary) -> None:
        if self._tail:
            tail = Chunk(self._tail, self._tail_arrival, boundary)
            self._enqueue(tail, [self._tail], self._tail_entered)
            self._tail = ""

    def finish(self, now: float) -> list[Chunk]:
        if self._splitter is not None:
            for sentence in self._splitter.finish(now):
                self._enqueue(sentence, [sentence.text], now)
        self._flush_tail(Boundary.SENTENCE)
        if self.on_end == "flush":
            return self._release(math.inf, now)
        return self._release(now)

    def cancel(self, now: float) -> list[Chunk]:
        self._closed = True
        if self._splitter is not None:
            for sentence in self._splitter.cancel(now):
                self._enqueue(sentence, [sentence.text], now)
        self._flush_tail(Boundary.NONE)
        return self._release(math.inf, now)

    # -- units --------------------------------------------------------------------------

    def _note_arrival(self, chars: int, now: float) -> None:
        dt = now - self._last_arrival
        if dt > _PAUSE:  # the first arrival (dt is infinite), or the first after a pause
            self._first_arrival = now
            self._arrival_rate = 0.0
        if now == self._first_arrival:
            chars = 0  # text that came all at once is no rate to follow: the backlog terms pace it
        else:
            self._arrival_rate = self._arrival_rate * math.exp(-dt / _ARRIVAL_WINDOW)
        self._arrival_rate += chars / _ARRIVAL_WINDOW
        self._last_arrival = now
        self._decayed_at = math.nan

    def _split(self, chunk: Chunk, now: float) -> None:
        joined = bool(self._tail)
        if joined:
            text = self._tail + chunk.text
            arrival, entered = self._tail_arrival, self._tail_entered
        else:
            text = chunk.text
            arrival, entered = chunk.arrival, now
        pieces: list[str] | None  # None: every character is a unit (ASCII graphemes)
        if self.unit == "word":
            if not text.isascii():
                pieces = _WORD.findall(text)
            elif _COMPILED:
                pieces = _ascii_words(text)
            else:
                pieces = _ASCII_WORD.findall(text)
        elif text.isascii() and "\r" not in text:
            pieces = None  # every ASCII character but CR (CR LF) is a grapheme of its own
        else:
            pieces = _GRAPHEME.findall(text)
        boundary = chunk.boundary
        end = len(text)
        if boundary < Boundary.WORD:
            boundary = Boundary.NONE
            # The last unit may still grow: a word until a space, a grapheme until the next one.
            last = text[-1] if pieces is None else pieces[-1]
            if self.unit == "grapheme" or not last[-1].isspace():
                self._tail = last
                if (end if pieces is None else len(pieces)) > 1:
                    self._tail_arrival, self._tail_entered = chunk.arrival, now
                else:
                    self._tail_arrival, self._tail_entered = arrival, entered
                end -= len(last)
                if pieces is not None:
                    pieces.pop()
            else:
                self._tail = ""
        else:
            self._tail = ""
        if not end:
            return
        if joined:
            # The first unit holds the text that waited as the tail: it keeps that text's
            # times in an entry of its own; the rest is the new arrival's.
            first = text[0] if pieces is None else pieces[0]
            size = len(first)
            alone = size == end
            head = Chunk(first, arrival, boundary if alone else Boundary.NONE)
            self._enqueue(head, None if pieces is None else [first], entered)
            if alone:
                return
            if pieces is not None:
                del pieces[0]
            text, arrival = text[size:end], chunk.arrival
        elif end < len(text):
            text = text[:end]
        self._enqueue(Chunk(text, arrival, boundary), pieces, now)

    def _enqueue(self, unit: Chunk, pieces: list[str] | None, entered: float) -> None:
        """Queue an entry: ``unit`` holds its text, ``pieces`` its units (None: each character)."""
        self._chunks.append(unit)
        self._pieces.append(pieces)
        self._entered.append(entered)
        self._queued_cost += len(unit.text)
        self._newest_cost = 1 if pieces is None else len(pieces[-1])

    # -- scheduling -----------------------------------------------------------------------

    def _release(self, now: float, stamp: float | None = None) -> list[Chunk]:
        """Emit every unit due by ``now`` (``inf``: all of them, at time ``stamp``).

        Units of one entry due together go out as one chunk of graphemes, or as a chunk
        per word; a grapheme run also takes in the entries after it, up to a boundary.
        """
        chunks, all_pieces, times = self._chunks, self._pieces, self._entered
        out: list[Chunk] = []
        self._deadline = _STALE
        at = now if stamp is None else stamp
        limit = now + _COALESCE
        graphemes = self.unit == "grapheme"
        # Graphemes released but not yet in a chunk: their texts, their arrival, and their
        # entry when they are all of it (that chunk then goes out as it is).
        run: list[str] = []
        run_arrival = 0.0
        run_whole: Chunk | None = None
        i = self._head
        while True:
            while i < len(chunks):
                due = self._head_due(at)
                if due > limit:
                    if stamp is None and now == self._seen:
                        self._deadline = due  # what _compute_deadline would say: spare it the work
                    break
                entry = chunks[i]
                text, done = self._take(entry, all_pieces[i], times[i] + self.max_lag, due, limit, out)
                self._last_pause = 0.0
                if done:
                    boundary = entry.boundary
                    if boundary == _SENTENCE:
                        self._last_pause = self.sentence_pause
                    elif boundary == _CLAUSE:
                        self._last_pause = self.clause_pause
                    i += 1
                    self._head = i
                    self._sent = 0
                else:
                    boundary = Boundary.NONE
                if graphemes:
                    if run:
                        run_whole = None
                    else:
                        run_arrival = entry.arrival
                        run_whole = entry if text is entry.text else None
                    run.append(text)
                    if boundary != Boundary.NONE:
                        out.append(_run(run, run_arrival, boundary, run_whole))
                        run = []
            if i < len(chunks) or not graphemes or stamp is not None or not _settled(self._tail):
                break
            # Nothing waits ahead of the last grapheme so far, and only an unlikely
            # combining mark could still extend it: it goes out at its turn instead of
            # waiting for more text (which joins it if it comes first).
            due = self._tail_turn(at)
            if due > limit:
                if now == self._seen:
                    self._deadline = due
                break
            self._flush_tail(Boundary.NONE)
        if run:
            out.append(_run(run, run_arrival, Boundary.NONE, run_whole))
        if i == len(chunks):
            chunks.clear()
            all_pieces.clear()
            times.clear()
            self._head = 0
        elif i > 64 and 2 * i > len(chunks):  # most of the lists is gone: drop it
            del chunks[:i]
            del all_pieces[:i]
            del times[:i]
            self._head = 0
        return out

    def _take(
        self, entry: Chunk, pieces: list[str] | None, bound: float, due: float, limit: float, out: list[Chunk]
    ) -> tuple[str, bool]:
        """Send the head entry's units from the one due at ``due`` while they are due by ``limit``.

        Words go to ``out`` as a chunk each; graphemes come back as text, for the caller
        to gather into runs; and whether the entry is done. Advances ``_sent`` and the
        last unit's due time and cost.
        """
        rate = self._head_rate
        sent = self._sent
        if pieces is None:  # one character a unit: how many are due, in one step
            size = len(entry.text)
            count = size - sent
            if bound > limit and rate < math.inf:
                count = min(count, int((limit - due) * rate) + 1)
            last = due + (count - 1) / rate if count > 1 else due
            self._last_due = last if last < bound else bound
            self._last_cost = 1
            self._queued_cost -= count
            self._sent = sent + count
            return (entry.text if count == size else entry.text[sent : sent + count]), sent + count == size
        size = len(pieces)
        words = self.unit != "grapheme"  # words go out a chunk each; graphemes as one text
        first = sent
        cost = 0
        while True:
            unit_cost = len(pieces[sent])
            cost += unit_cost
            self._last_due = due
            sent += 1
            if words:  # a chunk a unit; the entry itself when it is one unit
                if size == 1:
                    out.append(entry)
                else:
                    after = entry.boundary if sent == size else Boundary.NONE
                    out.append(Chunk(pieces[sent - 1], entry.arrival, after))
            if sent == size:
                break
            due += unit_cost / rate
            if due > bound:
                due = bound
            if due > limit:
                break
        self._last_cost = unit_cost
        self._queued_cost -= cost
        self._sent = sent
        if words:
            return "", sent == size
        return (entry.text if first == 0 and sent == size else "".join(pieces[first:sent])), sent == size

    def _head_due(self, now: float) -> float:
        """When the head entry's next unit goes out, reckoned at ``now``; sets ``_head_rate``.

        The unit is ready when the last unit has had its time at the current rate (and
        its pause); the rate is the largest of the configured rate, the arrival rate plus
        the backlog over ``_CATCH_UP`` max_lags (adaptive), and the rate that empties
        the backlog before its newest unit reaches the bound. A unit never goes out
        before it reached the pacer, nor after the bound.
        """
        max_lag = self.max_lag
        rate = self.rate
        queued = self._queued_cost
        if self.adaptive:
            if now != self._decayed_at:
                self._decayed_at = now
                arrival = self._arrival_rate
                if now > self._last_arrival:
                    arrival *= math.exp((self._last_arrival - now) / _ARRIVAL_WINDOW)
                span = now - self._first_arrival
                if span < _SETTLED:
                    # The decayed sum has seen only ``span`` of arrivals, not a whole
                    # window's worth: scale it to the rate over that span, so the pace
                    # follows the source from the start instead of ramping up over a second.
                    arrival /= 1.0 - math.exp(-max(span, _MIN_SPAN) / _ARRIVAL_WINDOW)
                self._decayed = arrival
            arrival = self._decayed
            # Follow the source and work off any backlog over a few max_lags, so lag settles
            # below the bound and a burst is spread over the time the bound allows. (The
            # backlog is never negative, so this is never below the arrival rate itself.
            # A comparison, not max(): this runs once or twice per entry.)
            catch_up = arrival + queued / (_CATCH_UP * max_lag)
            if catch_up > rate:
                rate = catch_up
        backlog = queued - self._newest_cost
        if backlog > 0:
            # Empty the backlog before its newest unit reaches the lag bound.
            room = self._entered[-1] + max_lag - now
            if room <= 1e-3:
                rate = math.inf
            elif backlog / room > rate:
                rate = backlog / room
        self._head_rate = rate
        entered = self._entered[self._head]
        last_due = self._last_due
        if last_due == -math.inf:  # nothing sent yet: first output at once
            return entered
        ready = last_due + self._last_cost / rate + self._last_pause
        if ready < entered:
            return entered
        bound = entered + max_lag
        return ready if ready < bound else bound


def _settled(tail: str) -> bool:
    """Whether ``tail``, the last grapheme so far, can grow only by an unlikely combining mark.

    ASCII but CR (which LF would join) and the keycap bases ``#``, ``*`` and digits
    (``1`` U+FE0F U+20E3 is one emoji), CJK punctuation, kana, ideographs and full-width
    forms: text a model writes is NFC, where these carry no mark after them. A held
    emoji, Hangul jamo or an Indic consonant (whose vowel sign may be the next token's)
    waits for more text, up to ``max_lag``.
    """
    if len(tail) != 1:
        return False
    code = ord(tail)
    if code < 128:
        return code != 13 and code != 35 and code != 42 and not 48 <= code <= 57
    return (
        0x3000 <= code <= 0x303F  # CJK punctuation
        or 0x3041 <= code <= 0x3096  # hiragana (not the combining voicing marks after it)
        or 0x30A1 <= code <= 0x30FA  # katakana
        or 0x4E00 <= code <= 0x9FFF  # CJK ideographs
        or 0xFF01 <= code <= 0xFF60  # full-width forms
    )


def _run(texts: list[str], arrival: float, boundary: Boundary, whole: Chunk | None) -> Chunk:
    """One chunk of the graphemes released together (``whole``: the entry, if they are all of it)."""
    if whole is not None:
        return whole
    return Chunk(texts[0] if len(texts) == 1 else "".join(texts), arrival, boundary)


def _ascii_words(text: str) -> list[str]:
    """``_ASCII_WORD.findall(text)`` on ASCII ``text``: a loop a compiled build runs natively."""
    pieces = []
    size = len(text)
    start = i = 0
    while i < size:
        while i < size and not _is_ascii_space(ord(text[i])):
            i += 1
        while i < size and _is_ascii_space(ord(text[i])):
            i += 1
        pieces.append(text[start:i])
        start = i
    return pieces


def _is_ascii_space(code: int) -> bool:
    return code == 32 or 9 <= code <= 13
