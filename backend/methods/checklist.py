"""TICK: instruction-specific YES/NO checklists and a per-response pass rate (Cook et al. 2024,
arXiv 2410.03608; reference/methods.md §1).

1. Checklist (once per prompt): one JSON-schema-constrained sample. The prompt holds a worked example
   as a previous user/assistant turn; without it the 135M model copies the format placeholder or
   repeats the instruction (reference/embedded-engine.md, "Does the 135M model produce anything
   usable?"). The questions are cleaned (stripped, de-duplicated, empty/too short dropped); fewer than
   three usable ones → one retry with the next seed → a failed verdict per response. A stored checklist
   (`inp.checklist`) is reused instead of writing a new one.
2. Items: P(Yes) at the answer slot for every (response, item), all in one `next_token_probs` call
   (the chats of one response share everything up to the question, so the engine reuses that prefix).
   The paper lets the judge reason first; here the direct-answer variant is read from the next-token
   distribution (methods.md §1 "also store the per-item P(YES) from a NEXT1 call").
3. Pass rate = #items with p_yes > 0.5 / #items (higher = better).

Prompt text lives in backend/templates/checklist.v<version>.*.j2; the answer prefix, the candidates
and the schema below are part of the prompt too: changing any of them bumps `version`. The checklist-writing
templates and the schema are versioned apart, by `checklist_version`, which stored checklists are found by:
a change to how items are read leaves the checklists (and people's labels of their items) in place.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from backend.engines.base import Chat, Engine, Sample, SampleParams
from backend.methods.base import (
    EngineCalls,
    Method,
    MethodInput,
    MethodResult,
    Verdict,
    _template,
    context_overflow,
)
from storage.models import HumanMethod

QUESTIONS_SCHEMA: dict = {
    "type": "object",
    "properties": {"questions": {"type": "array", "items": {"type": "string", "minLength": 5},
                                 "minItems": 3, "maxItems": 10}},
    "required": ["questions"],
}
MIN_ITEMS, MAX_ITEMS, MIN_CHARS = 3, 10, 5
WRITING_TEMPLATES = ("generate", "example_instruction", "example_checklist")
# Items a checklist not yet written is assumed to get, for cost estimates (3-10 are accepted; the
# embedded model mostly wrote 4-6).
PLANNED_ITEMS = 5
# Reply budget of one next-token read: the answer prefix ("Answer:" = 2 tokens) plus the answer token,
# with room for tokenizers that split the prefix finer.
PREFIX_BUDGET = 8
RAW_CHARS = 300  # raw model text kept in an error message


class GeneratedChecklist(BaseModel):
    """What the checklist writer must return (checked again here: the schema only constrains decoding)."""

    questions: list[str]


def clean_questions(questions: list[str]) -> list[str]:
    """Strip, collapse inner whitespace, drop items shorter than 5 characters, de-duplicate
    (case-insensitively, first occurrence wins), keep at most 10.

    >>> clean_questions(["  Is it a haiku? ", "is it a  HAIKU?", "", "   ", "ok?", "Is it about autumn?"])
    ['Is it a haiku?', 'Is it about autumn?']
    """
    out: list[str] = []
    seen: set[str] = set()
    for q in questions:
        q = " ".join(q.split())
        key = q.casefold()
        if len(q) < MIN_CHARS or key in seen:
            continue
        seen.add(key)
        out.append(q)
    return out[:MAX_ITEMS]


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def salvage_truncated(text: str) -> str | None:
    r"""Close a JSON checklist that hit the token limit after its last complete question.

    Constrained decoding guarantees that what was written is a valid JSON prefix, so every complete
    string inside the array is a complete question; the cut-off one is dropped.

    >>> salvage_truncated('{"questions": ["Is it short?", "Is it \\"about\\" autu')
    '{"questions": ["Is it short?"]}'
    >>> salvage_truncated('{"questions": ["Is it sh') is None
    True
    """
    start = text.find("[")
    items = _JSON_STRING.findall(text, start) if start >= 0 else []
    return '{"questions": [' + ", ".join(items) + "]}" if items else None


def _clip(text: str, n: int = RAW_CHARS) -> str:
    return text if len(text) <= n else text[:n] + "…"


class ChecklistMethod(Method):
    id = "checklist"
    # 2: the Yes/No reading follows backend/engines/candidates.py (on SGLang, "NO"/" NO" now count as No).
    version = "2"
    # The checklist-writing step (generate templates, schema) is unchanged since version 1: checklists are
    # stored and found under this version, so the ones people have labelled are reused, not rewritten.
    checklist_version: ClassVar[str] = "1"
    layer = "response"
    title = "TICK checklist: generated YES/NO items, pass rate"
    brief = "a YES/NO checklist the model writes, then answers"
    calls_brief = "1 generation per prompt + 1 prefill read per response × item"
    outputs = ("value: pass rate = share of items with P(Yes) > 0.5, in [0, 1], higher = better; "
               "prob: mean P(Yes) over the items, in [0, 1]; per item (method checklist_item): prob = P(Yes) "
               "normalised over Yes/No, label YES/NO, dist {YES, NO, label_mass}")
    cost = ("once per prompt: 1 JSON-constrained sample (<= 200 tokens, 1 retry); per response x item: "
            "1 prefill-only next-token read (shared prefix)")
    source = "Cook et al. 2024, TICK / STICK: generated checklists (arXiv 2410.03608)"
    compared_with = "checklist"
    metric_family = "agreement"
    score_column = "value"

    answer_prefix: ClassVar[str] = "Answer:"
    # "Yes"/"No" rather than "YES"/"NO": on SmolLM2 "YES" is two tokens (Y + ES), so the engine would count
    # P("Y"), the first token of many words, as YES. The engine sums the one-token surface variants
    # (" Yes", "yes", "NO", ...) into each candidate, and the judge prompt asks for "Yes or No".
    candidates: ClassVar[tuple[str, str]] = ("Yes", "No")
    max_new_tokens: ClassVar[int] = 200
    temperature: ClassVar[float] = 0.7

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        """A stored checklist is reused; a new one is assumed to get `PLANNED_ITEMS` items."""
        if not inp.responses:
            return EngineCalls()
        if inp.checklist:
            return EngineCalls(reads=len(inp.responses) * len(inp.checklist))
        return EngineCalls(reads=len(inp.responses) * PLANNED_ITEMS, generations=1)

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        if not inp.responses:
            return MethodResult()
        if inp.checklist:
            questions, written = [item.question for item in inp.checklist], None
        else:
            questions, error = self.write_checklist(inp, engine)
            if questions is None:
                return MethodResult(verdicts=[self.failed(error or "no checklist", response_id=r.id)
                                              for r in inp.responses])
            written = questions
        return MethodResult(verdicts=self.judge_items(inp, engine, questions), checklist=written)

    # -- 1. the checklist ------------------------------------------------------------------------
    def template(self, name: str, **values: Any) -> str:
        """The checklist-writing templates are versioned by `checklist_version`, the judge one by `version`."""
        if name in WRITING_TEMPLATES:
            return _template(f"{self.id}.v{self.checklist_version}.{name}.j2").render(**values)
        return super().template(name, **values)

    def generation_chat(self, instruction: str) -> Chat:
        """Few-shot: the worked example is a previous user/assistant exchange."""
        return [
            {"role": "user", "content": self.template("generate", instruction=self.template("example_instruction"))},
            {"role": "assistant", "content": self.template("example_checklist")},
            {"role": "user", "content": self.template("generate", instruction=instruction)},
        ]

    def write_checklist(self, inp: MethodInput, engine: Engine) -> tuple[list[str] | None, str | None]:
        """(questions, None) or (None, reason incl. the raw model text)."""
        chat = self.generation_chat(inp.question)
        overflow = context_overflow(engine, chat, self.max_new_tokens, inp.context_length)
        if overflow:
            return None, f"checklist generation: {overflow}"
        problems = []
        for attempt, seed in enumerate((inp.seed, inp.seed + 1), start=1):
            seed %= 2**32
            params = SampleParams(temperature=self.temperature, max_tokens=self.max_new_tokens, seed=seed)
            sample = engine.sample([chat], 1, params, top_logprobs=0, json_schema=QUESTIONS_SCHEMA,
                                   seeds=[[seed]])[0][0]
            questions, problem = self.parse(sample)
            if questions is not None:
                return questions, None
            problems.append(f"attempt {attempt} (seed {seed}): {problem}; raw: {_clip(sample.text)!r}")
        return None, "checklist generation failed twice: " + " | ".join(problems)

    @staticmethod
    def parse(sample: Sample) -> tuple[list[str] | None, str]:
        if sample.finish_reason in ("error", "abort"):
            return None, f"engine {sample.finish_reason}: {sample.error}"
        try:
            parsed = GeneratedChecklist.model_validate_json(sample.text)
        except ValidationError as e:
            # Cut off by the token limit: keep the questions that were written out completely.
            salvaged = salvage_truncated(sample.text) if sample.finish_reason == "length" else None
            try:
                # The salvaged questions can still be invalid JSON: a grammar may let raw control
                # characters into a string (seen with llama-cpp-python's schema converter).
                parsed = GeneratedChecklist.model_validate_json(salvaged) if salvaged is not None else None
            except ValidationError as again:
                e = again
                parsed = None
            if parsed is None:
                first = e.errors()[0]
                return None, f"not a JSON checklist ({first['type']}: {first['msg']})"
        questions = clean_questions(parsed.questions)
        if len(questions) < MIN_ITEMS:
            return None, f"only {len(questions)} usable distinct question(s), need {MIN_ITEMS}"
        return questions, ""

    # -- 2. the items ------------------------------------------------------------------------------
    def judge_chat(self, instruction: str, response: str, question: str) -> Chat:
        return [{"role": "user", "content": self.template("judge", instruction=instruction, response=response,
                                                          question=question)}]

    def judge_items(self, inp: MethodInput, engine: Engine, questions: list[str]) -> list[Verdict]:
        chats: list[Chat] = []
        slots: list[tuple[int, int]] = []
        item_error: dict[tuple[int, int], str] = {}
        for r in inp.responses:
            for k, q in enumerate(questions):
                chat = self.judge_chat(inp.question, r.text, q)
                overflow = context_overflow(engine, chat, PREFIX_BUDGET, inp.context_length)
                if overflow:
                    item_error[(r.id, k)] = overflow
                else:
                    chats.append(chat)
                    slots.append((r.id, k))
        probs = engine.next_token_probs(chats, self.answer_prefix, list(self.candidates)) if chats else []
        read: dict[tuple[int, int], tuple[float, float]] = {}  # slot -> (p_yes normalised, label mass)
        for slot, dist in zip(slots, probs):
            yes, no = dist.get(self.candidates[0], 0.0), dist.get(self.candidates[1], 0.0)
            if yes + no > 0:
                read[slot] = (yes / (yes + no), yes + no)
            else:
                item_error[slot] = "no probability on Yes/No at the answer slot"
        verdicts: list[Verdict] = []
        for r in inp.responses:
            item_ps = []
            for k in range(len(questions)):
                if (r.id, k) in item_error:
                    verdicts.append(Verdict(method=HumanMethod.CHECKLIST_ITEM, response_id=r.id, checklist_item=k,
                                            status="failed", error=item_error[(r.id, k)]))
                    continue
                p, mass = read[(r.id, k)]
                item_ps.append(p)
                verdicts.append(Verdict(method=HumanMethod.CHECKLIST_ITEM, response_id=r.id, checklist_item=k, prob=p,
                                        label="YES" if p > 0.5 else "NO",
                                        dist={"YES": p, "NO": 1.0 - p, "label_mass": mass}))
            if len(item_ps) < len(questions):
                first = next(item_error[(r.id, k)] for k in range(len(questions)) if (r.id, k) in item_error)
                verdicts.append(self.failed(f"{len(questions) - len(item_ps)} of {len(questions)} items could "
                                            f"not be judged: {first}", response_id=r.id))
            else:
                verdicts.append(Verdict(method=self.id, response_id=r.id,
                                        value=sum(p > 0.5 for p in item_ps) / len(item_ps),
                                        prob=sum(item_ps) / len(item_ps)))
        return verdicts
