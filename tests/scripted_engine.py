"""A scripted engine for tests: deterministic texts and distributions, no model.

Not a model: it returns what the test scripted, so method arithmetic and service logic can be
checked exactly against hand-computed values. Script it with callables:

- `texts(chat, j, params, json_schema, seed) -> str`: the text of sample j (default: "answer to ...").
- `probs(chat, assistant_prefix, candidates) -> dict[candidate, p]` (default: uniform).
- `scores(chat, text) -> list[TokenLogprob]` for teacher-forced scoring (default: one token per word,
  logprob log(0.5)).
- `tokens(chat) -> int` for count_tokens (default: words + 4 per message).

Every call is recorded in `calls` as (kind, args...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

from backend.engines.base import EngineError, EngineInfo, Sample, SampleParams, TokenLogprob, TopToken
from storage.models import ModelIdentity

HALF = math.log(0.5)


def _token(lp: float = HALF) -> TokenLogprob:
    return TokenLogprob(token_id=1, text="x", logprob=lp, self_certainty=1.0,
                        top=[TopToken(token_id=1, logprob=HALF), TopToken(token_id=2, logprob=HALF)])


class ScriptedEngine:
    def __init__(self, *, texts: Callable[..., str] | None = None, probs: Callable[..., dict] | None = None,
                 scores: Callable[..., list[TokenLogprob]] | None = None, tokens: Callable[..., int] | None = None,
                 fail_after: int | None = None, model_id: str = "scripted-model", engine: str = "scripted",
                 context_length: int = 2048, model: ModelIdentity | None = None):
        self.calls: list[tuple[Any, ...]] = []
        self.texts, self.probs, self.scores, self.tokens = texts, probs, scores, tokens
        self.fail_after = fail_after  # raise EngineError once this many samples were produced
        self.produced = 0
        self.model_id, self.engine, self.context_length = model_id, engine, context_length
        self.model = model  # what info() reports of the model (the registry records it)
        self.closed = False

    def info(self) -> EngineInfo:
        return EngineInfo(engine=self.engine, model_id=self.model_id,  # type: ignore[arg-type]
                          context_length=self.context_length, self_certainty="exact", logprob_mode="raw",
                          seeds_honoured=True, model=self.model)

    def sample(self, chats: list, n: int, params: SampleParams, top_logprobs: int = 5,
               json_schema: dict | None = None, seeds: list[list[int]] | None = None) -> list[list[Sample]]:
        self.calls.append(("sample", chats, n, params, json_schema, seeds))
        out = []
        for i, chat in enumerate(chats):
            row = []
            for j in range(n):
                if self.fail_after is not None and self.produced >= self.fail_after:
                    raise EngineError("scripted failure: server went away")
                seed = seeds[i][j] if seeds else None
                text = (self.texts(chat, j, params, json_schema, seed) if self.texts
                        else f"answer to {chat[-1]['content']} (seed {seed})")
                row.append(Sample(text=text, finish_reason="stop", seed=seed, tokens=[_token(), _token()]))
                self.produced += 1
            out.append(row)
        return out

    def next_token_probs(self, chats: list, assistant_prefix: str, candidates: list[str]) -> list[dict[str, float]]:
        self.calls.append(("next_token_probs", chats, assistant_prefix, candidates))
        if self.probs:
            return [self.probs(chat, assistant_prefix, candidates) for chat in chats]
        return [{c: 1.0 / len(candidates) for c in candidates} for _ in chats]

    def score_response(self, chat: list, text: str, top_logprobs: int = 5) -> list[TokenLogprob]:
        self.calls.append(("score_response", chat, text))
        if self.scores:
            return self.scores(chat, text)
        return [_token() for _ in text.split()]

    def count_tokens(self, chat: list) -> int:
        if self.tokens:
            return self.tokens(chat)
        return sum(len(m["content"].split()) + 4 for m in chat)

    def stream(self, chat: list, params: SampleParams) -> Generator[str, None, Sample]:
        """Word by word the text `sample` would give (seed = params.seed); a scripted failure raises
        after the first word, as a dropped stream would."""
        self.calls.append(("stream", chat, params))
        text = (self.texts(chat, 0, params, None, params.seed) if self.texts
                else f"answer to {chat[-1]['content']} (seed {params.seed})")
        words = text.split(" ")
        for i, w in enumerate(words):
            yield w if i == 0 else " " + w
            if self.fail_after is not None and self.produced >= self.fail_after:
                raise EngineError("scripted failure: stream dropped")
        self.produced += 1
        return Sample(text=text, finish_reason="stop", seed=params.seed, tokens=[_token() for _ in words])

    def close(self) -> None:
        self.closed = True
