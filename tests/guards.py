"""Checks the guard tests load by name, as ``pacer proxy --guard tests.guards:FUNCTION`` does."""

from __future__ import annotations

import anyio

FORBIDDEN = "It breathes at sentence ends"


def no_breathing(text: str) -> bool:
    """Blocks the second sentence of ``pacer.testing.streams.ANSWERS[0]``."""
    return FORBIDDEN not in text


async def slow_no_breathing(text: str) -> bool:
    """The same, as an async check that takes 50 ms."""
    await anyio.sleep(0.05)
    return FORBIDDEN not in text
