"""Pace a bursty text stream into a steady rhythm with a hard bound on added lag.

Text is cut into units (graphemes, words, sentences or the input chunks as they
are) and each unit is given a due time:

    due = max(min(ready, arrival + max_lag), entered)

``ready`` is when the previous unit has been on screen long enough: its cost (in
characters) over the current rate, plus a pause after a sentence or clause end.
``arrival + max_lag`` is the hard bound (``arrival``: when the unit's text reached
the pipeline, so a stage before that holds text, a sentence splitter, eats into the
same bound), so a display never falls behind the model; and a unit never goes out
before it reached the pacer (``entered``). The rate is the largest of the configured
rate, the arrival rate (a decayed estimate over about a second, read over the time
since the first arrival, or the first after a pause of more than 1.5 s, until a
second has passed; text that opens the stream in one burst, pieces less than 2 ms
apart as a buffer read gives them, is backlog, not rate, and so is what an arrival
brings beyond eight times the pace over the gap before it) plus the backlog over four
``max_lag`` (when ``adaptive``), and the rate that empties the current backlog
before its newest unit hits the bound; so pauses are borrowed back from the backlog
by speaking a little faster after them, and a slow source is never stalled: a unit
that arrives after ``ready`` goes out at once.

Pauses come from the text itself: ``_marks.BreakFinder`` reads the input with the
sentence splitter's rules and reports each sentence and clause end (as an offset)
as soon as the text after it decides it; the pause goes before the first visible
character after the boundary, if that has not gone out yet. A pause is the
configured one at the natural rate, shorter in proportion at a faster pace, at most
a fifth (an eighth for a clause) of the time the text since the last pause took,
none shorter than a tick and none while the lag bound sets the pace.

The pieces have names of their own: ``_arrival.ArrivalRate`` estimates the source's
rate; ``_units`` holds the unit strategy chosen at construction and the queue, one
entry per arrival, not one object per unit; ``Rhythm`` here reckons due times. A
release works out how many of an entry's units are due in O(1) for ASCII graphemes
(the units are its characters) and in O(units) for words and other graphemes, and
units due together go out as one chunk of graphemes or one chunk per word.

Cost: O(1) per arrival and per release for scheduling, plus O(units released) for
words and non-ASCII graphemes; splitting input into units and finding boundaries
is linear in the text.
Memory is the backlog, which the lag bound keeps to about ``max_lag`` seconds of
input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Final, Literal, SupportsFloat

from mypy_extensions import mypyc_attr

from ._args import number, one_of, seconds
from ._arrival import BURST_GAP, ArrivalRate
from ._control import Action, Control, Flow
from ._core import Boundary, Chunk, Stage, closed_error
from ._marks import BreakFinder, Breakpoints
from ._punkt import english_punkt
from ._sentences import Lang, SentenceSplitter
from ._units import (
    Chunks,
    Detected,
    Graphemes,
    Lines,
    Matches,
    Sentences,
    UnitQueue,
    Units,
    Words,
    bound_start,
)

__all__ = ["Pacer", "Rhythm"]

Unit = Literal["grapheme", "word", "line", "sentence", "chunk"]
#: The unit names, and the defaults that ``Pacer()`` and the servers' ``pacer.config`` share.
UNITS: Final = ("grapheme", "word", "line", "sentence", "chunk")
CPS: Final = 40.0
MAX_LAG: Final = 0.5
SENTENCE_PAUSE: Final = 0.2
CLAUSE_PAUSE: Final = 0.08
#: A unit name, a pattern (a unit ends after each match) or a function that returns
#: the next unit of the text it is given (a prefix), or ``None`` while none is complete.
UnitChoice = Unit | re.Pattern[str] | Callable[[str], str | None]
OnEnd = Literal["drain", "flush"]
Boundaries = Literal["detect", "marked"]

# Module constants are Final: a compiled build (setup.py) inlines or keeps them in C
# statics instead of looking them up in the module's dict on every use.
_CATCH_UP: Final = 4.0  # a backlog is worked off in about this many max_lags
_TAIL_WAIT: Final = 0.1  # a last grapheme that only a rare mark could extend waits this long for more text
_FIRST_WAIT: Final = 0.05  # or this long, when nothing has gone out yet
#: Seconds within which units due go out in one wake-up (``Pacer(tick=)``, the proxy's ``--tick``).
TICK: Final = 0.005
_LATE: Final = 1e-6  # a unit this close to due is due (its due time moves as the rate is reckoned anew)
_STALE: Final = object()  # the cached deadline needs recomputing
_SENTENCE_SHARE: Final = 0.2  # a pause takes at most this share of the time its sentence took
_CLAUSE_SHARE: Final = 0.12  # and of its clause's
_SENTENCE: Final = Boundary.SENTENCE
_CLAUSE: Final = Boundary.CLAUSE


class Rhythm:
    """When the next unit goes out: the rate now, and how long the last unit stays on screen.

    ``rate`` (characters per second) is the natural rate; ``adaptive`` follows a faster
    source (``arrival``); ``max_lag`` (seconds) bounds any unit's wait; the pauses
    (seconds) follow units that end a sentence or a clause; units due within ``tick``
    (seconds) go out together.
    """

    def __init__(
        self,
        rate: float,
        adaptive: bool,
        max_lag: float,
        sentence_pause: float,
        clause_pause: float,
        tick: float = TICK,
    ) -> None:
        self.rate = rate
        self.adaptive = adaptive
        self.max_lag = max_lag
        self.sentence_pause = sentence_pause
        self.clause_pause = clause_pause
        self.tick = tick  # units due within a tick go out together; a shorter pause is none
        self.arrival = ArrivalRate()
        # The last unit sent: when it was due, its cost and the pause after it. The next
        # unit's ready time is derived from them with the rate *now*, so a backlog that
        # builds up meanwhile shortens the wait at once.
        self.last_due = -math.inf
        self.last_cost = 0
        self.last_pause = 0.0
        self.head_rate = 0.0  # the rate the last due time was reckoned with
        self.forced = False  # and whether the lag bound set it: the backlog must go, no time to pause

    def due(
        self, queued: int, newest_cost: int, newest_since: float, entered: float, since: float, now: float
    ) -> float:
        """When the next unit goes out, reckoned at ``now``; sets ``head_rate``.

        ``queued`` characters wait, the newest unit of ``newest_cost`` arrived at
        ``newest_since``, the next unit at ``since`` and entered the pacer at
        ``entered`` (later, if a stage before held it). The unit is ready when the last
        unit has had its time at the current rate (and its pause); the rate is the largest
        of the configured rate, the arrival rate plus the backlog over ``_CATCH_UP``
        max_lags (adaptive), and the rate that empties the backlog before its newest unit
        reaches the bound. A unit never goes out before it entered, nor after the bound,
        ``max_lag`` after it reached the pipeline.
        """
        max_lag = self.max_lag
        rate = self.rate
        if self.adaptive:
            # Follow the source and work off any backlog over a few max_lags, so lag settles
            # below the bound and a burst is spread over the time the bound allows. (The
            # backlog is never negative, so this is never below the arrival rate itself.
            # A comparison, not max(): this runs once or twice per entry.)
            catch_up = self.arrival.at(now) + queued / (_CATCH_UP * max_lag)
            if catch_up > rate:
                rate = catch_up
        backlog = queued - newest_cost
        forced = False
        if backlog > 0:
            # Empty the backlog before its newest unit reaches the lag bound.
            room = newest_since + max_lag - now
            if room <= 1e-3:
                rate = math.inf
                forced = True
            elif backlog / room > rate:
                rate = backlog / room
                forced = True
        self.head_rate = rate
        self.forced = forced
        last_due = self.last_due
        if last_due == -math.inf:  # nothing sent yet: first output at once
            return entered
        ready = last_due + self.last_cost / rate + self.last_pause
        bound = since + max_lag
        if ready > bound:
            ready = bound
        return ready if ready > entered else entered

    def pause_after(self, boundary: Boundary, chars: int) -> float:
        """The pause after a unit that ends on ``boundary``, ``chars`` characters after the
        previous pause: the configured pause at the natural rate, shorter in proportion
        when the pace is faster, and at most a share of the time those characters took to
        show (a fifth for a sentence, an eighth for a clause). So pauses cost the same
        share of the time at any pace and in any script (a short Chinese clause gets a
        short pause), and the backlog they leave is soon worked off."""
        if boundary == _SENTENCE:
            pause, share = self.sentence_pause, _SENTENCE_SHARE
        elif boundary == _CLAUSE:
            pause, share = self.clause_pause, _CLAUSE_SHARE
        else:
            return 0.0
        if self.forced:
            return 0.0  # the lag bound sets the pace: a pause would only hurry the rest
        natural = self.rate
        rate = self.head_rate
        if rate < natural:
            rate = natural
        pause = pause * natural / rate
        most = share * chars / rate
        if most < pause:
            pause = most
        return pause if pause >= self.tick else 0.0  # too short to see, and a wake-up of its own


class _Run:
    """Graphemes released together, gathered into one chunk that ends at a boundary."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.arrival = 0.0
        self.whole: Chunk | None = None  # the entry, while the run is all of it

    def add(self, entry: Chunk, text: str, boundary: Boundary, out: list[Chunk]) -> None:
        if self.texts:
            self.whole = None
        else:
            self.arrival = entry.arrival
            self.whole = entry if text is entry.text else None
        self.texts.append(text)
        if boundary != Boundary.NONE:
            self.close(boundary, out)

    def close(self, boundary: Boundary, out: list[Chunk]) -> None:
        texts = self.texts
        if not texts:
            return
        if self.whole is not None and self.whole.boundary >= boundary:
            out.append(self.whole)  # sent as it came
        else:
            out.append(Chunk(texts[0] if len(texts) == 1 else "".join(texts), self.arrival, boundary))
        self.texts = []


