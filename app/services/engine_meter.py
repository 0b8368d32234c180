"""Count what a job asks of its engine and how long that takes, for the Score button's time estimate.

A job's calls are counted in the units methods plan in (`backend.methods.base.EngineCalls`): a read is
one chat of `next_token_probs` or one `score_response`, a generation one sampled completion. Time is
the wall time while at least one call of a kind is in flight (the union of their intervals), so calls
that overlap (an SGLang server serving several at once) are not counted twice, and time spent waiting
for an engine that another job keeps busy counts: that is what the next job will see too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from backend.engines.base import Chat, Engine, EngineInfo, Sample, SampleParams, TokenLogprob
from storage.models import CallTally, JobFigures

T = TypeVar("T")


def engine_model(info: EngineInfo) -> str:
    """How a job names the engine and model it ran on (the time estimate matches on it)."""
    return f"{info.engine}:{info.model_id}"


class _Clock:
    """Calls and busy wall time of one kind of call."""

    def __init__(self) -> None:
        self.calls = 0
        self.busy = 0.0
        self.in_flight = 0
        self.since = 0.0


class MeteredEngine:
    """An engine that counts its reads and generations; everything else passes through unchanged."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.perf_counter) -> None:
        self._engine = engine
        self._now = clock
        self._lock = threading.Lock()
        self._reads, self._generations = _Clock(), _Clock()

    def __getattr__(self, name: str) -> Any:  # vocab_size, concurrency ...
        return getattr(self._engine, name)

    def info(self) -> EngineInfo:
        return self._engine.info()

    def count_tokens(self, chat: Chat) -> int:
        return self._engine.count_tokens(chat)

    def close(self) -> None:
        self._engine.close()

    def _timed(self, kind: _Clock, calls: int, fn: Callable[[], T]) -> T:
        with self._lock:
            if kind.in_flight == 0:
                kind.since = self._now()
            kind.in_flight += 1
        ok = False
        try:
            result = fn()
            ok = True
            return result
        finally:
            with self._lock:
                kind.in_flight -= 1
                kind.calls += calls if ok else 0  # a failed call's time counts, the call does not
                if kind.in_flight == 0:
                    kind.busy += self._now() - kind.since

    def next_token_probs(self, chats: list[Chat], assistant_prefix: str,
                         candidates: list[str]) -> list[dict[str, float]]:
        return self._timed(self._reads, len(chats),
                           lambda: self._engine.next_token_probs(chats, assistant_prefix, candidates))

    def score_response(self, chat: Chat, text: str, top_logprobs: int = 5) -> list[TokenLogprob]:
        return self._timed(self._reads, 1, lambda: self._engine.score_response(chat, text, top_logprobs=top_logprobs))

    def sample(self, chats: list[Chat], n: int, params: SampleParams, top_logprobs: int = 5,
               json_schema: dict | None = None, seeds: list[list[int]] | None = None) -> list[list[Sample]]:
        return self._timed(self._generations, len(chats) * n, lambda: self._engine.sample(
            chats, n, params, top_logprobs=top_logprobs, json_schema=json_schema, seeds=seeds))

    def stream(self, chat: Chat, params: SampleParams) -> Generator[str, None, Sample]:
        return self._engine.stream(chat, params)

    def figures(self) -> JobFigures:
        """What was counted so far (calls still in flight are not)."""
        with self._lock:
            return JobFigures(reads=CallTally(calls=self._reads.calls, seconds=round(self._reads.busy, 3)),
                              generations=CallTally(calls=self._generations.calls,
                                                    seconds=round(self._generations.busy, 3)))
