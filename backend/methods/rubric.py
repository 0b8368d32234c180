"""Additive 5-point rubric: the LLM-as-a-judge prompt of Self-Rewarding Language Models (Yuan et al. 2024,
arXiv 2401.10020).

The judge adds one point per criterion met (relevant; addresses a substantial part; answers the basic
elements usefully; clearly written from an assistant's perspective, direct and well organised;
impeccably tailored and expert without extraneous content), sees the question as ``User: …`` and the response
inside ``<response>…</response>``, justifies its total in at most 100 words and gives the total.

Per response the judge is sampled k=3 times (T=0.7), as the paper scores each candidate three times and
averages. With ``constrained=True`` (the default, needed by the 135M model) the reply is the JSON object
``{"justification": str, "score": 0..5}`` (`REPLY_SCHEMA`); otherwise the prompt asks for the paper's final
line ``Score: <total points>``. Either way a reply that is not valid JSON is searched for its last
``Score: N`` line. Layout: the rubric and the reply instructions are the system turn (said once, not
repeated per example), each user turn is ``User: <question>`` + ``<response>…</response>``, and two worked
examples (scores 1 and 5, short justifications) come first as earlier turns.

Stored per sample (variant ``s0``..``s2``): value = score, rationale = justification. Per response (variant
None): value = mean of the parsed samples' scores (failed samples excluded; all failed → a failed verdict),
dist = ``{"n": parsed samples, "failed": failed samples}``. Unparseable samples get one retry with a new
seed, then a failed verdict with the raw text; an over-long prompt gives failed "context overflow" verdicts.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backend.engines.base import Chat, Engine, Sample, SampleParams
from backend.methods.base import (
    EngineCalls,
    Method,
    MethodInput,
    MethodResult,
    Verdict,
)
from backend.methods.sampling import (
    split_by_budget,
    Attempt,
    derive_seed,
    parse_json_object,
    sample_with_retry,
)
from storage.models import HumanMethod

MAX_SCORE = 5
REPLY_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "justification": {"type": "string"},
        "score": {"type": "integer", "enum": list(range(MAX_SCORE + 1))},
    },
    "required": ["justification", "score"],
    "additionalProperties": False,
}
_SCORE_LINE = re.compile(r"(?i)\bscore\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)")


class RubricReply(BaseModel):
    """One rubric sample as the model wrote it (validated)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    justification: str = ""
    score: int = Field(ge=0, le=MAX_SCORE)


def parse_reply(text: str, finish_reason: str = "stop") -> tuple[RubricReply, bool]:
    """The reply as JSON, else its last ``Score: N`` line; returns (reply, cut off at max_tokens).

    >>> parse_reply('{"justification": "Relevant and direct.", "score": 4}')
    (RubricReply(justification='Relevant and direct.', score=4), False)
    >>> parse_reply("Relevant, but it misses the point.\\nScore: 2")
    (RubricReply(justification='Relevant, but it misses the point.', score=2), False)
    >>> parse_reply('{"justification": "It rambles on and')
    Traceback (most recent call last):
    ValueError: no JSON object in the reply and no 'Score: N' line
    """
    try:
        obj, truncated = parse_json_object(text, finish_reason)
        return RubricReply.model_validate(obj), truncated
    except (ValueError, ValidationError) as e:
        json_error = e
    found = list(_SCORE_LINE.finditer(text))
    if found:
        m = found[-1]
        return RubricReply(justification=text[:m.start()].strip(), score=m.group(1)), False  # type: ignore[arg-type]
    if isinstance(json_error, ValidationError):
        raise json_error
    raise ValueError("no JSON object in the reply and no 'Score: N' line")


def _parse_sample(s: Sample) -> tuple[RubricReply, bool]:
    if s.finish_reason == "error":
        raise ValueError(f"engine error: {s.error or 'no reason given'}")
    return parse_reply(s.text, s.finish_reason)


