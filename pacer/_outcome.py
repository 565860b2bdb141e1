"""How a stream ended, as one enum: ``Outcome``.

A client's stream (``pacer._writer.ClientWriter``) ends ``DONE``, ``BLOCKED`` (an
output check withheld the rest: a ``Guard``), ``ERROR``,
``DISCONNECT`` or ``SEND_TIMEOUT``; a resumable stream's log (``pacer.streamlog``)
ends ``DONE``, ``ERROR``, ``CANCELLED``, ``ORPHANED`` or ``SHUTDOWN`` (its server shut
down before it ended), and a cancel that finds its
producer gone reports ``PRODUCER_LOST``. Each is recorded where it happens, never read
back from the bytes sent.

An ``Outcome`` is a ``str`` equal to its value (``Outcome.DONE == "done"``), formats,
hashes and serialises (JSON, Redis, log lines, Prometheus labels) as that value, so a
stored end mark read back as a plain string compares equal to it.
"""

from __future__ import annotations

import enum

__all__ = ["Outcome"]


class Outcome(str, enum.Enum):
    """How a stream ended (``RUNNING`` until it has)."""

    RUNNING = "running"
    DONE = "done"
    BLOCKED = "blocked"
    ERROR = "error"
    DISCONNECT = "disconnect"
    SEND_TIMEOUT = "send_timeout"
    CANCELLED = "cancelled"
    ORPHANED = "orphaned"
    PRODUCER_LOST = "producer_lost"
    SHUTDOWN = "shutdown"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __hash__(self) -> int:
        return hash(self.value)  # as the string it equals, in sets and dicts
