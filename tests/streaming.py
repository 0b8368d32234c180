"""Reading an engine's stream in tests: the text pieces and the generator's return value."""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")


def drain(gen: Generator[str, None, T]) -> tuple[list[str], T]:
    """Every piece the stream yields, and what it returns when it ends (the finished Sample).

    >>> def g():
    ...     yield "a"
    ...     yield "b"
    ...     return "done"
    >>> drain(g())
    (['a', 'b'], 'done')
    """
    pieces = []
    while True:
        try:
            pieces.append(next(gen))
        except StopIteration as stop:
            return pieces, stop.value
