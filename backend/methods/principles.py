"""Principles-then-critique generative reward (Liu et al. 2025, "Inference-Time Scaling for Generalist Reward
Modeling", DeepSeek-GRM, arXiv 2504.02495).

In one generation the model writes principles for the prompt (with weights), critiques every response against
them and scores each response 1–10 (pointwise: all N responses in one prompt, each scored on its own). k such
samples are drawn and the scores summed per response (the paper's voting: a k-times finer scale). Each
sample shows the responses in its own shuffled order, against position bias; `shown_order` records it.

Stored per sample j (variant ``s<j>``, one row per response): value = that sample's score, shown_order = the
response ids as shown, rationale = principles + critique. Per response (variant None): value = sum of the
parsed samples' scores, dist = ``{"k": parsed samples, "failed": failed samples, "mean": value / k}``. A
sample that cannot be parsed after one retry is a failed row and left out of the sum; since one sample scores
every response of the prompt, the responses of a prompt always share k.

Scaling curve from one run: sample j's seed and shown order depend only on (prompt, method, j), not on k, so
samples s0..s(m-1) of a run with k samples are exactly the samples a run with k = m draws; the sum of their
values is the k = m score (what the k = 1, 2, 4, 8 curve is built from; run once with k = 8).

Not reproduced: DeepSeek-GRM is a model *trained* (rejective fine-tuning + rule-based RL, SPCT) to write
principles and critiques, and its meta-RM-guided voting needs a second trained model; here the judged model
is prompted zero-shot and the vote is the plain sum. Replies are JSON-constrained (`REPLY_SCHEMA`, N scores
exactly) instead of the paper's free-text format with a final score line, as the 135M model needs it.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from backend.engines.base import Chat, Engine, Sample, SampleParams
from backend.methods.base import EngineCalls, Method, MethodInput, MethodResult, Verdict, context_overflow
from backend.methods.sampling import Attempt, derive_seed, parse_json_object, sample_with_retry
from storage.models import HumanMethod

MIN_SCORE, MAX_SCORE = 1, 10


def reply_schema(n: int) -> dict[str, Any]:
    """The JSON object one sample writes for n responses: exactly n integer scores 1–10."""
    return {
        "type": "object",
        "properties": {
            "principles": {"type": "string"},
            "critique": {"type": "string"},
            "scores": {"type": "array", "items": {"type": "integer", "enum": list(range(MIN_SCORE, MAX_SCORE + 1))},
                       "minItems": n, "maxItems": n},
        },
        "required": ["principles", "critique", "scores"],
        "additionalProperties": False,
    }


class GrmReply(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    principles: str = ""
    critique: str = ""
    scores: list[int] = Field(min_length=1)


def parse_reply(text: str, n: int, finish_reason: str = "stop") -> tuple[GrmReply, bool]:
    """One sample's reply, checked to hold n scores in 1–10; returns (reply, cut off at max_tokens).

    >>> parse_reply('{"principles": "P", "critique": "C", "scores": [7, 2]}', 2)[0].scores
    [7, 2]
    >>> parse_reply('{"principles": "P", "critique": "C", "scores": [7]}', 2)
    Traceback (most recent call last):
    ValueError: 1 scores for 2 responses
    >>> parse_reply('{"principles": "P", "critique": "C", "scores": [11, 2]}', 2)
    Traceback (most recent call last):
    ValueError: score 11 outside 1-10
    """
    obj, truncated = parse_json_object(text, finish_reason)
    reply = GrmReply.model_validate(obj)
    if len(reply.scores) != n:
        raise ValueError(f"{len(reply.scores)} scores for {n} responses")
    bad = [s for s in reply.scores if not MIN_SCORE <= s <= MAX_SCORE]
    if bad:
        raise ValueError(f"score {bad[0]} outside {MIN_SCORE}-{MAX_SCORE}")
    return reply, truncated


class PrinciplesCritique(Method):
    id = "principles_critique"
    version = "1"
    layer = "response"
    title = "Principles, then critique and 1–10 scores for every response (DeepSeek-GRM), k samples summed"
    brief = "principles + critique + 1–10 score per response, k=2 summed"
    calls_brief = "2 generations per prompt (≤ 512 tokens each)"
    outputs = ("value: sum over k=2 samples of the 1–10 score, 2–20, higher = better; dist {k, failed, mean}; "
               "per sample (variant s0, s1): value = score 1–10, shown_order = ids as shown, "
               "rationale = principles + critique")
    cost = ("k = 2 JSON-constrained generations per prompt (≤ 512 tokens each, one retry if unparseable), the "
            "prompt holding all N responses")
    source = ("Liu et al. 2025, Inference-Time Scaling for Generalist Reward Modeling (DeepSeek-GRM), "
              "arXiv 2504.02495")
    compared_with = HumanMethod.RATING
    metric_family = "rank"
    score_column = "value"

    samples: ClassVar[int] = 2
    temperature: ClassVar[float] = 0.7
    max_tokens: ClassVar[int] = 512

    def __init__(self, *, samples: int | None = None, max_tokens: int | None = None) -> None:
        if samples is not None:
            self.samples = samples
        if max_tokens is not None:
            self.max_tokens = max_tokens

    def order(self, inp: MethodInput, j: int) -> list[int]:
        """Response ids in the order sample j shows them (independent of k)."""
        ids = [r.id for r in inp.responses]
        random.Random(derive_seed(inp.seed, "order", j)).shuffle(ids)
        return ids

    def chat(self, inp: MethodInput, order: list[int]) -> Chat:
        text = {r.id: r.text.strip() for r in inp.responses}
        return [{"role": "user", "content": self.template("prompt", question=inp.question,
                                                          responses=[text[i] for i in order])}]

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        return EngineCalls(generations=self.samples if inp.responses else 0)

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        if not inp.responses:
            return MethodResult()
        variants = [f"s{j}" for j in range(self.samples)]
        orders = [self.order(inp, j) for j in range(self.samples)]
        chats = [self.chat(inp, o) for o in orders]
        overflow = next((why for c in chats if (why := context_overflow(engine, c, self.max_tokens,
                                                                         inp.context_length))), None)
        if overflow:
            return MethodResult(verdicts=[self.failed(overflow, response_id=r.id, variant=v)
                                          for r in inp.responses for v in [*variants, None]])
        n = len(inp.responses)

        def parse(s: Sample) -> tuple[GrmReply, bool]:
            if s.finish_reason == "error":
                raise ValueError(f"engine error: {s.error or 'no reason given'}")
            return parse_reply(s.text, n, s.finish_reason)

        # One chat per sample (each has its own order), one sample each; seeds depend on j only.
        rows = sample_with_retry(engine, chats, 1, SampleParams(temperature=self.temperature,
                                                                max_tokens=self.max_tokens),
                                 reply_schema(n), seed_of=lambda i, _, a: derive_seed(inp.seed, "sample", i, a),
                                 parse=parse)
        attempts = [row[0] for row in rows]
        verdicts: list[Verdict] = []
        for r in inp.responses:
            for variant, order, a in zip(variants, orders, attempts):
                verdicts.append(self._sample_verdict(r.id, variant, order, a))
            verdicts.append(self._aggregate(r.id, orders, attempts))
        return MethodResult(verdicts=verdicts)

    def _sample_verdict(self, response_id: int, variant: str, order: list[int], a: Attempt[GrmReply]) -> Verdict:
        if a.value is None:
            return self.failed(a.error or "unparseable reply", response_id=response_id, variant=variant,
                               shown_order=order)
        reply = a.value
        rationale = (f"Principles: {reply.principles}\nCritique: {reply.critique}"
                     + ("\n(reply cut off at max_tokens)" if a.truncated else ""))
        return Verdict(method=self.id, response_id=response_id, variant=variant, shown_order=order,
                       value=float(reply.scores[order.index(response_id)]), rationale=rationale)

    def _aggregate(self, response_id: int, orders: list[list[int]], attempts: list[Attempt[GrmReply]]) -> Verdict:
        scores = [a.value.scores[o.index(response_id)] for o, a in zip(orders, attempts) if a.value is not None]
        if not scores:
            return self.failed(f"all {len(attempts)} samples failed: {attempts[0].error}", response_id=response_id)
        total = float(sum(scores))
        return Verdict(method=self.id, response_id=response_id, value=total,
                       dist={"k": float(len(scores)), "failed": float(len(attempts) - len(scores)),
                             "mean": total / len(scores)})

