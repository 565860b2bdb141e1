"""Per-stream numbers a running pipeline keeps about itself (``pacer.StreamMetrics`` is
their public home; they live here, under ``_core``, because a ``Pipeline`` records
into them as chunks leave it, and layers import downward only).

Cost: O(1) per emitted chunk, plus 8 bytes per chunk kept for lag percentiles
(bounded by ``max_samples``, after which every other sample is dropped: at most
80 KB a stream by default, however long it runs and however small its chunks).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ._chunk import Boundary

if TYPE_CHECKING:
    from ._chunk import Chunk

# Final: a compiled build keeps these in C statics, not looked up by name per chunk.
_isascii: Final = str.isascii
_SENTENCE: Final = Boundary.SENTENCE
_CLAUSE: Final = Boundary.CLAUSE

__all__ = ["Gaps", "LagSamples", "StreamMetrics", "percentile"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by nearest rank, or ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


class LagSamples:
    """Lag samples for percentiles, at most ``max_samples`` of them: when full, every
    other sample is dropped and from then on every other chunk is sampled."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self.values = array("d")  # plain doubles: no float object per sample
        self._append = self.values.append  # looked up once: this runs once per emitted chunk
        self._count = 0  # len(values), kept here for the same reason
        self._stride = 1  # keep one sample in every _stride chunks
        self._countdown = 1

    def add(self, lag: float) -> None:
        self._countdown -= 1
        if not self._countdown:
            self._countdown = self._stride
            self._append(lag)
            self._count += 1
            if self._count >= self.max_samples:  # keep every other sample, sample half as often
                del self.values[::2]
                self._count = len(self.values)
                self._stride *= 2
                self._countdown = self._stride


class Gaps:
    """The silences between emissions, by what the chunk before them ended on: after a
    sentence end (the pauses a pacer makes there), after a clause end, and all others.

    A gap longer than ``stall_gap`` is a stall of the source, not a pause: not counted.
    A tally object per kind (not lists indexed by kind): a compiled build keeps its
    numbers unboxed, and this runs once per emitted chunk.
    """

    def __init__(self, stall_gap: float) -> None:
        self.stall_gap = stall_gap
        self.after = 2  # the kind of gap the next emission closes
        self.sentence = _Tally()
        self.clause = _Tally()
        self.other = _Tally()

    def add(self, gap: float, next_after: int) -> None:
        """An emission ``gap`` seconds after the last one; ``next_after``: what it ended on
        (0 sentence, 1 clause, 2 other)."""
        if gap <= self.stall_gap:
            after = self.after
            tally = self.sentence if after == 0 else self.clause if after == 1 else self.other
            tally.count += 1
            tally.total += gap
            if gap > tally.longest:
                tally.longest = gap
        self.after = next_after

    def tallies(self) -> dict[str, _Tally]:
        return {"sentence": self.sentence, "clause": self.clause, "other": self.other}


class _Tally:
    """How many gaps of one kind, their total and the longest, in seconds."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.longest = 0.0

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


class StreamMetrics:
    """Counters and timings of one stream, updated as chunks leave the pipeline.

    Times are in the clock's seconds. ``stall_gap`` is the silence (seconds between
    two emissions) that counts as a stall; ``max_samples`` bounds the lag samples kept.
    ``blocked`` is why a ``Guard`` stopped the stream (``None`` while it has not).
    """

    def __init__(self, stall_gap: float = 1.0, max_samples: int = 10_000) -> None:
        self.blocked: str | None = None
        self.items_in = 0
        self.chunks_out = 0
        self.chars_out = 0
        self.bytes_out = 0
        self.first_input: float | None = None
        self.first_output: float | None = None
        self.last_output: float | None = None
        self.max_lag = 0.0
        self.stalls = 0
        self._lags = LagSamples(max_samples)
        self._gaps = Gaps(stall_gap)

    @property
    def stall_gap(self) -> float:
        """The silence, in seconds, that counts as a stall."""
        return self._gaps.stall_gap

    @property
    def lag_samples(self) -> LagSamples:
        """The lag samples kept for percentiles (seconds, one per sampled chunk)."""
        return self._lags

    @property
    def max_samples(self) -> int:
        """The most lag samples kept."""
        return self._lags.max_samples

    def record(self, chunk: Chunk, now: float) -> None:
        text = chunk.text
        n = len(text)
        self.chunks_out += 1
        self.chars_out += n
        self.bytes_out += n if _isascii(text) else len(text.encode("utf-8", "surrogatepass"))
        last = self.last_output
        boundary = chunk.boundary
        after = 0 if boundary >= _SENTENCE else 1 if boundary == _CLAUSE else 2
        if last is None:
            self.first_output = now
            self._gaps.after = after
        else:
            if now - last > self._gaps.stall_gap:
                self.stalls += 1
            self._gaps.add(now - last, after)
        self.last_output = now
        lag = now - chunk.arrival
        if lag > self.max_lag:
            self.max_lag = lag
        self._lags.add(lag)

    @property
    def time_to_first_output(self) -> float | None:
        """Seconds from the first input to the first output."""
        if self.first_input is None or self.first_output is None:
            return None
        return self.first_output - self.first_input

    def lag(self, q: float) -> float | None:
        """Lag percentile ``q`` (0-100), seconds from arrival to emission."""
        return percentile(self._lags.values, q)

    def pauses(self) -> dict[str, tuple[int, float | None, float]]:
        """Gaps between emissions by what the chunk before them ended on, each as
        (count, mean seconds or ``None``, longest seconds): ``"sentence"`` (the pauses
        after sentence ends), ``"clause"`` and ``"other"``; stalls are not counted."""
        return {name: (t.count, t.mean(), t.longest) for name, t in self._gaps.tallies().items()}

    def as_dict(self) -> dict[str, float | int | None]:
        gaps = self._gaps
        return {
            "items_in": self.items_in,
            "chunks_out": self.chunks_out,
            "chars_out": self.chars_out,
            "bytes_out": self.bytes_out,
            "time_to_first_output": self.time_to_first_output,
            "lag_p50": self.lag(50),
            "lag_p99": self.lag(99),
            "lag_max": self.max_lag,
            "stalls": self.stalls,
            "pause_sentence_mean": gaps.sentence.mean(),
            "pause_clause_mean": gaps.clause.mean(),
            "gap_other_mean": gaps.other.mean(),
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"StreamMetrics({fields})"
