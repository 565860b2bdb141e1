"""Checks of the stages' options: a wrong type is a ``TypeError``, a value out of range a
``ValueError``, each naming the stage and the parameter (``where``).

The numeric options these check are declared with protocols (``SupportsFloat``,
``SupportsIndex``) rather than ``float`` or ``int``: a compiled build (setup.py) checks
a declared ``float`` or ``int`` itself before the body runs, with a message that names
neither the stage nor the parameter. The protocols also admit numpy's numbers.
"""

from __future__ import annotations

import math
from typing import SupportsFloat, SupportsIndex

__all__ = ["number", "one_of", "optional_seconds", "seconds", "whole"]


def number(value: object, where: str) -> float:
    """``value`` as a float: any real number but a bool; NaN is a ``ValueError``."""
    kind = type(value)
    try:
        if kind is float or kind is int:  # the usual case, without the protocol check's cost (~10 us)
            result = float(value)  # type: ignore[arg-type]
        elif isinstance(value, bool) or not isinstance(value, SupportsFloat):
            raise TypeError(f"{where} must be a number, got {type(value).__name__}: {value!r}")
        else:
            result = float(value)
    except OverflowError:  # an int past a float's range (from JSON, say): out of range, not a crash
        raise ValueError(f"{where} must be a number a float can hold, got {_too_large(value)}") from None
    if math.isnan(result):
        raise ValueError(f"{where} must be a number, got NaN")
    return result


def _too_large(value: object) -> str:
    bits = value.bit_length() if isinstance(value, int) else None
    return (
        f"an integer of {bits} bits" if bits is not None else f"{type(value).__name__} past a float's range"
    )


def seconds(value: object, where: str, *, zero: bool = False, suffix: str = "") -> float:
    """A duration: a number > 0, or >= 0 where ``zero`` is allowed."""
    result = number(value, where)
    if not (result >= 0 if zero else result > 0):
        raise ValueError(f"{where} must be {'>=' if zero else '>'} 0 seconds{suffix}, got {value!r}")
    return result


def optional_seconds(value: object, where: str) -> float | None:
    """A duration > 0, or ``None`` for none."""
    return None if value is None else seconds(value, where, suffix=" or None")


def whole(value: object, where: str) -> int:
    """``value`` as an int: an int or anything with ``__index__`` (numpy's ints), not a bool."""
    if type(value) is int:  # the usual case, without the protocol check's cost
        return value
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise TypeError(f"{where} must be an int, got {type(value).__name__}: {value!r}")
    return int(value.__index__())


def one_of(value: object, where: str, options: tuple[str, ...]) -> None:
    """Check that ``value`` is one of ``options``: a ``TypeError`` if it is not even a str."""
    if isinstance(value, str) and value in options:
        return
    names = [repr(option) for option in options]
    listed = ", ".join(names[:-1]) + " or " + names[-1]
    error = ValueError if isinstance(value, str) else TypeError
    raise error(f"{where} must be {listed}, got {value!r}")
