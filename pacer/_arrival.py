"""How fast a source is sending: a decayed estimate of its rate, for a pacer to follow.

Cost: O(1) per arrival and per reading; two exponentials per new reading time.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["ArrivalRate"]

WINDOW: Final = 1.0  # seconds over which the arrival rate is estimated
# Until a few windows have passed, the estimate is read over the time since the first
# arrival (whose text counts as backlog, not rate), but over at least this long, so two
# chunks close together do not read as a huge rate.
_MIN_SPAN: Final = 0.05
# A silence longer than this is a pause (a tool call, a queue), not a slower source: the
# estimate, decayed towards nothing meanwhile, starts again from the next arrival, as at
# the start of the stream. Shorter silences are part of a bursty source's rhythm.
PAUSE: Final = 1.5 * WINDOW
# Arrivals closer together than this, on average, are one burst: text read out of a
# buffer (a cached answer, a replay, several events in one network read) comes
# microseconds apart, which is no evidence of a source writing millions of characters a
# second. A burst that opens the stream (or follows a pause) is backlog, as text that
# arrives all at one instant is. The average, not each gap: an event loop busy for a
# few milliseconds in the middle of reading a buffer does not end the burst.
BURST_GAP: Final = 0.002
# Nor does one stall early in a burst, when an average over a few gaps is mostly that
# stall: a busy event loop, or a thread waiting its turn for the GIL (a 5 ms switch
# interval), holds a read back for milliseconds. A burst ends after at least this long.
# (A source this slow, 50 events a second, ends its opening at its first gap.)
BURST_STALL: Final = 0.02
# And none lasts longer than this: a buffer is read out in milliseconds, while a source
# that keeps sending less than 2 ms apart for longer is a fast one (a model at 1,000
# tokens a second), to be followed from here on, as fast as ``GROWTH`` lets its rate rise.
BURST_LONGEST: Final = 0.25
# An arrival counts as rate only up to this many times the current pace (at least the
# configured one) over the time since the last arrival; the characters beyond that are
# backlog, which the pacer's backlog terms pace. A source that writes its first piece,
# then the rest of a cached answer in one read 20 ms later, is no source writing 6,000
# characters a second. What was held back counts later, as much again as each arrival
# brings, once arrivals leave allowance to spare: a source that really is that fast is
# followed within a few of them. The allowance is continuous in the arrival times, so a
# read a nanosecond earlier or later changes the pace by as little.
GROWTH: Final = 8.0
# The pace that allowance is measured from is the rate read over at least this long.
_GROWTH_SPAN: Final = 0.5 * WINDOW
_GROWTH_FILL: Final = 1.0 - math.exp(-_GROWTH_SPAN / WINDOW)  # how full the window is then
# The allowance accrues with time since the last arrival, over at most this long: a
# silence is no licence for the burst after it.
_ROOM_SPAN: Final = 0.1
_SETTLED: Final = 5 * WINDOW  # from here on the estimate needs no correction (< 1%)


class ArrivalRate:
    """Characters per second arriving, decayed over about ``WINDOW``.

    Read from the first arrival on, or the first after a pause of more than ``PAUSE``:
    until the window has filled, the decayed sum is scaled to the rate over the time
    seen, so a pace follows its source from the start instead of ramping up.
    """

    def __init__(self) -> None:
        self._sum = 0.0  # the decayed sum of characters per WINDOW, as of ``_last``
        self._last = -math.inf  # when text last arrived
        self._first = math.nan  # the first arrival, or the first after a pause
        self._read_at = math.nan  # ``_value`` is the rate read at this time
        self._value = 0.0
        self._opening = True  # every arrival since ``_first`` came in one burst
        self._arrivals = 0  # arrivals since ``_first``, before this one
        self._room = 0.0  # characters the next arrivals may still count as rate (``GROWTH``)
        self._owed = 0.0  # characters held back as backlog that may yet count as rate

    def note(self, chars: int, now: float, floor: float = 0.0) -> None:
        """``chars`` characters arrived at ``now`` (never earlier than the last arrival);
        ``floor``: the pace the reader is shown at least (the rate a growth is measured
        from while none has been read)."""
        dt = now - self._last
        if dt > PAUSE:  # the first arrival (dt is infinite), or the first after a pause
            self._first = now
            self._sum = 0.0
            self._opening = True
            self._arrivals = 0
        elif self._opening:
            elapsed = now - self._first
            if elapsed >= BURST_STALL and (elapsed >= BURST_GAP * self._arrivals or elapsed >= BURST_LONGEST):
                self._opening = False
        self._arrivals += 1
        if self._opening:
            # Text that came all at once is no rate to follow: the backlog terms pace it.
            self._room = self._owed = 0.0
        else:
            decay = math.exp(-dt / WINDOW)
            # The pace a growth is measured from: the rate read over at least _GROWTH_SPAN,
            # not over the 50 ms ``at`` reads early on (that reading, 20 times what came,
            # would let a stream of small events 0.3 ms apart double it every few of them).
            span = now - self._first
            pace = self._sum * decay
            if span < _SETTLED:  # one exponential fewer per arrival, early and late
                pace /= _GROWTH_FILL if span <= _GROWTH_SPAN else 1.0 - math.exp(-span / WINDOW)
            if pace < floor:
                pace = floor
            room = min(self._room + GROWTH * pace * dt, GROWTH * pace * _ROOM_SPAN)
            counted = chars if chars < room else room  # the rest is backlog, owed
            room -= counted
            owed = self._owed + chars - counted
            if room > 0.0 and owed > 0.0:
                # Room to spare: the source keeps up with its rising pace, so what was held
                # back as backlog was rate after all; no faster than it now sends.
                late = min(owed, room, chars)
                counted += late
                owed -= late
                room -= late
            self._owed = owed
            self._room = room
            self._sum = self._sum * decay + counted / WINDOW
        self._last = now
        self._read_at = math.nan

    def at(self, now: float) -> float:
        """The rate at ``now`` (characters per second); read again at the same time, remembered."""
        if now != self._read_at:
            self._read_at = now
            rate = self._sum
            if now > self._last:
                rate *= math.exp((self._last - now) / WINDOW)
            span = now - self._first
            if span < _SETTLED:
                # The decayed sum has seen only ``span`` of arrivals, not a whole window's
                # worth: scale it to the rate over that span.
                rate /= 1.0 - math.exp(-max(span, _MIN_SPAN) / WINDOW)
            self._value = rate
        return self._value
