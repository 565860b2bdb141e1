# Checked against the built module by ``python -m mypy.stubtest pacer._speedups`` (.ci/run).
from collections.abc import Callable
from typing import Any, final

@final
class TableState:
    """What FeedMethod's fast path reads, per Detokenizer."""

    mode: int
    clean: int
    count: int
    pending: bytes
    def __init__(
        self,
        table: tuple[str | None, ...],
        pieces: tuple[bytes | None, ...],
        errors: str,
        runs: tuple[int, ...] = ...,
        inert: tuple[str | None, ...] = ...,
        moves: list[dict[str, tuple[str, int]]] = ...,
    ) -> None: ...
    def known(self, ids: object, /) -> bool: ...

@final
class FeedMethod:
    """A method descriptor standing in front of the pure-Python ``feed`` (or ``ingest``)."""

    __wrapped__: Callable[..., Any]
    def __init__(self, fallback: Callable[..., Any], slot: Any, chunk: type | None = ...) -> None: ...
    def __set_name__(self, owner: type, name: str, /) -> None: ...
    def __get__(self, instance: Any, owner: Any = None, /) -> Any: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
