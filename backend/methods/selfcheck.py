"""SelfCheckGPT, prompt variant (Manakul, Liusie, Gales 2023, arXiv 2303.08896, §5.5 "SelfCheckGPT with Prompt").

A fact the model knows comes back in its other samples; a hallucination does not. For every sentence s of a
response and every *other* response o of the same prompt, the model is asked

    Context: <o>
    Sentence: <s>
    Is the sentence supported by the context above? Answer Yes or No.

and P(No) is read at the answer slot (assistant turn begun with "Answer:"), normalised over Yes/No as p_true
normalises A/B. The paper maps the *generated* word to Yes = 0, No = 1 (other = 0.5); reading the two
probabilities is the graded form of the same reading, one prefill each instead of a generation.

    inconsistency(s) = mean over the other responses of P(No | o, s)
    inconsistency(r) = mean over the sentences of r of inconsistency(s)
    prob = value = 1 − inconsistency(r)  (so higher = better: the estimated probability the response is
                                            supported by the model's other samples)

dist = {sentences, others, label_mass (mean P(Yes) + P(No))}; rationale lists each sentence's P(not
supported). Sentences are split at . ! ? followed by a space and at line breaks (the paper uses spaCy; a
regular-expression split is enough for a chat answer and needs no extra model). A prompt with fewer than 2
responses, an empty response, a chat over the context or no Yes/No mass give failed verdicts.
"""

from __future__ import annotations

import re
from typing import ClassVar

from backend.engines.base import Chat, Engine
from backend.methods.base import EngineCalls, Method, MethodInput, MethodResult, ResponseInput, Verdict, context_overflow
from storage.models import HumanMethod

PREFIX_BUDGET = 8  # "Answer:" and the answer token
PLANNED_SENTENCES = 3  # what an estimate assumes for a response whose text it was not given
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def split_sentences(text: str) -> list[str]:
    """Sentences of a response: split at line breaks and after . ! ? followed by white space.

    >>> split_sentences("It is 4. Two plus two is four!\\n\\n- done")
    ['It is 4.', 'Two plus two is four!', '- done']
    >>> split_sentences("  ")
    []
    """
    return [s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line) if s.strip()]


class SelfCheckPrompt(Method):
    id = "selfcheck_prompt"
    version = "1"
    layer = "response"
    title = "SelfCheckGPT (prompt): is each sentence supported by the other samples?"
    brief = "SelfCheckGPT: sentences checked against the other samples"
    calls_brief = "1 prefill read per sentence × other response"
    outputs = ("prob = value = 1 − mean over sentences of mean over the other responses of P(No), in [0, 1], "
               "higher = better; dist {sentences, others, label_mass}; rationale = P(not supported) per sentence")
    cost = ("1 prefill-only Yes/No read per (sentence, other response of the prompt): S × (N − 1) per "
            "response, all in one call; no generation")
    source = ("Manakul, Liusie, Gales 2023, SelfCheckGPT: Zero-Resource Black-Box Hallucination Detection "
              "(arXiv 2303.08896), prompt variant §5.5")
    compared_with = HumanMethod.CORRECT
    metric_family = "calibration"
    score_column = "prob"

    answer_prefix: ClassVar[str] = "Answer:"
    candidates: ClassVar[tuple[str, str]] = ("Yes", "No")

    def chat(self, context: str, sentence: str) -> Chat:
        return [{"role": "user", "content": self.template("question", context=context.strip(), sentence=sentence)}]

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        if len(inp.responses) < 2:
            return EngineCalls()
        sentences = sum(len(split_sentences(r.text)) if r.text else PLANNED_SENTENCES for r in inp.responses)
        return EngineCalls(reads=sentences * (len(inp.responses) - 1))

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        if len(inp.responses) < 2:
            return MethodResult(verdicts=[self.failed("SelfCheckGPT needs at least 2 responses of the prompt",
                                                      response_id=r.id) for r in inp.responses])
        errors: dict[int, str] = {}
        # (response, sentences, [(sentence index, chat)]) for the responses that can be checked
        plan: list[tuple[ResponseInput, list[str], list[tuple[int, Chat]]]] = []
        for r in inp.responses:
            sentences = split_sentences(r.text)
            if not sentences:
                errors[r.id] = "empty response: no sentence to check"
                continue
            chats = [(i, self.chat(o.text, s)) for i, s in enumerate(sentences)
                     for o in inp.responses if o.id != r.id]
            overflow = next((why for _, c in chats
                             if (why := context_overflow(engine, c, PREFIX_BUDGET, inp.context_length))), None)
            if overflow:
                errors[r.id] = overflow
            else:
                plan.append((r, sentences, chats))
        flat = [c for _, _, chats in plan for _, c in chats]
        probs = iter(engine.next_token_probs(flat, self.answer_prefix, list(self.candidates)) if flat else [])
        read: dict[int, Verdict] = {}
        for r, sentences, chats in plan:
            read[r.id] = self._verdict(r, sentences, [(i, next(probs)) for i, _ in chats])
        return MethodResult(verdicts=[read[r.id] if r.id in read else self.failed(errors[r.id], response_id=r.id)
                                      for r in inp.responses])

    def _verdict(self, r: ResponseInput, sentences: list[str], got: list[tuple[int, dict[str, float]]]) -> Verdict:
        per_sentence: list[list[float]] = [[] for _ in sentences]
        masses = []
        for i, dist in got:
            yes, no = dist.get("Yes", 0.0), dist.get("No", 0.0)
            if yes + no <= 0:
                return self.failed(f"no probability on Yes/No for sentence {i + 1}", response_id=r.id)
            per_sentence[i].append(no / (yes + no))
            masses.append(yes + no)
        scores = [sum(ps) / len(ps) for ps in per_sentence]
        supported = 1.0 - sum(scores) / len(scores)
        rationale = "\n".join(f"P(not supported) = {p:.3f}: {s}" for p, s in zip(scores, sentences))
        return Verdict(method=self.id, response_id=r.id, value=supported, prob=supported, rationale=rationale,
                       dist={"sentences": float(len(sentences)), "others": float(len(per_sentence[0])),
                             "label_mass": sum(masses) / len(masses)})