def _end_on(kind: Boundary, out: list[Chunk], run: _Run | None) -> None:
    """The text sent so far in this release ends on ``kind``: the run closes there, or
    the last chunk out says so."""
    if run is not None and run.texts:
        run.close(kind, out)
    elif out and out[-1].boundary < kind:
        last = out[-1]
        out[-1] = Chunk(last.text, last.arrival, kind)


class _Tail:
    """The last word or grapheme so far, held for more text that could extend it."""

    def __init__(self) -> None:
        self.text = ""
        self.arrival = 0.0  # when it reached the pipeline
        self.entered = 0.0  # and the pacer

    def hold(self, text: str, arrival: float, entered: float) -> None:
        self.text = text
        self.arrival = arrival
        self.entered = entered

    def since(self) -> float:
        """When its lag bound starts."""
        return bound_start(self.arrival, self.entered)


def _units(unit: object, max_lag: float) -> Units:
    if isinstance(unit, re.Pattern):
        if not isinstance(unit.pattern, str):
            raise TypeError("Pacer: unit must be a str pattern, not a bytes one")
        return Matches(unit)
    if callable(unit):
        return Detected(unit)
    one_of(unit, "Pacer: unit", UNITS)
    if unit == "grapheme":
        return Graphemes()
    if unit == "word":
        return Words()
    if unit == "line":
        return Lines()
    if unit == "sentence":
        # Half the lag bound to find a sentence's end, the other half to pace it out.
        return Sentences(SentenceSplitter(), max_lag / 2)
    return Chunks()


