"""Self-J expected-digit judge score (Ye & Ng 2024, arXiv 2409.00935; reference/methods.md §4).

The judge prompt has the sections [Question], optionally [Reference] (the prompt's reference answer:
`with_reference` template) and [Answer] (`no_reference` template otherwise), and asks for one integer 0–9.
The score is read from the next-token distribution instead of a generated digit: P(d) for the ten digit
tokens at the answer slot, renormalised over the digits, and s = Σ d · p̃(d) in [0, 9] (higher = better).

The answer slot: the assistant turn is begun with the prefix "Score: " (trailing space) and the next token
is read. SmolLM2's tokenizer, like the Llama-3 and Qwen ones, never attaches a space to a digit ("Score: 7"
is "Score" ":" " " "7"), so after the space the next token *is* the digit: the digit mass was 0.995–0.999
on the embedded model, against 0.15–0.30 with an empty prefix (where the reply often starts with a word)
and ~0.002 after "Score:" (where the next token is the space). The digit mass is stored as
dist["digit_mass"]; a low value means the model did not want to answer with a digit there.
"""

from __future__ import annotations

from typing import ClassVar

from backend.engines.base import Chat, Engine
from backend.methods.base import EngineCalls, Method, MethodInput, MethodResult, Verdict, context_overflow
from storage.models import HumanMethod

DIGITS = [str(d) for d in range(10)]
PREFIX_BUDGET = 8  # "Score: " (3 tokens on SmolLM2) plus the digit, with slack


def expected_digit(probs: dict[str, float]) -> tuple[float, dict[str, float], float] | None:
    """(Σ d·p̃(d), the renormalised 10-way distribution, the digit mass) or None without digit mass.
    Digits missing from `probs` count as probability 0 (as in the Self-J repo's top-20 reading).

    >>> value, dist, mass = expected_digit({"7": 0.25, "9": 0.125, "2": 0.125})
    >>> value, dist["7"], dist["0"], mass
    (6.25, 0.5, 0.0, 0.5)
    """
    p = [max(0.0, probs.get(d, 0.0)) for d in DIGITS]
    mass = sum(p)
    if not mass > 0:
        return None
    dist = {d: q / mass for d, q in zip(DIGITS, p)}
    return sum(i * dist[d] for i, d in enumerate(DIGITS)), dist, mass


class JudgeScore(Method):
    id = "judge_score"
    version = "1"
    layer = "response"
    title = "Self-J judge score: expected digit 0–9"
    brief = "judge score 0–9 (expected digit)"
    calls_brief = "1 prefill read per response"
    outputs = ("value = Σ d·p̃(d) over the digit distribution at the answer slot, in [0, 9], higher = better; "
               "dist = p̃(0..9) + digit_mass; label = with_reference | no_reference")
    cost = "1 prefill-only next-token read per response (all responses of a prompt in one call)"
    source = "Ye & Ng 2024, Self-Judge: selective instruction following with alignment self-evaluation (arXiv 2409.00935)"
    compared_with = HumanMethod.RATING
    metric_family = "rank"
    score_column = "value"

    answer_prefix: ClassVar[str] = "Score: "

    def variant_of(self, inp: MethodInput) -> str:
        return "with_reference" if inp.reference and inp.reference.strip() else "no_reference"

    def judge_chat(self, inp: MethodInput, answer: str) -> Chat:
        kind = self.variant_of(inp)
        values = {"question": inp.question, "answer": answer.strip()}
        if kind == "with_reference":
            values["reference"] = (inp.reference or "").strip()
        return [{"role": "user", "content": self.template(kind, **values)}]

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        return EngineCalls(reads=len(inp.responses))

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        kind = self.variant_of(inp)
        errors: dict[int, str] = {}
        todo: list[tuple[int, Chat]] = []
        for r in inp.responses:
            chat = self.judge_chat(inp, r.text)
            overflow = context_overflow(engine, chat, PREFIX_BUDGET, inp.context_length)
            if overflow:
                errors[r.id] = overflow
            else:
                todo.append((r.id, chat))
        probs = engine.next_token_probs([c for _, c in todo], self.answer_prefix, DIGITS) if todo else []
        read = {rid: p for (rid, _), p in zip(todo, probs)}
        verdicts: list[Verdict] = []
        for r in inp.responses:
            got = expected_digit(read[r.id]) if r.id in read else None
            if r.id in errors or got is None:
                verdicts.append(self.failed(errors.get(r.id, "no probability on the digits 0-9 at the answer slot"),
                                            response_id=r.id, label=kind))
                continue
            value, dist, mass = got
            verdicts.append(Verdict(method=self.id, response_id=r.id, value=value, label=kind,
                                    dist={**dist, "digit_mass": mass}))
        return MethodResult(verdicts=verdicts)
