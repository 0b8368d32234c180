"""An engine whose calls jump the queue: the Live tab's requests run before background jobs.

Engines with a work queue (the embedded one) take a `priority` keyword on their calls; engines
without one (SGLang, whose server schedules) do not, and are passed through unchanged.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from backend.engines.base import Engine

_CALLS = ("sample", "stream", "next_token_probs", "score_response", "count_tokens")


def _takes_priority(fn: Any) -> bool:
    try:
        return "priority" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class Prioritised:
    """`Prioritised(engine, 0).next_token_probs(...)` is `engine.next_token_probs(..., priority=0)` when the
    engine has a queue, else the plain call."""

    def __init__(self, engine: Engine, priority: int) -> None:
        self.engine, self.priority = engine, priority

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.engine, name)
        if name in _CALLS and _takes_priority(attr):
            return functools.partial(attr, priority=self.priority)
        return attr
