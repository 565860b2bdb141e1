from collections.abc import Callable
from typing import Any

class TableState:
    """What FeedMethod's fast path reads, per Detokenizer."""

    steady: int
    count: int
    def __init__(self, table: list[str | None]) -> None: ...

class FeedMethod:
    """A method descriptor standing in front of the pure-Python ``feed``."""

    __wrapped__: Callable[..., list[str]]
    def __init__(self, fallback: Callable[..., list[str]], slot: Any) -> None: ...
    def __get__(self, obj: Any, owner: Any = None) -> Any: ...
    def __call__(self, *args: Any, **kwargs: Any) -> list[str]: ...
