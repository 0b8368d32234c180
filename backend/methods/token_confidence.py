"""Decoding-layer confidence baselines from token logprobs (reference/methods.md §3), higher = more confident.

- `NegPerplexity` ("neg_perplexity"): −exp(−mean token logprob), in [−inf, −1]. Ranks like the mean logprob.
- `NegEntropy` ("neg_entropy"): −mean over positions of the entropy of the top-k alternatives renormalised
  to sum to 1, in [−log k, 0].
- `SelfCertainty` ("self_certainty", Kang et al. 2025, arXiv 2502.18581): mean over positions of
  KL(U ‖ p_i), ≥ 0. Exact when the engine saw the full distribution (embedded engine); otherwise the
  uniform-tail top-k proxy, a lower bound that ranks differently. The label says which one ("exact" /
  "topk_proxy"), so the two are never mixed silently.

No prompt, no template: the figures were stored with each sampled response (`backend.token_stats`). Every
value is computed from raw logprobs, so no ranking of a prompt's responses (nor a pooled one) mixes raw and
temperature-scaled figures: responses without stored figures (imported ones, revisions and aggregates in
`inp.derived`) and responses whose stored figures are temperature-scaled (SGLang without
SGLANG_RETURN_ORIGINAL_LOGPROB=1, sampled at 0 < T != 1) are teacher-forced once through
`engine.score_response(inp.messages, text, top_logprobs=inp.top_logprobs)`, whose logprobs are raw, with the
run's top-k (dist["teacher_forced"] = 1). Both `inp.responses` and `inp.derived` are scored. A response with
no tokens gets a failed "empty response" verdict; so does one whose figure is missing and cannot be recomputed.
"""

from __future__ import annotations

from typing import ClassVar

from backend.engines.base import Engine
from backend.methods.base import (
    EngineCalls,
    Method,
    MethodInput,
    MethodResult,
    ResponseInput,
    Verdict,
    context_overflow,
)
from backend.token_stats import token_stats
from storage.models import HumanMethod, TokenStats

def stored_stats(r: ResponseInput) -> TokenStats | None:
    """The raw figures stored with a response, or None when it has none (imported, derived) or they are
    temperature-scaled.

    >>> stored_stats(ResponseInput(id=1, text="x")) is None
    True
    >>> r = ResponseInput(id=1, text="x", token_count=3, mean_logprob=-0.5, logprob_mode="raw")
    >>> stored_stats(r).mean_logprob
    -0.5
    >>> stored_stats(r.model_copy(update={"logprob_mode": "temperature_scaled"})) is None
    True
    """
    if r.token_count is None or (r.token_count > 0 and r.logprob_mode != "raw"):
        return None
    return TokenStats.model_validate(r.model_dump(include=set(TokenStats.model_fields)))


COST = ("none for sampled responses with raw logprobs (stored); 1 teacher-forced prefill for imported/derived "
        "ones and for temperature-scaled ones (SGLang without SGLANG_RETURN_ORIGINAL_LOGPROB=1)")


class _TokenConfidence(Method):
    uses_derived = True
    # 2: raw logprobs only (temperature-scaled stored figures are teacher-forced again), teacher-forced with
    # the run's top-k instead of a fixed 5.
    version = "2"
    layer = "decoding"
    compared_with = HumanMethod.RATING
    metric_family = "rank"
    score_column = "value"

    needs: ClassVar[str]  # the TokenStats field the value is computed from
    calls_brief = "free for raw-logprob samples; 1 prefill read per other one"

    def value(self, stats: TokenStats) -> float:
        raise NotImplementedError

    def label(self, stats: TokenStats) -> str | None:
        return stats.logprob_mode

    def planned_calls(self, inp: MethodInput) -> EngineCalls:
        return EngineCalls(reads=sum(self._forced(r) for r in [*inp.responses, *inp.derived]))

    def _forced(self, r: ResponseInput) -> bool:
        """Whether `score` has to teacher-force this response (its stored figure is missing)."""
        stats = stored_stats(r)
        if stats is not None and stats.token_count == 0:
            return False
        return stats is None or getattr(stats, self.needs) is None

    def run(self, inp: MethodInput, engine: Engine) -> MethodResult:
        return MethodResult(verdicts=[self.score(inp, engine, r) for r in [*inp.responses, *inp.derived]])

    def score(self, inp: MethodInput, engine: Engine, r: ResponseInput) -> Verdict:
        stats, forced = stored_stats(r), False
        if stats is not None and stats.token_count == 0:
            return self.failed("empty response", response_id=r.id)
        if self._forced(r):
            chat = [*inp.messages, {"role": "assistant", "content": r.text}]
            overflow = context_overflow(engine, chat, 0, inp.context_length)
            if overflow:
                return self.failed(f"teacher-forced scoring: {overflow}", response_id=r.id)
            tokens = engine.score_response(inp.messages, r.text, top_logprobs=inp.top_logprobs)
            stats = token_stats(tokens, vocab_size=getattr(engine, "vocab_size", None), logprob_mode="raw")
            forced = True
            if stats.token_count == 0:
                return self.failed("empty response", response_id=r.id)
            if getattr(stats, self.needs) is None:
                return self.failed(f"the engine's token logprobs give no {self.needs} (no top-k alternatives"
                                   f"{' or vocabulary size' if self.needs == 'self_certainty' else ''})",
                                   response_id=r.id)
        return Verdict(method=self.id, response_id=r.id, value=self.value(stats), label=self.label(stats),
                       dist={"token_count": float(stats.token_count), "teacher_forced": float(forced)})


class NegPerplexity(_TokenConfidence):
    id = "neg_perplexity"
    title = "Negative perplexity of the response"
    brief = "negative perplexity of the response"
    outputs = "value = −exp(−mean token logprob), in [−inf, −1], higher = better; label = logprob mode"
    cost = COST
    source = ("Kadavath et al. 2022, App. B (arXiv 2207.05221); the baseline of Kang et al. 2025, "
              "Self-Certainty (arXiv 2502.18581)")
    needs = "neg_perplexity"

    def value(self, stats: TokenStats) -> float:
        assert stats.neg_perplexity is not None
        return stats.neg_perplexity


class NegEntropy(_TokenConfidence):
    id = "neg_entropy"
    title = "Negative mean token entropy (top-k)"
    brief = "negative mean token entropy"
    outputs = ("value = −mean over tokens of the renormalised top-k entropy, in [−log k, 0], higher = better; "
               "label = logprob mode")
    cost = COST
    source = "Kadavath et al. 2022, App. B (arXiv 2207.05221); reference/methods.md §3 (token-level entropy)"
    needs = "mean_topk_entropy"

    def value(self, stats: TokenStats) -> float:
        assert stats.mean_topk_entropy is not None
        return -stats.mean_topk_entropy


class SelfCertainty(_TokenConfidence):
    id = "self_certainty"
    title = "Self-certainty: mean KL(uniform ‖ next-token distribution)"
    brief = "self-certainty (KL of tokens from uniform)"
    outputs = ("value = mean over tokens of KL(U ‖ p), >= 0, higher = better; "
               "label = exact | topk_proxy (uniform-tail lower bound)")
    cost = COST
    source = "Kang, Zhao, Song 2025, Scalable Best-of-N Selection via Self-Certainty (arXiv 2502.18581)"
    needs = "self_certainty"

    def value(self, stats: TokenStats) -> float:
        assert stats.self_certainty is not None
        return stats.self_certainty

    def label(self, stats: TokenStats) -> str | None:
        return stats.self_certainty_mode
