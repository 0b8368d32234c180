"""Critique → verdict → correction: CriticBench's verdict (Luo et al. 2023, arXiv 2310.04815) in RealCritic's
critique-then-correct layout (Tang et al. 2025, arXiv 2501.14492).

Per response the model writes k=2 sampled critiques (T=0.7), each a JSON object constrained by
`REPLY_SCHEMA`, keys in this order (critique first, so the verdict follows the reasoning, as in both papers):

- ``critique``: a step-by-step check that stops at the first error;
- ``verdict``: ``"correct"`` or ``"incorrect"``;
- ``first_error``: a *quote* of the first wrong statement, or ``"none"``. A string rather than RealCritic's
  step number: study responses are free text without numbered steps, and a quote is checkable by a
  person (an engine that answers with a number anyway is accepted; the number is kept as text);
- ``corrected_response``: the response restated when correct, else fixed from the first error on.

Prompt: the instructions are the system turn; each user turn is ``## Question`` + ``## Response`` (RealCritic's
problem / solution layout); two worked examples (one incorrect, one correct, so neither verdict is favoured)
come first as earlier turns, which is what makes the 135M model fill the fields sensibly. The prompt's
reference answer is not shown: this is the model critiquing on its own, not reference-guided grading.

Stored per sample (variant ``s0``, ``s1``): value 1.0 / 0.0 for a "correct" / "incorrect" verdict, label = the
verdict, rationale = the critique plus a trailing ``First error: …`` line. Per response (variant None): value
= share of the parsed samples saying "correct", label = the majority verdict or ``"split"``, dist = counts
``{"correct", "incorrect", "failed"}``. A sample whose verdict is "incorrect" and whose correction is
non-empty and differs from the response becomes a revision (a new response; identical corrections of one
response are stored once).

Robustness (the model's output is untrusted): an unparseable sample gets one retry with a new seed, then
becomes a failed verdict carrying the raw text. A reply cut off by ``max_tokens`` is still used when its
verdict was complete (the open string is closed; the rationale says so), but a cut-off correction never
becomes a revision. A response whose prompt + reply budget exceeds the context gets failed verdicts.
Engine errors (server gone) and aborted generations (engine closing) propagate, so the scoring job
fails and a rerun finishes the work; a sample the engine marks as an error is handled like an unparseable one.

This module also holds the small sampling helpers the other generative methods share (`derive_seed`,
`parse_json_object`, `sample_with_retry`).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from backend.engines.base import Chat, Engine, SampleParams
from backend.methods.base import (
    EngineCalls,
    Method,
    MethodInput,
    MethodResult,
    NewResponse,
    Verdict,
)

from backend.methods.sampling import Attempt, derive_seed, sample_parse, sample_with_retry, split_by_budget
from storage.models import HumanMethod


class CritiqueReply(BaseModel):
    """One critique sample as the model wrote it (validated)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    critique: str
    verdict: Literal["correct", "incorrect"]
    first_error: str = ""
    corrected_response: str = ""

    @field_validator("verdict", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("first_error", mode="before")
    @classmethod
    def _step_number_as_text(cls, v: Any) -> Any:
        if v is None:
            return ""
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


REPLY_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "critique": {"type": "string"},
        "verdict": {"type": "string", "enum": ["correct", "incorrect"]},
        "first_error": {"type": "string"},
        "corrected_response": {"type": "string"},
    },
    "required": ["critique", "verdict", "first_error", "corrected_response"],
    "additionalProperties": False,
}


def majority(verdicts: list[str]) -> str:
    """
    >>> majority(["correct", "correct", "incorrect"]), majority(["correct", "incorrect"]), majority([])
    ('correct', 'split', 'split')
    """
    c, i = verdicts.count("correct"), verdicts.count("incorrect")
    return "correct" if c > i else "incorrect" if i > c else "split"


