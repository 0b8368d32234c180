"""Generative Self-Aggregation (Li et al. 2025, arXiv 2503.04104; methods.md §6).

The model sees the question and all N sampled responses as numbered blocks and writes ONE new response
that uses their reasoning and information. It neither picks nor critiques, so it needs no matchable
final answer. The new response is stored with origin "aggregate" (off-policy: flag it when exporting
DPO pairs) and is labelled by people like any other response; the agreement report then measures how
often they prefer it.
"""

from __future__ import annotations

from backend.engines.base import Engine, SampleParams
from backend.methods.base import EngineCalls, Method, MethodInput, MethodResult, NewResponse, Verdict, context_overflow
from storage.models import HumanMethod


class GSA(Method):
    id = "gsa"
    version = "1"
    layer = "response"
    title = "Generative Self-Aggregation (write one better response from the N samples)"
    brief = "the model writes one new response from the N samples"
    calls_brief = "1 generation per prompt (≤ 256 tokens)"
    outputs = ("a new response (origin 'aggregate', metadata.sources = the N response ids) that people judge "
               "like any other response (best-of-N pick, rating); one prompt-level verdict with label 'written' "
               "and value = the number of source responses; failed verdict and no response on context "
               "overflow or an engine abort")
    cost = "one generation (GEN(1), up to max_tokens = 256) per prompt, prompt holding all N responses"
    source = "Li et al. 2025, arXiv 2503.04104 (GSA); methods.md §6"
    compared_with = HumanMethod.BEST
    metric_family = "top1"
    score_column = "response_id"

    temperature = 0.7
    top_p = 0.9
    max_tokens = 256

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        return EngineCalls(generations=1 if inp.responses else 0)

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        if not inp.responses:
            return MethodResult(verdicts=[self.failed("no responses to aggregate")])
        sources = [r.id for r in inp.responses]
        chat = [{"role": "user", "content": self.template(
            "prompt", question=inp.question, responses=[r.text for r in inp.responses])}]
        reason = context_overflow(engine, chat, self.max_tokens, inp.context_length)
        if reason:
            return MethodResult(verdicts=[self.failed(reason, value=float(len(sources)))])
        params = SampleParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              seed=inp.seed)
        sample = engine.sample([chat], 1, params)[0][0]
        text = sample.text.strip()
        if sample.finish_reason in ("abort", "error"):
            return MethodResult(verdicts=[self.failed(
                f"the engine stopped the aggregate ({sample.finish_reason}): {sample.error or 'no reason given'}",
                value=float(len(sources)))])
        if not text:
            return MethodResult(verdicts=[self.failed("the model wrote an empty aggregate", value=float(len(sources)))])
        metadata = {"sources": sources, "finish_reason": sample.finish_reason, "seed": inp.seed,
                    "params": {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}}
        return MethodResult(
            new_responses=[NewResponse(text=text, origin="aggregate", parent_id=None, metadata=metadata)],
            verdicts=[Verdict(method=self.id, label="written", value=float(len(sources)),
                              rationale=f"aggregated {len(sources)} responses ("
                                        f"{', '.join(f'#{i}' for i in sources)}); finish {sample.finish_reason}")])
