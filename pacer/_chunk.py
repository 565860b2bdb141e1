"""What flows between stages: a ``Chunk`` of text and the ``Boundary`` it ends on.

The bottom layer: every other module may import it, it imports nothing of pacer's.

Cost: a chunk is five slots; nothing here runs per item beyond making one.
"""

from __future__ import annotations

import enum

__all__ = ["Boundary", "Chunk"]


class Boundary(enum.IntEnum):
    """What kind of boundary a chunk ends on, weakest first.

    Ordered so that a comparison reads as it sounds: ``boundary >= Boundary.SENTENCE``
    is a sentence end (or the end of the stream), ``>= Boundary.CLAUSE`` at least a
    clause end; a ``FORCED`` cut is neither.
    """

    NONE = 0
    """The chunk ends mid-word or wherever its producer happened to stop."""
    WORD = 1
    """The chunk ends at a word boundary."""
    FORCED = 2
    """The chunk was cut without a natural boundary (a length budget or a hold timeout)."""
    CLAUSE = 3
    """The chunk ends a clause (a comma, semicolon, colon or dash split)."""
    SENTENCE = 4
    """The chunk ends a sentence, a Markdown block or the stream."""


class Chunk:
    """A piece of text on its way through a pipeline, with what sinks need to know.

    ``arrival`` is when the first character of ``text`` reached the pipeline, in the
    clock's seconds; ``emitted`` is when the pipeline handed the chunk to its sink and
    ``offset`` the UTF-8 byte offset of ``text`` in the pipeline's output; both stay
    ``None`` until the chunk leaves the pipeline.
    """

    __slots__ = ("arrival", "boundary", "emitted", "offset", "text")

    def __init__(self, text: str, arrival: float, boundary: Boundary = Boundary.NONE) -> None:
        self.text = text
        self.arrival = arrival
        self.boundary = boundary
        self.emitted: float | None = None
        self.offset: int | None = None

    @property
    def lag(self) -> float | None:
        """Seconds between arrival and emission, or ``None`` before emission."""
        return None if self.emitted is None else self.emitted - self.arrival

    def __repr__(self) -> str:
        return (
            f"Chunk({self.text!r}, arrival={self.arrival!r}, boundary={self.boundary.name}, "
            f"emitted={self.emitted!r}, offset={self.offset!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Chunk):
            return NotImplemented
        return (self.text, self.arrival, self.boundary) == (other.text, other.arrival, other.boundary)

    __hash__ = None  # type: ignore[assignment]
