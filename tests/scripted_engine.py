"""A scripted engine for tests: deterministic texts and distributions, no model.

Not a model: it returns what the test scripted, so service logic can be checked exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from backend.engines.base import EngineError, EngineInfo, SampleParams, Sample, TokenLogprob, TopToken


class ScriptedEngine:
    def __init__(self, *, fail_after: int | None = None, model_id: str = "scripted-model",
                 engine: str = "scripted"):
        self.calls: list[tuple] = []
        self.fail_after = fail_after  # raise EngineError once this many samples were produced
        self.produced = 0
        self.model_id = model_id
        self.engine = engine
        self.closed = False

    def info(self) -> EngineInfo:
        return EngineInfo(engine=self.engine, model_id=self.model_id, context_length=2048,  # type: ignore[arg-type]
                          self_certainty="exact", logprob_mode="raw", seeds_honoured=True)

    def sample(self, chats: list, n: int, params: SampleParams, top_logprobs: int = 5,
               json_schema: dict | None = None, seeds: list[list[int]] | None = None) -> list[list[Sample]]:
        self.calls.append(("sample", chats, n, params, seeds))
        out = []
        for i, chat in enumerate(chats):
            row = []
            for j in range(n):
                if self.fail_after is not None and self.produced >= self.fail_after:
                    raise EngineError("scripted failure: server went away")
                seed = seeds[i][j] if seeds else None
                lp = math.log(0.5)
                tok = TokenLogprob(token_id=1, text="x", logprob=lp, self_certainty=1.0,
                                   top=[TopToken(token_id=1, logprob=lp), TopToken(token_id=2, logprob=lp)])
                row.append(Sample(text=f"answer to {chat[-1]['content']} (seed {seed})", finish_reason="stop",
                                  seed=seed, tokens=[tok, tok]))
                self.produced += 1
            out.append(row)
        return out

    def next_token_probs(self, chats: list, assistant_prefix: str, candidates: list[str]) -> list[dict[str, float]]:
        return [{c: 1.0 / len(candidates) for c in candidates} for _ in chats]

    def score_response(self, chat: list, text: str, top_logprobs: int = 5) -> list[TokenLogprob]:
        return []

    def count_tokens(self, chat: list) -> int:
        return sum(len(m["content"].split()) + 4 for m in chat)

    def stream(self, chat: list, params: SampleParams) -> Iterator[str]:
        yield from ["scripted ", "stream"]

    def close(self) -> None:
        self.closed = True