@mypyc_attr(allow_interpreted_subclasses=True)
class Pacer(Stage):
    """Steady, natural output: ``Pacer(cps=40)`` or ``Pacer(wpm=300, unit="word")``.

    ``cps`` (characters per second) or ``wpm`` (words per minute, a word being five
    characters) is the natural rate; ``adaptive`` lets it follow a faster source.
    ``max_lag`` (seconds) bounds how long any text waits after it reached the
    pipeline. ``sentence_pause`` and ``clause_pause`` (seconds, at the natural rate)
    go before the first visible character after a sentence or clause end: ends the
    pacer finds in the text itself with ``SentenceSplitter``'s rules for ``lang``
    (``boundaries="detect"``, the default; nothing is held for a sentence to finish)
    and ends a stage before marked on its chunks (all ``"marked"`` uses). A pause is
    shorter at a faster pace, at most a fifth (clause: an eighth) of the time the text
    since the last pause took, and none while the lag bound sets the pace; the chunk
    before it ends on its boundary. Units due within ``tick`` seconds go out together.
    ``on_end="drain"`` keeps the pace after the source ends (still within
    ``max_lag``); ``"flush"`` sends the rest at once. ``cancel`` returns everything
    not yet shown, at once.

    The default ``unit="grapheme"`` gives the evenest flow of characters (a typing
    effect); graphemes due at the same moment go out as one chunk. The last grapheme
    so far waits for more text that could extend it (an emoji sequence cut between
    tokens): up to ``max_lag``, or 0.1 s for visible ASCII, CJK and kana, which only a
    rare combining mark could extend; a space waits for the next text (up to
    ``max_lag``: it is invisible), which says whether a sentence ended before it, so
    that it goes out with the chunk that ends there. ``"word"`` never shows part of a word and sends a
    chunk per word; it wakes its driver about a fifth as often (a word is about five
    characters), which is what carries 10,000 streams on one core, but whole words of
    uneven length make the flow of characters lumpier. ``"line"`` sends a line with its
    line feed, ``"sentence"`` whole sentences (for speech), ``"chunk"`` the input
    chunks as they are. A compiled pattern (``re.compile(r"[.!?]\\s+")``) makes a unit of
    the text up to and including each match; a function makes one of the prefix it
    returns for the text it is given (``None``: no unit is complete yet), as Vercel's
    ``smoothStream`` chunks by a RegExp or a ``ChunkDetector``. Text that has not
    completed a unit waits for more, never longer than ``max_lag``.
    """

    timed = True

    def __init__(
        self,
        cps: SupportsFloat | None = None,
        *,
        wpm: SupportsFloat | None = None,
        unit: UnitChoice = "grapheme",
        adaptive: bool = True,
        max_lag: SupportsFloat = MAX_LAG,
        sentence_pause: SupportsFloat = SENTENCE_PAUSE,
        clause_pause: SupportsFloat = CLAUSE_PAUSE,
        on_end: OnEnd = "drain",
        boundaries: Boundaries = "detect",
        lang: Lang = "auto",
        tick: SupportsFloat = TICK,
    ) -> None:
        super().__init__()
        if cps is not None and wpm is not None:
            raise ValueError("Pacer: give cps or wpm, not both")
        name, given = ("cps", cps) if wpm is None else ("wpm", wpm)
        rate = CPS if given is None else number(given, f"Pacer: {name}")
        if not 0 < rate < math.inf:
            raise ValueError(f"Pacer: {name} must be a positive finite number, got {given!r}")
        if wpm is not None:
            rate = rate * 5 / 60  # a word is five characters
        one_of(on_end, "Pacer: on_end", ("drain", "flush"))
        one_of(boundaries, "Pacer: boundaries", ("detect", "marked"))
        one_of(lang, "Pacer: lang", ("auto", "en", "zh", "ja"))
        self.on_end: OnEnd = on_end
        self._rhythm = Rhythm(
            rate,
            adaptive,
            seconds(max_lag, "Pacer: max_lag"),
            seconds(sentence_pause, "Pacer: sentence_pause", zero=True),
            seconds(clause_pause, "Pacer: clause_pause", zero=True),
            seconds(tick, "Pacer: tick", zero=True),
        )
        self._units = _units(unit, self._rhythm.max_lag)
        self._units.choice = unit
        self._run = _Run() if self._units.runs else None  # empty between releases
        self._queue = UnitQueue()
        self._seen = 0.0  # the latest time the pacer was told
        self._tail = _Tail()
        self._deadline: float | object | None = _STALE
        # Sentence and clause ends found in the text itself (not for sentence units, whose
        # splitter marks them).
        self._breaks = Breakpoints(
            BreakFinder(None if lang in ("zh", "ja") else english_punkt(), lang != "en")
            if boundaries == "detect" and unit != "sentence"
            else None,
            boundaries,
            lang,
        )
        self._grid = -math.inf  # the end of the last release's coalescing window
        self._flow = Flow()  # the reader's controls: paused, or everything at once

    @property
    def rate(self) -> float:
        """The natural rate, in characters per second; set it to change the pace live
        (the next unit's due time is reckoned with the new rate)."""
        return self._rhythm.rate

    @rate.setter
    def rate(self, cps: object) -> None:
        self._set_rate(cps)

    def _set_rate(self, cps: object) -> None:
        # (A method of its own: a compiled build's property setter, called from inside the
        # class, was handed the wrong argument.)
        value = number(cps, "Pacer: rate")
        if not 0 < value < math.inf:
            raise ValueError(
                f"Pacer: rate must be a positive finite number (characters per second), got {cps!r}"
            )
        self._rhythm.rate = value
        self._deadline = _STALE

    @property
    def unit(self) -> UnitChoice:
        """The unit text is paced in: a name, a pattern or a function (as given)."""
        return self._units.choice  # type: ignore[return-value]

    @property
    def adaptive(self) -> bool:
        """Whether the rate follows a faster source."""
        return self._rhythm.adaptive

    @property
    def max_lag(self) -> float:
        """The longest any text waits in the pacer, in seconds."""
        return self._rhythm.max_lag

    @property
    def sentence_pause(self) -> float:
        """Seconds of pause after a unit that ends a sentence."""
        return self._rhythm.sentence_pause

    @property
    def clause_pause(self) -> float:
        """Seconds of pause after a unit that ends a clause."""
        return self._rhythm.clause_pause

    @property
    def tick(self) -> float:
        """Seconds within which units due together go out in one chunk (one wake-up)."""
        return self._rhythm.tick

    @property
    def boundaries(self) -> Boundaries:
        """Where pauses come from: ``"detect"``, the text itself and any stage before;
        ``"marked"``, only boundaries a stage before marked."""
        return self._breaks.mode  # type: ignore[return-value]

    @property
    def lang(self) -> Lang:
        """The sentence rules that find boundaries in the text (as ``SentenceSplitter``'s)."""
        return self._breaks.lang  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"Pacer(cps={self.rate:g}, unit={self.unit!r}, max_lag={self.max_lag:g})"

    # -- stage protocol ---------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        # Computed once per state change (a pure function of the state, remembered):
        # drivers and pipelines ask several times between two calls, and every mutator
        # ends in _release, which clears it.
        deadline = self._deadline
        if deadline is _STALE:
            deadline = self._deadline = self._compute_deadline()
        return deadline  # type: ignore[return-value]

    def _compute_deadline(self) -> float | None:
        if self._flow.paused:  # waits for a control, not for time, while it holds text
            held = self._queue.waiting() or self._tail.text or self._units.due() is not None
            return math.inf if held else None
        if self._queue.waiting():
            due = self._head_due(self._seen)
        elif not self._tail.text:
            return self._units.due()  # text a unit strategy holds back (sentences), if any
        elif self._units.settled(self._tail.text):
            due = self._tail_turn(self._seen)
        else:
            due = self._tail.since() + self.max_lag
        return self._or_held(due)

    def _or_held(self, due: float) -> float:
        """When to wake for a unit due at ``due``: then, or at the end of the last release's
        coalescing window if it falls within one window after it (so a fast pace wakes on
        an even grid, and every 100 ms carries the same number of characters), or sooner
        when a unit strategy holds text that is due out sooner."""
        grid = self._grid
        if self._seen < grid < due < grid + self._rhythm.tick:
            due = grid
        held = self._units.due()
        return due if held is None or due < held else held

    def _head_due(self, now: float) -> float:
        """When the head entry's next unit goes out, reckoned at ``now``."""
        queue = self._queue
        head = queue.head
        return self._rhythm.due(
            queue.cost, queue.newest_cost, queue.since[-1], queue.entered[head], queue.since[head], now
        )

    def _tail_turn(self, now: float) -> float:
        """When the held last grapheme would go out if it were queued (the queue is empty),
        but not before it has waited ``_TAIL_WAIT`` for more text (``_FIRST_WAIT`` when it
        would be the first output)."""
        tail = self._tail
        cost = len(tail.text)
        entered, since = tail.entered, tail.since()
        due = self._rhythm.due(self._queue.cost + cost, cost, since, entered, since, now)
        # The first output waits less: a reader is waiting for anything at all.
        wait = entered + min(_FIRST_WAIT if self._rhythm.last_due == -math.inf else _TAIL_WAIT, self.max_lag)
        bound = since + self.max_lag
        if wait > bound:
            wait = bound
        return due if due > wait else wait

    def push(self, chunk: Chunk, now: float) -> list[Chunk]:
        if self.input_ended:
            raise closed_error(self)
        text = chunk.text
        if not text:
            return []
        # Several arrivals in one burst (read at once, ``BURST_GAP``): until the last of them,
        # the rate is reckoned from part of the burst, so nothing goes out ahead of its time.
        burst = now - self._seen < BURST_GAP
        self._seen = now
        rhythm = self._rhythm
        rhythm.arrival.note(len(text), now, rhythm.rate)
        self._breaks.add(text, self._queue)
        units = self._units
        if units.whole:
            self._queue_units(units.ready(chunk, now))
        else:
            self._split(chunk, now)
        if self._flow.paused or self._flow.unpaced:
            return self._held_or_all(now)
        return self._release(now, ahead=0.0 if burst else -1.0)

    def poll(self, now: float) -> list[Chunk]:
        self._seen = now
        if self._flow.paused or self._flow.unpaced:
            return self._held_or_all(now)
        self._queue_units(self._units.poll(now))
        if self._tail.text and now >= self._tail.since() + self.max_lag:
            self._flush_tail(Boundary.NONE)
        return self._release(now)

    def _queue_units(self, units: list[tuple[Chunk, float]]) -> None:
        for unit, entered in units:
            self._queue.add(unit, [unit.text], entered)

    def _flush_tail(self, boundary: Boundary) -> None:
        tail = self._tail
        if tail.text:
            self._queue.add(Chunk(tail.text, tail.arrival, boundary), [tail.text], tail.entered)
            tail.text = ""

    def finish(self, now: float) -> list[Chunk]:
        self.end_input()
        self._breaks.finish(self._queue)
        self._queue_units(self._units.finish(now))
        self._flush_tail(Boundary.SENTENCE)
        if self._flow.paused:
            return self._held_or_all(now)
        if self.on_end == "flush" or self._flow.unpaced:
            return self._release(math.inf, now)
        return self._release(now)

    def cancel(self, now: float) -> list[Chunk]:
        self.end_input(cancelled=True)
        self._queue_units(self._units.cancel(now))
        self._flush_tail(Boundary.NONE)
        return self._release(math.inf, now)

    # -- the reader's controls -------------------------------------------------------------

    def control(self, control: Control, now: float) -> list[Chunk]:
        """Pause (hold everything, keep taking text), resume (the lag bound of the text
        held counts from now, and the first unit goes out at once), show all (everything
        held at once, and from then on text as it comes, unpaced), or a new rate (paced
        again); returns what goes out now. Text is never lost or repeated: a paused pacer
        holds it; a ``cancel`` still hands it all over."""
        if self.cancelled:
            return []
        flow = self._flow
        was_paused = flow.paused
        flow.apply(control)
        self._deadline = _STALE
        self._seen = max(self._seen, now)
        action = control.action
        if action is Action.RATE:
            self._set_rate(control.cps)
        if flow.paused:
            return []
        if action is Action.SHOW_ALL or (flow.unpaced and was_paused):
            return self._held_or_all(now)
        if was_paused:
            self._restart(now)
        return self._release(now)

    def _held_or_all(self, now: float) -> list[Chunk]:
        """Paused: nothing goes out; after show all: everything held, at once."""
        self._deadline = _STALE
        if self._flow.paused:
            return []
        if self._units.due() is not None:
            self._queue_units(self._units.poll(math.inf))
        self._flush_tail(Boundary.NONE)
        return self._release(math.inf, now)

    def _restart(self, now: float) -> None:
        """After a pause: the lag bound of everything held counts from ``now``, and the next
        unit goes out at once, as the first of a stream does."""
        queue = self._queue
        since, entered = queue.since, queue.entered
        for i in range(queue.head, len(since)):
            if since[i] < now:
                since[i] = now
            if entered[i] < now:
                entered[i] = now
        tail = self._tail
        if tail.text:
            tail.hold(tail.text, max(tail.arrival, now), max(tail.entered, now))
        self._units.restart(now)
        rhythm = self._rhythm
        rhythm.last_due = -math.inf
        rhythm.last_pause = 0.0

    # -- units --------------------------------------------------------------------------

    def _split(self, chunk: Chunk, now: float) -> None:
        tail = self._tail
        joined = bool(tail.text)
        if joined:
            text = tail.text + chunk.text
            arrival, entered = tail.arrival, tail.entered
        else:
            text = chunk.text
            arrival, entered = chunk.arrival, now
        tail.text = ""
        pieces = self._units.pieces(text)  # None: every character is a unit (ASCII graphemes)
        boundary = chunk.boundary
        end = len(text)
        if boundary < Boundary.WORD:
            boundary = Boundary.NONE
            # The last unit may still grow: a word until a space, a grapheme until the next one.
            last = text[-1] if pieces is None else pieces[-1]
            if self._units.holds(last):
                if (end if pieces is None else len(pieces)) > 1:
                    tail.hold(last, chunk.arrival, now)
                else:
                    tail.hold(last, arrival, entered)
                end -= len(last)
                if pieces is not None:
                    pieces.pop()
        if not end:
            return
        if joined:
            # The first unit holds the text that waited as the tail: it keeps that text's
            # times in an entry of its own; the rest is the new arrival's.
            first = text[0] if pieces is None else pieces[0]
            size = len(first)
            alone = size == end
            head = Chunk(first, arrival, boundary if alone else Boundary.NONE)
            self._queue.add(head, None if pieces is None else [first], entered)
            if alone:
                return
            if pieces is not None:
                del pieces[0]
            text, arrival = text[size:end], chunk.arrival
        elif end < len(text):
            text = text[:end]
        self._queue.add(Chunk(text, arrival, boundary), pieces, now)

    # -- sentence and clause ends found in the text ----------------------------------------

    def _at_break(self, start: int, out: list[Chunk], run: _Run | None) -> None:
        """If the head's next unit (at offset ``start``) is the first visible one after a
        boundary found in the text, the pause goes before it, and the chunk before it ends
        on that boundary."""
        queue = self._queue
        kind = self._breaks.reached(start, queue.chunks[queue.head].text[queue.sent_chars])
        if kind == Boundary.NONE:
            return
        rhythm = self._rhythm
        pause = rhythm.pause_after(kind, self._breaks.since(start))
        if pause > rhythm.last_pause:
            rhythm.last_pause = pause
        _end_on(kind, out, run)

    # -- scheduling -----------------------------------------------------------------------

    def _release(self, now: float, stamp: float | None = None, ahead: float = -1.0) -> list[Chunk]:
        """Emit every unit due by ``now`` (``inf``: all of them, at time ``stamp``), and those
        due within ``ahead`` after it (``-1``: a tick, and the next wake-up lines up on that
        grid). An arrival at the same instant as the one before passes 0: only what is
        due goes, so a burst reckons its pace from all of it, not from its first few.

        Units of one entry due together go out as one chunk of graphemes, or as a chunk
        per word; a grapheme run also takes in the entries after it, up to a boundary.
        """
        queue = self._queue
        out: list[Chunk] = []
        self._deadline = _STALE
        at = now
        if stamp is not None:
            at, ahead = stamp, 0.0
            self._breaks.skip()  # all goes out at once: no pauses
        elif ahead < 0:
            ahead = self._grid_step(now)
        limit = now + ahead
        run = self._run
        while True:
            while queue.waiting():
                breaks = self._breaks
                if breaks.head < len(breaks.offsets):
                    start = queue.starts[queue.head] + queue.sent_chars
                    if breaks.offsets[breaks.head] <= start:
                        self._at_break(start, out, run)
                due = self._head_due(at)
                # The unit after a pause goes ahead of its time by at most half the pause
                # (as far as a wake-up looks ahead): more would fill the pause.
                pause = self._rhythm.last_pause
                if due > limit or (pause > 0.0 and due > now + _LATE + 0.5 * pause):
                    if stamp is None and now == self._seen:
                        self._deadline = self._or_held(due)  # as _compute_deadline: spare it the work
                    break
                self._send_head(due, limit, run, out)
            if queue.waiting() or run is None or stamp is not None or not self._tail_due(at, now, limit):
                break
            self._flush_tail(Boundary.NONE)
        if run is not None:
            run.close(Boundary.NONE, out)
        queue.compact()
        return out

    def _grid_step(self, now: float) -> float:
        """A timer's wake-up: it takes what falls due within a tick, and the next wake-up
        lines up one tick on."""
        tick = self._rhythm.tick
        self._grid = now + tick
        return tick

    def _tail_due(self, at: float, now: float, limit: float) -> bool:
        """Whether the last grapheme so far goes out now: nothing waits ahead of it, and
        only an unlikely combining mark could still extend it, so it goes out at its turn
        instead of waiting for more text (which joins it if it comes first)."""
        if not self._units.settled(self._tail.text):
            return False
        due = self._tail_turn(at)
        if due > limit:
            if now == self._seen:
                self._deadline = self._or_held(due)
            return False
        return True

    def _send_head(self, due: float, limit: float, run: _Run | None, out: list[Chunk]) -> None:
        """Send the head entry's units due by ``limit``, the first at ``due``: words to ``out``,
        graphemes into ``run``; move to the next entry when this one is all sent."""
        queue = self._queue
        rhythm = self._rhythm
        i = queue.head
        entry = queue.chunks[i]
        bound = queue.since[i] + rhythm.max_lag
        text, done = self._take(entry, queue.pieces[i], bound, due, limit, out, run is None)
        boundary = Boundary.NONE
        rhythm.last_pause = 0.0
        if done:
            boundary = entry.boundary
            if boundary >= _CLAUSE and self._breaks.fresh(entry.text, queue.starts[i]):
                # Marked by a stage before (and not just paused at, found in the text).
                end = queue.starts[i] + len(entry.text)
                rhythm.last_pause = rhythm.pause_after(boundary, self._breaks.since(end))
            queue.next_entry()
        if run is not None:
            run.add(entry, text, boundary, out)

    def _take(
        self,
        entry: Chunk,
        pieces: list[str] | None,
        bound: float,
        due: float,
        limit: float,
        out: list[Chunk],
        words: bool,
    ) -> tuple[str, bool]:
        """Send the head entry's units from the one due at ``due`` while they are due by ``limit``.

        ``words``: each unit goes to ``out`` as a chunk; otherwise (graphemes) the text
        comes back, for the caller to gather into runs; and whether the entry is done.
        Advances the queue's ``sent`` and the last unit's due time and cost.
        """
        queue = self._queue
        rhythm = self._rhythm
        rate = rhythm.head_rate
        sent = queue.sent
        stop = self._breaks.stop(entry.text, queue.starts[queue.head], queue.sent_chars)
        if pieces is None:  # one character a unit: how many are due, in one step
            size = len(entry.text)
            count = stop - sent  # stop is at most size
            if bound > limit and rate < math.inf:
                count = min(count, int((limit - due) * rate) + 1)
            last = due + (count - 1) / rate if count > 1 else due
            rhythm.last_due = last if last < bound else bound
            rhythm.last_cost = 1
            queue.cost -= count
            queue.sent = queue.sent_chars = sent + count
            return (entry.text if count == size else entry.text[sent : sent + count]), sent + count == size
        size = len(pieces)
        first = sent
        cost = 0
        at = queue.sent_chars
        while True:
            unit_cost = len(pieces[sent])
            cost += unit_cost
            rhythm.last_due = due
            sent += 1
            at += unit_cost
            if words:  # a chunk a unit; the entry itself when it is one unit
                if size == 1:
                    out.append(entry)
                else:
                    after = entry.boundary if sent == size else Boundary.NONE
                    out.append(Chunk(pieces[sent - 1], entry.arrival, after))
            if sent == size or at >= stop:  # at a boundary: the next unit waits for its pause
                break
            due += unit_cost / rate
            if due > bound:
                due = bound
            if due > limit:
                break
        rhythm.last_cost = unit_cost
        queue.cost -= cost
        queue.sent = sent
        queue.sent_chars = at
        if words:
            return "", sent == size
        return (entry.text if first == 0 and sent == size else "".join(pieces[first:sent])), sent == size
