"""Checks the guard tests load by name, as ``pacer proxy --guard tests.guards:FUNCTION`` does."""

from __future__ import annotations

import os
import time

import anyio

FORBIDDEN = "It breathes at sentence ends"


def no_breathing(text: str) -> bool:
    """Blocks the second sentence of ``pacer.testing.streams.ANSWERS[0]``."""
    return FORBIDDEN not in text


async def slow_no_breathing(text: str) -> bool:
    """The same, as an async check that takes 50 ms."""
    await anyio.sleep(0.05)
    return FORBIDDEN not in text


def tenth_of_a_second(text: str) -> bool:
    """Passes everything, after 0.1 s of work (a plain check: it runs on a worker thread);
    each call appends a line to the file ``PACER_TEST_CHECK_LOG`` names, if set."""
    log = os.environ.get("PACER_TEST_CHECK_LOG")
    if log:
        with open(log, "a") as f:
            f.write(text.replace("\n", " ") + "\n")
    time.sleep(0.1)
    return True