class AdditiveRubric(Method):
    id = "rubric"
    version = "1"
    layer = "response"
    title = "Additive 5-point rubric (Self-Rewarding LMs)"
    brief = "additive 5-point rubric score, sampled three times"
    calls_brief = "3 generations per response (≤ 256 tokens each)"
    outputs = ("value: mean of k=3 sampled additive-rubric scores, 0–5, higher = better; per sample "
               "(variant s0..s2): value = integer score 0–5, rationale = justification")
    cost = "3 short JSON-constrained generations per response (≤ max_tokens each, one retry if unparseable): ≈ 3 × 0.3–0.5×"
    source = "Yuan et al. 2024, Self-Rewarding Language Models, arXiv 2401.10020"
    compared_with = HumanMethod.RATING
    metric_family = "rank"
    score_column = "value"

    samples: ClassVar[int] = 3
    temperature: ClassVar[float] = 0.7
    max_tokens: ClassVar[int] = 256  # ≤ 100 words of justification plus the JSON around it
    constrained: ClassVar[bool] = True

    def __init__(self, *, samples: int | None = None, temperature: float | None = None,
                 max_tokens: int | None = None, constrained: bool | None = None) -> None:
        for name, value in (("samples", samples), ("temperature", temperature), ("max_tokens", max_tokens),
                            ("constrained", constrained)):
            if value is not None:
                setattr(self, name, value)

    def reply_text(self, justification: str, score: int) -> str:
        """An example reply in the form the prompt asks for."""
        if self.constrained:
            return json.dumps({"justification": justification, "score": score}, ensure_ascii=False)
        return f"{justification}\nScore: {score}"

    def chat(self, question: str, response: str) -> Chat:
        """The rubric as the system turn, the worked examples as earlier turns, then the response to score."""
        chat: Chat = [{"role": "system", "content": self.template("system", json=self.constrained)}]
        for ex in json.loads(self.template("examples")):
            chat.append({"role": "user", "content": self.template("user", question=ex["question"],
                                                                  response=ex["response"])})
            chat.append({"role": "assistant", "content": self.reply_text(ex["justification"], ex["score"])})
        chat.append({"role": "user", "content": self.template("user", question=question, response=response)})
        return chat

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        return EngineCalls(generations=self.samples * len(inp.responses))

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        variants = [f"s{j}" for j in range(self.samples)]
        verdicts, todo, chats = split_by_budget(self, inp, engine, lambda text: self.chat(inp.question, text),
                                                self.max_tokens, variants)
        params = SampleParams(temperature=self.temperature, max_tokens=self.max_tokens)
        results = sample_with_retry(engine, chats, self.samples, params,
                                    REPLY_SCHEMA if self.constrained else None,
                                    seed_of=lambda i, j, a: derive_seed(inp.seed, todo[i].id, j, a),
                                    parse=_parse_sample)
        for r, row in zip(todo, results):
            for variant, a in zip(variants, row):
                if a.value is None:
                    verdicts.append(self.failed(a.error or "unparseable reply", response_id=r.id, variant=variant))
                    continue
                reply: RubricReply = a.value
                rationale = reply.justification + ("\n(reply cut off at max_tokens)" if a.truncated else "")
                verdicts.append(Verdict(method=self.id, response_id=r.id, variant=variant,
                                        value=float(reply.score), rationale=rationale))
            verdicts.append(self._aggregate(r.id, row))
        order = {r.id: n for n, r in enumerate(inp.responses)}
        verdicts.sort(key=lambda v: (order.get(v.response_id, 0), v.variant is None, v.variant or ""))
        return MethodResult(verdicts=verdicts)

    def _aggregate(self, response_id: int, row: list[Attempt[Any]]) -> Verdict:
        scores = [a.value.score for a in row if a.value is not None]
        if not scores:
            return self.failed(f"all {len(row)} rubric samples failed: {row[0].error}", response_id=response_id)
        return Verdict(method=self.id, response_id=response_id, value=sum(scores) / len(scores),
                       dist={"n": float(len(scores)), "failed": float(len(row) - len(scores))})
