"""P(True) self-evaluation (Kadavath et al. 2022, arXiv 2207.05221; reference/methods.md §2).

The paper's prompt is one text ending in "The proposed answer is:" whose continuation " (A)" / " (B)"
is read. With a chat model the question block has to sit in the user turn, and the chat template closes
that turn (`<|im_end|>` + `<|im_start|>assistant`) after it, so a prompt ending inside the user turn
would read the assistant's *first* token (mostly "The", "I" ...), not the option. The closing line
therefore goes into the assistant prefix, which the engine appends after the generation prompt without
closing it: the assistant turn starts "The proposed answer is: (" and the next token is "A" or "B"
(methods.md §2, "end the prompt at `The proposed answer is: (` and read next-token A vs B"). On SmolLM2
" (A)" tokenizes as " (" + "A" + ")", so the slot is exactly one letter token; P(A)+P(B) at that slot
was 0.94-0.97 on the embedded model.

- `PTrue` ("p_true"): Question / Proposed Answer / Is the proposed answer: (A) True (B) False. Zero-shot
  (the paper's few-shot examples improve calibration; not used here).
- `PTrueBrainstorm` ("p_true_brainstorm", paper §4.2): the *other* responses of the prompt are listed
  after "Here are some brainstormed ideas:" (the judged one excluded; the order shuffled with
  `random.Random(inp.seed + i)` for response i and stored in `shown_order`), then "Possible Answer: ...".

prob = P(A) / (P(A) + P(B)) = P(True) in [0, 1], higher = more likely correct. A prompt that does not fit
the context gets a failed "context overflow" verdict; nothing is truncated.
"""

from __future__ import annotations

import random
from typing import ClassVar

from backend.engines.base import Chat, Engine
from backend.methods.base import (
    EngineCalls,
    Method,
    MethodInput,
    MethodResult,
    ResponseInput,
    Verdict,
    context_overflow,
)
from storage.models import HumanMethod

# The prefix ("The proposed answer is: (" = 6 tokens on SmolLM2) plus the answer token, with slack.
PREFIX_BUDGET = 16


def p_true(prob_a: float, prob_b: float) -> tuple[float, float] | None:
    """(P(A) normalised over the two options, label mass P(A)+P(B)), or None without any mass.

    >>> p_true(0.375, 0.125)
    (0.75, 0.5)
    >>> p_true(0.0, 0.0) is None
    True
    """
    mass = prob_a + prob_b
    return (prob_a / mass, mass) if mass > 0 else None


class PTrue(Method):
    id = "p_true"
    # 2: the A/B reading follows backend/engines/candidates.py (on SGLang, "a"/" a"/"b"/" b" no longer count).
    version = "2"
    layer = "response"
    title = "P(True): is the proposed answer (A) True or (B) False?"
    brief = "P(True) self-check"
    calls_brief = "1 prefill read per response"
    outputs = ("prob = value = P(True) = P(A) / (P(A) + P(B)), in [0, 1], higher = better; "
               "dist {A, B, label_mass}")
    cost = "1 prefill-only next-token read per response (all responses of a prompt in one call)"
    source = "Kadavath et al. 2022, Language Models (Mostly) Know What They Know (arXiv 2207.05221)"
    compared_with = HumanMethod.CORRECT
    metric_family = "calibration"
    score_column = "prob"

    answer_prefix: ClassVar[str] = "The proposed answer is: ("
    candidates: ClassVar[tuple[str, str]] = ("A", "B")

    def prompts(self, inp: MethodInput) -> list[tuple[ResponseInput, Chat, list[int] | None]]:
        """(response, chat, shown_order) per response."""
        return [(r, [{"role": "user", "content": self.template("question", question=inp.question,
                                                                answer=r.text.strip())}], None)
                for r in inp.responses]

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        return EngineCalls(reads=len(inp.responses))

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        planned = self.prompts(inp)
        errors: dict[int, str] = {}
        todo: list[tuple[ResponseInput, Chat, list[int] | None]] = []
        for r, chat, shown in planned:
            overflow = context_overflow(engine, chat, PREFIX_BUDGET, inp.context_length)
            if overflow:
                errors[r.id] = overflow
            else:
                todo.append((r, chat, shown))
        probs = engine.next_token_probs([chat for _, chat, _ in todo], self.answer_prefix,
                                        list(self.candidates)) if todo else []
        read = {r.id: (dist, shown) for (r, _, shown), dist in zip(todo, probs)}
        verdicts: list[Verdict] = []
        for r, _, shown in planned:
            if r.id in errors:
                verdicts.append(self.failed(errors[r.id], response_id=r.id, shown_order=shown))
                continue
            dist, shown = read[r.id]
            got = p_true(dist.get("A", 0.0), dist.get("B", 0.0))
            if got is None:
                verdicts.append(self.failed("no probability on A/B at the answer slot", response_id=r.id,
                                            shown_order=shown))
                continue
            p, mass = got
            verdicts.append(Verdict(method=self.id, response_id=r.id, shown_order=shown, value=p, prob=p,
                                    dist={"A": p, "B": 1.0 - p, "label_mass": mass}))
        return MethodResult(verdicts=verdicts)


class PTrueBrainstorm(PTrue):
    id = "p_true_brainstorm"
    version = "2"  # as p_true 2
    title = "P(True) with brainstorming: the other samples shown as ideas"
    brief = "P(True) with the other samples shown as ideas"
    calls_brief = "1 prefill read per response (a longer prompt)"
    outputs = ("prob = value = P(True) = P(A) / (P(A) + P(B)), in [0, 1], higher = better; "
               "dist {A, B, label_mass}; shown_order = ids of the brainstormed responses as listed")
    cost = ("1 prefill-only next-token read per response; the prompt holds the N-1 other samples "
            "(no extra generation)")
    source = ("Kadavath et al. 2022, Language Models (Mostly) Know What They Know, §4.2 brainstorming "
              "(arXiv 2207.05221)")

    answer_prefix: ClassVar[str] = "The possible answer is: ("

    def prompts(self, inp: MethodInput) -> list[tuple[ResponseInput, Chat, list[int] | None]]:
        out = []
        for i, r in enumerate(inp.responses):
            others = [o for o in inp.responses if o.id != r.id]
            random.Random(inp.seed + i).shuffle(others)
            chat = [{"role": "user", "content": self.template(
                "question", question=inp.question, ideas=[o.text.strip() for o in others], answer=r.text.strip())}]
            out.append((r, chat, [o.id for o in others]))
        return out

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        return EngineCalls(reads=len(inp.responses) if len(inp.responses) >= 2 else 0)

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        if len(inp.responses) < 2:
            return MethodResult(verdicts=[self.failed("brainstorming needs at least 2 responses of the prompt",
                                                      response_id=r.id) for r in inp.responses])
        return super().run(inp, engine)