class Critique(Method):
    id = "critique"
    version = "1"
    layer = "response"
    title = "Critique, verdict and correction (CriticBench / RealCritic)"
    brief = "critique, verdict and a correction, sampled twice"
    calls_brief = "2 generations per response (≤ 512 tokens each)"
    outputs = ("value: share of the k=2 sampled critiques whose verdict is 'correct', 0–1, higher = better "
               "(label: majority verdict or 'split'); per sample (variant s0/s1): value 1 = correct / 0 = incorrect, "
               "rationale = critique + 'First error: …'; corrections of 'incorrect' samples become revision responses")
    cost = "2 JSON-constrained generations per response (≤ max_tokens each, one retry if unparseable): ≈ 2 × 0.5–1.5×"
    source = ("Luo et al. 2023, Critique Ability of LLMs (CriticBench), arXiv 2310.04815; "
              "Tang et al. 2025, RealCritic, arXiv 2501.14492")
    compared_with = HumanMethod.CORRECT
    metric_family = "calibration"
    score_column = "value"

    samples: ClassVar[int] = 2
    temperature: ClassVar[float] = 0.7
    max_tokens: ClassVar[int] = 512  # critique + a full corrected response

    def __init__(self, *, samples: int | None = None, temperature: float | None = None,
                 max_tokens: int | None = None) -> None:
        if samples is not None:
            self.samples = samples
        if temperature is not None:
            self.temperature = temperature
        if max_tokens is not None:
            self.max_tokens = max_tokens

    def chat(self, question: str, response: str) -> Chat:
        """Instructions as the system turn, the worked examples as earlier turns, then the response to check."""
        chat: Chat = [{"role": "system", "content": self.template("system")}]
        for ex in json.loads(self.template("examples")):
            chat.append({"role": "user", "content": self.template("user", question=ex["question"],
                                                                  response=ex["response"])})
            chat.append({"role": "assistant", "content": json.dumps(ex["reply"], ensure_ascii=False)})
        chat.append({"role": "user", "content": self.template("user", question=question, response=response)})
        return chat

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        return EngineCalls(generations=self.samples * len(inp.responses))

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        k = self.samples
        variants = [f"s{j}" for j in range(k)]
        verdicts, todo, chats = split_by_budget(self, inp, engine, lambda text: self.chat(inp.question, text),
                                                self.max_tokens, variants)
        params = SampleParams(temperature=self.temperature, max_tokens=self.max_tokens)
        results = sample_with_retry(
            engine, chats, k, params, REPLY_SCHEMA,
            seed_of=lambda i, j, a: derive_seed(inp.seed, todo[i].id, j, a),
            parse=lambda s: sample_parse(s, CritiqueReply))
        new: list[NewResponse] = []
        for r, row in zip(todo, results):
            seen_corrections: set[str] = set()
            for variant, a in zip(variants, row):
                if a.value is None:
                    verdicts.append(self.failed(a.error or "unparseable reply", response_id=r.id, variant=variant))
                    continue
                reply: CritiqueReply = a.value  # type: ignore[assignment]
                verdicts.append(Verdict(method=self.id, response_id=r.id, variant=variant,
                                        value=1.0 if reply.verdict == "correct" else 0.0, label=reply.verdict,
                                        rationale=_rationale(reply, a.truncated)))
                fix = reply.corrected_response
                if (reply.verdict == "incorrect" and not a.truncated and fix and fix != r.text.strip()
                        and fix not in seen_corrections):
                    seen_corrections.add(fix)
                    new.append(NewResponse(text=fix, origin="revision", parent_id=r.id,
                                           metadata={"variant": variant, "seed": a.seed}))
            verdicts.append(self._aggregate(r.id, row))
        order = {r.id: n for n, r in enumerate(inp.responses)}
        verdicts.sort(key=lambda v: (order.get(v.response_id, 0), v.variant is None, v.variant or ""))
        return MethodResult(verdicts=verdicts, new_responses=new)

    def _aggregate(self, response_id: int, row: list[Attempt]) -> Verdict:
        said = [a.value.verdict for a in row if a.value is not None]
        failed = len(row) - len(said)
        if not said:
            return self.failed(f"all {len(row)} critique samples failed: {row[0].error}", response_id=response_id)
        return Verdict(method=self.id, response_id=response_id, value=said.count("correct") / len(said),
                       label=majority(said),
                       dist={"correct": float(said.count("correct")), "incorrect": float(said.count("incorrect")),
                             "failed": float(failed)})


def _rationale(reply: CritiqueReply, truncated: bool) -> str:
    text = reply.critique
    if reply.first_error:
        text = f"{text}\nFirst error: {reply.first_error}" if text else f"First error: {reply.first_error}"
    return f"{text}\n(reply cut off at max_tokens)" if truncated else text


def reply_from_rationale(rationale: str, label: str | None) -> str:
    """A stored sample's judgment as the reply this method asks for (its JSON keys in order), the inverse of
    `_rationale`; the correction is not stored per sample, so it is left out. Judge-training exports use it."""
    text = rationale.removesuffix("\n(reply cut off at max_tokens)")
    critique, sep, first_error = text.rpartition("\nFirst error: ")
    if not sep:
        critique, first_error = (text, "none") if not text.startswith("First error: ") else \
            ("", text.removeprefix("First error: "))
    return json.dumps({"critique": critique, "verdict": label, "first_error": first_error or "none"},
                      ensure_ascii=False)
