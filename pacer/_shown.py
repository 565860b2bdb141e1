"""The text a client was actually shown, per stream: one record for stop, cancel, resume
and ``HeardText`` to read.

A stream's writer ``add``s each piece of text at the moment it is sent (after the send,
never before: text a stop cut off was not shown). Whoever answers "what did the client
get?" (a WebSocket ``stopped`` reply, a resumable stream's cancel, a driver's unshown
remainder, a voice agent's history) reads ``text`` instead of keeping its own list.

Cost: O(1) amortised per piece added; ``text`` joins once and is kept until the next add.
"""

from __future__ import annotations

__all__ = ["ShownText"]


class ShownText:
    """The pieces of text sent to one client, in order."""

    __slots__ = ("_joined", "_pieces")

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self._joined: str | None = ""

    def add(self, text: str) -> None:
        """``text`` has just been sent to the client."""
        if text:
            self._pieces.append(text)
            self._joined = None

    @property
    def text(self) -> str:
        """Everything sent so far, joined."""
        if self._joined is None:
            self._joined = "".join(self._pieces)
            self._pieces = [self._joined]
        return self._joined

    def __len__(self) -> int:
        """How many characters were sent."""
        return len(self.text)
